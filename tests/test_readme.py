"""The newcomer's path: the README's commands after `make run`, and a
`make run` whose trainings start before the oracles.

README: every command of its shell blocks runs as written, in order, except
those :data:`NOT_RUN` names with the reason (of those, a ``python -m
musicsep`` command's arguments are still parsed, and a make target is checked
with ``make -n``). A dry run must plan no training (after `make run`, one
that does would be the paper-size experiments), and none before a command
that forces a rerun must find anything left to do; a command that runs jobs
is dry-run first, under the same rule.

The commands run in a checkout of their own, a temporary folder
(:func:`checkout`): the files that the workflow and the Makefile read, linked
to this repository's (:data:`CHECKOUT`); this interpreter's virtual
environment as ``.venv`` (its entries linked, with an ``.installed`` of its
own, so that make does not set up again); ``config/toy.yaml`` shrunk to a
tiny toy (:data:`TINY`: 3 + 1 tracks of 3 s, 2 epochs), so that `make run`
takes minutes; a short ``song.mp3`` and ``song.wav``, the reader's own audio
of ``musicsep separate``. ``<slug>``
stands for the test track's slug. PATH leaves the virtual environment out: a
command that needs it finds it activated only after the README's ``source
.venv/bin/activate``, which then stays active, as in a terminal.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, job_counts, snakemake

from musicsep.cli import build_parser

CHECKOUT = ["Snakefile", "Makefile", "rules", "profiles", "report", "scripts", "envs", "src", "pyproject.toml",
            "constraints.txt"]

TINY = {"dataset": {"toy": {"train_tracks": 3, "test_tracks": 1, "duration": 3.0, "seed": 5}},
        "loader": {"samples_per_epoch": 8, "excerpt_seconds": 1.0, "valid_excerpts_per_track": 2},
        "training": {"epochs": 2, "batch_size": 4, "workers": 0}}

SLURM = "SLURM (tests/workflow/test_slurm.py runs the workflow on a local one)"
NOT_RUN = [
    (r"^make test\b", "the test suite, which this test is part of"),
    (r"^make (tensorboard|notebook)\b", ("a server that runs until stopped (test_the_newcomers_tensorboard: "
                                          "what TensorBoard lists)")),
    (r"^scripts/logs\.sh(?!.*--no-follow)", "follows the logs until stopped (the --no-follow form runs)"),
    (r"^tail -f ", "follows a SLURM driver's log until stopped"),
    (r"/data/musdb18\.zip|/path/to/", "the reader's own data: MUSDB18, SiSEC18's submissions"),
    (r"make-toy-musdb", ("makes 11 toy tracks of 20 s, minutes of work; `make run` runs the same command "
                         "(rule toy_musdb)")),
    (r"^(apptainer|docker) build ", "an image build: Apptainer or Docker, and the network"),
    (r"--sdm ", "the rules in an image or a conda environment: Apptainer and the image, or the network"),
    (r"profiles/slurm|^(sbatch|squeue|sacct|scontrol) |musicsep submit ", SLURM),
    (r"^ssh ", "a cluster's login node"),
    (r"config/stems-demo\.yaml\s+# everything", ("the six-source demo's whole workflow: it trains, which a dry run "
                                                  "here must not plan; tests/data/test_stems.py runs it (slow)")),
]

pytestmark = pytest.mark.workflow


def readme_commands(text: str) -> list[str]:
    """The commands of the README's ``sh`` blocks, in order: continued
    lines joined, comment lines left out."""
    commands = []
    for block in re.finditer(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for command in re.sub(r"\\\n\s*", "", block.group(1)).splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


def not_run(command: str) -> str | None:
    """Why ``command`` is not run, None when it is."""
    return next((reason for pattern, reason in NOT_RUN if re.search(pattern, command)), None)


def words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def planned_rules(output: str) -> list[str]:
    """The rules of the jobs a Snakemake dry run lists."""
    return re.findall(r"^(?:local)?rule (\w+):$", output, re.MULTILINE)


def dry_run_jobs(output: str) -> list[tuple[str, dict, int]]:
    """(rule, wildcards, priority) of every job a Snakemake dry run lists."""
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", output, flags=re.MULTILINE)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        found = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        wildcards = dict(re.findall(r"(\w+)=([^,\s]+)", found.group(1))) if found else {}
        found = re.search(r"^\s+priority: (-?\d+)$", block, re.MULTILINE)
        jobs.append((rule, wildcards, int(found.group(1)) if found else 0))
    return jobs


def checkout(root: Path) -> Path:
    """A checkout in ``root`` where the README's commands run (see the module's docstring)."""
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix):
        pytest.skip("the README's commands need the virtual environment that make sets up; this is none")
    work = root / "musicsep"
    (work / "config").mkdir(parents=True)
    for name in CHECKOUT:
        (work / name).symlink_to(ROOT / name)
    for path in (ROOT / "config").iterdir():
        if path.name != "toy.yaml":
            (work / "config" / path.name).symlink_to(path)
    toy = yaml.safe_load((ROOT / "config" / "toy.yaml").read_text())
    for key, block in TINY.items():
        toy[key] = {**toy.get(key, {}), **block}
    (work / "config" / "toy.yaml").write_text(yaml.safe_dump(toy, sort_keys=False))
    (work / ".venv").mkdir()
    for entry in venv.iterdir():
        if entry.name != ".installed":
            (work / ".venv" / entry.name).symlink_to(entry)
    (work / ".venv" / ".installed").touch()
    for song in ("song.mp3", "song.wav"):
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=330:duration=3",
                        "-ac", "2", "-ar", "44100", str(work / song)], check=True)
    return work


def newcomer_env() -> dict:
    """This environment without the virtual environment on PATH, nor an
    outer make's variables (under `make test`)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONHOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != Path(BIN).resolve())
    return env


def shell(work: Path, command: str, activated: bool) -> subprocess.CompletedProcess:
    script = f"source .venv/bin/activate && {command}" if activated else command
    return subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=work, env=newcomer_env(),
                          capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def after_make_run(tmp_path_factory):
    """(checkout, `make run`'s finished process) of the tiny toy."""
    work = checkout(tmp_path_factory.mktemp("newcomer"))
    return work, shell(work, "make run", activated=False)


@pytest.mark.slow
def test_the_readme_commands_run_as_written(after_make_run):
    work, make_run = after_make_run
    commands = readme_commands((ROOT / "README.md").read_text())
    assert commands[0].split("#")[0].strip() == "make run", commands[0]
    assert make_run.returncode == 0, make_run.stdout[-3000:] + make_run.stderr[-3000:]
    assert "# Evaluation summary" in make_run.stdout
    for pattern, reason in NOT_RUN:
        assert any(re.search(pattern, c) for c in commands), f"NOT_RUN: {pattern!r} matches no command of the README"
    (slug,) = [p.stem for p in (work / "results" / "scores" / "baseline").glob("*.json")]
    failures, ran, done, activated, forced = [], [], {"make run"}, False, False

    def check(command: str, proc: subprocess.CompletedProcess) -> None:
        if proc.returncode != 0:
            failures.append(f"{command}\n  exit status {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}")

    for command in commands:
        line = shlex.join(words(command)).replace("'<slug>'", "<slug>")
        if line in done:
            continue
        done.add(line)
        command = command.replace("<slug>", slug)
        if not_run(command):
            args = words(command)
            if args[:3] == ["python", "-m", "musicsep"]:
                try:
                    build_parser().parse_args(args[3:])
                except SystemExit as stop:
                    failures.append(f"{command}\n  its arguments do not parse ({stop})")
            elif args[0] == "make":
                check(command, shell(work, f"make -n {shlex.join(args[1:])}", activated))
            continue
        args = words(command)
        dry = args[:2] == ["make", "dry-run"] or (args[0] == "snakemake" and "-n" in args)
        if args[0] == "snakemake" and not dry and "|" not in args:
            plan = shell(work, shlex.join([*args, "-n"]), activated)
            check(command + "  (its dry run)", plan)
            if "train" in planned_rules(plan.stdout):
                failures.append(f"{command}\n  would train: {plan.stdout[-1500:]}")
                continue
        proc = shell(work, command, activated)
        ran.append(command)
        check(command, proc)
        if dry:
            if "train" in planned_rules(proc.stdout):
                failures.append(f"{command}\n  a dry run after make run plans trainings: {proc.stdout[-1500:]}")
            if not forced and "Nothing to be done" not in proc.stdout + proc.stderr:
                failures.append(f"{command}\n  finds jobs left after make run: {proc.stdout[-1500:]}")
        forced |= bool({"-f", "-F", "-R", "--forcerun"} & set(args))
        activated |= command == "source .venv/bin/activate"
        if args[:2] == ["make", "report"]:
            assert (work / "report.html").read_text().count("results/plots/scores/sdr_boxplots.svg") >= 1
    assert not failures, "\n\n".join(failures)
    assert len(ran) >= 10, ran
    assert activated and forced
    assert (work / "dag.svg").read_text().count("<svg") == 1


@pytest.mark.slow
def test_the_newcomers_tensorboard(after_make_run):
    """`make tensorboard` (tensorboard --logdir results/runs) lists a run per
    experiment, named after it."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    work, make_run = after_make_run
    assert make_run.returncode == 0, make_run.stderr[-3000:]
    runs = EventMultiplexer().AddRunsFromDirectory(str(work / "results" / "runs")).Runs()
    assert sorted(runs) == ["baseline", "centroids", "dpcl"]


def test_priorities_put_training_before_the_oracles(tmp_path):
    """The rules' priorities in a dry run of `make run`'s workflow: the
    trainings, the data they wait for, and the separation and evaluation of
    the trained models come before the oracles and their evaluation."""
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode == 0, proc.stderr
    jobs = dry_run_jobs(proc.stdout)
    priority = {}
    for rule, wildcards, value in jobs:
        system = wildcards.get("system", "")
        kind = ("oracle side" if rule == "oracle" or system.startswith("oracle_") else
                "model" if rule in ("separate", "evaluate") else rule)
        priority.setdefault(kind, set()).add(value)
    assert len(priority["oracle side"]) == 1 and priority["oracle side"] >= {0}
    oracles = max(priority["oracle side"])
    for kind in ("train", "model", "toy_musdb", "shard", "tracks", "stats"):
        assert min(priority[kind]) > oracles, (kind, priority)
    assert min(priority["train"]) > max(priority["model"]), priority
    assert sum(rule == "train" for rule, _, _ in jobs) == 3 and len(jobs) == job_counts(proc.stdout)["total"]


@pytest.mark.slow
def test_on_one_core_the_trainings_run_before_the_oracles(tmp_path):
    """A real run on one core: the training and the trained model's
    separation and evaluation run before the oracle (a tiny toy: one
    experiment's scores and one oracle's)."""
    config = ["dataset={toy: {train_tracks: 3, test_tracks: 1, duration: 3.0, seed: 5}}", "evaluation={oracles: [irm1]}",
              "loader={samples_per_epoch: 8, excerpt_seconds: 1.0, valid_excerpts_per_track: 2}",
              "training={epochs: 2, batch_size: 4, workers: 0}"]
    plan = snakemake(tmp_path, "-n", config=config)
    assert plan.returncode == 0, plan.stderr
    (slug,) = {w["slug"] for rule, w, _ in dry_run_jobs(plan.stdout) if rule == "oracle"}
    targets = [f"results/scores/{system}/{slug}.json" for system in ("oracle_irm1", "baseline")]
    proc = snakemake(tmp_path, *targets, cores=1, config=config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    started = planned_rules(proc.stdout + proc.stderr)
    assert started.count("train") == 1 and started.count("oracle") == 1, started
    assert started.index("train") < started.index("separate") < started.index("oracle"), started
    assert started.index("evaluate") < started.index("oracle"), started        # the model's evaluation first
