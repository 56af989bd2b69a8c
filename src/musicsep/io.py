"""Small I/O helpers shared by every step: atomic outputs and logging."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_path(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; rename it to ``out`` when the
    block succeeds, remove it when the block fails. A job killed mid-write
    leaves only a ``.tmp`` file that no rule takes as its output, and the next
    attempt at ``out`` removes it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def sha256_stream(fh: BinaryIO, copy_to: BinaryIO | None = None, block: int = 1 << 20) -> str:
    """sha256 of a stream (optionally copying it to ``copy_to`` on the way)."""
    digest = hashlib.sha256()
    while chunk := fh.read(block):
        digest.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return digest.hexdigest()


def setup_logging(level: str = "INFO") -> None:
    """Plain, timestamped lines on stderr (which the workflow's rules send to
    their log files)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
