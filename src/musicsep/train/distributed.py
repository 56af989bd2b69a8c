"""Processes and devices: launching one training process per device, the process group, each rank's batches."""

from __future__ import annotations

import logging
import os
import signal
import socket

import torch
import torch.distributed as dist

from musicsep import MusicsepError
from musicsep.train import STOPPED_EXIT, Stopped

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
"""Signals that make training save ``latest.pt`` and stop (SLURM sends them before a time limit)."""


def launch(worker, args: tuple, processes: int | None, run_dir) -> None:
    """Run ``worker(local, world, *args)`` in every training process: this
    process alone when a launcher (torchrun, srun with several tasks) started
    it as one of many (``local`` -1) or when there is one device (``local``
    None), else one spawned process per device (``processes``, default one
    per visible GPU), to which SIGTERM and SIGUSR1 are forwarded. On Ctrl-C
    (or any other exception here) they get SIGTERM too, and are waited for
    (killed after :data:`STOP_WAIT_S`), so none goes on training alone."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env or int(env.get("SLURM_NTASKS", "1")) > 1:
        worker(-1, 0, *args)          # launched by torchrun or srun: one process of many
        return
    n = processes or (torch.cuda.device_count() if torch.cuda.is_available() else 1)
    if n <= 1:
        worker(None, 1, *args)
        return
    rendezvous = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    saved = {key: os.environ.get(key) for key in rendezvous}
    os.environ.update(rendezvous)            # the spawned processes inherit it; this one gets its own back
    try:
        context = torch.multiprocessing.start_processes(worker, args=(n, *args), nprocs=n, join=False,
                                                        start_method="spawn")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    forward = lambda signum, _frame: [os.kill(p.pid, signum) for p in context.processes if p.is_alive()]  # noqa: E731
    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        while not context.join():
            pass
    except torch.multiprocessing.ProcessExitedException as err:
        if err.exit_code == STOPPED_EXIT:
            raise Stopped(f"training stopped by a signal; {run_dir}/latest.pt saved, rerun to resume") from None
        raise MusicsepError(f"a training process failed (exit code {err.exit_code}); see the log above") from None
    except BaseException:
        _stop(context.processes)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


STOP_WAIT_S = 120
"""Seconds the training processes have to save ``latest.pt`` and exit after
SIGTERM when the launcher stops them, before they are killed."""


def _stop(processes) -> None:
    """SIGTERM to the training processes still running (each saves
    ``latest.pt`` and exits), then wait for them; kill those that outlast
    :data:`STOP_WAIT_S`."""
    for p in processes:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    for p in processes:
        p.join(STOP_WAIT_S)
        if p.is_alive():
            p.kill()
            p.join()


MAX_AUTO_WORKERS = 8
"""The most loader workers per training process that ``training.workers: null``
gives: enough to keep the loader well ahead of a GPU training the paper-size
model, which two workers do not (``benchmarks/RESULTS.md``, loader workers)."""


def loader_workers(setting: int | None, sharing: int = 1) -> int:
    """DataLoader workers per training process: ``training.workers``, or when
    that is None the CPUs this process may use (its affinity, which SLURM
    sets to the job's or the task's CPUs) shared among the ``sharing``
    training processes that have the same CPUs, less one for the training
    loop itself, at most :data:`MAX_AUTO_WORKERS` (and 0, loading in the
    loop, on a single CPU)."""
    if setting is not None:
        return setting
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_AUTO_WORKERS, cpus // max(1, sharing) - 1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_process(local: int | None, world: int) -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts the process group when world > 1.
    ``local`` is the spawn index, -1 when a launcher started us, None alone."""
    if local == -1:
        import submitit

        if "RANK" not in os.environ:
            if "SLURM_PROCID" in os.environ:     # srun's tasks: submitit recognises SLURM only with this
                os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")
            submitit.helpers.TorchDistributedEnvironment().export()
        rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    else:
        rank, local = local or 0, local or 0
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not cuda:          # CPU processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                init_method="env://")
    return rank, world, device


class RankBatches(torch.utils.data.Sampler):
    """This rank's share of each global batch of sample indices, from batch
    ``start`` on: global batch b is indices [b*B, (b+1)*B); rank r takes
    its r-th slice."""

    def __init__(self, n_samples: int, batch: int, rank: int, world: int, start: int = 0):
        self.n_batches, self.per_rank = n_samples // batch, batch // world
        self.batch, self.rank, self.start = batch, rank, start

    def __len__(self) -> int:
        return self.n_batches - self.start

    def __iter__(self):
        for b in range(self.start, self.n_batches):
            first = b * self.batch + self.rank * self.per_rank
            yield list(range(first, first + self.per_rank))
