"""Training on several processes (musicsep.train.distributed): the loader
workers that the process's CPUs allow."""

import os

from musicsep.train.distributed import MAX_AUTO_WORKERS, loader_workers


def test_auto_loader_workers_follow_the_cpus_the_process_may_use(monkeypatch):
    """training.workers null: the process's CPUs (its affinity, as SLURM sets
    it), shared among the training processes on them, less one, at most 8."""
    assert loader_workers(3) == 3 and loader_workers(0, sharing=4) == 0      # a number is kept
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, sorted(allowed)[:1])
        assert loader_workers(None) == 0                                   # one CPU: load in the loop
        if len(allowed) >= 2:
            os.sched_setaffinity(0, sorted(allowed)[:2])
            assert loader_workers(None) == 1
            assert loader_workers(None, sharing=2) == 0
    finally:
        os.sched_setaffinity(0, allowed)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))     # a large GPU node
    assert loader_workers(None) == MAX_AUTO_WORKERS
    assert loader_workers(None, sharing=8) == 7
