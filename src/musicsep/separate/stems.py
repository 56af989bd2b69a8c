"""Writing a separation's stems: its targets as one set, block by block.

:class:`StemWriter` writes ``{target}{ext}`` for every target of a separation
into its ``sources`` (:func:`separation_targets`: MUSDB18's four and
``accompaniment`` by default) as the separation hands it blocks of the source
estimates (``accompaniment`` is summed from them here, as
:func:`as_targets` sums it), so no stem of a
whole track is ever held in memory. The files grow in a staging folder
beside the destination, ``.{name}.{pid}.tmp``, and are moved into place only
when all of them are complete: a destination that does not exist yet (or is an
empty folder) is the staging folder renamed, at once; into a folder that
holds files already they are moved one by one with SIGTERM and SIGINT held
back. The set therefore appears whole or not at all.

While the writer is open, SIGTERM and SIGINT stop the work with
:class:`Interrupted` (exit status 128 + the signal's number on the command
line), and the staging folder, with any folders made for the destination,
is removed. A process killed outright (SIGKILL) leaves only the hidden
staging folder, which the next separation into the same destination
removes. A write that fails (a full disk, a read-only or vanished folder) is
a :class:`MusicsepError` naming the file and the cause.

Formats (:data:`musicsep.separate.FORMATS`): ``wav-f32`` holds the
estimates as computed; 16- and 24-bit WAV and FLAC hold them rounded to the
nearest step of ``2**-15`` or ``2**-23`` (no dither: they read back within
half a step), with samples beyond full scale clipped to it and counted in a
warning.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Mapping

import numpy as np
import soundfile

from musicsep import SOURCES, TARGETS, MusicsepError, accompaniment_sources, targets_of
from musicsep.separate import DEFAULT_FORMAT, FORMATS

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT while stems were being written (and nothing was)."""

    def __init__(self, signum: int, where: Path):
        self.signum = signum
        super().__init__(f"{where}: stopped by {signal.Signals(signum).name}; no stems written")


def format_of(fmt: str) -> tuple[str, str, str]:
    """(soundfile format, subtype, extension) of a format's name."""
    if fmt not in FORMATS:
        raise MusicsepError(f"unknown stem format {fmt!r} (known: {', '.join(FORMATS)})")
    return FORMATS[fmt]


def separation_targets(sources=SOURCES) -> tuple[str, ...]:
    """The targets of a separation into ``sources``, in the order they are
    written: :data:`TARGETS` (the tables' order) for MUSDB18's four, else
    :func:`musicsep.targets_of` (the sources, then ``accompaniment`` when
    one of them is ``vocals``)."""
    return TARGETS if tuple(sources) == SOURCES else targets_of(sources)


def stem_names(fmt: str = DEFAULT_FORMAT, sources=SOURCES) -> dict[str, str]:
    """``{target: file name}`` of a format, for a separation into ``sources``."""
    ext = format_of(fmt)[2]
    return {target: f"{target}{ext}" for target in separation_targets(sources)}


def as_targets(estimates: np.ndarray, sources=SOURCES) -> dict[str, np.ndarray]:
    """Stacked source estimates ``(sources, channels, samples)`` in ``sources``' order -> ``{target: audio}``
    in :func:`separation_targets` order (:data:`musicsep.TARGETS` for MUSDB18's four)."""
    out = {name: np.ascontiguousarray(estimates[k], dtype=np.float32) for k, name in enumerate(sources)}
    summed = accompaniment_sources(sources)
    if summed:
        acc = out[summed[0]].copy()
        for name in summed[1:]:
            acc += out[name]
        out["accompaniment"] = acc
    return {target: out[target] for target in separation_targets(sources)}


def quantise(audio: np.ndarray, subtype: str) -> tuple[np.ndarray, int]:
    """Samples ``(frames, channels)`` float32 as soundfile writes ``subtype``
    exactly, and how many were clipped: for 16 bits ``int16`` of
    ``round(x * 2**15)``, for 24 bits those of ``round(x * 2**23)`` in the
    top 24 bits of ``int32`` (what libsndfile stores of an int32), each
    clipped to the format's range. Float passes as it is."""
    if subtype == "FLOAT":
        return audio, 0
    bits = {"PCM_16": 16, "PCM_24": 24}[subtype]
    top = float(2 ** (bits - 1))
    steps = np.rint(audio * np.float32(top))            # exact in float32: |steps| <= 2**23 + 1
    clipped = int(np.count_nonzero(steps < -top) + np.count_nonzero(steps > top - 1))
    np.clip(steps, -top, top - 1, out=steps)
    if bits == 16:
        return steps.astype(np.int16), clipped
    return np.left_shift(steps.astype(np.int32), 8), clipped


def check_destination(out: str | Path) -> None:
    """A MusicsepError naming ``out`` if it cannot be the stems' folder."""
    out, path = Path(out), Path(os.path.abspath(out))
    if path.exists() and not path.is_dir():
        raise MusicsepError(f"{out}: exists and is not a folder (--out names the folder for the stems)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MusicsepError(f"{out}: cannot make the folder: {parent} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise MusicsepError(f"{out}: cannot make the folder: {parent} is not writable")
            break


def _cause(err: BaseException, folder: Path, handle: soundfile.SoundFile | None = None) -> str:
    """What went wrong, in words: libsndfile reports a failed write as
    "System error." alone; its file handle, or the disk, says more."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    with contextlib.suppress(OSError):
        stats = os.statvfs(folder)
        if stats.f_bavail == 0 or stats.f_bfree == 0:
            return os.strerror(28)                         # ENOSPC: No space left on device
    if handle is not None:
        with contextlib.suppress(Exception):
            detail = soundfile._ffi.string(soundfile._snd.sf_strerror(handle._file)).decode(errors="replace")
            return detail.split(" : ", 1)[-1].rstrip(".") or str(err)
    return str(err).rstrip(".")


class StemWriter:
    """The stems of one separation written into ``out_dir`` as a set (the
    module docstring says how) for a separation into ``sources``. Use as a
    context manager: :meth:`write` blocks of sources ``(sources, channels, n)``
    in order, then :meth:`commit`; leaving the block without committing
    removes what was staged."""

    def __init__(self, out_dir: str | Path, sample_rate: int, channels: int, fmt: str = DEFAULT_FORMAT,
                 sources=SOURCES):
        self.out = Path(out_dir)                        # as given, in messages
        self.path = Path(os.path.abspath(out_dir))      # where the files go
        self.format, self.subtype, _ = format_of(fmt)
        self.fmt, self.sample_rate, self.channels = fmt, sample_rate, channels
        self.sources, self.targets = tuple(sources), separation_targets(sources)
        self.names = stem_names(fmt, sources)
        check_destination(self.out)
        self.staging = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.files: dict[str, soundfile.SoundFile] = {}
        self.clipped = dict.fromkeys(self.targets, 0)
        self.frames = 0
        self._made: list[Path] = []
        self._previous: dict = {}
        self._done = False

    # -- the staging folder ------------------------------------------------ #
    def __enter__(self) -> "StemWriter":
        if threading.current_thread() is threading.main_thread():
            def stop(signum, _frame):
                raise Interrupted(signum, self.out)
            self._previous = {s: signal.signal(s, stop) for s in SIGNALS}
        try:
            for parent in reversed(self.path.parents):
                if not parent.exists():
                    parent.mkdir()
                    self._made.append(parent)
            for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
            self.staging.mkdir()
            for target, name in self.names.items():
                self.files[target] = soundfile.SoundFile(self.staging / name, "w", self.sample_rate, self.channels,
                                                         subtype=self.subtype, format=self.format)
        except BaseException as err:
            self.__exit__()
            if isinstance(err, (OSError, RuntimeError)):
                raise MusicsepError(f"{self.out}: cannot write there ({_cause(err, self.path.parent)})") from None
            raise
        return self

    def __exit__(self, *exc) -> None:
        """Remove what was staged (unless committed) and restore the signals'
        handlers, with the signals held back meanwhile."""
        held = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            if not self._done:
                self._discard()
            for s, handler in self._previous.items():
                signal.signal(s, handler)
            self._previous = {}
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def scratch(self, name: str) -> Path:
        """A scratch file in the staging folder (removed with it; never moved into place)."""
        return self.staging / f".{name}"

    def _discard(self) -> None:
        """Remove what was staged and the folders made for the destination."""
        for handle in self.files.values():
            with contextlib.suppress(Exception):
                handle.close()
        shutil.rmtree(self.staging, ignore_errors=True)
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                folder.rmdir()

    # -- writing ----------------------------------------------------------- #
    def write(self, sources: np.ndarray) -> None:
        """Append a block of the source estimates ``(sources, channels, n)``
        (float32) to every stem."""
        if len(sources) != len(self.sources):
            raise MusicsepError(f"{self.out}: a block of {len(sources)} sources, the stems are of "
                                f"{len(self.sources)} ({', '.join(self.sources)})")
        self.write_targets(as_targets(sources, self.sources))

    def write_targets(self, targets: Mapping[str, np.ndarray]) -> None:
        """Append a block ``{target: (channels, n)}`` of every target to its stem."""
        missing = [t for t in self.targets if t not in targets]
        if missing:
            raise MusicsepError(f"{self.out}: no block of {', '.join(missing)}")
        lengths = {np.shape(targets[t]) for t in self.targets}
        if len(lengths) != 1 or lengths.pop()[0] != self.channels:
            raise MusicsepError(f"{self.out}: the targets' blocks differ in shape or channels")
        for target in self.targets:
            data, clipped = quantise(np.ascontiguousarray(np.asarray(targets[target], np.float32).T), self.subtype)
            self.clipped[target] += clipped
            handle = self.files[target]
            try:
                handle.write(data)
            except (OSError, RuntimeError) as err:
                raise self._failure(target, err, handle) from None
        self.frames += np.shape(targets[self.targets[0]])[-1]

    def _failure(self, target: str, err: BaseException, handle=None) -> MusicsepError:
        return MusicsepError(f"{self.out / self.names[target]}: cannot write ({_cause(err, self.staging, handle)})")

    def commit(self) -> dict[str, Path]:
        """Close the stems and move them into place as a set; returns their paths by target."""
        for target, handle in self.files.items():
            try:
                handle.close()
            except (OSError, RuntimeError) as err:
                raise self._failure(target, err, handle) from None
        for scratch in self.staging.glob(".*"):
            scratch.unlink()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            try:
                os.rename(self.staging, self.path)           # a new (or empty) folder: all at once
            except OSError:
                for name in self.names.values():
                    os.replace(self.staging / name, self.path / name)
                self.staging.rmdir()
            self._done = True
        except OSError as err:
            raise MusicsepError(f"{self.out}: cannot move the stems into place ({_cause(err, self.path)})") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if self.subtype != "FLOAT":
            for target, count in self.clipped.items():
                if count:
                    log.warning("%s: %d sample(s) beyond full scale clipped to it (%s)",
                                self.out / self.names[target], count, self.fmt)
        return {target: self.out / name for target, name in self.names.items()}
