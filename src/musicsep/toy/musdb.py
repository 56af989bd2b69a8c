"""The built-in toy MUSDB: a small dataset in exactly the MUSDB18 format.

``make_toy_musdb`` writes ``train/`` and ``test/`` folders of
``Artist - Title.stem.mp4`` (five AAC streams: mixture, drums, bass, other,
vocals; stereo, 44.1 kHz), as a zip like ``musdb18.zip`` or as a folder, or the
MUSDB18-HQ layout (``Artist - Title/{mixture,drums,bass,other,vocals}.wav``).
The songs come from :mod:`musicsep.toy.synth` (a numpy synthesizer: deterministic
from the seed, nothing to download); the mixture is the sum of the stems.

Track names carry the characters real MUSDB names carry (spaces, apostrophes,
ampersands, dots, parentheses), so every step is exercised on them. Names and
durations are known from the seed alone, so the workflow's track table exists
before any audio does.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from musicsep import SAMPLE_RATE, SOURCES, STREAMS, MusicsepError
from musicsep.data.audio import write_stem_mp4
from musicsep.data.musdb import STEM_SUFFIX, SUBSETS
from musicsep.toy import SECONDS, SEED, TEST_TRACKS, TRAIN_TRACKS

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


def render_streams(song_seed: int, duration: float) -> np.ndarray:
    """The five streams of one toy song, ``(5, samples, 2)`` float32: the
    mixture (the sum of the stems) first, then the stems in MUSDB order."""
    from musicsep.toy.song import plan_song
    from musicsep.toy.synth import render_song

    stems = render_song(plan_song(song_seed), duration, SAMPLE_RATE).astype(np.float32)
    order = [SOURCES.index(s) for s in STREAMS[1:]]
    stems = stems[order]
    peak = np.abs(stems.sum(axis=0)).max()
    if peak > PEAK:
        stems *= PEAK / peak
    return np.concatenate([stems.sum(axis=0, keepdims=True), stems])


def _write_track(args: tuple) -> str:
    root, member, fmt, song_seed, duration = args
    streams = render_streams(song_seed, duration)
    target = Path(root) / member
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "stems":
        write_stem_mp4(target, streams, SAMPLE_RATE, STREAMS)
    else:
        target.mkdir(exist_ok=True)
        for name, audio in zip(STREAMS, streams):
            soundfile.write(target / f"{name}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
    return member


def make_toy_musdb(out: str | Path, *, seed: int = SEED, train: int = TRAIN_TRACKS, test: int = TEST_TRACKS,
                   duration: float = SECONDS, fmt: str = "stems", jobs: int = 1) -> Path:
    """Write the toy MUSDB to ``out``: a zip when ``out`` ends in ``.zip``,
    otherwise a folder. ``fmt`` is "stems" (musdb18) or "hq" (MUSDB18-HQ).
    The result appears only when complete (written aside, then renamed)."""
    if fmt not in ("stems", "hq"):
        raise MusicsepError(f"toy format must be 'stems' or 'hq', not {fmt!r}")
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise MusicsepError(f"{out}: already exists; remove it or choose another path")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = toy_tracks(seed, train, test, duration, fmt)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tasks = [(str(work), member, fmt, song_seed, dur) for _, _, member, dur, song_seed in rows]
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            for member in pool.map(_write_track, tasks):
                log.info("toy track %s", member)
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
