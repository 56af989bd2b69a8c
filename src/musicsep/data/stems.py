"""A multitrack dataset laid out as stems (``dataset.layout: stems``), for any set of sources.

A track is a folder of audio files (MoisesDB, MUSDB18-HQ and most
multitracks look like this): under the dataset root (a folder or a zip,
possibly under one top-level folder) either ``train/``, ``test/`` and
optionally ``valid/`` folders of track folders (``splits.from: folders``) or
the track folders themselves (``splits.from: csv`` or ``seed``). A
:class:`StemsLayout` maps the files of a track folder onto the dataset's
sources by patterns (``stems``: fnmatch patterns, relative to the track
folder, matching a file or a folder above it; by default ``{source}`` and
``{source}.*`` for each source): the files of one source are summed, a
source without a file is silence (listed in ``missing``), an audio file no
pattern claims is refused or goes to the catch-all source named by
``unmapped``. Files that are not audio by their suffix (``data.json``, a
cover image) and hidden ones are ignored unless a pattern claims them. The
mixture is the file the ``mixture`` pattern names, or the sum of the sources.

Stems of one track must share their rate and length (``mismatch: refuse``);
``mismatch: pad`` pads the shorter ones with silence at their end and, when
their rates differ, resamples each to the shard's rate. Either way every stem
is resampled to ``data.sample_rate`` and brought to the shard's channels as
MUSDB18's are. The track table is :mod:`musicsep.data.musdb`'s.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import yaml

from musicsep import SOURCES, MusicsepError
from musicsep.data import VALID_FRACTION, VALID_SEED
from musicsep.data.musdb import Dataset, Track, assign_splits, unique_slugs
from musicsep.data.reading import Reading, first_streams

AUDIO_SUFFIXES = frozenset(
    "wav wave flac mp3 ogg oga opus m4a mp4 aac aif aiff aifc wv ape wma webm mka caf au snd".split())
"""Suffixes of the files a track folder's audio is looked for in (a pattern claims any file)."""

SPLIT_FOLDERS = ("train", "valid", "test")
MISMATCH = ("refuse", "pad")
SPLITS_FROM = ("folders", "csv", "seed")
LENGTH_TOLERANCE = 0.01
"""Seconds by which the stems of a track may differ in length before they count as mismatched."""


@dataclass(frozen=True)
class StemsLayout:
    """The ``dataset`` keys that read a stems layout (see the module docstring)."""

    sources: tuple[str, ...] = SOURCES
    stems: tuple[tuple[str, str], ...] | None = None    # (pattern, source); None: the defaults
    unmapped: str = "refuse"
    mixture: str | None = None
    mismatch: str = "refuse"
    split_from: str = "folders"
    split_csv: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0

    @classmethod
    def from_block(cls, block: dict, key: str = "dataset") -> "StemsLayout":
        """The layout of a ``dataset`` block; a bad value is a MusicsepError naming its key."""
        sources = tuple(block.get("sources") or SOURCES)
        check_sources(sources, f"{key}.sources")
        stems = block.get("stems")
        if stems is not None:
            if not isinstance(stems, dict) or not stems:
                raise MusicsepError(f"{key}.stems: a mapping of file patterns to sources, not {stems!r}")
            for pattern, source in stems.items():
                if source not in sources:
                    raise MusicsepError(f"{key}.stems.{pattern}: '{source}' is not among {key}.sources "
                                        f"({', '.join(sources)})")
            stems = tuple((str(p), str(s)) for p, s in stems.items())
        unmapped = block.get("unmapped", "refuse")
        if unmapped != "refuse" and unmapped not in sources:
            raise MusicsepError(f"{key}.unmapped: '{unmapped}' is neither 'refuse' nor among {key}.sources "
                                f"({', '.join(sources)})")
        mismatch = block.get("mismatch", "refuse")
        if mismatch not in MISMATCH:
            raise MusicsepError(f"{key}.mismatch: '{mismatch}' is not one of {', '.join(MISMATCH)}")
        splits = block.get("splits") or {}
        split_from = splits.get("from", "folders")
        if split_from not in SPLITS_FROM:
            raise MusicsepError(f"{key}.splits.from: '{split_from}' is not one of {', '.join(SPLITS_FROM)}")
        if split_from == "csv" and not splits.get("csv"):
            raise MusicsepError(f"{key}.splits.csv: splits.from is csv, but no CSV file is given")
        fraction = float(splits.get("test_fraction", 0.2))
        if not 0 <= fraction < 1:
            raise MusicsepError(f"{key}.splits.test_fraction: {fraction}: must be from 0 to below 1")
        return cls(sources, stems, unmapped, block.get("mixture"), mismatch, split_from, splits.get("csv"),
                   fraction, int(splits.get("seed", 0)))

    def patterns(self) -> list[tuple[str, str]]:
        return list(self.stems) if self.stems is not None else \
            [(p, s) for s in self.sources for p in (s, f"{s}.*")]


def check_sources(sources, key: str = "dataset.sources") -> None:
    """A list of source names: one or more, distinct, not ``mixture``."""
    if not sources:
        raise MusicsepError(f"{key}: no sources")
    seen = set()
    for name in sources:
        if not isinstance(name, str) or not name or name == "mixture" or "/" in name or "," in name:
            raise MusicsepError(f"{key}: '{name}' cannot name a source (a word other than 'mixture')")
        if name in seen:
            raise MusicsepError(f"{key}: '{name}' is listed twice")
        seen.add(name)


def load_layout(value: str) -> StemsLayout:
    """``--layout``: the dataset block inline as JSON (``{...}``, as the
    workflow passes it), or a YAML file holding it (or a config with a
    ``dataset`` key)."""
    if value.lstrip().startswith("{"):
        try:
            block = json.loads(value)
        except json.JSONDecodeError as err:
            raise MusicsepError(f"--layout: not valid JSON ({err})") from None
        return StemsLayout.from_block(block)
    try:
        block = yaml.safe_load(Path(value).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else " ".join(str(err).split())
        raise MusicsepError(f"{value}: not a readable layout file ({reason})") from None
    if isinstance(block, dict) and isinstance(block.get("dataset"), dict):
        block = block["dataset"]
    if not isinstance(block, dict):
        raise MusicsepError(f"{value}: not a layout file (a mapping of dataset keys)")
    return StemsLayout.from_block(block, f"{value}: dataset")


def _claims(rel: str, pattern: str) -> bool:
    """Whether ``pattern`` claims the file ``rel`` (relative to its track folder): it matches the file or a folder above it."""
    parts = PurePosixPath(rel).parts
    return any(fnmatch.fnmatchcase("/".join(parts[:k]), pattern) for k in range(1, len(parts) + 1))


def _is_audio(rel: str) -> bool:
    name = PurePosixPath(rel).name
    return not any(p.startswith(".") for p in PurePosixPath(rel).parts) and \
        name.rpartition(".")[2].lower() in AUDIO_SUFFIXES and "." in name


@dataclass(frozen=True)
class TrackFiles:
    mixture: str | None                         # entry of the mixture file
    files: tuple[tuple[str, str], ...]          # (entry, source), sorted
    missing: tuple[str, ...]


@dataclass(frozen=True)
class StemsDataset(Dataset):
    """A dataset laid out as stems: the MUSDB18 :class:`Dataset`'s interface
    (``files``, ``open_entry``, ``describe``, ``duration``) plus its layout."""

    layout: StemsLayout = StemsLayout()
    entries: tuple[str, ...] = ()               # every file, relative to the root

    @classmethod
    def open(cls, path: str | os.PathLike, layout: StemsLayout | None = None) -> "StemsDataset":
        path, layout = Path(path), layout or StemsLayout()
        if not path.exists():
            raise MusicsepError(f"{path}: dataset path does not exist")
        is_zip = not path.is_dir() and zipfile.is_zipfile(path)
        if not path.is_dir() and not is_zip:
            raise MusicsepError(f"{path}: neither a folder nor a zip file (a stems dataset is either)")
        if is_zip:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
        else:
            names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        prefix = ""
        tops = {PurePosixPath(n).parts[0] for n in names if len(PurePosixPath(n).parts) > 1}
        if is_zip and len(tops) == 1 and all(len(PurePosixPath(n).parts) > 2 for n in names) \
                and not tops & set(SPLIT_FOLDERS):
            prefix = tops.pop() + "/"
        entries = tuple(n[len(prefix):] for n in names if n.startswith(prefix))
        return cls(path=path, kind="layout", is_zip=is_zip, prefix=prefix, layout=layout, entries=entries)

    # -- tracks and their files -------------------------------------------- #
    def track_folders(self) -> dict[str, list[str]]:
        """member (track folder, relative) -> its entries (relative to the root)."""
        depth = 2 if self.layout.split_from == "folders" else 1
        folders: dict[str, list[str]] = {}
        for entry in self.entries:
            parts = PurePosixPath(entry).parts
            if len(parts) <= depth or any(p.startswith(".") for p in parts[:depth]) or \
                    (depth == 2 and parts[0] not in SPLIT_FOLDERS):
                continue
            folders.setdefault("/".join(parts[:depth]), []).append(entry)
        return dict(sorted(folders.items()))

    def track_files(self, member: str, entries: list[str] | None = None) -> TrackFiles:
        """Which file of a track is which source (and the mixture); a file two
        patterns claim, an audio file none claims (under ``unmapped: refuse``),
        a track without stems and a mixture pattern matching no file or
        several are MusicsepErrors naming the file, the track or the key."""
        layout = self.layout
        if entries is None:
            folders = self.track_folders()
            if member not in folders:
                raise MusicsepError(f"{self.describe(member)}: no such track folder in the dataset")
            entries = folders[member]
        mixture, files = [], []
        for entry in entries:
            rel = entry[len(member) + 1:]
            claims = [(p, s) for p, s in layout.patterns() if _claims(rel, p)]
            if layout.mixture and _claims(rel, layout.mixture):
                claims.append((layout.mixture, "mixture"))
            if len({s for _, s in claims}) > 1 or len(claims) > 1 and layout.stems is not None:
                raise MusicsepError(f"{self.describe(entry)}: claimed by two patterns: "
                                    f"'{claims[0][0]}' ({claims[0][1]}) and '{claims[1][0]}' ({claims[1][1]})")
            if not claims:
                if not _is_audio(rel):
                    continue
                if layout.unmapped == "refuse":
                    raise MusicsepError(f"{self.describe(entry)}: no pattern of dataset.stems claims this file "
                                        "(map it, or set dataset.unmapped to a catch-all source)")
                claims = [("", layout.unmapped)]
            (mixture if claims[0][1] == "mixture" else files).append((entry, claims[0][1]))
        if not files:
            raise MusicsepError(f"{self.describe(member)}: a track without stems (no file of "
                                f"{', '.join(layout.sources)})")
        if layout.mixture and len(mixture) != 1:
            raise MusicsepError(f"{self.describe(member)}: dataset.mixture '{layout.mixture}' matches "
                                f"{len(mixture)} files of this track, not one")
        found = {s for _, s in files}
        return TrackFiles(mixture[0][0] if mixture else None, tuple(sorted(files)),
                          tuple(s for s in layout.sources if s not in found))

    def files(self, member: str) -> list[str]:
        tf = self.track_files(member)
        return ([tf.mixture] if tf.mixture else []) + [entry for entry, _ in tf.files]

    def subset_of(self, split: str) -> str:
        return "test" if split == "test" else "train"

    def duration(self, member: str, entries: list[str] | None = None) -> float:
        """The longest stem's duration from its header (NaN where that is not cheap)."""
        import soundfile

        entries = self.files(member) if entries is None else entries

        longest = float("nan")
        for entry in entries:
            try:
                if self.is_zip:
                    with zipfile.ZipFile(self.path) as zf:
                        info = zf.getinfo(self.prefix + entry)
                        if info.compress_type != zipfile.ZIP_STORED:
                            return float("nan")
                        with zf.open(info) as fh:
                            sf = soundfile.info(fh)
                else:
                    sf = soundfile.info(str(self.path / entry))
            except Exception:
                return float("nan")
            longest = np.nanmax([longest, sf.frames / sf.samplerate])
        return float(longest)

    # -- decoding ------------------------------------------------------------ #
    def reading(self, member: str, paths: list[Path], where: str) -> Reading:
        """The decoding of a track (:class:`~musicsep.data.reading.Reading`),
        its stems checked against each other (``mismatch``)."""
        tf = self.track_files(member)
        entries = self.files(member)
        streams = [s[0] for s in first_streams(self, entries, paths, where)]
        rates = {s.sample_rate for s in streams}
        durations = [s.duration for s in streams]
        longest = float(np.nanmax(durations))
        odd, like = next(((k, 0) for k, s in enumerate(streams) if s.sample_rate != streams[0].sample_rate),
                         (None, int(np.nanargmax(durations))))
        if odd is None:
            odd = next((k for k, d in enumerate(durations) if abs(d - longest) > LENGTH_TOLERANCE), None)
        if odd is not None and self.layout.mismatch == "refuse":
            raise MusicsepError(
                f"{self.describe(entries[odd])}: {where}: {streams[odd].sample_rate} Hz, {durations[odd]:.3f} s, "
                f"unlike its sibling {PurePosixPath(entries[like]).name} ({streams[like].sample_rate} Hz, "
                f"{durations[like]:.3f} s) (dataset.mismatch: refuse; `pad` pads and resamples stems)")
        n = 1 + len(self.layout.sources)
        rows = np.zeros((len(entries), n), np.float32)
        offset = 1 if tf.mixture else 0
        if tf.mixture:
            rows[0, 0] = 1
        for k, (_, source) in enumerate(tf.files):
            rows[offset + k, 1 + self.layout.sources.index(source)] = 1
            if not tf.mixture:
                rows[offset + k, 0] = 1
        lengths_differ = any(abs(d - longest) > 0.5 / max(rates) for d in durations if np.isfinite(d))
        return Reading([(p, 0) for p in paths], max(rates), longest, self.layout.sources, rows, tf.missing,
                       mixed_rates=len(rates) > 1, pad_seconds=longest if lengths_differ else None)


# --------------------------------------------------------------------------- #
# The track table
# --------------------------------------------------------------------------- #

def _csv_splits(path: str, names: list[str]) -> dict[str, str]:
    """track -> split from the user's CSV (columns track, split)."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else " ".join(str(err).split())
        raise MusicsepError(f"{path}: not a readable split CSV ({reason})") from None
    if not rows or not {"track", "split"} <= set(rows[0]):
        raise MusicsepError(f"{path}: not a split CSV (columns track, split)")
    splits = {}
    for line, row in enumerate(rows, start=2):
        if row["split"] not in SPLIT_FOLDERS:
            raise MusicsepError(f"{path}, line {line}: unknown split '{row['split']}' (train, valid or test)")
        if row["track"] not in names:
            raise MusicsepError(f"{path}, line {line}: no track folder '{row['track']}' in the dataset")
        splits[row["track"]] = row["split"]
    unlisted = [n for n in names if n not in splits]
    if unlisted:
        raise MusicsepError(f"{path}: no split for track '{unlisted[0]}' ({len(unlisted)} track(s) unlisted)")
    return splits


def scan_stems(path: str | os.PathLike, layout: StemsLayout, subsets=("train", "test"),
               max_tracks: int | None = None, fraction: float = VALID_FRACTION,
               seed: int = VALID_SEED) -> tuple[StemsDataset, list[Track], dict[str, str]]:
    """Open a stems dataset and build its track table; also returns each
    track's missing sources (slug -> comma-separated names)."""
    dataset = StemsDataset.open(path, layout)
    folders = dataset.track_folders()
    if not folders:
        where = "train/, valid/ or test/ folders of track folders" if layout.split_from == "folders" \
            else "track folders"
        raise MusicsepError(f"{dataset.path}: no tracks found (expected {where})")
    claimed, files = set(), {}
    for member, entries in folders.items():
        files[member] = dataset.track_files(member, entries)
        files[member] = (files[member], ([files[member].mixture] if files[member].mixture else [])
                         + [e for e, _ in files[member].files])
        claimed |= {entry[len(member) + 1:] for entry, _ in files[member][0].files}
    for pattern, source in layout.patterns() if layout.stems is not None else []:
        if not any(_claims(rel, pattern) for rel in claimed):
            raise MusicsepError(f"dataset.stems.{pattern}: matches no file in {dataset.path}")
    for source in layout.sources if layout.stems is None else []:
        if all(source in tf.missing for tf, _ in files.values()):
            raise MusicsepError(f"dataset.sources: no file in {dataset.path} is '{source}' "
                                f"(no file or folder {source} or {source}.*; map files to it with dataset.stems)")
    names = [PurePosixPath(m).name for m in folders]
    if layout.split_from == "folders":
        split = {m: PurePosixPath(m).parts[0] for m in folders}
    elif layout.split_from == "csv":
        by_name = _csv_splits(layout.split_csv, names)
        split = {m: by_name[PurePosixPath(m).name] for m in folders}
    else:
        order = np.random.default_rng(layout.split_seed).permutation(len(folders))
        n_test = int(round(layout.test_fraction * len(folders)))
        test = {list(folders)[i] for i in order[:n_test]}
        split = {m: "test" if m in test else "train" for m in folders}
    rows = []
    for subset in subsets:
        members = [m for m in folders if dataset.subset_of(split[m]) == subset][:max_tracks]
        rows += [(m, subset) for m in members]
    if not rows:
        raise MusicsepError(f"{dataset.path}: no tracks found in subsets {', '.join(subsets)}")
    slugs = unique_slugs(PurePosixPath(m).name for m, _ in rows)
    tracks = [Track(slug, PurePosixPath(m).name, subset, split[m], m, dataset.duration(m, files[m][1]))
              for slug, (m, subset) in zip(slugs, rows)]
    if not any(t.split == "valid" for t in tracks):     # no valid/ folder, no valid rows: data.valid.*
        tracks = assign_splits(tracks, fraction, seed)
    missing = {t.slug: ",".join(files[t.member][0].missing) for t in tracks}
    return dataset, tracks, missing
