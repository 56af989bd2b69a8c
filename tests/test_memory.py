"""The allocator setting that the command line applies (musicsep.memory)."""

import os
import statistics
import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import torch
from musicsep.cli import main
from musicsep.memory import reuse_freed_memory
if sys.argv[1] == "reuse":
    applied = reuse_freed_memory()
elif sys.argv[1] == "cli":        # a command that fails at once, after main's set-up
    applied = main(["index", "/nonexistent/musdb18.zip"]) == 1
else:
    applied = False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps = []
for step in range(30):        # the steps of a job: a large block each (100 MB, far above glibc's
    before = faults()          # mmap threshold), freed, between small allocations
    block = torch.ones(25_000_000)
    small = [torch.ones(10) for _ in range(10)]
    del block
    steps.append(faults() - before)
print(applied, *steps[10:])
"""


def run(mode: str) -> tuple[str, list[int]]:
    """Whether the setting was applied, and the page faults of each of the last 20 steps."""
    env = {k: v for k, v in os.environ.items() if k != "MUSICSEP_MALLOC"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env=env).stdout
    applied, *steps = out.split()
    return applied, [int(n) for n in steps]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_without_page_faults():
    applied, reused = run("reuse")
    assert applied == "True"
    # a fresh mapping of 100 MB faults once per 4 KiB page (about 24,000 times a
    # step); a reused heap block has its pages already. glibc's aligned
    # allocations fragment the heap in the first few steps, and now and then
    # the kernel takes a block's pages back later (once in a CI run, one step of
    # the last ten faulted in full), so the median step is compared.
    _, system = run("system")
    assert statistics.median(system) > 20_000
    assert statistics.median(reused) < statistics.median(system) / 20, (reused, system)


def test_opt_out_by_environment(monkeypatch):
    from musicsep.memory import reuse_freed_memory

    monkeypatch.setenv("MUSICSEP_MALLOC", "system")
    assert reuse_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_command_line_applies_it():
    ran, reused = run("cli")
    assert ran == "True"
    _, system = run("system")
    assert statistics.median(reused) < statistics.median(system) / 20, (reused, system)
