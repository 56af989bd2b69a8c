"""The allocator setting that the command line applies (musicsep.memory)."""

import os
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
for step in range(30):        # the steps of a job: a large block each (100 MB, far above glibc's
    if step == 20:             # mmap threshold), freed, between small allocations
        before = faults()
    block = torch.ones(25_000_000)
    small = [torch.ones(10) for _ in range(10)]
    del block
print(applied, faults() - before)
"""


def run(mode: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "MUSICSEP_MALLOC"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env=env).stdout
    applied, faults = out.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_without_page_faults():
    applied, faults = run("reuse")
    assert applied == "True"
    # a fresh mapping of 100 MB faults once per 4 KiB page (about 24,000 times a
    # step); a reused heap block has its pages already (glibc's aligned
    # allocations fragment the heap at first, so the last 10 steps are counted)
    _, system = run("system")
    assert system > 10 * 20_000
    assert faults < system // 20


def test_opt_out_by_environment(monkeypatch):
    from musicsep.memory import reuse_freed_memory

    monkeypatch.setenv("MUSICSEP_MALLOC", "system")
    assert reuse_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_command_line_applies_it():
    ran, faults = run("cli")
    assert ran == "True"
    _, system = run("system")
    assert faults < system // 20
