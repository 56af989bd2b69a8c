"""The check of processes left behind at the end of a test session
(tests/conftest.py), on sessions of its own: a process the tests leave running,
as a child or orphaned, fails the session and is killed; one that ends while
the session stops does not count."""

import os
import subprocess
import sys

from conftest import ROOT, SESSION_MARK, command_line, descendants, process_table, session_processes


def pytest_session(folder, body: str) -> subprocess.CompletedProcess:
    """A pytest session of the test file ``body`` with this suite's conftest.py."""
    (folder / "test_inner.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
           "MUSICSEP_TEST_LEFTOVER_WAIT_S": "3"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           "test_inner.py"], cwd=folder, env=env, capture_output=True, text=True, check=False)


def test_a_process_left_running_fails_the_session_and_is_killed(tmp_path):
    proc = pytest_session(tmp_path, """
import subprocess
from pathlib import Path


def test_leaves_two():
    child = subprocess.Popen(["sleep", "600"])
    subprocess.run(["sh", "-c", "sleep 601 & echo $! > orphan"], check=True)   # its parent exits at once
    Path("pids").write_text(f"{child.pid} {Path('orphan').read_text().strip()}")
""")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "processes left behind" in proc.stdout, proc.stdout
    pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    for pid, command in zip(pids, ["sleep 600", "sleep 601"]):
        assert f"pid {pid}: {command}" in proc.stdout, proc.stdout
    table = process_table()
    assert [pid for pid in pids if pid in table and table[pid][1] != "Z"] == []


def test_processes_that_end_while_the_session_stops_are_not_flagged(tmp_path):
    proc = pytest_session(tmp_path, """
import subprocess


def test_leaves_one_that_ends_soon():
    subprocess.Popen(["sleep", "1"])
""")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "left behind" not in proc.stdout


def test_a_session_fixtures_process_is_stopped_before_the_check(tmp_path):
    """A session-scoped fixture's process (as tests/workflow/test_slurm.py's SLURM
    daemons) is stopped by the fixture's tear-down, which comes first, also in a
    session stopped early (pytest.exit, Ctrl-C: that tear-down then runs at the
    session's end, not after the last test)."""
    proc = pytest_session(tmp_path, """
import subprocess

import pytest


@pytest.fixture(scope="session")
def daemon():
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def test_stops_the_session(daemon):
    pytest.exit("stopped", returncode=0)
""")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Exit: stopped" in proc.stdout and "left behind" not in proc.stdout, proc.stdout


def test_this_sessions_processes_are_found_by_descent_and_by_mark():
    """Below this process, and orphaned: both found; an unrelated process (no mark) not."""
    child = subprocess.Popen(["sleep", "30"])
    orphan = int(subprocess.run(["sh", "-c", "sleep 31 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                                check=True).stdout)
    env = {k: v for k, v in os.environ.items() if k != SESSION_MARK}
    stranger = int(subprocess.run(["setsid", "sh", "-c", "sleep 32 >/dev/null 2>&1 & echo $!"], env=env,
                                  capture_output=True, text=True, check=True).stdout)
    try:
        assert orphan not in descendants(os.getpid())        # its parent, sh, has exited
        found = session_processes()
        assert child.pid in found and orphan in found and stranger not in found, found
        assert found[orphan] == command_line(orphan) == "sleep 31"
    finally:
        for pid in (child.pid, orphan, stranger):
            os.kill(pid, 9)
        child.wait()
