"""``musicsep submit``: real subcommands run as jobs by submitit's local
executor; the SLURM batch script for the profile's resource names is made by
submitit's own SLURM executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import submitit
from conftest import ROOT

from musicsep import MusicsepError
from musicsep.workflow.submit import Command, Resources, executor_parameters, parse_slurm_extra


def musicsep(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "musicsep", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def local(tmp_path, *command, wait=True):
    return musicsep("submit", "--executor", "local", *(["--wait"] if wait else []),
                    "--log-dir", str(tmp_path / "logs"), "--", *command, cwd=tmp_path)


def job_folders(tmp_path):
    """The jobs' folders, LOG_DIR/JOBID (submitit also keeps an empty LOG_DIR/%j)."""
    return sorted(p for p in (tmp_path / "logs").glob("*") if p.is_dir() and p.name.isdigit())


def test_check_config_runs_as_a_job(tmp_path):
    proc = local(tmp_path, "check-config", str(ROOT / "config" / "config.yaml"),
                 "--schema", str(ROOT / "config" / "schema.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert f"{ROOT / 'config' / 'config.yaml'}: valid" in proc.stdout
    assert "submitit INFO" not in proc.stdout  # the command's output, not submitit's
    assert "finished: exit status 0" in proc.stdout
    [folder] = job_folders(tmp_path)
    assert "valid" in next(folder.glob("*_log.out")).read_text()


def test_make_toy_musdb_as_a_job_writes_its_output_in_the_working_directory(tmp_path):
    proc = local(tmp_path, "make-toy-musdb", "toy.zip", "--train", "1", "--test", "1", "--duration", "2")
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(tmp_path / "toy.zip") as zf:  # relative to the submitting directory
        names = zf.namelist()
    stems = [n for n in names if n.endswith(".stem.mp4")]
    assert [n.split("/")[0] for n in sorted(stems)] == ["test", "train"]


def test_a_failing_command_fails_the_job_and_points_at_its_log(tmp_path):
    proc = local(tmp_path, "index", str(tmp_path / "missing.zip"))
    assert proc.returncode == 1
    [folder] = job_folders(tmp_path)
    [log] = folder.glob("*_log.err")
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: job ") and "`musicsep index " in message
    assert "exited with status 1" in message
    assert f"{tmp_path}/missing.zip: dataset path does not exist" in message
    assert message.endswith(f"see its log {log}")
    assert "dataset path does not exist" in log.read_text()
    # submitit recorded the failure too
    job = submitit.LocalJob(folder=folder, job_id=folder.name)
    assert isinstance(job.exception(), submitit.core.utils.FailedJobError)


def test_without_wait_the_job_is_queued_and_runs(tmp_path):
    proc = local(tmp_path, "check-config", str(ROOT / "config" / "config.yaml"),
                 "--schema", str(ROOT / "config" / "schema.yaml"), wait=False)
    assert proc.returncode == 0, proc.stderr
    assert "submitted `musicsep check-config" in proc.stdout and "local job" in proc.stdout
    [folder] = job_folders(tmp_path)
    job = submitit.LocalJob(folder=folder, job_id=folder.name)
    assert job.result() == 0


def test_a_mistyped_command_fails_before_any_job(tmp_path):
    proc = local(tmp_path, "separate", "song.mp3")
    assert proc.returncode == 2 and "musicsep separate: error:" in proc.stderr
    assert not job_folders(tmp_path)
    proc = local(tmp_path)
    assert proc.returncode == 1 and "submit needs a musicsep subcommand after --" in proc.stderr
    proc = local(tmp_path, "submit", "--", "check-config")
    assert proc.returncode == 1 and "cannot be submit itself" in proc.stderr
    assert not job_folders(tmp_path)


@pytest.mark.parametrize("options, message", [
    (["--tasks", "3", "--nodes", "2"], "resource tasks: 3 tasks do not split evenly over 2 nodes"),
    (["--gpu-model", "a100"], "resource gpu_model needs gpu"),
    (["--runtime", "0"], "resource runtime: expected a positive integer"),
    (["--slurm-extra", "-q high"], "slurm_extra: '-q' is not an sbatch option"),
])
def test_bad_resources_are_named(tmp_path, options, message):
    proc = musicsep("submit", "--executor", "local", "--log-dir", str(tmp_path / "logs"), *options,
                    "--", "check-config", cwd=tmp_path)
    assert proc.returncode == 1 and message in proc.stderr
    assert not job_folders(tmp_path)


def test_profile_resource_names_become_sbatch_options(tmp_path):
    res = Resources(runtime=30, slurm_partition="gpu", mem_mb=16000, cpus_per_task=8, gpu=2, gpu_model="a100",
                    tasks=4, nodes=2, slurm_account="proj", slurm_extra="--qos=high --exclusive --comment='a b'")
    params = executor_parameters(res, "musicsep-train")
    assert params["tasks_per_node"] == 2 and params["gpus_per_node"] == 2
    ex = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    ex.update_parameters(**params)
    script = ex._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    lines = set(script.splitlines())
    for option in ["--job-name=musicsep-train", "--time=30", "--partition=gpu", "--mem=16000M",
                   "--cpus-per-task=8", "--gpus-per-node=a100:2", "--ntasks-per-node=2", "--nodes=2",
                   "--account=proj", "--qos=high", "--exclusive", "--comment='a b'"]:
        assert f"#SBATCH {option}" in lines, (option, script)
    # the flags written by the profile's spelling, both ways
    assert parse_slurm_extra("--constraint=ib --requeue") == {"constraint": "ib", "requeue": True}
    with pytest.raises(MusicsepError, match="slurm_extra"):
        parse_slurm_extra("--qos 'unclosed")
    # without a GPU model the count alone; the local executor gets the generic count
    params = executor_parameters(Resources(gpu=1), "x")
    assert params["gpus_per_node"] == 1 and "slurm_gpus_per_node" not in params


@pytest.mark.slow
def test_an_interrupted_job_stops_its_command_and_is_requeued(tmp_path):
    """Timeout/preemption: submitit's signal reaches the job, checkpoint() stops
    the command with SIGTERM and the job runs again to the end."""
    ex = submitit.AutoExecutor(folder=tmp_path / "logs" / "%j", cluster="local")
    ex.update_parameters(**executor_parameters(Resources(runtime=10), "toy"))
    job = ex.submit(Command(["make-toy-musdb", "toy.zip", "--train", "3", "--test", "0", "--duration", "6"],
                            str(tmp_path)))
    err = job.paths.stderr
    for _ in range(1200):  # until the first track is done: the command is running
        if err.exists() and "toy track" in err.read_text():
            break
        time.sleep(0.1)
    assert "toy track" in err.read_text(), err.read_text()
    # What SLURM does before the time limit or on preemption (sbatch --signal=USR2@90,
    # written by submitit): signal the job's task, here the local controller's child.
    [task] = Path(f"/proc/{job._process.pid}/task/{job._process.pid}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)
    assert job.result() == 0
    log = job.paths.stdout.read_text() + err.read_text()
    assert "Caught signal SIGUSR2" in log and "Calling checkpoint method" in log and "Requeued job" in log
    assert log.count("Starting with JobEnvironment") == 2
    assert log.count("toy MUSDB (stems, 3 train") == 1  # the first run was stopped before the end
    with zipfile.ZipFile(tmp_path / "toy.zip") as zf:
        assert sum(n.endswith(".stem.mp4") for n in zf.namelist()) == 3
