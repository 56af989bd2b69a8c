"""MUSDB18 datasets on disk and the track table.

A dataset is ``musdb18.zip`` or an extracted MUSDB18 folder (``train/`` and
``test/`` folders of ``Artist - Title.stem.mp4``, five AAC streams each:
mixture, drums, bass, other, vocals), or MUSDB18-HQ as a zip or folder
(``train/Artist - Title/{mixture,drums,bass,other,vocals}.wav``). A zip may hold
everything under one top-level folder (``musdb18/train/...``).

The track table (slug, name, subset, split, member, duration) is computed
without decoding audio, fast enough to run every time the workflow is parsed:
file listings plus a read of each file's header. Slugs are ASCII names that are
safe as Snakemake wildcards and file names; the real name (with its spaces,
apostrophes, ampersands, dots, parentheses) lives in the table and the shards.
"""

from __future__ import annotations

import os
import re
import struct
import unicodedata
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

import numpy as np
import pandas as pd

from musicsep import STREAMS, MusicsepError
from musicsep.data import VALID_FRACTION, VALID_SEED

STEM_SUFFIX = ".stem.mp4"
SUBSETS = ("train", "test")

# MUSDB18's official validation tracks, as listed in the musdb package's
# configs/mus.yaml (`validation_tracks`); tests check the two lists agree.
VALID_TRACKS: tuple[str, ...] = (
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
)

TABLE_COLUMNS = ("slug", "name", "subset", "split", "member", "duration")


@dataclass(frozen=True)
class Track:
    """One row of the track table.

    ``member`` is the track's path inside the dataset (POSIX, relative to the
    dataset root): ``train/Name.stem.mp4`` for stems, ``train/Name`` (a folder)
    for HQ. ``duration`` is in seconds, NaN where the header could not be read
    cheaply (the shard job then measures it, or reports the broken file).
    """

    slug: str
    name: str
    subset: str
    split: str
    member: str
    duration: float = float("nan")


def slugify(name: str) -> str:
    """ASCII slug of a track name: ``"Juliet's Rescue - Heartbeats"`` ->
    ``"juliets_rescue_heartbeats"``."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"['`]", "", text.lower())
    text = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    return text or "track"


def unique_slugs(names: Iterable[str]) -> list[str]:
    """Slugs for ``names``, made unique by suffixes ``_2``, ``_3``, ..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        slug = slugify(name)
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}_{seen[slug]}"
            while slug in seen:
                slug += "_"
        seen.setdefault(slug, 1)
        out.append(slug)
    return out


# --------------------------------------------------------------------------- #
# Headers: durations without decoding
# --------------------------------------------------------------------------- #

def _boxes(fh: BinaryIO, start: int, end: int):
    """``(type, body start, end)`` of the ISO-BMFF boxes in ``[start, end)``."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        header = fh.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        head = 8
        if size == 1:
            size = struct.unpack(">Q", fh.read(8))[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head:
            raise ValueError(f"bad box size at byte {pos}")
        yield kind, pos + head, min(pos + size, end)
        pos += size


def _child(fh: BinaryIO, body: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((b, e) for k, b, e in _boxes(fh, body, end) if k == kind), None)


def _times(fh: BinaryIO, box: tuple[int, int]) -> tuple[int, int]:
    """(timescale, duration) of an ``mvhd`` or ``mdhd`` box."""
    fh.seek(box[0])
    if fh.read(4)[0] == 1:
        _, _, scale, duration = struct.unpack(">QQIQ", fh.read(28))
    else:
        _, _, scale, duration = struct.unpack(">IIII", fh.read(16))
    return scale, duration


def mp4_audio_streams(fh: BinaryIO, size: int) -> list[tuple[int, int, float]]:
    """``(sample rate, channels, seconds)`` of each audio track of an mp4, read
    from its ``moov`` box in Python (no decoding, no subprocess). Raises
    ValueError when the file has no readable ``moov`` box."""
    moov = next(((b, e) for k, b, e in _boxes(fh, 0, size) if k == b"moov"), None)
    if moov is None:
        raise ValueError("no moov box (truncated or not an mp4)")
    streams = []
    for kind, body, end in _boxes(fh, *moov):
        mdia = _child(fh, body, end, b"mdia") if kind == b"trak" else None
        hdlr = mdia and _child(fh, *mdia, b"hdlr")
        if not hdlr:
            continue
        fh.seek(hdlr[0] + 8)
        if fh.read(4) != b"soun":
            continue
        scale, duration = _times(fh, _child(fh, *mdia, b"mdhd"))
        minf = _child(fh, *mdia, b"minf")
        stbl = minf and _child(fh, *minf, b"stbl")
        stsd = stbl and _child(fh, *stbl, b"stsd")
        if not stsd:
            raise ValueError("audio track without sample description")
        fh.seek(stsd[0] + 8 + 8 + 16)   # full box header, entry count, entry header, sample entry fields
        channels, _, _, _, rate = struct.unpack(">HHHHI", fh.read(12))
        streams.append((rate >> 16 or scale, channels, duration / scale if scale else float("nan")))
    return streams


def _mp4_duration(fh: BinaryIO, size: int) -> float:
    """Duration in seconds from an mp4's ``moov/mvhd`` box (no decoding)."""
    moov = next(((b, e) for k, b, e in _boxes(fh, 0, size) if k == b"moov"), None)
    mvhd = moov and _child(fh, *moov, b"mvhd")
    if not mvhd:
        raise ValueError("no moov/mvhd box")
    scale, duration = _times(fh, mvhd)
    return duration / scale


def _wav_duration(fh: BinaryIO) -> float:
    import soundfile

    info = soundfile.info(fh)
    return info.frames / info.samplerate


# --------------------------------------------------------------------------- #
# Datasets
# --------------------------------------------------------------------------- #

@dataclass(frozen=True)
class Dataset:
    """A MUSDB18-format dataset: ``path`` (zip or folder), ``kind`` ("stems" or
    "hq") and, inside a zip, the ``prefix`` folder that holds train/ and test/."""

    path: Path
    kind: str
    is_zip: bool
    prefix: str = ""

    # -- opening ----------------------------------------------------------- #
    @classmethod
    def open(cls, path: str | os.PathLike) -> "Dataset":
        path = Path(path)
        if not path.exists():
            raise MusicsepError(f"{path}: dataset path does not exist")
        if path.is_dir():
            is_zip = False
        elif zipfile.is_zipfile(path):
            is_zip = True
        else:
            raise MusicsepError(f"{path}: neither a folder nor a zip file; expected musdb18.zip, "
                                "an extracted MUSDB18 folder or MUSDB18-HQ")
        names = _list_entries(path, is_zip)
        kind, prefix = _detect_layout(names)
        if kind is None:
            raise MusicsepError(
                f"{path}: not a MUSDB18 layout: expected train/ and test/ folders holding "
                f"'Artist - Title{STEM_SUFFIX}' files (musdb18) or 'Artist - Title/' folders "
                f"with {', '.join(s + '.wav' for s in STREAMS)} (MUSDB18-HQ)")
        return cls(path=path, kind=kind, is_zip=is_zip, prefix=prefix)

    # -- listing ------------------------------------------------------------ #
    def _names(self) -> list[str]:
        return [n[len(self.prefix):] for n in _list_entries(self.path, self.is_zip)
                if n.startswith(self.prefix)]

    def members(self, subset: str) -> list[tuple[str, str]]:
        """``(name, member)`` of every track of ``subset``, sorted by name."""
        found = {}
        for entry in self._names():
            parts = PurePosixPath(entry).parts
            if len(parts) < 2 or parts[0] != subset:
                continue
            if self.kind == "stems" and len(parts) == 2 and parts[1].endswith(STEM_SUFFIX):
                found[parts[1][: -len(STEM_SUFFIX)]] = entry
            elif self.kind == "hq" and len(parts) == 3 and parts[2].endswith(".wav"):
                found[parts[1]] = f"{subset}/{parts[1]}"
        return sorted(found.items())

    def files(self, member: str) -> list[str]:
        """The dataset entries (relative) that hold a track's audio."""
        if self.kind == "stems":
            return [member]
        return [f"{member}/{stream}.wav" for stream in STREAMS]

    def local_path(self, entry: str) -> Path:
        """A folder dataset's file for ``entry`` (not for zips)."""
        return self.path / entry

    def open_entry(self, entry: str) -> BinaryIO:
        """Open a dataset entry for reading (binary, seekable)."""
        if self.is_zip:
            zf = zipfile.ZipFile(self.path)
            try:
                return zf.open(self.prefix + entry)
            except KeyError:
                zf.close()
                raise FileNotFoundError(entry) from None
        return open(self.path / entry, "rb")

    def describe(self, entry: str) -> str:
        """Human-readable location of an entry, for error messages."""
        return f"{self.path}:{entry}" if self.is_zip else str(self.path / entry)

    # -- durations ---------------------------------------------------------- #
    def duration(self, member: str) -> float:
        """Track duration from headers alone; NaN if that is not cheap or fails
        (the shard job then reports the file)."""
        entry = member if self.kind == "stems" else f"{member}/mixture.wav"
        try:
            if self.is_zip:
                with zipfile.ZipFile(self.path) as zf:
                    info = zf.getinfo(self.prefix + entry)
                    if info.compress_type != zipfile.ZIP_STORED:
                        return float("nan")  # seeking would decompress the whole member
                    with zf.open(info) as fh:
                        return self._header_duration(fh, info.file_size)
            with open(self.path / entry, "rb") as fh:
                return self._header_duration(fh, os.fstat(fh.fileno()).st_size)
        except Exception:
            return float("nan")

    def _header_duration(self, fh: BinaryIO, size: int) -> float:
        return _mp4_duration(fh, size) if self.kind == "stems" else _wav_duration(fh)


def _list_entries(path: Path, is_zip: bool) -> list[str]:
    """POSIX names of the entries that can make up a MUSDB layout: every member
    of a zip; for a folder, what lies one and two levels below train/ and test/."""
    if is_zip:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    return [p.relative_to(path).as_posix() for sub in SUBSETS if (path / sub).is_dir()
            for pattern in ("*", "*/*.wav") for p in (path / sub).glob(pattern)]


def _detect_layout(names: list[str]) -> tuple[str | None, str]:
    """(kind, prefix) from a list of POSIX entry names; kind None if not MUSDB."""
    for name in names:
        parts = PurePosixPath(name).parts
        for i, part in enumerate(parts[:-1]):
            if part not in SUBSETS or i > 1:
                continue
            prefix = "/".join(parts[:i]) + "/" if i else ""
            rest = parts[i + 1:]
            if len(rest) == 1 and rest[0].endswith(STEM_SUFFIX):
                return "stems", prefix
            if len(rest) == 2 and rest[1] in {f"{s}.wav" for s in STREAMS}:
                return "hq", prefix
    return None, ""


# --------------------------------------------------------------------------- #
# The track table
# --------------------------------------------------------------------------- #

def assign_splits(tracks: list[Track], fraction: float, seed: int) -> list[Track]:
    """Set each train track's split to "train" or "valid" (test tracks stay
    "test"): MUSDB18's 14 official validation tracks when any of their names is
    present, otherwise a seeded random ``fraction`` of the training tracks (at
    least one when there are two or more)."""
    train = [t for t in tracks if t.subset == "train"]
    official = {t.name for t in train} & set(VALID_TRACKS)
    if official:
        valid = official
    else:
        n_valid = int(round(fraction * len(train)))
        if fraction > 0 and len(train) >= 2:
            n_valid = max(1, n_valid)
        order = np.random.default_rng(seed).permutation(len(train))
        valid = {train[i].name for i in order[:n_valid]}
    return [replace(t, split="test" if t.subset == "test" else
                    ("valid" if t.name in valid else "train")) for t in tracks]


def build_table(entries: list[tuple[str, str, str, float]], fraction: float, seed: int) -> list[Track]:
    """Track table from ``(name, subset, member, duration)`` entries."""
    slugs = unique_slugs(name for name, *_ in entries)
    tracks = [Track(slug=slug, name=name, subset=subset, split=subset, member=member,
                    duration=float(duration))
              for slug, (name, subset, member, duration) in zip(slugs, entries)]
    return assign_splits(tracks, fraction, seed)


def scan(path: str | os.PathLike, subsets=SUBSETS, max_tracks: int | None = None,
         fraction: float = VALID_FRACTION, seed: int = VALID_SEED) -> tuple[Dataset, list[Track]]:
    """Open the dataset at ``path`` and build its track table."""
    if not 0 <= fraction <= 0.5:
        raise MusicsepError(f"validation fraction {fraction} (--valid-fraction, data.valid.fraction): "
                            "must be from 0 to 0.5")
    dataset = Dataset.open(path)
    entries = []
    for subset in subsets:
        members = dataset.members(subset)[:max_tracks]
        entries += [(name, subset, member, dataset.duration(member)) for name, member in members]
    if not entries:
        raise MusicsepError(f"{dataset.path}: no tracks found in subsets {', '.join(subsets)}")
    return dataset, build_table(entries, fraction, seed)


def table_frame(tracks: list[Track]) -> pd.DataFrame:
    """The track table as a DataFrame indexed by slug."""
    frame = pd.DataFrame([asdict(t) for t in tracks], columns=TABLE_COLUMNS)
    return frame.set_index("slug", drop=False)


def write_table(frame: pd.DataFrame, out: str | os.PathLike) -> None:
    """Write a track table as TSV, atomically."""
    from musicsep.io import atomic_path

    with atomic_path(out) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.3f")
