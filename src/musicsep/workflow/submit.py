"""``musicsep submit -- COMMAND ...``: run any musicsep subcommand as a SLURM
job through submitit (a one-off ``separate`` of a song on a GPU node, a
training outside the workflow), or as a local background job.

Resources carry the names of the Snakemake SLURM profile's resources
(``slurm_partition``, ``runtime`` in minutes, ``mem_mb``, ``cpus_per_task``,
``gpu``, ``gpu_model``, ``tasks``, ``nodes``, ``slurm_account``,
``slurm_extra``) and are mapped to submitit's parameters by
:func:`executor_parameters`. The job runs ``python -m musicsep COMMAND ...``
with the interpreter and working directory of the submitting process; a
failing command fails the job (SLURM state FAILED), and ``--wait`` reports its
exit status with the path of its log. On preemption or timeout SLURM signals
the job (submitit's USR2); the command gets SIGTERM (``train`` saves a
checkpoint on it) and the job is requeued, where the rerun resumes.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from musicsep import MusicsepError

EXECUTORS = ("auto", "slurm", "local")
STOP_WAIT_S = 80  # after SIGTERM, the command's time to save (submitit signals 90 s before the limit)


@dataclass
class Resources:
    """A job's resources, named as in the Snakemake SLURM profile."""

    runtime: int = 60                  # minutes
    slurm_partition: str | None = None
    mem_mb: int | None = None
    cpus_per_task: int | None = None
    gpu: int | None = None
    gpu_model: str | None = None
    tasks: int | None = None
    nodes: int | None = None
    slurm_account: str | None = None
    slurm_extra: str | None = None


def parse_slurm_extra(text: str | None) -> dict:
    """``slurm_extra`` ("--qos=high --exclusive") as submitit's
    ``additional_parameters`` ({"qos": "high", "exclusive": True})."""
    if not text:
        return {}
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise MusicsepError(f"slurm_extra {text!r}: {err}") from None
    extra = {}
    for word in words:
        match = re.fullmatch(r"--([A-Za-z][A-Za-z0-9-]*)(?:=(.*))?", word, re.S)
        if not match:
            raise MusicsepError(f"slurm_extra: {word!r} is not an sbatch option written as --name=value "
                                f"or --flag (in {text!r})")
        extra[match[1]] = True if match[2] is None else match[2]
    return extra


def executor_parameters(res: Resources, name: str) -> dict:
    """submitit ``AutoExecutor.update_parameters`` keywords for ``res``:
    generic ones (used by the local executor too) and ``slurm_`` ones."""
    for key in ("runtime", "mem_mb", "cpus_per_task", "gpu", "tasks", "nodes"):
        value = getattr(res, key)
        if value is not None and (not isinstance(value, int) or value < (0 if key == "gpu" else 1)):
            raise MusicsepError(f"resource {key}: expected a {'non-negative' if key == 'gpu' else 'positive'} "
                                f"integer, got {value!r}")
    nodes = res.nodes or 1
    if res.tasks is not None and res.tasks % nodes:
        raise MusicsepError(f"resource tasks: {res.tasks} tasks do not split evenly over {nodes} nodes")
    if res.gpu_model and not res.gpu:
        raise MusicsepError("resource gpu_model needs gpu (the number of GPUs), e.g. --gpu 1 --gpu-model a100")
    params = {"name": name, "timeout_min": res.runtime, "nodes": nodes,
              "tasks_per_node": (res.tasks or nodes) // nodes}
    if res.cpus_per_task:
        params["cpus_per_task"] = res.cpus_per_task
    if res.gpu:
        params["gpus_per_node"] = res.gpu
        if res.gpu_model:
            params["slurm_gpus_per_node"] = f"{res.gpu_model}:{res.gpu}"
    if res.mem_mb:
        params["slurm_mem"] = f"{res.mem_mb}M"
    if res.slurm_partition:
        params["slurm_partition"] = res.slurm_partition
    if res.slurm_account:
        params["slurm_account"] = res.slurm_account
    extra = parse_slurm_extra(res.slurm_extra)
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def _ignore_usr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class CommandFailed(RuntimeError):
    """The subcommand exited with a non-zero status (raised in the job, so the
    job fails)."""


class Command:
    """The job: ``python -m musicsep ARGS`` in ``cwd`` with ``python``, its
    output going to the job's log files."""

    def __init__(self, args: list[str], cwd: str, python: str = sys.executable):
        self.args, self.cwd, self.python = list(args), cwd, python
        self._proc = None

    def __getstate__(self):
        return {"args": self.args, "cwd": self.cwd, "python": self.python}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._proc = None

    def __str__(self) -> str:
        return shlex.join(["musicsep", *self.args])

    def __call__(self) -> int:
        sys.stdout.flush()
        # SLURM's timeout/preemption signal (submitit's USR2) may reach every
        # process of the step: the command ignores it and gets SIGTERM from
        # checkpoint() instead.
        self._proc = subprocess.Popen([self.python, "-m", "musicsep", *self.args], cwd=self.cwd,
                                      preexec_fn=_ignore_usr2)
        # poll rather than wait(): wait() holds the process's lock while
        # blocked, and checkpoint(), run by a signal handler in this same
        # thread, must be able to reap the command itself
        while (status := self._proc.poll()) is None:
            time.sleep(0.2)
        if status:
            raise CommandFailed(f"`{self}` exited with status {status}")
        return status

    def checkpoint(self):
        """Preemption or timeout: let the command stop (``train`` saves its
        checkpoint on SIGTERM) and requeue the same command."""
        import submitit

        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            for _ in range(STOP_WAIT_S * 10):
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
            else:
                proc.kill()
        return submitit.helpers.DelayedSubmission(Command(self.args, self.cwd, self.python))


def _tail(path: Path, lines: int = 200) -> list[str]:
    """The log's last lines (enough to reach the command's own ``error:`` line
    above submitit's traceback and srun's report)."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def submit(args: list[str], res: Resources, executor: str = "auto", log_dir: str | os.PathLike = "results/logs/submit",
           wait: bool = False, name: str | None = None, out=sys.stdout) -> int:
    """Submit ``musicsep ARGS`` as a job; with ``wait``, wait for it and
    return the command's exit status (0, or non-zero with a message naming the
    job's log), else return 0 once it is queued."""
    import submitit
    from submitit.core.utils import UncompletedJobError

    if executor not in EXECUTORS:
        raise MusicsepError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    folder = Path(log_dir).absolute() / "%j"
    params = executor_parameters(res, name or f"musicsep-{args[0]}")
    command = Command(args, os.getcwd())
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster=None if executor == "auto" else executor)
    except RuntimeError as err:
        raise MusicsepError(f"--executor {executor}: {err}") from None
    except OSError as err:      # the job folder: a file on its path, ...
        raise MusicsepError(f"--log-dir {log_dir}: cannot be written ({err.strerror}: {err.filename})") from None
    ex.update_parameters(**params)
    try:
        job = ex.submit(command)
    except (submitit.core.utils.FailedJobError, OSError) as err:
        raise MusicsepError(f"could not submit `{command}` ({ex.cluster}): {err}") from None
    log = job.paths.stderr
    print(f"submitted `{command}` as {ex.cluster} job {job.job_id}; log: {job.paths.stdout}, {log}",
          file=out, flush=True)
    if not wait:
        return 0
    try:
        job.result()
    except KeyboardInterrupt:
        # a SLURM job goes on; a local one got the terminal's Ctrl-C too
        goes_on = f"; job {job.job_id} goes on (scancel {job.job_id} stops it)" if ex.cluster == "slurm" else ""
        print(f"stopped waiting{goes_on}; log: {log}", file=sys.stderr, flush=True)
        return 130
    except UncompletedJobError as err:
        match = re.search(r"exited with status (-?\d+)", str(err))
        status = int(match[1]) if match else 1
        status = status if 0 < status < 256 else 1
        why = next((line[len("error: "):] for line in reversed(_tail(log)) if line.startswith("error: ")), None)
        reason = (f"exited with status {match[1]}" if match else
                  f"did not complete ({str(err).strip().splitlines()[0] if str(err).strip() else 'no result'})")
        print(f"error: job {job.job_id} (`{command}`) {reason}" + (f": {why}" if why else "")
              + f"; see its log {log}", file=sys.stderr, flush=True)
        return status
    stdout = job.paths.stdout
    if stdout.exists():
        own = re.compile(r"^submitit (DEBUG|INFO|WARNING|ERROR) \(")
        text = "".join(line for line in stdout.read_text(errors="replace").splitlines(keepends=True)
                       if not own.match(line))
        if text:
            out.write(text if text.endswith("\n") else text + "\n")
    print(f"job {job.job_id} (`{command}`) finished: exit status 0; log: {log}", file=out, flush=True)
    return 0
