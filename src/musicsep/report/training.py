"""Training curves of one experiment from its metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from musicsep import MusicsepError
from musicsep.report.common import RC, pyplot, save_figure


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
