"""Training curves from metrics.jsonl: one experiment's (plot_training), every experiment's
learning curves on one page (plot_learning_curves)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from musicsep import MusicsepError
from musicsep.report.common import MAX_WIDTH, RC, pyplot, save_figure


def read_metrics(path: str | Path) -> pd.DataFrame:
    """An experiment's ``metrics.jsonl`` (one record per epoch) as a frame
    indexed by epoch; when an epoch was recorded twice (a job killed between
    the record and the checkpoint, then resumed) the last record counts."""
    records = []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MusicsepError(f"{path}: not a readable metrics file ({err})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MusicsepError(f"{path}, line {n}: not JSON ({err})") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise MusicsepError(f"{path}, line {n}: not a metrics record (no epoch)")
        records.append(record)
    if not records:
        raise MusicsepError(f"{path}: no epochs recorded")
    frame = pd.DataFrame(records).drop_duplicates("epoch", keep="last").set_index("epoch").sort_index()
    return frame


def plot_training(metrics: str | Path, out: str | Path, name: str | None = None) -> pd.DataFrame:
    """Train and validation loss per epoch (the parts of a combined loss
    thin), the best validation epoch marked, and the learning rate."""
    plt = pyplot()
    frame = read_metrics(metrics)
    name = name or Path(metrics).parent.name
    epochs = frame.index.to_numpy()
    parts = sorted(c for c in frame.columns if c.startswith("train_") and c != "train_loss")
    with plt.rc_context(RC):
        fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(6.4, 4.6), sharex=True, height_ratios=[3, 1])
        marker = "o" if len(epochs) <= 30 else None
        if "train_loss" in frame:
            ax.plot(epochs, frame["train_loss"], marker=marker, ms=3, color="#1f77b4", label="train")
        if "valid_loss" in frame:
            ax.plot(epochs, frame["valid_loss"], marker=marker, ms=3, color="#d62728", label="validation")
            valid = frame["valid_loss"].astype(float)
            if valid.notna().any():
                best = valid.idxmin()
                ax.axvline(best, color="0.5", linestyle=":", linewidth=1)
                ax.annotate(f"best {valid[best]:.4g} (epoch {best})", (best, valid[best]),
                            textcoords="offset points", xytext=(4, 8), fontsize=8, color="0.3")
        if len(parts) > 1:
            for part, style in zip(parts, ["--", "-.", ":"] * 3):
                ax.plot(epochs, frame[part], linestyle=style, linewidth=0.9, color="#1f77b4", alpha=0.8,
                        label=f"train ({part.removeprefix('train_')})")
        ax.set_ylabel("loss")
        ax.set_title(f"{name}: training curves")
        ax.grid(color="0.9", linewidth=0.6)
        ax.legend(fontsize=8, frameon=False)
        if "lr" in frame:
            ax_lr.step(epochs, frame["lr"], where="mid", color="0.3", linewidth=1)
            if (frame["lr"] > 0).all():
                ax_lr.set_yscale("log")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("epoch")
        ax_lr.grid(color="0.9", linewidth=0.6)
        if len(epochs) <= 20:
            ax_lr.set_xticks(epochs)
        fig.tight_layout()
    save_figure(fig, out)
    return frame


def wall_seconds(frame: pd.DataFrame) -> pd.Series | None:
    """The run's wall time at each epoch's record: ``elapsed_seconds`` (training
    and validation since the run began, across resumes) where every record has
    it, else the cumulative sum of the epochs' ``seconds``; None without either."""
    for column, cumulative in (("elapsed_seconds", False), ("seconds", True)):
        if column in frame and frame[column].notna().all():
            values = frame[column].astype(float)
            return values.cumsum() if cumulative else values
    return None


def _time_unit(seconds: float) -> tuple[float, str]:
    return (3600.0, "hours") if seconds > 7200 else (60.0, "minutes") if seconds > 120 else (1.0, "seconds")


def _sources_counted(frames: dict[str, pd.DataFrame]) -> str:
    """``4 sources``: how many sources the runs' ``sdr`` averages (their
    ``sdr/{target}`` columns but the accompaniment), where all runs agree."""
    counts = {sum(c.startswith("sdr/") and c != "sdr/accompaniment" for c in frame.columns)
              for frame in frames.values() if "sdr" in frame}
    counts.discard(0)
    return f"{next(iter(counts))} sources" if len(counts) == 1 else "the sources"


def plot_learning_curves(metrics: Sequence[str | Path], out: str | Path,
                         names: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every experiment on one page: validation loss and validation SDR (the
    ``sdr`` of the epochs that compute it: the mean over the model's sources,
    MUSDB18's four or any others, of the median over tracks) against the training step and against wall time
    (:func:`wall_seconds`). ``names`` default to the files' folders."""
    plt = pyplot()
    names = list(names) if names else [Path(path).parent.name for path in metrics]
    if len(names) != len(metrics):
        raise MusicsepError(f"--names: {len(names)} name(s) for {len(metrics)} metrics file(s)")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise MusicsepError(f"--names: {', '.join(repeated)} given twice (name each experiment once)")
    frames = {name: read_metrics(path) for name, path in zip(names, metrics)}
    longest = max((float(w.max()) for w in map(wall_seconds, frames.values()) if w is not None), default=0.0)
    scale, unit = _time_unit(longest)
    cmap = plt.get_cmap("tab10")
    with plt.rc_context(RC):
        fig, axes = plt.subplots(2, 2, figsize=(min(MAX_WIDTH, 9.6), 6.6), sharey="row", squeeze=False)
        for k, (name, frame) in enumerate(frames.items()):
            style = {"color": cmap(k % 10), "linestyle": ["-", "--", ":", "-."][k // 10 % 4], "linewidth": 1.2,
                     "label": name}
            steps = frame["step"].astype(float) if "step" in frame else pd.Series(frame.index, index=frame.index)
            wall = wall_seconds(frame)
            for row, (column, marker) in enumerate([("valid_loss", "o" if len(frame) <= 30 else None), ("sdr", "o")]):
                if column not in frame or frame[column].isna().all():
                    continue
                values = frame[column].astype(float)
                kept = values.notna()
                axes[row, 0].plot(steps[kept], values[kept], marker=marker, ms=3, **style)
                if wall is not None:
                    axes[row, 1].plot(wall[kept] / scale, values[kept], marker=marker, ms=3, **style)
        losses = [f["valid_loss"].astype(float) for f in frames.values() if "valid_loss" in f]
        for ax in axes[0]:
            if losses and all((loss.dropna() > 0).all() for loss in losses):
                ax.set_yscale("log")
        axes[0, 0].set_ylabel("validation loss")
        axes[1, 0].set_ylabel(f"validation SDR (dB, mean of {_sources_counted(frames)})")
        axes[1, 0].set_xlabel("training step")
        axes[1, 1].set_xlabel(f"wall time ({unit}): training and validation")
        axes[0, 0].set_title("against the training step")
        axes[0, 1].set_title("against wall time")
        for (row, col), ax in np.ndenumerate(axes):
            ax.grid(color="0.9", linewidth=0.6)
            if not ax.lines:
                ax.text(0.5, 0.5, "no validation SDR recorded\n(training.sdr_every: 0)" if row else
                        "no wall time recorded", ha="center", va="center", transform=ax.transAxes, color="0.4")
        fig.suptitle(f"Learning curves of {len(frames)} experiment{'s' if len(frames) != 1 else ''}")
        legend = {}
        for ax in axes.flat:
            legend |= {label: handle for handle, label in zip(*ax.get_legend_handles_labels()) if label not in legend}
        handles, labels = list(legend.values()), list(legend)
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5) or 1, frameon=False,
                   fontsize=8, bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, 0.04 * (1 + (len(labels) - 1) // 5), 1, 1))
    save_figure(fig, out)
    return frames
