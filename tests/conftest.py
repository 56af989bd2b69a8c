"""Shared fixtures and functions: real MUSDB-format data built from the MUSDB18
excerpt that stempeg ships, small toy datasets, shards written from arrays by
the package's own writer (``make_shard``), and Snakemake runs of the workflow
(``snakemake``). The tests mirror the package's layout in subfolders; this
file and tests/localslurm.py serve them all (``from conftest import ROOT``).

At the end of the session, after every fixture's tear-down, a check fails the
session (exit status 1) when a process the tests started still runs: it lists
and kills them (:func:`session_processes`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import stempeg

from musicsep import SOURCES, STREAMS, __version__
from musicsep.data import SHARD_CHUNK_SECONDS, SILENCE_DB
from musicsep.data.musdb import slugify
from musicsep.data.shard import MIXTURE_ROW, SOURCE_ROWS, write_layout

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)
SNAKEFILE = ROOT / "Snakefile"
TOY_CONFIG = (ROOT / "config" / "config.yaml", ROOT / "config" / "toy.yaml")

# Names as real MUSDB18 names are written; the first is an official validation track.
REAL_NAMES = {
    "train": ["Actions - One Minute Smile", "Juliet's Rescue - Heartbeats"],
    "test": ["The Easton Ellises (Baumi) - SDRNR"],
}


@pytest.fixture(scope="session")
def example_stem() -> Path:
    """The real MUSDB18 test-set excerpt in stempeg's wheel (6 s, 5 AAC streams)."""
    return Path(stempeg.example_stem_path())


def make_real_musdb(root: Path, example: Path, names=REAL_NAMES) -> Path:
    for subset, tracks in names.items():
        (root / subset).mkdir(parents=True, exist_ok=True)
        for name in tracks:
            shutil.copy(example, root / subset / f"{name}.stem.mp4")
    return root


@pytest.fixture(scope="session")
def real_musdb(tmp_path_factory, example_stem) -> Path:
    """A MUSDB18-layout folder of real audio (read only: copy before changing)."""
    return make_real_musdb(tmp_path_factory.mktemp("real") / "musdb18", example_stem)


@pytest.fixture(scope="session")
def musdb_example(tmp_path_factory, example_stem) -> Path:
    """A MUSDB18 root that musdb reads (``musdb.DB(root, is_wav=False,
    subsets="test")``): stempeg's excerpt under its own name as the one test
    track (read only)."""
    name = example_stem.name[: -len(".stem.mp4")]
    return make_real_musdb(tmp_path_factory.mktemp("musdb") / "musdb18", example_stem, {"test": [name]})


@pytest.fixture(scope="session")
def toy_zip(tmp_path_factory) -> Path:
    """A small toy MUSDB in musdb18.zip format: 2 train + 1 test tracks of 4 s."""
    from musicsep.toy.musdb import make_toy_musdb

    return make_toy_musdb(tmp_path_factory.mktemp("toy") / "musdb18-toy.zip",
                          seed=7, train=2, test=1, duration=4.0, jobs=2)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and a busy machine slows them less."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- shards


def shard_from_arrays(path: str | Path, sources: np.ndarray, *, mixture: np.ndarray | None = None,
                      sample_rate: int = 44100, name: str = "Artist - Title", slug: str | None = None,
                      split: str = "test", chunk: int | None = None, compression: str | None = None) -> Path:
    """A shard at ``path`` in the package's format, written by its writer
    (:func:`musicsep.data.shard.write_layout`): ``sources`` ``(4, channels,
    samples)`` in SOURCES order, the mixture their sum unless given; every
    attribute a decoded track's shard has, measured from the arrays."""
    sources = np.asarray(sources, dtype=np.float32)
    assert sources.ndim == 3 and len(sources) == len(SOURCES), sources.shape
    channels, samples = sources.shape[1:]
    audio = np.empty((len(STREAMS), channels, samples), np.float32)
    audio[MIXTURE_ROW] = sources.sum(0) if mixture is None else mixture
    audio[list(SOURCE_ROWS)] = sources
    with np.errstate(invalid="ignore"):
        rms_db = 10 * np.log10(np.maximum(np.mean(audio.astype(np.float64) ** 2, axis=(1, 2)), 1e-20))
    subset = "test" if split == "test" else "train"
    attrs = {
        "name": name, "slug": slug or slugify(name), "subset": subset, "split": split,
        "sample_rate": sample_rate, "source_sample_rate": sample_rate, "streams": list(STREAMS),
        "channels": channels, "samples": samples, "duration": samples / sample_rate,
        "source": f"{subset}/{name}.stem.mp4", "source_checksum": "sha256:" + hashlib.sha256(audio).hexdigest(),
        "rms_db": rms_db.round(2), "silent": [s for s, level in zip(STREAMS, rms_db) if s in SOURCES
                                              and level < SILENCE_DB],
        "musicsep_version": __version__,
    }
    chunk = chunk or max(1, int(round(SHARD_CHUNK_SECONDS * sample_rate)))
    write_layout(path, [audio], attrs, channels=channels, chunk=chunk, compression=compression)
    return Path(path)


@pytest.fixture(scope="session")
def make_shard():
    """``make_shard(path, sources, **options)``: a shard written from arrays
    (see :func:`shard_from_arrays`); returns its path."""
    return shard_from_arrays


@pytest.fixture(scope="session")
def shard_and_models(tmp_path_factory):
    """The report tests' shard and tiny model file per experiment kind
    (tests/reportdata.py), made once."""
    import reportdata

    return reportdata.shard_and_models(tmp_path_factory.mktemp("models"), shard_from_arrays)


# --------------------------------------------------------------------------- Snakemake


def snakemake_command(workdir: str | Path, *args: str, snakefile: Path = SNAKEFILE, configfiles=TOY_CONFIG,
                      profile: str | Path | None = None, cores: int | None = 2, config=()) -> list[str]:
    """A Snakemake command line for the workflow: working directory
    ``workdir``, the toy configuration (``configfiles``), and a profile or a
    number of cores; ``config`` are ``--config`` items."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir)]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    elif cores is not None:
        cmd += ["--cores", str(cores)]
    cmd += list(args)
    if config:
        cmd += ["--config", *config]
    return cmd


def snakemake_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) with this interpreter's bin first on
    PATH, where the workflow's jobs find snakemake and ``python -m musicsep``."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join([BIN, env.get("PATH", "")])
    return env


def snakemake(workdir: str | Path, *args: str, env: dict | None = None, cwd: str | Path | None = None,
              timeout: float = 900, **options) -> subprocess.CompletedProcess:
    """Run Snakemake (:func:`snakemake_command`, options as there) and return
    the finished process, output captured as text. The timeout only stops a
    hung run (the SLURM plugin waits for ever when it cannot read job states)."""
    return subprocess.run(snakemake_command(workdir, *args, **options), capture_output=True, text=True,
                          timeout=timeout, env=snakemake_env(env), cwd=cwd)


def job_counts(output: str) -> dict:
    """rule -> number of jobs, from the "Job stats" table of Snakemake's output."""
    table = output[output.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


# --------------------------------------------------------------------------- processes left behind

SESSION_MARK = "MUSICSEP_TEST_SESSION"
"""An environment variable set for this session: every process the tests start inherits it."""
os.environ[SESSION_MARK] = f"{os.getpid()}.{time.time_ns()}"
LEFTOVER_WAIT_S = float(os.environ.get("MUSICSEP_TEST_LEFTOVER_WAIT_S", "20"))
"""How long processes still stopping at the end of the session get to end before they count as left behind."""


def process_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, state letter, start time in clock ticks) of every
    process, from /proc/PID/stat."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            table[int(entry.name)] = (int(fields[1]), fields[0], int(fields[19]))
    return table


def descendants(pid: int, table: dict | None = None) -> list[int]:
    """The running processes below ``pid``: its children, theirs, ... (zombies,
    which have exited, left out)."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return [p for p in found if table[p][1] != "Z"]


def running(processes: dict[int, int]) -> list[int]:
    """Those of ``processes`` (pid -> start time, which tells a reused pid) still running."""
    table = process_table()
    return [pid for pid, start in processes.items() if pid in table and table[pid][2] == start
            and table[pid][1] != "Z"]


def wait_until_gone(processes: dict[int, int], polls: int = 1000) -> list[int]:
    """Poll until none of ``processes`` (as :func:`running` takes them) runs, at
    most ``polls`` times; returns those still running."""
    for _ in range(polls):
        if not (left := running(processes)):
            return left
        time.sleep(0.05)
    return running(processes)


def command_line(pid: int) -> str | None:
    """A process's command line, None when it has gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def session_processes() -> dict[int, str]:
    """pid -> command line of the processes this session started that still
    run: this process's descendants, and every process carrying this session's
    :data:`SESSION_MARK` (orphans too, which the system took over: a
    ``musicsep`` command's workers left by their killed parent). Left out:
    this process and its own multiprocessing helper (the resource tracker),
    which end together."""
    me, table = os.getpid(), process_table()
    mark = f"{SESSION_MARK}={os.environ[SESSION_MARK]}".encode()
    found = set(descendants(me, table))
    for pid, (_, state, _) in table.items():
        if pid != me and state != "Z" and pid not in found:
            with contextlib.suppress(OSError):
                if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.add(pid)
    left = {}
    for pid in found:
        cmd = command_line(pid)
        if cmd is not None and not (table[pid][0] == me and "multiprocessing.resource_tracker" in cmd):
            left[pid] = cmd
    return left


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """The check of processes left behind: after the tear-down of every fixture
    (pytest's own pytest_sessionfinish, which runs before this one, ends the
    session-scoped ones: a local SLURM, ...), those still stopping get a while
    to end; any left then are listed, killed, and fail the session."""
    left, end, table = session_processes(), time.monotonic() + LEFTOVER_WAIT_S, process_table()
    starts = {pid: table[pid][2] for pid in left if pid in table}     # tells a reused pid
    while left and time.monotonic() < end:
        time.sleep(0.1)
        now = session_processes()
        left = {pid: cmd for pid, cmd in left.items() if pid in now}
    if not left:
        return
    lines = [f"{len(left)} process(es) started by the tests still running after the session, killed now:"]
    lines += [f"  pid {pid}: {cmd[:400]}" for pid, cmd in sorted(left.items())]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "processes left behind", red=True, bold=True)
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines), file=sys.stderr)
    for pid in running({pid: start for pid, start in starts.items() if pid in left}):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
