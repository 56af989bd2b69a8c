"""The evaluation's report items: per-track medians, SDR box plots and a per-track heat map."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from musicsep import MusicsepError, system_label
from musicsep.io import atomic_path, check_writable
from musicsep.report.common import (
    MAX_WIDTH,
    RC,
    fixed,
    is_oracle,
    panel_grid,
    pyplot,
    save_figure,
    system_order,
    targets_of,
)
from musicsep.report.markdown import markdown_html

log = logging.getLogger(__name__)


def read_score_table(path: str | Path) -> pd.DataFrame:
    """The tidy frame scores written by ``musicsep aggregate`` (scores.csv)."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MusicsepError(f"{path}: not a readable score table ({err})") from None
    if "experiment" in table.columns and "system" not in table.columns:   # written before the column's rename
        table = table.rename(columns={"experiment": "system"})
    missing = {"system", "track", "target", "metric", "score"} - set(table.columns)
    if missing:
        raise MusicsepError(f"{path}: not a score table (no column(s) {', '.join(sorted(missing))})")
    if table.empty:
        raise MusicsepError(f"{path}: the score table is empty")
    table["score"] = pd.to_numeric(table["score"], errors="coerce")
    table["system"] = table["system"].astype(str)
    table["track"] = table["track"].astype(str)
    return table


def track_medians(table: pd.DataFrame) -> pd.DataFrame:
    """Median over frames (NaN frames skipped, as museval) per system,
    track, target and metric: one column per metric."""
    medians = table.groupby(["system", "track", "target", "metric"])["score"].median().unstack("metric")
    metrics = [m for m in ("SDR", "SIR", "ISR", "SAR") if m in medians.columns]
    medians = medians[metrics + sorted(set(medians.columns) - set(metrics))].reset_index()
    medians.columns.name = None
    return medians


def _system_ticks(ax, systems: list[str], spacing: float) -> None:
    """System names under a panel (the mixture as ``mixture``): at 45
    degrees, upright (90) where the boxes stand closer than 0.3 inches."""
    slanted = spacing >= 0.3
    ax.set_xticks(np.arange(len(systems)), [system_label(s) for s in systems], rotation=45 if slanted else 90,
                  ha="right" if slanted else "center", rotation_mode="anchor" if slanted else "default")


def plot_sdr_boxes(medians: pd.DataFrame, out: str | Path, metric: str = "SDR") -> None:
    """One panel per target: a box per system over the tracks' medians over
    frames, each track a point. Panels wrap onto rows so that the figure
    stays within :data:`~musicsep.report.common.MAX_WIDTH`."""
    plt = pyplot()
    systems = system_order(medians["system"])
    targets = targets_of(medians)
    cmap = plt.get_cmap("tab10")
    colours = {}
    for s in systems:
        colours[s] = "#9a9a9a" if is_oracle(s) else cmap(len(colours) % 10)
    label_w = 0.7
    panel_w = min(MAX_WIDTH - label_w, max(2.0, 0.3 * len(systems) + 0.6))
    rows, cols = panel_grid(len(targets), panel_w, label_w)
    label_h = 0.075 * max(len(system_label(s)) for s in systems) + 0.3
    with plt.rc_context(RC):
        fig, axes = plt.subplots(rows, cols, figsize=(panel_w * cols + label_w, rows * (2.4 + label_h) + 0.4),
                                 sharey=True, squeeze=False, layout="constrained")
        rng = np.random.default_rng(0)
        for k, ax in enumerate(axes.flat):
            if k >= len(targets):
                ax.set_visible(False)
                continue
            target = targets[k]
            part = medians[medians["target"] == target]
            data = [part.loc[part["system"] == s, metric].dropna().to_numpy() for s in systems]
            positions = np.arange(len(systems))
            kept = [i for i, d in enumerate(data) if len(d)]
            if kept:
                boxes = ax.boxplot([data[i] for i in kept], positions=positions[kept], widths=0.6,
                                   patch_artist=True, showfliers=False,
                                   medianprops={"color": "black", "linewidth": 1.2})
                for patch, i in zip(boxes["boxes"], kept):
                    patch.set_facecolor(colours[systems[i]])
                    patch.set_alpha(0.55)
            for i, d in enumerate(data):
                jitter = rng.uniform(-0.15, 0.15, len(d))
                ax.scatter(i + jitter, d, s=9, color="black", alpha=0.7, linewidths=0, zorder=3)
            ax.axhline(0, color="0.6", linewidth=0.6, zorder=0)
            _system_ticks(ax, systems, (panel_w - 0.4) / len(systems))
            ax.set_xlim(-0.7, len(systems) - 0.3)
            ax.set_title(target)
            ax.grid(axis="y", color="0.9", linewidth=0.6)
            ax.set_axisbelow(True)
            if k % cols == 0:
                ax.set_ylabel(f"{metric} (dB)")
        n = medians["track"].nunique()
        fig.suptitle(f"{metric} per track and system ({n} track{'s' if n != 1 else ''}): "
                     "each point a track's median over frames")
    save_figure(fig, out)


def plot_sdr_heatmap(medians: pd.DataFrame, out: str | Path, metric: str = "SDR",
                     annotate_max: int = 300) -> None:
    """One panel per target: tracks (rows) × systems (columns), coloured by
    the track's median over frames; values written in the cells when there
    are at most ``annotate_max`` cells per panel. Panels wrap onto rows so
    that the figure stays within :data:`~musicsep.report.common.MAX_WIDTH`
    (track names longer than 32 characters are shortened)."""
    plt = pyplot()
    systems = system_order(medians["system"])
    targets = targets_of(medians)
    tracks = sorted(medians["track"].unique())
    values = {t: medians[medians["target"] == t].pivot_table(index="track", columns="system", values=metric,
                                                              aggfunc="first", dropna=False)
              .reindex(index=tracks, columns=systems) for t in targets}
    finite = np.concatenate([v.to_numpy(dtype=float).ravel() for v in values.values()])
    finite = finite[np.isfinite(finite)]
    vmin, vmax = (np.percentile(finite, [2, 98]) if len(finite) else (0.0, 1.0))
    if vmax <= vmin:
        vmin, vmax = vmin - 1, vmax + 1
    annotate = len(tracks) * len(systems) <= annotate_max
    labels = [t if len(t) <= 32 else t[:31] + "…" for t in tracks]
    label_w = 0.065 * max(len(t) for t in labels) + 0.3
    cbar_w = 0.9
    panel_w = min(MAX_WIDTH - label_w - cbar_w, max(1.6, 0.36 * len(systems) + 0.2))
    rows, cols = panel_grid(len(targets), panel_w, label_w + cbar_w)
    label_h = 0.075 * max(len(system_label(s)) for s in systems) + 0.3
    panel_h = 0.22 * len(tracks) + 0.5 + label_h
    with plt.rc_context(RC):
        fig, axes = plt.subplots(rows, cols, figsize=(panel_w * cols + label_w + cbar_w, rows * panel_h + 0.5),
                                 sharey=True, squeeze=False, layout="constrained")
        cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
        image = None
        for k, ax in enumerate(axes.flat):
            if k >= len(targets):
                ax.set_visible(False)
                continue
            grid = values[targets[k]].to_numpy(dtype=float)
            image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                              interpolation="nearest")
            _system_ticks(ax, systems, (panel_w - 0.2) / len(systems))
            ax.set_yticks(np.arange(len(tracks)), labels)
            ax.set_title(targets[k])
            ax.tick_params(length=0)
            if annotate:
                mid = (vmin + vmax) / 2
                for (r, c), v in np.ndenumerate(grid):
                    ax.text(c, r, "–" if not np.isfinite(v) else fixed(v, 1), ha="center", va="center",
                            fontsize=8, color="black" if np.isfinite(v) and v > mid else "white")
        cbar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.04, pad=0.02, aspect=30)
        cbar.set_label(f"{metric} (dB), median over frames")
        fig.suptitle(f"{metric} per track: median over 1 s frames")
    save_figure(fig, out)


def plot_scores(scores: str | Path, *, summary: str | Path | None = None, table: str | Path | None = None,
                medians: str | Path | None = None, box: str | Path | None = None,
                heatmap: str | Path | None = None, metric: str = "SDR") -> pd.DataFrame:
    """The evaluation's report items from scores.csv (and summary.md): each
    output is written when its path is given. Returns the per-track medians."""
    check_writable(table, medians, box, heatmap)       # before any is written
    frame = read_score_table(scores)
    per_track = track_medians(frame)
    if metric not in per_track.columns:
        raise MusicsepError(f"{scores}: no {metric} scores")
    if table is not None:
        if summary is None:
            raise MusicsepError("the summary table needs the summary (--summary summary.md)")
        try:
            text = Path(summary).read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise MusicsepError(f"{summary}: not a readable summary ({err})") from None
        with atomic_path(table) as tmp:
            Path(tmp).write_text(markdown_html(text))
        log.info("-> %s", table)
    if medians is not None:
        numbers = per_track.select_dtypes("number").columns
        written = per_track.assign(**{c: per_track[c].round(4) + 0.0 for c in numbers})   # + 0.0: never -0.0000
        with atomic_path(medians) as tmp:
            written.to_csv(tmp, index=False, float_format="%.4f", na_rep="NaN")
        log.info("-> %s", medians)
    if box is not None:
        plot_sdr_boxes(per_track, box, metric)
    if heatmap is not None:
        plot_sdr_heatmap(per_track, heatmap, metric)
    return per_track
