"""The written track table (from the shards) and the data summary."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import h5py
import pandas as pd

from musicsep import MusicsepError
from musicsep.data.shard import read_attrs
from musicsep.io import atomic_path

log = logging.getLogger(__name__)

COLUMNS = ["slug", "name", "subset", "split", "duration", "sample_rate", "channels",
           "silent", "source", "source_checksum", "missing"]
REQUIRED = COLUMNS[:8]
"""What training and the summary read (``missing`` came later: a table without it reads as none missing)."""


def tracks_from_shards(shards: Sequence[str | Path], out: str | Path) -> pd.DataFrame:
    """Write the track table as the shards describe it: exact durations, the
    silent sources and the missing ones (sources the track has no file of,
    silence in its shard; comma-separated, empty when none)."""
    rows = []
    for path in shards:
        attrs = read_attrs(path)
        rows.append({**{k: attrs.get(k) for k in COLUMNS},
                     "slug": attrs.get("slug") or Path(path).stem,
                     "silent": ",".join(attrs.get("silent", [])), "missing": ",".join(attrs.get("missing", []))})
    frame = pd.DataFrame(rows, columns=COLUMNS).sort_values(["subset", "name"])
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.3f")
    return frame


def read_track_table(path: str | Path) -> pd.DataFrame:
    """The track table (as :func:`tracks_from_shards` writes it); anything
    else is a MusicsepError naming the file."""
    try:
        frame = pd.read_csv(path, sep="\t", keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else err
        raise MusicsepError(f"{path}: not a readable track table ({reason})") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise MusicsepError(f"{path}: not a track table (no column(s) {', '.join(missing)})")
    if "missing" not in frame.columns:
        frame["missing"] = ""
    return frame


def write_summary(tracks: str | Path, stats: str | Path, out: str | Path) -> str:
    """A short Markdown summary of the prepared data."""
    frame = read_track_table(tracks)
    try:
        with h5py.File(stats, "r") as h5:
            stats_attrs = dict(h5.attrs)
            mean, std = h5["mean"][:], h5["std"][:]
            stats_attrs = {key: stats_attrs[key] for key in ("tracks", "frames", "n_fft", "hop")}
    except (OSError, KeyError) as err:
        reason = "a folder" if Path(stats).is_dir() else "no such file" if not Path(stats).exists() \
            else " ".join(str(err.args[0] if isinstance(err, KeyError) else err).split())
        raise MusicsepError(f"{stats}: not readable whitening statistics ({reason})") from None
    lines = ["# Data summary", "",
             f"Sample rate {frame['sample_rate'].iloc[0]} Hz, {frame['channels'].iloc[0]} channel(s).", "",
             "| split | tracks | hours | silent sources |", "|---|---:|---:|---:|"]
    for split in ("train", "valid", "test"):
        part = frame[frame["split"] == split]
        silent = sum(len(s.split(",")) for s in part["silent"] if s)
        lines.append(f"| {split} | {len(part)} | {part['duration'].sum() / 3600:.3f} | {silent} |")
    absent = frame[frame["missing"] != ""]
    if len(absent):
        lines += ["", "Tracks missing sources (silence in their shards):", ""]
        lines += [f"- {row.name_}: {row.missing}" for row in absent.rename(columns={"name": "name_"}).itertuples()]
    flagged = frame[frame["silent"] != ""]
    if len(flagged):
        lines += ["", "Tracks with silent sources:", ""]
        lines += [f"- {row.name_}: {row.silent}" for row in
                  flagged.rename(columns={"name": "name_"}).itertuples()]
    lines += ["", f"Whitening statistics: {len(stats_attrs['tracks'])} training tracks, "
              f"{int(stats_attrs['frames'])} frames (n_fft {int(stats_attrs['n_fft'])}, "
              f"hop {int(stats_attrs['hop'])}); log-magnitude mean {mean.mean():.2f}, "
              f"std {std.mean():.2f} (averaged over frequency).", ""]
    text = "\n".join(lines)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(text)
    log.info("data summary -> %s", out)
    return text
