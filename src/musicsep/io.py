"""Small I/O helpers shared by every step: atomic outputs, checksums, logging and progress."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from musicsep import MusicsepError

log = logging.getLogger("musicsep")


@contextlib.contextmanager
def atomic_path(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; rename it to ``out`` when the
    block succeeds, remove it when the block fails. A job killed mid-write
    leaves only a ``.tmp`` file that no rule takes as its output, and the next
    attempt at ``out`` removes it. The folders made for ``out`` are removed
    too when the block fails; an ``out`` that cannot be written (a folder, a
    path through a file, a place where no file can be made, a full disk) is a
    MusicsepError naming it."""
    out = Path(out)
    check_writable(out)
    made = [folder for folder in [out.parent, *out.parent.parents] if not folder.exists()]   # deepest first
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    done = False
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:      # a file where a folder of the path should be, a read-only place, ...
            raise MusicsepError(f"{out}: cannot be written ({err.strerror}: {err.filename})") from None
        for stale in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
        try:
            yield tmp
        except OSError as err:      # the file cannot be made there (/proc, ...), or the disk is full
            if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) and str(err.filename) != str(tmp):
                raise
            raise MusicsepError(f"{out}: cannot be written ({os.strerror(err.errno) if err.errno else err})") \
                from None
        os.replace(tmp, out)
        done = True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        for folder in made if not done else ():
            with contextlib.suppress(OSError):
                folder.rmdir()


def check_writable(*outs: str | os.PathLike | None) -> None:
    """Refuse, before anything is written, an output file that cannot be: a
    folder, or a path through a file (None: an output not asked for)."""
    for out in map(Path, filter(None, outs)):
        if out.is_dir():
            raise MusicsepError(f"{out}: is a folder, not a file to write")
        above = next(folder for folder in out.parents if folder.exists() or folder == folder.parent)
        if not above.is_dir():
            raise MusicsepError(f"{out}: cannot be written ({above} is not a folder)")


@contextlib.contextmanager
def atomic_paths(*outs: str | os.PathLike | None) -> Iterator[list[Path | None]]:
    """:func:`atomic_path` of several outputs at once (None for an output not
    asked for): every one is checked before the block writes any, and all
    appear together when it succeeds, none when it fails."""
    with contextlib.ExitStack() as stack:
        yield [None if out is None else stack.enter_context(atomic_path(out)) for out in outs]


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


def progress_bar(total: int, desc: str, *, unit: str, show: bool = True) -> Callable[..., None]:
    """A function to call once per ``unit`` done (keyword values are shown
    beside the count, e.g. ``loss=0.25``): a tqdm bar when stderr is a
    terminal, otherwise plain log lines for batch jobs (every step, or about
    every tenth of ``total`` when there are more than ten); nothing when
    ``show`` is false."""
    if not show:
        return lambda **values: None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, leave=False)

        def advance(**values) -> None:
            bar.update()
            if values:
                bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in values.items()})
            if bar.n >= total:
                bar.close()
        return advance
    done = 0

    def log_line(**values) -> None:
        nonlocal done
        done += 1
        if done % max(1, total // 10) == 0 or done == total:
            extra = "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}" for k, v in values.items())
            log.info("%s: %s %d/%d%s", desc, unit, done, total, extra)
    return log_line
