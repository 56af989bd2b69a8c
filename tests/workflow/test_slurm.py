"""The SLURM profiles: their settings resolve as documented (dry runs), and
the workflow runs through profiles/slurm on a real one-node SLURM cluster
(tests/localslurm.py: munged, slurmctld, slurmd, a fake GPU), including a
training job that SLURM stops near its time limit and `retries` resumes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake, snakemake_command, snakemake_env
from localslurm import LocalSlurm, SlurmUnavailable, ensure_slurm

pytestmark = pytest.mark.workflow

PROFILE = ROOT / "profiles" / "slurm"
MULTINODE = ROOT / "profiles" / "slurm-multinode"
NO_CONTAINER = ("software-deployment-method", "apptainer-args")   # no apptainer on a test machine

# The tiny settings of test_workflow's end-to-end run (its toy: seed 5, 3 s tracks), with one oracle.
TINY = ["loader={samples_per_epoch: 8, excerpt_seconds: 1.0, valid_excerpts_per_track: 2}",
        "training={epochs: 2, batch_size: 4, workers: 0}",
        "evaluation={oracles: [irm1]}"]
SYSTEMS = ["baseline", "centroids", "dpcl", "oracle_irm1"]


def load_profile(path: Path) -> dict:
    return yaml.safe_load((path / "config.yaml").read_text())


def write_profile(folder: Path, settings: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    return folder


def dry_run_resources(tmp_path: Path, settings: dict, target: str) -> dict[str, dict]:
    """rule -> its resources (as the dry run prints them, attempt 1)."""
    profile = write_profile(tmp_path / "profile", {k: v for k, v in settings.items() if k not in NO_CONTAINER})
    proc = snakemake(tmp_path, "-n", target, profile=profile, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resources = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        line = re.search(r"^\s+resources: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        if rule and line:
            resources[rule[1]] = dict(item.split("=", 1) for item in line[1].split(", "))
            resources[rule[1]]["threads"] = threads[1] if threads else "1"
    return resources


def commented_train_blocks(path: Path) -> list[dict]:
    """The commented `train:` examples at the end of a profile, parsed."""
    blocks, current = [], None
    for line in (path / "config.yaml").read_text().splitlines():
        if line.startswith("#   train:"):
            current = []
            blocks.append(current)
        elif current is not None and line.startswith("#     "):
            current.append(line[1:])
        else:
            current = None
    return [yaml.safe_load("\n".join(b)) for b in blocks]


# --------------------------------------------------------------------------- #
# The profiles resolve (no SLURM needed)
# --------------------------------------------------------------------------- #

def test_slurm_profile_resolves_gpu_training_and_cpu_tracks(tmp_path):
    settings = load_profile(PROFILE)
    assert settings["executor"] == "slurm" and settings["retries"] >= 1
    assert settings["software-deployment-method"] == "apptainer" and "--nv" in settings["apptainer-args"]
    resources = dry_run_resources(tmp_path, settings, "results/summary.md")
    train = resources["train"]
    assert train["gpu"] == "1" and train["cpus_per_gpu"] == "8" and train["cpus_per_task"] == "0"
    assert train["slurm_extra"] == "--signal=TERM@600"
    assert train["runtime"] == "720" and train["mem_mb"] == "32000"          # attempt 1
    assert train["slurm_partition"] == "SITE-gpu-partition"
    for rule in ["shard", "separate", "oracle", "evaluate"]:
        assert resources[rule]["slurm_partition"] == "SITE-cpu-partition", rule
        assert not {"gpu", "gres", "slurm_extra"} & set(resources[rule]), rule
    assert resources["shard"]["cpus_per_task"] == "1" and resources["separate"]["cpus_per_task"] == "4"
    # CPUs follow a rule's threads (toy_musdb: 4 in profiles/default, capped at this machine's cores here)
    assert resources["toy_musdb"]["cpus_per_task"] == resources["toy_musdb"]["threads"] != "1"


def test_several_gpu_settings_resolve(tmp_path):
    """1 node x 4 GPUs (the commented example) and 2 nodes x 4 GPUs
    (profiles/slurm-multinode, also the second commented example)."""
    base, multi = load_profile(PROFILE), load_profile(MULTINODE)
    one_node, two_nodes = commented_train_blocks(PROFILE)
    assert two_nodes == multi["set-resources"]["train"]
    # the multinode profile is profiles/slurm but for the train block
    assert {**multi, "set-resources": {**multi["set-resources"], "train": None}} == \
        {**base, "set-resources": {**base["set-resources"], "train": None}}

    settings = {**base, "set-resources": {**base["set-resources"], "train": one_node}}
    train = dry_run_resources(tmp_path / "one", settings, "results/models/baseline/model.pt")["train"]
    assert train["gpu"] == "4" and train["cpus_per_gpu"] == "8" and train["mem_mb"] == "128000"
    assert not {"tasks", "tasks_per_node", "nodes", "mpi"} & set(train)

    train = dry_run_resources(tmp_path / "two", multi, "results/models/baseline/model.pt")["train"]
    assert train["nodes"] == "2" and train["gres"] == "gpu:4" and train["tasks_per_node"] == "4"
    assert train["mpi"] == "srun" and train["cpus_per_task"] == "8"
    assert train["slurm_extra"] == "--signal=TERM@600"


# --------------------------------------------------------------------------- #
# A real cluster
# --------------------------------------------------------------------------- #

@pytest.fixture(scope="session")
def slurm():
    """A one-node SLURM cluster (this machine's CPUs, one fake GPU),
    installed with apt where missing; stopped, daemon by daemon, at the end."""
    try:
        ensure_slurm()
    except SlurmUnavailable as err:
        pytest.skip(f"no SLURM: {err}")
    cluster = LocalSlurm()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def cluster_profile(folder: Path, cpus: int, source: Path = PROFILE, **train) -> Path:
    """A profile (profiles/slurm) for the test cluster: partition debug, small
    memory, at most the node's CPUs, one CPU per GPU, no container, quick
    status checks, ``train`` settings replaced. Everything else (GPU request,
    runtimes, signal, retries) is the profile's."""
    settings = {k: v for k, v in load_profile(source).items() if k not in NO_CONTAINER}
    settings["default-resources"] = {**settings["default-resources"], "slurm_partition": "'debug'",
                                     "mem_mb": "200 * attempt"}
    rules = {}
    for rule, res in settings["set-resources"].items():
        rules[rule] = {**res, "mem_mb": "200 * attempt"}
        if res.get("cpus_per_task"):
            rules[rule]["cpus_per_task"] = min(res["cpus_per_task"], cpus)
    rules["train"].update(slurm_partition="'debug'", cpus_per_gpu=1, mem_mb="600 * attempt")
    rules["train"] = {k: v for k, v in {**rules["train"], **train}.items() if v is not None}
    settings["set-resources"] = rules
    settings["slurm-init-seconds-before-status-checks"] = 2
    return write_profile(folder, settings)


def submitted(output: str) -> dict[str, list[tuple[str, Path]]]:
    """rule -> [(SLURM job id, job log)], in order of submission, from Snakemake's output."""
    jobs: dict[str, list[tuple[str, Path]]] = {}
    for job_id, log in re.findall(r"SLURM jobid (\d+) \(log: (\S+?)\)", output):
        rule = re.search(r"/rule_(\w+?)/", log)[1]
        jobs.setdefault(rule, []).append((job_id, Path(log)))
    return jobs


def minutes(text: str) -> float:
    """SLURM's [days-]hours:minutes:seconds (or minutes:seconds) in minutes."""
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1] + parts[2] / 60


EPOCHS = 30
BASELINE = f"baseline: {{training: {{epochs: {EPOCHS}, deterministic: true}}}}"


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    """A tiny toy (one training and one test track, made here rather than by
    a job, to save a job's start-up) through profiles/slurm,
    every job a SLURM job: the shards, the track table, statistics, the oracle
    and its museval score of the test track, and the baseline model, trained
    deterministically. Once an epoch is done, the training job gets a time
    limit a minute or two away, inside the profile's --signal=TERM@600
    window, so that slurmctld sends SIGTERM to the job's step at its next
    time-limit check (every 30 s). To be sure the signal finds the training
    still running on any machine, the training process is paused (SIGSTOP)
    until the job's log shows that the signal arrived, then continued: it
    saves a checkpoint and exits, the job fails, `retries` resubmits it and the
    new job resumes. Meanwhile the same training runs here, uninterrupted."""
    from musicsep.data.musdb import scan
    from musicsep.toy.musdb import make_toy_musdb

    workdir = tmp_path_factory.mktemp("slurm_run")
    dataset, tracks = scan(make_toy_musdb(workdir / "musdb18-toy.zip", seed=5, train=1, test=1, duration=3.0))
    (test_slug,) = [t.slug for t in tracks if t.subset == "test"]
    config = [f"dataset={{path: {workdir / 'musdb18-toy.zip'}}}", *TINY, f"experiments={{{BASELINE}}}"]
    targets = ["results/models/baseline/model.pt", f"results/scores/oracle_irm1/{test_slug}.json"]
    env = slurm.env()
    env["OMP_NUM_THREADS"] = "1"          # the same single thread in the jobs and in the reference run
    env = snakemake_env(env)
    cmd = snakemake_command(workdir, *targets, profile=cluster_profile(workdir / "profile", slurm.cpus), config=config)
    run_dir = workdir / "results" / "runs" / "baseline"
    data = workdir / "results" / "data"
    stopped, reference = None, None
    started = time.monotonic()
    with open(workdir / "snakemake.out", "w") as out, open(workdir / "snakemake.err", "w") as err, \
            open(workdir / "reference.log", "w") as reference_log:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=workdir)
        try:
            deadline = started + 900
            while proc.poll() is None and time.monotonic() < deadline:
                if stopped is None and (run_dir / "metrics.jsonl").exists():       # an epoch is done
                    stopped = stop_near_time_limit(slurm, workdir, run_dir, deadline)
                    reference = subprocess.Popen(
                        [sys.executable, "-m", "musicsep", "train", "--spec", (run_dir / "spec.json").read_text(),
                         "--tracks", str(data / "tracks.tsv"), "--shards", *map(str, data.glob("shards/*.h5")),
                         "--stats", str(data / "stats.h5"), "--run-dir", str(workdir / "reference" / "run"),
                         "--out", str(workdir / "reference" / "model.pt")],
                        env=env, stdout=subprocess.DEVNULL, stderr=reference_log)
                time.sleep(0.2)
            if proc.poll() is None:
                raise TimeoutError(f"snakemake still running after {deadline - started:.0f} s")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if reference:
                reference.wait(timeout=600)
    return {"dir": workdir, "config": config, "env": env, "returncode": proc.returncode, "stderr": (workdir / "snakemake.err").read_text(),
            "seconds": time.monotonic() - started, "stopped": stopped, "reference": reference,
            "reference_err": (workdir / "reference.log").read_text(), "test_slug": test_slug}


def training_process(workdir: Path) -> int:
    """The PID of the workflow's training process (not the reference run's)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"musicsep" in argv and b"train" in argv and b"results/runs/baseline" in argv \
                    and Path(os.readlink(proc / "cwd")) == workdir:
                return int(proc.name)
        except (OSError, ValueError):
            continue
    raise AssertionError("the training process is gone: training ended before it could be stopped")


def stop_near_time_limit(cluster: LocalSlurm, workdir: Path, run_dir: Path, deadline: float) -> dict:
    """Pause the training, give its job a time limit 60 to 120 s away (whole
    minutes), wait for SLURM's warning signal to reach the job, continue."""
    pid = training_process(workdir)
    os.kill(pid, signal.SIGSTOP)
    try:
        for line in cluster.run("squeue", "-h", "-t", "running", "-o", "%i %k").stdout.splitlines():
            job_id, comment = line.split()
            if comment.startswith("rule_train"):
                break
        else:
            raise AssertionError("no training job is running although training has started")
        details = cluster.run("scontrol", "show", "job", "-d", job_id).stdout
        elapsed = minutes(cluster.show_job(job_id)["RunTime"])
        limit = int(elapsed) + 2
        cluster.run("scontrol", "update", f"JobId={job_id}", f"TimeLimit={limit}")
        log = next(workdir.glob(f".snakemake/slurm_logs/rule_train/*/{job_id}.log"))
        while "Will exit after finishing currently running jobs" not in log.read_text():
            assert time.monotonic() < deadline, "SLURM's warning signal never reached the job"
            time.sleep(0.5)
        warned_after = minutes(cluster.show_job(job_id)["RunTime"])
    finally:
        os.kill(pid, signal.SIGCONT)
    return {"job": job_id, "limit": limit, "elapsed": elapsed, "warned_after": warned_after, "details": details}


@pytest.mark.slow
def test_workflow_runs_as_slurm_jobs(slurm, slurm_run):
    from musicsep.models.checkpoint import load_model

    results = slurm_run["dir"] / "results"
    assert slurm_run["returncode"] == 0, slurm_run["stderr"][-6000:] + slurm.log_tail()
    jobs = submitted(slurm_run["stderr"])
    ids = [job_id for rule_jobs in jobs.values() for job_id, _ in rule_jobs]
    assert len(ids) == len(set(ids))
    # one SLURM job per track (3), per (system, track), per dataset
    assert {rule: len(j) for rule, j in jobs.items() if rule != "train"} == \
        {"shard": 2, "tracks": 1, "stats": 1, "oracle": 1, "evaluate": 1}
    for rule, rule_jobs in jobs.items():
        for job_id, log in rule_jobs:
            job = slurm.show_job(job_id)
            assert job["Partition"] == "debug" and job["Comment"].startswith(f"rule_{rule}"), job
            assert log.exists(), log
            if rule == "train":                # one GPU per training job, given to the job
                assert job["TresPerJob"] == "gres:gpu:1", job
            else:
                assert job["JobState"] == "COMPLETED", (rule, job)
                assert "gpu" not in job.get("TresPerJob", "") + job.get("TRES", ""), (rule, job)
                assert int(job["NumCPUs"]) >= 1 and "mem=200M" in job["TRES"], job
    # each job ran the rule under the plugin's `srun -n1` inside the job
    commands = slurm.commands()
    assert sum(c.startswith("sbatch ") for c in commands) == len(ids)
    assert sum(c.startswith("srun -n1 ") for c in commands) == len(ids)
    states = dict(line.split("|") for line in slurm.run("sacct", "-X", "-n", "-P", "-o", "JobID,State").stdout.split())
    assert states[jobs["train"][-1][0]] == "COMPLETED"
    assert "GRES=gpu:1(IDX:0)" in slurm_run["stopped"]["details"]      # the running job held GPU 0
    assert all(states[job_id] == "COMPLETED" for rule, j in jobs.items() if rule != "train" for job_id, _ in j)

    # the outputs are complete
    model, state = load_model(results / "models" / "baseline" / "model.pt")
    assert model.name == "blstm_mask" and state["spec"]["training"]["epochs"] == EPOCHS
    scores = json.loads((results / "scores" / "oracle_irm1" / f"{slurm_run['test_slug']}.json").read_text())
    assert {t["name"] for t in scores["targets"]} >= {"vocals", "drums", "bass", "other"}
    assert len(list((results / "data" / "shards").glob("*.h5"))) == 2
    assert not list(results.rglob("*.tmp"))
    print(f"\nSLURM run of {len(ids)} jobs: {slurm_run['seconds']:.0f} s")


@pytest.mark.slow
def test_training_stopped_near_its_time_limit_resumes_to_the_same_weights(slurm, slurm_run):
    import torch

    assert slurm_run["returncode"] == 0, slurm_run["stderr"][-6000:]
    limited = slurm_run["stopped"]
    assert limited, "training never started"
    (first, first_log), (second, second_log) = submitted(slurm_run["stderr"])["train"]
    assert first == limited["job"]
    assert limited["warned_after"] < limited["limit"]
    # the first job: given a time limit, warned by SLURM with SIGTERM, stopped with a checkpoint
    job = slurm.show_job(first)
    assert minutes(job["TimeLimit"]) == limited["limit"] and job["JobState"] == "FAILED", job
    assert minutes(job["RunTime"]) < limited["limit"], "SLURM's warning did not come before the time limit"
    text = first_log.read_text()
    assert "Will exit after finishing currently running jobs" in text, text[-3000:]  # the job step got SIGTERM
    assert "(command exited with non-zero exit code)" in text, text[-3000:]
    # the retry: a new job, twice the time (runtime grows with attempt), resumed from the checkpoint
    job = slurm.show_job(second)
    assert job["JobState"] == "COMPLETED" and minutes(job["TimeLimit"]) == 2 * 12 * 60, job
    train_log = (slurm_run["dir"] / "results" / "logs" / "train" / "baseline.log").read_text()
    resumed = re.search(r"resuming baseline from \S+latest.pt: epoch (\d+), batch (\d+)", train_log)
    assert resumed, train_log[-3000:]
    # saved inside an epoch (batch > 0): by the signal, not by the end-of-epoch checkpoint
    assert 0 < int(resumed[1]) < EPOCHS and int(resumed[2]) > 0, resumed[0]
    # the same weights as the uninterrupted run
    assert slurm_run["reference"].returncode == 0, slurm_run["reference_err"]
    reference = torch.load(slurm_run["dir"] / "reference" / "run" / "latest.pt", weights_only=True)
    final = torch.load(slurm_run["dir"] / "results" / "runs" / "baseline" / "latest.pt", weights_only=True)
    assert final["state"]["step"] == reference["state"]["step"] and final["state"]["epoch"] == EPOCHS
    for key, value in reference["weights"].items():
        assert torch.equal(value, final["weights"][key]), key


@pytest.mark.slow
def test_training_on_several_slurm_tasks(slurm, slurm_run):
    """profiles/slurm-multinode's train block on this one node: two tasks on
    CPU instead of 2 x 4 on GPUs. The plugin runs the rule in the job's batch
    shell (`mpi`), the rule starts srun, each task takes its rank from SLURM's
    environment, and the two gloo processes train to the weights of one."""
    import torch

    assert slurm_run["returncode"] == 0
    workdir, env = slurm_run["dir"], slurm_run["env"]
    multi = "multi: {model: blstm_mask, loss: l1, model_args: {hidden: 16, layers: 1, dropout: 0.0}, " \
            "training: {epochs: 2, deterministic: true}}"
    config = slurm_run["config"][:-1] + [f"experiments={{{BASELINE}, {multi}}}"]
    profile = cluster_profile(workdir / "profile-multinode", slurm.cpus, MULTINODE, nodes=1, gres=None,
                              cpus_per_gpu=None, tasks_per_node=2, cpus_per_task=1)
    assert load_profile(profile)["set-resources"]["train"]["mpi"] == "'srun'"
    proc = snakemake(workdir, "results/models/multi/model.pt", profile=profile, config=config, env=env, cwd=workdir,
                     timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    (job_id, log), = submitted(proc.stderr)["train"]            # nothing else reran
    assert set(submitted(proc.stderr)) == {"train"}
    job = slurm.show_job(job_id)
    assert job["JobState"] == "COMPLETED" and job["NumTasks"] == "2" and job["NumNodes"] == "1", job
    # scripts/per-task.sh started the tasks (the plugin's own `srun -n1` would give one task)
    launched = [c for c in slurm.commands() if c.startswith("srun ") and "runs/multi" in c]
    assert len(launched) == 1 and launched[0].startswith("srun --ntasks=2 --cpus-per-task=1 --kill-on-bad-exit=1 "
                                                         "python -m musicsep train"), [c[:150] for c in slurm.commands()]

    data = workdir / "results" / "data"
    one = subprocess.run([sys.executable, "-m", "musicsep", "train",
                          "--spec", (workdir / "results" / "runs" / "multi" / "spec.json").read_text(),
                          "--tracks", str(data / "tracks.tsv"), "--shards", *map(str, data.glob("shards/*.h5")),
                          "--stats", str(data / "stats.h5"), "--run-dir", str(workdir / "one" / "run"),
                          "--out", str(workdir / "one" / "model.pt")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    one = torch.load(workdir / "one" / "run" / "latest.pt", weights_only=True)
    two = torch.load(workdir / "results" / "runs" / "multi" / "latest.pt", weights_only=True)
    assert two["state"]["step"] == one["state"]["step"] > 0
    for key, value in one["weights"].items():
        torch.testing.assert_close(two["weights"][key], value, rtol=1e-4, atol=1e-5, msg=key)


# --------------------------------------------------------------------------- #
# musicsep submit on the cluster
# --------------------------------------------------------------------------- #

def submit(cluster: LocalSlurm, folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicsep", "submit", "--executor", "slurm", "--wait",
                           "--log-dir", str(folder / "logs"), "--slurm-partition", "debug", "--mem-mb", "300",
                           "--runtime", "5", *args], capture_output=True, text=True, cwd=folder, timeout=300,
                          env=cluster.env())


def settled(cluster: LocalSlurm, job_id: str, timeout: float = 60) -> dict[str, str]:
    """The job's record once SLURM has finished with it (submitit may see the
    result while the job is still COMPLETING)."""
    end = time.monotonic() + timeout
    while True:
        job = cluster.show_job(job_id)
        if job["JobState"] not in ("PENDING", "RUNNING", "COMPLETING") or time.monotonic() > end:
            return job
        time.sleep(0.5)


@pytest.mark.slow
def test_submit_runs_a_subcommand_as_a_slurm_job_with_a_gpu(slurm, tmp_path):
    """`musicsep submit --gpu 1` through submitit's SLURM executor: a real
    sbatch with the GPU request, the command's output back, and its file."""
    proc = submit(slurm, tmp_path, "--gpu", "1", "--", "make-toy-musdb", "toy.zip", "--train", "1",
                  "--test", "1", "--duration", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "finished: exit status 0" in proc.stdout
    assert (tmp_path / "toy.zip").is_file()
    [folder] = [p for p in (tmp_path / "logs").iterdir() if p.is_dir() and p.name.isdigit()]
    job = settled(slurm, folder.name)
    assert job["JobState"] == "COMPLETED" and job["Partition"] == "debug", job
    assert "gpu:1" in job.get("TresPerNode", "") + job.get("TresPerJob", ""), job
    assert any(c.startswith("sbatch ") for c in slurm.commands())


@pytest.mark.slow
def test_submit_reports_a_failing_slurm_job_with_its_log(slurm, tmp_path):
    proc = submit(slurm, tmp_path, "--", "index", str(tmp_path / "missing.zip"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: job ") and f"{tmp_path}/missing.zip: dataset path does not exist" in message
    [folder] = [p for p in (tmp_path / "logs").iterdir() if p.is_dir() and p.name.isdigit()]
    assert settled(slurm, folder.name)["JobState"] == "FAILED"
    assert "see its log" in message and str(folder) in message
