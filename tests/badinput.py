"""The check of a bad-input case (tests/test_bad_input.py) and the writers of
bad inputs: a command given bad input answers with exit status 1, one line
naming the file, option or key, no traceback, and leaves nothing new or
half-written on disk."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py

from musicsep import TARGETS


def snapshot(*roots: Path) -> dict[str, str]:
    """path -> sha256 of its bytes ("dir" for a folder) of everything under ``roots``."""
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            found[str(path)] = "dir" if path.is_dir() and not path.is_symlink() else \
                hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_bad(command: list, cwd: Path, names: str, watched: tuple[Path, ...], prefix: str = "error: ",
            env: dict | None = None) -> str:
    """Run ``command`` in ``cwd`` and check the answer to bad input: exit
    status 1, no traceback, the last line of stderr naming ``names`` (and,
    with ``prefix``, the only line that starts with it), and nothing under
    ``watched`` changed, nor any path of the command outside them made.
    Returns that line."""
    outside = [a for a in command if isinstance(a, Path) and not any(a.is_relative_to(w) for w in watched)]
    before, existed = snapshot(*watched), [path.exists() for path in outside]
    proc = subprocess.run(list(map(str, command)), cwd=cwd, capture_output=True, text=True, check=False,
                          env=env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, f"exit status {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines, "no error line"
    if prefix:
        assert [line for line in lines if line.startswith(prefix)] == [lines[-1]], \
            f"not one error line, at the end:\n{proc.stderr[-3000:]}"
    assert names in lines[-1], f"{names!r} not named in: {lines[-1]}"
    after = snapshot(*watched)
    assert after == before, f"files left behind or changed: {sorted(set(after.items()) ^ set(before.items()))}"
    assert [path.exists() for path in outside] == existed, f"made: {outside}"
    return lines[-1]


def musicsep(*args) -> list:
    return [sys.executable, "-m", "musicsep", *args]



# --------------------------------------------------------------------------- writing bad inputs


def text(path: Path, content: str = "not what was asked for\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def truncated(source: Path, path: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def edited(source: Path, path: Path, edit: Callable[[h5py.File], None]) -> Path:
    shutil.copy(source, path)
    with h5py.File(path, "a") as h5:
        edit(h5)
    return path


def folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def museval_json(path: Path, scores: dict | None = None) -> Path:
    frame = {"time": 0.0, "duration": 1.0, "metrics": {"SDR": 1.0, "SIR": 2.0, "SAR": 3.0, "ISR": 4.0}}
    data = scores or {"name": path.stem, "targets": [{"name": "vocals", "frames": [frame]}]}
    return text(path, json.dumps(data))



def scores_csv(t: Path) -> Path:
    rows = [f"sys,track{k},{target},{metric},0,{k + 1.0}" for k in range(2) for target in TARGETS
            for metric in ("SDR", "SIR", "SAR", "ISR")]
    return text(t / "scores.csv", "\n".join(["system,track,target,metric,frame,score", *rows]) + "\n")
