"""The built-in toy MUSDB: a small dataset in exactly the MUSDB18 format.

``make_toy_musdb`` writes ``train/`` and ``test/`` folders of
``Artist - Title.stem.mp4`` (five AAC streams: mixture, drums, bass, other,
vocals; stereo, 44.1 kHz), as a zip like ``musdb18.zip`` or as a folder, or the
MUSDB18-HQ layout (``Artist - Title/{mixture,drums,bass,other,vocals}.wav``),
or a MoisesDB-like layout (``Artist - Title/{source}/*.wav``, no mixture, the
guitar in two files, a ``data.json`` beside them) read as stems
(:mod:`musicsep.data.stems`). The HQ and MoisesDB-like layouts take any
sources of :data:`musicsep.toy.VOICES` (a guitar and a piano beside
MUSDB18's four); MUSDB18's four render as they always did.
The songs come from :mod:`musicsep.toy.synth` (a numpy synthesizer: deterministic
from the seed, nothing to download); the mixture is the sum of the stems.

Tracks are rendered by worker processes that end with the command: on an
error, SIGTERM or Ctrl-C it terminates them (each kills its ffmpeg first)
before it removes what it had written; on Linux a worker also ends when the
command dies by SIGKILL.

Track names carry the characters real MUSDB names carry (spaces, apostrophes,
ampersands, dots, parentheses), so every step is exercised on them. Names and
durations are known from the seed alone, so the workflow's track table exists
before any audio does.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from musicsep import SAMPLE_RATE, SOURCES, STREAMS, MusicsepError
from musicsep.data.audio import write_stem_mp4
from musicsep.data.musdb import STEM_SUFFIX, SUBSETS
from musicsep.io import check_writable
from musicsep.toy import SECONDS, SEED, TEST_TRACKS, TRAIN_TRACKS, VOICES

log = logging.getLogger(__name__)


PEAK = 0.9

_FIRST = ["Juliet", "Marco", "Ada", "Ruben", "Nina", "Oscar", "Lena", "Theo", "Ines", "Caleb",
          "Mira", "Felix", "Sol", "Hugo", "Rosa", "Emil"]
_LAST = ["Elder", "Thompson", "Marquez", "Lindqvist", "Okafor", "Brandt", "Castell", "Moreau",
         "Haddad", "Sato", "Keller", "Novak"]
_NOUN = ["Rescue", "Harbour", "Lantern", "Orchard", "Signal", "Comet", "Engine", "Meadow",
         "Circuit", "Tide", "Falcon", "Ember"]
_ADJ = ["Easton", "Velvet", "Hollow", "Northern", "Paper", "Silver", "Quiet", "Electric"]
_TITLE = ["Heartbeats", "The English Actor", "Knockout", "Night Drive", "Slow Motion",
          "Paper Boats", "Glass House", "Over The Hill", "Lost & Found", "Tomorrow's Rain",
          "St. Elmo", "Blue Hour", "Run (Again)", "Low Tide", "Open Roads", "Satellite"]
_TEMPLATES = [
    "{first}'s {noun} - {title}",                   # apostrophe
    "{first} {last} & {first2} {initial} {last2} - {title}",  # ampersand
    "The {adj} {noun}s ({first}) - {acronym}",      # parentheses
    "{acr_dots} Music - {title}",                   # dots
    "{first} {last} - {title}",
]


def toy_names(seed: int, count: int) -> list[str]:
    """``count`` distinct MUSDB-style track names, deterministic from ``seed``.
    Consecutive names cycle through templates with apostrophes, ampersands,
    parentheses and dots."""
    rng = np.random.default_rng([seed, 7])
    names: list[str] = []
    while len(names) < count:
        pick = lambda words: words[int(rng.integers(len(words)))]  # noqa: E731
        letters = "".join(chr(ord("A") + int(i)) for i in rng.integers(0, 26, 4))
        name = _TEMPLATES[len(names) % len(_TEMPLATES)].format(
            first=pick(_FIRST), first2=pick(_FIRST), last=pick(_LAST), last2=pick(_LAST),
            initial=letters[0], noun=pick(_NOUN), adj=pick(_ADJ), title=pick(_TITLE),
            acronym=letters, acr_dots=".".join(letters[:3]) + ".")
        if name not in names:
            names.append(name)
    return names


def toy_tracks(seed: int, train: int, test: int, duration: float, fmt: str = "stems") -> list[tuple]:
    """The toy dataset's ``(name, subset, member, duration, song seed)`` rows."""
    names = toy_names(seed, train + test)
    rows = []
    for k, name in enumerate(names):
        subset = "train" if k < train else "test"
        member = f"{subset}/{name}{STEM_SUFFIX}" if fmt == "stems" else f"{subset}/{name}"
        rows.append((name, subset, member, float(duration), seed * 1000 + k))
    return rows


def render_streams(song_seed: int, duration: float, sources: tuple[str, ...] = SOURCES) -> np.ndarray:
    """The streams of one toy song, ``(1 + sources, samples, 2)`` float32: the
    mixture (the sum of the stems) first, then the stems in ``sources``
    order (by default MUSDB's)."""
    from musicsep.toy.song import plan_song
    from musicsep.toy.synth import render_song

    stems = render_song(plan_song(song_seed), duration, SAMPLE_RATE, tuple(sources)).astype(np.float32)
    peak = np.abs(stems.sum(axis=0)).max()
    if peak > PEAK:
        stems *= PEAK / peak
    return np.concatenate([stems.sum(axis=0, keepdims=True), stems])


WORKER_STOP_S = 10
"""Seconds a terminated worker has to end before it is killed."""

_PR_SET_PDEATHSIG = 1


def _worker_setup(parent: int) -> None:
    """A worker's signals: Ctrl-C is the parent's to handle (a terminal sends
    it to every process of the group; the parent then terminates the workers);
    SIGTERM ends the worker (:func:`_write_track` kills its ffmpeg first);
    and on Linux the worker gets SIGTERM when its parent dies, even by SIGKILL."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:          # the parent died before prctl: end now
            os._exit(128 + signal.SIGTERM)


def _worker_stop(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _write_track(args: tuple) -> str:
    try:
        return _render_track(*args)
    except SystemExit as stop:
        # SIGTERM: ffmpeg is killed and reaped by now (subprocess.run does it on any exception);
        # the pool would catch this exception and take the next track, so the worker ends here
        os._exit(stop.code if isinstance(stop.code, int) else 1)


def _render_track(root: str, member: str, fmt: str, song_seed: int, duration: float,
                  sources: tuple[str, ...] = SOURCES) -> str:
    streams = render_streams(song_seed, duration, sources)
    target = Path(root) / member
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "stems":
        write_stem_mp4(target, streams, SAMPLE_RATE, STREAMS)
    elif fmt == "hq":
        target.mkdir(exist_ok=True)
        for name, audio in zip(("mixture", *sources), streams):
            soundfile.write(target / f"{name}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
    else:           # MoisesDB-like: a folder per source, the guitar over two files (halves of the song)
        for name, audio in zip(sources, streams[1:]):
            (target / name).mkdir(parents=True, exist_ok=True)
            half = len(audio) // 2 if name == "guitar" else len(audio)
            parts = [np.concatenate([audio[:half], 0 * audio[half:]]), np.concatenate([0 * audio[:half], audio[half:]])]
            for k, part in enumerate(parts[:1 + (half < len(audio))], start=1):
                soundfile.write(target / name / f"{name}_{k}.wav", part, SAMPLE_RATE, subtype="PCM_16")
        (target / "data.json").write_text(json.dumps({"song": Path(member).name, "stems": list(sources)}))
    return member


def make_toy_musdb(out: str | Path, *, seed: int = SEED, train: int = TRAIN_TRACKS, test: int = TEST_TRACKS,
                   duration: float = SECONDS, fmt: str = "stems", jobs: int = 1,
                   sources: tuple[str, ...] = SOURCES) -> Path:
    """Write the toy MUSDB to ``out``: a zip when ``out`` ends in ``.zip``,
    otherwise a folder. ``fmt`` is "stems" (musdb18), "hq" (MUSDB18-HQ) or
    "moisesdb" (track folders of a folder per source); ``sources`` (of
    :data:`~musicsep.toy.VOICES`) other than MUSDB18's need "hq" or "moisesdb".
    The result appears only when complete (written aside, then renamed);
    what a killed run left aside is removed first."""
    from musicsep.data.stems import check_sources

    if fmt not in ("stems", "hq", "moisesdb"):
        raise MusicsepError(f"toy format must be 'stems', 'hq' or 'moisesdb', not {fmt!r}")
    sources = tuple(sources)
    check_sources(sources, "--sources")
    unknown = [s for s in sources if s not in VOICES]
    if unknown:
        raise MusicsepError(f"--sources: the toy has no '{unknown[0]}' (it has {', '.join(VOICES)})")
    if fmt == "stems" and sources != SOURCES:
        raise MusicsepError(f"--sources: a .stem.mp4 holds MUSDB18's {', '.join(SOURCES)} in that order; "
                            "other sources need --hq or --moisesdb")
    if min(train, test) < 0 or train + test == 0:
        raise MusicsepError(f"train {train}, test {test}: the toy needs at least one track (and no negative count)")
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise MusicsepError(f"{out}: already exists; remove it or choose another path")
    if not out.is_dir():
        check_writable(out)     # not a path through a file
    out.parent.mkdir(parents=True, exist_ok=True)
    aside = re.compile(rf"\.{re.escape(out.name)}\.([a-z0-9_]{{8}}|zip)")   # mkdtemp's names below
    for stale in out.parent.iterdir():
        if aside.fullmatch(stale.name) and stale.is_dir():
            shutil.rmtree(stale)
        elif aside.fullmatch(stale.name):
            stale.unlink()
    rows = toy_tracks(seed, train, test, duration, fmt)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tasks = [(str(work), member, fmt, song_seed, dur, sources) for _, _, member, dur, song_seed in rows]
        _render_all(tasks, jobs)
        for subset in SUBSETS:
            (work / subset).mkdir(exist_ok=True)
        if out.suffix == ".zip":
            tmp_zip = work.with_suffix(".zip")
            with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_STORED) as zf:
                for path in sorted(work.rglob("*")):
                    zf.write(path, path.relative_to(work).as_posix())
            os.replace(tmp_zip, out)
        else:
            if out.exists():
                out.rmdir()
            os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        work.with_suffix(".zip").unlink(missing_ok=True)
    log.info("toy MUSDB (%s, %d train + %d test tracks of %.1f s) -> %s", fmt, train, test, duration, out)
    return out


def _render_all(tasks: list[tuple], jobs: int) -> None:
    """Render the tracks in ``jobs`` worker processes (spawned: they inherit
    no file descriptors or signal handlers of this one). On any exception
    here (an error, the command line's SIGTERM or Ctrl-C) the workers are
    terminated and reaped before it propagates, so none outlives the call
    and none writes after it."""
    pool = ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_setup, initargs=(os.getpid(),))
    try:
        # not pool.map: its clean-up cancels futures that the pool, broken by the terminated workers,
        # then fails to mark failed (Python 3.11: InvalidStateError in its manager thread)
        for future in [pool.submit(_write_track, task) for task in tasks]:
            log.info("toy track %s", future.result())
    except BaseException:
        _end_workers(pool)
        raise
    finally:
        pool.shutdown(cancel_futures=True)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers and wait for them (killed if they do not end in time)."""
    # the pool's processes: concurrent.futures has no public list of them before 3.14's terminate_workers
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for worker in workers:
        with contextlib.suppress(OSError, ValueError):
            worker.terminate()
    for worker in workers:
        worker.join(WORKER_STOP_S)
        if worker.is_alive():
            worker.kill()
            worker.join()
