"""Many tracks, many systems: museval JSON files gathered into one tidy table and a Markdown summary.

:func:`aggregate` reads museval JSON files (ours, or the published SiSEC 2018
submissions, ``submissions/<method>/test/<track>.json``) into one tidy table
(:data:`COLUMNS`: system, track, target, metric, frame, score), writes it as
CSV and reports the median over frames then over tracks per system, target
and metric, exactly as museval's ``EvalStore.agg_frames_tracks_scores()``
does: as a Markdown summary (2 decimals) and, at full precision, as a CSV of
:data:`MEDIAN_COLUMNS`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from musicsep import TARGETS, MusicsepError
from musicsep.evaluate.track import METRICS
from musicsep.io import atomic_paths

log = logging.getLogger(__name__)

COLUMNS: list[str] = ["system", "track", "target", "metric", "frame", "score"]
MEDIAN_COLUMNS: list[str] = ["system", "target", "metric", "median"]


SUBSET_DIRS = frozenset({"test", "train", "valid"})
"""Folder names skipped when naming a system after a JSON's parent
folder (museval writes ``output_dir/test/<track>.json``)."""


def _json_files(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(file, the path given that holds it), JSON files found recursively."""
    found = []
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(p for p in given.rglob("*.json") if p.is_file())
            if not files:
                raise MusicsepError(f"{given}: no JSON files in this folder")
            found += [(f, given) for f in files]
        elif given.is_file():
            found.append((given, given.parent))
        else:
            raise MusicsepError(f"{given}: no such file or folder")
    return found


def system_name(path: Path, given: Path, system_from: str | Callable[[Path], str] = "parent") -> str:
    """``parent``: the JSON's folder, or the folder above it when that is a
    subset folder (``test``, ``train``, ``valid``) as museval writes them;
    ``root``: the folder given on the command line; or a function of the path."""
    if callable(system_from):
        return str(system_from(path))
    if system_from == "parent":
        folder = path.resolve().parent
        if folder.name in SUBSET_DIRS and folder.parent.name:
            folder = folder.parent
        return folder.name
    if system_from == "root":
        return given.resolve().name
    raise MusicsepError(f"system_from must be 'parent' or 'root', not {system_from!r}")


def read_scores(path: str | os.PathLike) -> tuple[str, pd.DataFrame]:
    """One museval JSON file as (track, frame table with columns target,
    metric, frame, score). The track is the file's stem (museval writes no
    name; a top-level ``name`` is used when present)."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MusicsepError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(content, dict) or not isinstance(content.get("targets"), list):
        raise MusicsepError(f"{path}: not a museval score file (no 'targets' list)")
    track = content["name"] if isinstance(content.get("name"), str) else path.stem
    rows = []
    try:
        for target in content["targets"]:
            for i, frame in enumerate(target["frames"]):
                metrics = frame["metrics"]
                for metric in METRICS:
                    value = metrics[metric]
                    rows.append((target["name"], metric, i, math.nan if value is None else float(value)))
    except (KeyError, TypeError, ValueError) as err:
        raise MusicsepError(f"{path}: not a museval score file ({type(err).__name__}: {err})") from None
    return track, pd.DataFrame(rows, columns=["target", "metric", "frame", "score"])


def load_scores(paths: Iterable[str | os.PathLike], system_from: str | Callable[[Path], str] = "parent",
                track_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every frame score of the museval JSON files in ``paths`` (files, or
    folders searched recursively) as one tidy table with :data:`COLUMNS`.
    ``track_names`` renames tracks (e.g. slug -> MUSDB name, so that ours
    meet the published files, which are named after the tracks)."""
    parts, seen = [], {}
    for path, given in _json_files(paths):
        track, frame = read_scores(path)
        track = (track_names or {}).get(track, track)
        system = system_name(path, given, system_from)
        key = (system, track)
        if key in seen:
            raise MusicsepError(f"{path}: track '{track}' of system '{system}' "
                                f"is also scored in {seen[key]}")
        seen[key] = path
        frame.insert(0, "track", track)
        frame.insert(0, "system", system)
        parts.append(frame)
    if not parts:
        raise MusicsepError("no score files given")
    table = pd.concat(parts, ignore_index=True)[COLUMNS]
    table["score"] = table["score"].astype(float)
    return table


def track_names_from_table(path: str | os.PathLike) -> dict[str, str]:
    """slug -> name, from the track table (tracks.tsv)."""
    try:
        table = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    except (OSError, pd.errors.ParserError) as err:
        raise MusicsepError(f"{path}: not a readable track table ({err})") from None
    if not {"slug", "name"} <= set(table.columns):
        raise MusicsepError(f"{path}: a track table needs columns 'slug' and 'name'")
    return dict(zip(table["slug"], table["name"]))


def median_scores(table: pd.DataFrame) -> pd.Series:
    """Median over frames, then median over tracks, per (system, target,
    metric): museval's ``EvalStore.agg_frames_tracks_scores()`` per
    system (pandas medians, which skip NaN)."""
    per_track = table.groupby(["system", "track", "target", "metric"])["score"].median()
    return per_track.reset_index().groupby(["system", "target", "metric"])["score"].median()


def _irm1(systems: Sequence[str]) -> str | None:
    for name in systems:
        if name.lower() in ("irm1", "oracle_irm1"):
            return name
    return None


def _ordered_targets(targets: Iterable[str]) -> list[str]:
    targets = set(targets)
    return [t for t in TARGETS if t in targets] + sorted(targets - set(TARGETS))


def _fmt(value: float, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = format(value, spec)
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text   # 0.00, never -0.00


def summary_markdown(table: pd.DataFrame, published: Iterable[str] = ()) -> str:
    """Markdown: median SDR, SIR, SAR and ISR per system and target,
    SDR as a fraction of IRM1's when an IRM1 system is present, and the
    NaN frames (silent windows) that the medians ignore."""
    published = set(published)
    medians = median_scores(table)
    ours = [e for e in dict.fromkeys(table["system"]) if e not in published]
    theirs = [e for e in dict.fromkeys(table["system"]) if e in published]
    systems = sorted(ours) + sorted(theirs)
    targets = _ordered_targets(table["target"].unique())
    tracks = table.groupby("system")["track"].nunique()

    def label(name):
        return f"{name} (published)" if name in published else name

    lines = ["# Evaluation summary", "",
             "BSS Eval v4 (museval's metrics, 1 s windows and hops, as SiSEC 2018): median over frames, "
             "then median over tracks (museval's `EvalStore.agg_frames_tracks_scores()`), in dB.", ""]
    for metric in ("SDR", "SIR", "SAR", "ISR"):
        lines += [f"## {metric}", "", "| system | tracks | " + " | ".join(targets) + " |",
                  "|---|---:|" + "---:|" * len(targets)]
        for name in systems:
            cells = [_fmt(medians.get((name, t, metric), math.nan)) for t in targets]
            lines.append(f"| {label(name)} | {tracks[name]} | " + " | ".join(cells) + " |")
        lines.append("")
    track_sets = {name: frozenset(table.loc[table["system"] == name, "track"]) for name in systems}
    if len(set(track_sets.values())) > 1:
        common = frozenset.intersection(*track_sets.values())
        lines += [f"Note: the systems were scored on different tracks ({len(common)} in common); "
                  "their medians are over different sets and compare only roughly.", ""]
    ref = _irm1(sorted(ours) + sorted(theirs))
    if ref is not None:
        lines += [f"## SDR as a fraction of {ref}'s", "",
                  f"Each system's median SDR divided by that of the oracle `{ref}` (ideal ratio mask), "
                  "per target; 1.00 is oracle quality.", "",
                  "| system | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
        for name in systems:
            cells = []
            for t in targets:
                num, den = medians.get((name, t, "SDR"), math.nan), medians.get((ref, t, "SDR"), math.nan)
                cells.append(_fmt(num / den if den and not math.isnan(den) else math.nan))
            lines.append(f"| {label(name)} | " + " | ".join(cells) + " |")
        lines.append("")
    sdr = table[table["metric"] == "SDR"]
    nan = sdr["score"].isna()
    lines += ["## Silent frames", ""]
    if not nan.any():
        lines += ["No NaN frames: every window of every reference and estimate had sound.", ""]
    else:
        lines += [f"{int(nan.sum())} of {len(sdr)} frames (target × window) are NaN: a reference or an "
                  "estimate of the target's evaluation group is silent in that window (all zeros: "
                  "BSS Eval is undefined there), or, rarely, the estimate equals its reference "
                  "(SDR +inf, which museval stores as NaN). They are ignored as museval ignores them "
                  "(NaN-skipping median over frames; a track whose frames are all NaN for a target "
                  "drops out of that target's median over tracks).", "",
                  "| system | NaN frames | frames | tracks all NaN for some target |", "|---|---:|---:|---|"]
        per_track = sdr.groupby(["system", "track", "target"])["score"].apply(lambda s: s.isna().all())
        for name in systems:
            part = sdr[sdr["system"] == name]
            dead = per_track.loc[name]
            dead = sorted({f"{track} ({target})" for (track, target), flag in dead.items() if flag})
            lines.append(f"| {label(name)} | {int(part['score'].isna().sum())} | {len(part)} | "
                         f"{', '.join(dead) if dead else '–'} |")
        lines.append("")
    return "\n".join(lines)


def aggregate(paths: Sequence[str | os.PathLike], out_csv: str | os.PathLike,
              summary_md: str | os.PathLike | None = None,
              system_from: str | Callable[[Path], str] = "parent",
              published: Sequence[str | os.PathLike] = (),
              track_names: Mapping[str, str] | None = None,
              medians_csv: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read the museval JSON files in ``paths`` (and in ``published``
    folders, e.g. the SiSEC 2018 submissions, put beside ours as more
    systems), write every frame score to ``out_csv`` (:data:`COLUMNS`)
    and, if asked, the Markdown summary to ``summary_md`` and the medians it
    rounds to ``medians_csv`` (:data:`MEDIAN_COLUMNS`; floats in their
    shortest round-trip form, NaN where every frame was NaN). Returns the tidy
    table; :func:`median_scores` of it is what the field reports.
    ``track_names`` maps file stems to track names (see :func:`load_scores`;
    :func:`track_names_from_table` reads them from tracks.tsv)."""
    ours = load_scores(paths, system_from, track_names) if paths else None
    theirs = load_scores(published, system_from, track_names) if published else None
    if ours is None and theirs is None:
        raise MusicsepError("no score files given")
    if ours is not None and theirs is not None:
        clash = sorted(set(ours["system"]) & set(theirs["system"]))
        if clash:
            raise MusicsepError(f"system name(s) {', '.join(clash)} both ours and published")
    table = pd.concat([t for t in (ours, theirs) if t is not None], ignore_index=True)
    medians = median_scores(table)
    with atomic_paths(out_csv, medians_csv, summary_md) as (tmp_csv, tmp_medians, tmp_md):  # all or none
        table.to_csv(tmp_csv, index=False, na_rep="NaN")
        if tmp_medians is not None:
            rows = medians.rename("median").reset_index()[MEDIAN_COLUMNS]
            rows.to_csv(tmp_medians, index=False, na_rep="NaN", float_format=float.__repr__)
        if tmp_md is not None:
            tmp_md.write_text(summary_markdown(table, published=set(theirs["system"]) if theirs is not None
                                               else ()))
    for (name, target), row in medians.unstack("metric").iterrows():
        log.info("%s %s: SDR %s", name, target, _fmt(row.get("SDR", math.nan)))
    return table
