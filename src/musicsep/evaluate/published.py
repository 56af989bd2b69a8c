"""Published results beside ours: what ``musicsep aggregate --published`` reads.

An item of ``--published`` (and of the config's ``evaluation.published``) is

- a folder of museval JSON files (SiSEC 2018's ``submissions/``, one folder
  per method) or one such file: read as ours are, by
  :func:`musicsep.evaluate.aggregate.load_scores`;
- any other file: the SiSEC 2018 score table that museval's
  ``MethodStore().add_sisec18()`` downloads (``sisec18_mus.pandas``, a pandas
  pickle of one row per frame score with the columns method, track, target,
  metric, score and time), or a CSV of the same columns (``.csv``):
  :func:`read_sisec_table`;
- a built-in name (:data:`BUILTIN`, e.g. ``umx``) where no such file or
  folder exists: medians as their authors published them (no frames), see
  :class:`PublishedMedians`.

Every published system keeps its source (:attr:`Published.sources`), which
the summary prints beside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from musicsep import MusicsepError

SISEC_COLUMNS: tuple[str, ...] = ("method", "track", "target", "metric", "score")
"""The columns a SiSEC 2018 score table must have (``time``, when present, orders the frames)."""


@dataclass(frozen=True)
class PublishedMedians:
    """A published system known by its medians alone (median over frames, then
    over tracks, as museval aggregates them), on ``tracks`` tracks."""

    system: str
    source: str
    tracks: int
    medians: dict[tuple[str, str], float]      # (target, metric) -> dB


BUILTIN: dict[str, PublishedMedians] = {
    "umx": PublishedMedians(
        system="UMX",
        source=("Open-Unmix (UMX), MUSDB18 test set, SDR as published: F.-R. Stöter, S. Uhlich, A. Liutkus, "
                "Y. Mitsufuji, \"Open-Unmix - A Reference Implementation for Music Source Separation\", "
                "Journal of Open Source Software 4(41), 1667, 2019 (doi:10.21105/joss.01667), and the "
                "open-unmix README"),
        tracks=50,
        medians={("vocals", "SDR"): 6.32, ("drums", "SDR"): 5.73, ("bass", "SDR"): 5.23, ("other", "SDR"): 4.02},
    ),
}
"""Built-in published systems by their ``--published`` name."""


@dataclass
class Published:
    """Published results, sorted by kind: the JSON files and folders to read
    as ours are read (``json_paths``), the frame scores of SiSEC score tables
    with their source (``frames``: :data:`musicsep.evaluate.aggregate.COLUMNS`,
    text), and the built-in medians."""

    json_paths: list[Path] = field(default_factory=list)
    frames: list[tuple[pd.DataFrame, str]] = field(default_factory=list)
    builtin: list[PublishedMedians] = field(default_factory=list)

    def medians(self) -> pd.Series:
        """The built-in medians as a Series indexed by (system, target, metric)."""
        rows = {(b.system, target, metric): value
                for b in self.builtin for (target, metric), value in b.medians.items()}
        index = pd.MultiIndex.from_tuples(list(rows), names=["system", "target", "metric"])
        return pd.Series(list(rows.values()), index=index, dtype=float, name="score")

    def tracks(self) -> dict[str, int]:
        return {b.system: b.tracks for b in self.builtin}


def sort_published(items: Iterable[str | os.PathLike]) -> Published:
    """The ``--published`` items by kind (see the module's docstring); an item
    that is neither a file, a folder nor a built-in name is refused, naming it."""
    found = Published()
    for item in items:
        path = Path(item)
        if path.is_dir() or (path.is_file() and path.suffix.lower() == ".json"):
            found.json_paths.append(path)
        elif path.is_file():
            found.frames.append((read_sisec_table(path), f"SiSEC 2018 score table {path} (museval's format)"))
        elif str(item).lower() in BUILTIN:
            found.builtin.append(BUILTIN[str(item).lower()])
        else:
            raise MusicsepError(f"{item}: no such file or folder, nor a built-in published result "
                                f"(known: {', '.join(BUILTIN)})")
    return found


def read_sisec_table(path: str | os.PathLike) -> pd.DataFrame:
    """SiSEC 2018's score table (``sisec18_mus.pandas``, as museval's
    ``MethodStore.add_sisec18()`` reads it: ``pd.read_pickle``; a ``.csv``
    file with ``pd.read_csv``) as the tidy frame scores of
    :data:`musicsep.evaluate.aggregate.COLUMNS`: method -> system, and each
    (method, track, target, metric)'s rows numbered in the order of their
    ``time`` (of the file where there is none) as frames. A pickle runs code
    when it is read: read only the file museval downloads, or your own."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path)
        else:
            table = pd.read_pickle(path)
    except Exception as err:        # noqa: BLE001 - unpickling raises any kind of error on a foreign file
        raise MusicsepError(f"{path}: not a readable SiSEC 2018 score table, a pandas pickle or .csv "
                            f"({type(err).__name__}: {err})") from None
    if not isinstance(table, pd.DataFrame):
        raise MusicsepError(f"{path}: not a SiSEC 2018 score table (a pickled {type(table).__name__}, "
                            "not a DataFrame)")
    missing = [c for c in SISEC_COLUMNS if c not in table.columns]
    if missing:
        raise MusicsepError(f"{path}: not a SiSEC 2018 score table (no column(s) {', '.join(missing)}; "
                            f"it needs {', '.join(SISEC_COLUMNS)} and, to order the frames, time)")
    if table.empty:
        raise MusicsepError(f"{path}: the SiSEC 2018 score table is empty")
    out = pd.DataFrame({"system": table["method"].astype(str), "track": table["track"].astype(str),
                        "target": table["target"].astype(str), "metric": table["metric"].astype(str)})
    out["score"] = pd.to_numeric(table["score"], errors="coerce").astype(float)
    bad = out["score"].isna() & table["score"].notna()
    if bad.any():
        raise MusicsepError(f"{path}: score {table['score'][bad].iloc[0]!r} is not a number "
                            f"(row {int(bad.to_numpy().argmax())})")
    keys = ["system", "track", "target", "metric"]
    order = out.assign(time=pd.to_numeric(table["time"], errors="coerce")).sort_values(
        keys + ["time"], kind="stable").index if "time" in table.columns else out.index
    out = out.loc[order]
    out.insert(4, "frame", out.groupby(keys, sort=False).cumcount())
    return out.reset_index(drop=True)
