"""Many tracks, many systems: museval JSON files gathered into one tidy table and a Markdown summary.

:func:`aggregate` reads museval JSON files (ours, or the published SiSEC 2018
submissions, ``submissions/<method>/test/<track>.json``) into one tidy table
(:data:`COLUMNS`: system, track, target, metric, frame, score), writes it as
CSV and reports the median over frames then over tracks per system, target
and metric, exactly as museval's ``EvalStore.agg_frames_tracks_scores()``
does: as a Markdown summary (2 decimals) and, at full precision, as a CSV of
:data:`MEDIAN_COLUMNS`. The summary also gives each system's share of the
oracle's improvement (:func:`improvement_shares`: 0 the mixture, 1 the ideal
ratio mask) and puts published results (:mod:`musicsep.evaluate.published`)
beside ours, marked as published with their sources.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from musicsep import (
    MIXTURE_SYSTEM,
    MusicsepError,
    oracle_system,
    system_label,
)
from musicsep.evaluate import ACCOMPANIMENT_TARGET, ordered_targets
from musicsep.evaluate.groups import seed_lines
from musicsep.evaluate.published import sort_published
from musicsep.evaluate.track import METRICS
from musicsep.io import atomic_paths
from musicsep.report.common import is_oracle, system_order

log = logging.getLogger(__name__)

COLUMNS: list[str] = ["system", "track", "target", "metric", "frame", "score"]
MEDIAN_COLUMNS: list[str] = ["system", "target", "metric", "median", "source"]
SHARE = "share"
"""The metric of medians.csv's rows of the share of the oracle's improvement."""
FOUR_SOURCES = "sources"
"""The target of medians.csv's rows of the share's median over all sources
(MUSDB18's four, or the dataset's: every target but the accompaniment)."""


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


MIXTURE_NAMES = (MIXTURE_SYSTEM, "mix")
IRM1_NAMES = (oracle_system("irm1"), "irm1")
"""The systems (any case) that anchor the share of the oracle's improvement:
our oracles ``mix`` and ``irm1``, SiSEC 2018's ``MIX`` and ``IRM1``."""


def _reference(systems: Iterable[str], names: Sequence[str]) -> str | None:
    return next((name for name in systems if name.lower() in names), None)


def source_targets(targets: Iterable[str]) -> list[str]:
    """The sources among ``targets`` (all but the accompaniment and the
    :data:`FOUR_SOURCES` row), in the tables' order: what the median over
    all sources is taken over."""
    return [t for t in ordered_targets(targets) if t not in (ACCOMPANIMENT_TARGET, FOUR_SOURCES)]


def _listed(names: Sequence[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def _fmt(value: float, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = format(value, spec)
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text   # 0.00, never -0.00


def improvement_shares(medians: pd.Series, groups: Iterable[Sequence[str]]) -> pd.Series:
    """The share of the oracle's improvement, ``(SDR - SDR_mixture) /
    (SDR_IRM1 - SDR_mixture)`` of the median SDRs, per (system, target), and
    its median over all sources (target :data:`FOUR_SOURCES`: every target
    but the accompaniment, :func:`source_targets`, MUSDB18's four for MUSDB18;
    NaN unless all have one). Each group of systems (ours; the published ones) is
    measured against its own mixture and IRM1 (:data:`MIXTURE_NAMES`,
    :data:`IRM1_NAMES`) and left out without them; NaN where the IRM1 is no
    better than the mixture."""
    sdr = medians.xs("SDR", level="metric") if len(medians) else pd.Series(dtype=float)
    targets = ordered_targets(sdr.index.get_level_values("target"))
    sources = source_targets(targets)
    rows = {}
    for group in groups:
        mixture, irm1 = _reference(group, MIXTURE_NAMES), _reference(group, IRM1_NAMES)
        if mixture is None or irm1 is None:
            continue
        for name in group:
            shares = {}
            for target in targets:
                value, low, high = (sdr.get((s, target), math.nan) for s in (name, mixture, irm1))
                shares[target] = (value - low) / (high - low) if high - low > 0 else math.nan
            every = [shares.get(s, math.nan) for s in sources]
            shares[FOUR_SOURCES] = math.nan if not every or any(map(math.isnan, every)) \
                else statistics.median(every)
            rows.update({(name, target): share for target, share in shares.items()})
    index = pd.MultiIndex.from_tuples(list(rows), names=["system", "target"])
    return pd.Series(list(rows.values()), index=index, dtype=float, name=SHARE)


def summary_markdown(table: pd.DataFrame, published: Mapping[str, str] | Iterable[str] = (),
                     published_medians: pd.Series | None = None,
                     published_tracks: Mapping[str, int] | None = None,
                     seeds: Mapping[str, Sequence[str]] | None = None) -> str:
    """Markdown: median SDR, SIR, SAR and ISR per system and target, each
    system's share of the oracle's improvement (:func:`improvement_shares`),
    a table per model against the mixture and IRM1, the published systems'
    sources, and the NaN frames (silent windows) that the medians ignore.
    ``published``: the published systems of ``table`` (by name, or name ->
    source); ``published_medians``: published systems known by their medians
    alone, (system, target, metric) -> dB, on ``published_tracks`` tracks;
    ``seeds``: groups of our systems run over several training seeds
    (:func:`musicsep.evaluate.groups.seed_lines`)."""
    sources = dict(published) if isinstance(published, Mapping) else dict.fromkeys(published, "")
    medians = median_scores(table)
    tracks = table.groupby("system")["track"].nunique().to_dict()
    if published_medians is not None and len(published_medians):
        medians = pd.concat([medians, published_medians])
        tracks |= dict(published_tracks or {})
        sources |= {name: sources.get(name, "") for name in published_medians.index.get_level_values("system")}
    named, scored = dict.fromkeys(medians.index.get_level_values("system")), dict.fromkeys(table["system"])
    ours, theirs = system_order(n for n in named if n not in sources), system_order(n for n in named if n in sources)
    systems = ours + theirs
    targets = ordered_targets(medians.index.get_level_values("target"))

    def label(name):
        return f"{name} (published)" if name in sources else system_label(name)

    lines = ["# Evaluation summary", "",
             "BSS Eval v4 (museval's metrics, 1 s windows and hops, as SiSEC 2018): median over frames, "
             "then median over tracks (museval's `EvalStore.agg_frames_tracks_scores()`), in dB."
             + (" `mixture` is the unprocessed mixture as every target's estimate (oracle `mix`, "
                f"`{MIXTURE_SYSTEM}`; SiSEC 2018's MIX)." if MIXTURE_SYSTEM in ours else "")
             + (" Rows marked (published) are published results, not ours: their sources are under "
                "\"Published results\"." if theirs else ""), ""]
    for metric in ("SDR", "SIR", "SAR", "ISR"):
        lines += [f"## {metric}", "", "| system | tracks | " + " | ".join(targets) + " |",
                  "|---|---:|" + "---:|" * len(targets)]
        for name in systems:
            cells = [medians.get((name, t, metric), math.nan) for t in targets]
            if name not in scored and all(map(math.isnan, cells)):
                continue                       # a published system known by its medians, not of this metric
            lines.append(f"| {label(name)} | {tracks.get(name, '–')} | " + " | ".join(map(_fmt, cells)) + " |")
        lines.append("")
    track_sets = {name: frozenset(table.loc[table["system"] == name, "track"]) for name in scored}
    if len(set(track_sets.values())) > 1:
        common = frozenset.intersection(*track_sets.values())
        lines += [(f"Note: the systems were scored on different tracks ({len(common)} in common); "
                   "their medians are over different sets and compare only roughly."), ""]
    lines += _share_lines(medians, ours, theirs, label)
    lines += seed_lines(medians, improvement_shares(medians, [ours]), seeds or {}, targets, FOUR_SOURCES, label,
                        sources=source_targets(targets))
    if theirs:
        lines += ["## Published results", "",
                  ("Not ours: scores as their authors or SiSEC 2018 published them, never mixed into our "
                   "medians."), ""]
        lines += [f"- **{label(name)}**: {sources[name] or 'published'}" for name in theirs] + [""]
    lines += _silent_lines(table, [s for s in systems if s in track_sets], label)
    return "\n".join(lines)


def _share_lines(medians: pd.Series, ours: list[str], theirs: list[str], label) -> list[str]:
    """The summary's share of the oracle's improvement, and a table per model of ours."""
    shares = improvement_shares(medians, [ours, theirs])
    mixture, irm1 = _reference(ours, MIXTURE_NAMES), _reference(ours, IRM1_NAMES)
    lines = ["## Share of the oracle's improvement", ""]
    if not len(shares):
        return lines + [(f"Needs the mixture (oracle `mix`, `{MIXTURE_SYSTEM}`) and IRM1 (oracle `irm1`) among "
                         "the systems (`evaluation.oracles`)."), ""]
    targets = [t for t in ordered_targets(shares.index.get_level_values("target")) if t != FOUR_SOURCES]
    sources = source_targets(targets)
    every = f"{len(sources)} sources (median)"
    lines += ["| system | " + " | ".join(targets) + f" | {every} |", "|---|" + "---:|" * (len(targets) + 1)]
    for name in ours + theirs:
        cells = [shares.get((name, t), math.nan) for t in targets + [FOUR_SOURCES]]
        lines.append(f"| {label(name)} | " + " | ".join(map(_fmt, cells)) + " |")
    lines += ["", ("Share of the oracle's improvement: (SDR − SDR of the mixture) / (SDR of IRM1 − SDR of the "
                   "mixture), of the median SDRs above, per target (0: no better than the unprocessed mixture; 1: "
                   f"as good as the ideal ratio mask), and its median over {_listed(sources)}; "
                   "published systems are measured against the published MIX and IRM1 (SiSEC 2018's), and left "
                   "blank (–) without them."), ""]
    for model in [name for name in ours if not is_oracle(name)]:
        lines += [f"### {model}", "", f"| target | {model} SDR | mixture SDR | IRM1 SDR | share |",
                  "|---|---:|---:|---:|---:|"]
        for target in targets + [FOUR_SOURCES]:
            sdr = [_source_median(medians, name, target, sources) for name in (model, mixture, irm1)]
            lines.append(f"| {every if target == FOUR_SOURCES else target} | "
                         + " | ".join(map(_fmt, sdr + [shares.get((model, target), math.nan)])) + " |")
        lines.append("")
    return lines


def _source_median(medians: pd.Series, name: str | None, target: str, sources: Sequence[str]) -> float:
    """A system's median SDR of ``target``; of :data:`FOUR_SOURCES`: the median of the ``sources``'."""
    if name is None:
        return math.nan
    if target != FOUR_SOURCES:
        return medians.get((name, target, "SDR"), math.nan)
    every = [medians.get((name, s, "SDR"), math.nan) for s in sources]
    return math.nan if not every or any(map(math.isnan, every)) else statistics.median(every)


def _silent_lines(table: pd.DataFrame, systems: list[str], label) -> list[str]:
    sdr = table[table["metric"] == "SDR"]
    nan = sdr["score"].isna()
    lines = ["## Silent frames", ""]
    if not nan.any():
        return lines + ["No NaN frames: every window of every reference and estimate had sound.", ""]
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
    return lines + [""]


def aggregate(paths: Sequence[str | os.PathLike], out_csv: str | os.PathLike,
              summary_md: str | os.PathLike | None = None,
              system_from: str | Callable[[Path], str] = "parent",
              published: Sequence[str | os.PathLike] = (),
              track_names: Mapping[str, str] | None = None,
              medians_csv: str | os.PathLike | None = None,
              seeds: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Read the museval JSON files in ``paths`` and the published results in
    ``published`` (:func:`musicsep.evaluate.published.sort_published`: JSON
    folders such as SiSEC 2018's submissions, SiSEC 2018's score table,
    built-in names such as ``umx``), put beside ours as more systems, marked
    as published; write every frame score to ``out_csv`` (:data:`COLUMNS`)
    and, if asked, the Markdown summary to ``summary_md`` and the medians it
    rounds to ``medians_csv`` (:data:`MEDIAN_COLUMNS`: floats in their
    shortest round-trip form, NaN where every frame was NaN; the share of the
    oracle's improvement as metric :data:`SHARE`, its median over all
    sources as target :data:`FOUR_SOURCES`; ``source`` empty for ours, the
    reference of a published system). Returns the tidy table of frames;
    :func:`median_scores` of it is what the field reports. ``track_names``
    maps file stems to track names (see :func:`load_scores`;
    :func:`track_names_from_table` reads them from tracks.tsv); ``seeds``:
    the summary's groups of runs over seeds (name -> systems)."""
    theirs = sort_published(published)
    ours = load_scores(paths, system_from, track_names) if paths else None
    parts = [(load_scores([path], system_from, track_names), f"museval JSON files in {path}")
             for path in theirs.json_paths] + theirs.frames
    given = {}                  # published system -> its source
    for systems, source in [(dict.fromkeys(part["system"]), source) for part, source in parts] + \
            [([builtin.system], builtin.source) for builtin in theirs.builtin]:
        for system in systems:
            if system in given:
                raise MusicsepError(f"published system {system} given twice ({given[system]}; {source})")
            given[system] = source
    parts = [part for part, _ in parts]
    if ours is None and not parts:
        raise MusicsepError("no score files given")
    if ours is not None:
        clash = sorted(set(ours["system"]) & set(given))
        if clash:
            raise MusicsepError(f"system name(s) {', '.join(clash)} both ours and published")
    table = pd.concat([t for t in [ours, *parts] if t is not None], ignore_index=True)[COLUMNS]
    builtin = theirs.medians()
    medians = pd.concat([median_scores(table), builtin]) if len(builtin) else median_scores(table)
    with atomic_paths(out_csv, medians_csv, summary_md) as (tmp_csv, tmp_medians, tmp_md):  # all or none
        table.to_csv(tmp_csv, index=False, na_rep="NaN")
        if tmp_medians is not None:
            ordered = system_order(dict.fromkeys(medians.index.get_level_values("system")))
            shares = improvement_shares(medians, [[s for s in ordered if s not in given],
                                                  [s for s in ordered if s in given]])
            rows = pd.concat([medians.rename("median").reset_index(),
                              shares.rename("median").reset_index().assign(metric=SHARE)], ignore_index=True)
            rows["source"] = [given.get(system, "") for system in rows["system"]]
            rows[MEDIAN_COLUMNS].to_csv(tmp_medians, index=False, na_rep="NaN", float_format=float.__repr__)
        if tmp_md is not None:
            tmp_md.write_text(summary_markdown(table, given, builtin, theirs.tracks(), seeds))
    for (name, target), row in medians.unstack("metric").iterrows():
        log.info("%s%s %s: SDR %s", name, " (published)" if name in given else "", target,
                 _fmt(row.get("SDR", math.nan)))
    return table
