"""Figures, tables and audio pages of the workflow's HTML report.

``snakemake --report report.html`` (Snakemake's own HTML report) shows the
files that rules/report.smk flags with ``report(...)``; this module makes them
from the workflow's results, one function per kind, each called by
``python -m musicsep plots KIND``:

- :func:`plot_scores`: the summary tables (``summary.md`` rendered as an HTML
  page), per-track median scores as a small CSV, SDR box plots per target and
  system, and a per-track SDR heat map (track × system, one panel per target);
- :func:`plot_training`: train and validation loss (and the loss parts and
  learning rate) per epoch, from an experiment's ``metrics.jsonl``;
- :func:`plot_masks`: for one excerpt of one track, the mixture's log
  spectrogram, a model's masks per source and the ideal ratio masks of the
  true sources;
- :func:`plot_embeddings`: for the embedding models, a 2-D PCA of the
  embeddings of that excerpt, points coloured by their true dominant source
  and by the model's assignment;
- :func:`audio_examples`: short WAV excerpts of one system's estimates (or of
  the mixture and true sources) and an HTML page of audio players with the
  audio embedded: the report shows HTML pages inline, but offers other
  files, WAV included, only as downloads.

Snakemake's report shows an HTML result in a frame from a base64 data URL;
Chrome has refused such URLs over 2 MB, so each audio page holds one system's
clips, as MP3, and stays under :data:`PAGE_LIMIT` for a 10 s excerpt.

The excerpt (:func:`read_excerpt`) is the same for the figures and the audio:
by default the window of the track where the four sources are loudest
together (the largest mean over sources of their log energy), found from 1 s
blocks of the shard.

Figures use matplotlib's Agg backend: SVG for plots, PNG for spectrograms.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from musicsep import ORACLES, SOURCES, STREAMS, MusicsepError
from musicsep.io import atomic_path

log = logging.getLogger(__name__)

TARGETS: tuple[str, ...] = ("vocals", "drums", "bass", "other", "accompaniment")
"""Targets in the order of the evaluation tables."""

SOURCE_COLOURS = {"drums": "#1f77b4", "bass": "#2ca02c", "other": "#ff7f0e", "vocals": "#d62728"}
REFERENCE = "reference"
"""Name of the mixture and true sources among the systems' audio pages."""

_RC = {"svg.fonttype": "none", "svg.hashsalt": "musicsep", "font.size": 9, "axes.titlesize": 10}


# --------------------------------------------------------------------------- helpers


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path, dpi: int = 110) -> None:
    """Save a figure atomically (format from the suffix), without dates (so
    that reruns give the same file), and close it."""
    plt = _pyplot()
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    metadata = {"Date": None} if fmt in ("svg", "pdf") else {"Software": None}
    try:
        with atomic_path(out) as tmp:
            with plt.rc_context(_RC):
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
    finally:
        plt.close(fig)
    log.info("-> %s", out)


def is_oracle(system: str) -> bool:
    return system.lower().startswith("oracle") or system.lower() in ORACLES


def system_order(systems) -> list[str]:
    """Models first (sorted), then oracles (sorted)."""
    systems = list(dict.fromkeys(systems))
    return sorted(s for s in systems if not is_oracle(s)) + sorted(s for s in systems if is_oracle(s))


def _targets_of(table: pd.DataFrame) -> list[str]:
    present = set(table["target"])
    return [t for t in TARGETS if t in present] + sorted(present - set(TARGETS))


# --------------------------------------------------------------------------- evaluation


def read_score_table(path: str | Path) -> pd.DataFrame:
    """The tidy frame scores written by ``musicsep aggregate`` (scores.csv)."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MusicsepError(f"{path}: not a readable score table ({err})") from None
    missing = {"experiment", "track", "target", "metric", "score"} - set(table.columns)
    if missing:
        raise MusicsepError(f"{path}: not a score table (no column(s) {', '.join(sorted(missing))})")
    if table.empty:
        raise MusicsepError(f"{path}: the score table is empty")
    table["score"] = pd.to_numeric(table["score"], errors="coerce")
    table["experiment"] = table["experiment"].astype(str)
    table["track"] = table["track"].astype(str)
    return table


def track_medians(table: pd.DataFrame) -> pd.DataFrame:
    """Median over frames (NaN frames skipped, as museval) per experiment,
    track, target and metric: one column per metric."""
    medians = table.groupby(["experiment", "track", "target", "metric"])["score"].median().unstack("metric")
    metrics = [m for m in ("SDR", "SIR", "ISR", "SAR") if m in medians.columns]
    medians = medians[metrics + sorted(set(medians.columns) - set(metrics))].reset_index()
    medians.columns.name = None
    return medians


def plot_sdr_boxes(medians: pd.DataFrame, out: str | Path, metric: str = "SDR") -> None:
    """One panel per target: a box per system over the tracks' medians over
    frames, each track a point."""
    plt = _pyplot()
    systems = system_order(medians["experiment"])
    targets = _targets_of(medians)
    cmap = plt.get_cmap("tab10")
    colours = {}
    for s in systems:
        colours[s] = "#9a9a9a" if is_oracle(s) else cmap(len(colours) % 10)
    width = max(2.2, 0.38 * len(systems) + 0.8)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(targets), figsize=(width * len(targets), 3.6), sharey=True, squeeze=False)
        rng = np.random.default_rng(0)
        for ax, target in zip(axes[0], targets):
            part = medians[medians["target"] == target]
            data = [part.loc[part["experiment"] == s, metric].dropna().to_numpy() for s in systems]
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
            ax.set_xticks(positions, systems, rotation=45, ha="right")
            ax.set_xlim(-0.7, len(systems) - 0.3)
            ax.set_title(target)
            ax.grid(axis="y", color="0.9", linewidth=0.6)
            ax.set_axisbelow(True)
        axes[0][0].set_ylabel(f"{metric} (dB): median over frames, per track")
        fig.suptitle(f"{metric} per track and system ({medians['track'].nunique()} tracks)", y=1.02)
        fig.tight_layout()
    _save(fig, out)


def plot_sdr_heatmap(medians: pd.DataFrame, out: str | Path, metric: str = "SDR",
                     annotate_max: int = 300) -> None:
    """One panel per target: tracks (rows) × systems (columns), coloured by
    the track's median over frames; values written in the cells when there
    are at most ``annotate_max`` cells per panel."""
    plt = _pyplot()
    systems = system_order(medians["experiment"])
    targets = _targets_of(medians)
    tracks = sorted(medians["track"].unique())
    values = {t: medians[medians["target"] == t].pivot_table(index="track", columns="experiment", values=metric,
                                                              aggfunc="first", dropna=False)
              .reindex(index=tracks, columns=systems) for t in targets}
    finite = np.concatenate([v.to_numpy(dtype=float).ravel() for v in values.values()])
    finite = finite[np.isfinite(finite)]
    vmin, vmax = (np.percentile(finite, [2, 98]) if len(finite) else (0.0, 1.0))
    if vmax <= vmin:
        vmin, vmax = vmin - 1, vmax + 1
    annotate = len(tracks) * len(systems) <= annotate_max
    panel_w = max(1.8, 0.42 * len(systems) + 0.3)
    label_w = min(3.5, 0.07 * max(len(t) for t in tracks) + 0.3)
    height = max(2.6, 0.24 * len(tracks) + 1.6)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(targets), figsize=(panel_w * len(targets) + label_w + 0.8, height),
                                 sharey=True, squeeze=False, layout="constrained")
        cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
        image = None
        for ax, target in zip(axes[0], targets):
            grid = values[target].to_numpy(dtype=float)
            image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                              interpolation="nearest")
            ax.set_xticks(np.arange(len(systems)), systems, rotation=45, ha="right")
            ax.set_yticks(np.arange(len(tracks)), tracks)
            ax.set_title(target)
            ax.tick_params(length=0)
            if annotate:
                mid = (vmin + vmax) / 2
                for (r, c), v in np.ndenumerate(grid):
                    ax.text(c, r, "–" if not np.isfinite(v) else f"{round(v, 1) or 0.0:.1f}", ha="center", va="center",
                            fontsize=7, color="black" if np.isfinite(v) and v > mid else "white")
        cbar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.025, pad=0.02)
        cbar.set_label(f"{metric} (dB), median over frames")
        fig.suptitle(f"{metric} per track: median over 1 s frames")
    _save(fig, out)


def markdown_html(text: str, title: str = "Evaluation summary") -> str:
    """A standalone HTML page of the Markdown that ``musicsep aggregate`` and
    ``musicsep summary`` write: headings, paragraphs, bullet lists, pipe
    tables (with their alignment) and inline code."""

    def inline(s: str) -> str:
        s = html.escape(s.strip(), quote=False)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    body, paragraph, items = [], [], []

    def flush():
        if paragraph:
            body.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            flush()
            level = len(heading.group(1))
            body.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif line.lstrip().startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            i -= 1
            header, rows, align = cells(block[0]), block[1:], []
            if rows and re.fullmatch(r"[\s|:\-]+", rows[0]):
                align = ["right" if c.endswith(":") and not c.startswith(":") else
                         "center" if c.startswith(":") and c.endswith(":") else "left" for c in cells(rows[0])]
                rows = rows[1:]

            def style(k):
                return f' style="text-align:{align[k]}"' if k < len(align) and align[k] != "left" else ""

            out = ["<table>", "<thead><tr>" + "".join(f"<th{style(k)}>{inline(c)}</th>"
                                                      for k, c in enumerate(header)) + "</tr></thead>", "<tbody>"]
            for row in rows:
                out.append("<tr>" + "".join(f"<td{style(k)}>{inline(c)}</td>" for k, c in enumerate(cells(row)))
                           + "</tr>")
            out.append("</tbody></table>")
            body.append("\n".join(out))
        elif re.match(r"^\s*[-*]\s+", line):
            if paragraph:
                flush()
            items.append(re.sub(r"^\s*[-*]\s+", "", line))
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
        i += 1
    flush()
    style = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;margin:1.2em;"
             "color:#222}table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #ccc;"
             "padding:3px 9px}th{background:#f0f0f0}tbody tr:nth-child(even){background:#fafafa}"
             "code{background:#f3f3f3;padding:0 3px}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.4em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def plot_scores(scores: str | Path, *, summary: str | Path | None = None, table: str | Path | None = None,
                medians: str | Path | None = None, box: str | Path | None = None,
                heatmap: str | Path | None = None, metric: str = "SDR") -> pd.DataFrame:
    """The evaluation's report items from scores.csv (and summary.md): each
    output is written when its path is given. Returns the per-track medians."""
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
        with atomic_path(medians) as tmp:
            per_track.to_csv(tmp, index=False, float_format="%.4f", na_rep="NaN")
        log.info("-> %s", medians)
    if box is not None:
        plot_sdr_boxes(per_track, box, metric)
    if heatmap is not None:
        plot_sdr_heatmap(per_track, heatmap, metric)
    return per_track


# --------------------------------------------------------------------------- training


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
    plt = _pyplot()
    frame = read_metrics(metrics)
    name = name or Path(metrics).parent.name
    epochs = frame.index.to_numpy()
    parts = sorted(c for c in frame.columns if c.startswith("train_") and c != "train_loss")
    with plt.rc_context(_RC):
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
    _save(fig, out)
    return frame


# --------------------------------------------------------------------------- the excerpt


@dataclass
class Excerpt:
    """Samples ``[start, start + length)`` of a shard's five streams
    ``(streams, channels, samples)``, float32."""

    audio: np.ndarray
    rate: int
    start: int
    name: str
    slug: str

    @property
    def mixture(self) -> np.ndarray:
        return self.audio[STREAMS.index("mixture")]

    @property
    def sources(self) -> np.ndarray:
        """``(4, channels, samples)`` in :data:`SOURCES` order."""
        return self.audio[[STREAMS.index(s) for s in SOURCES]]

    @property
    def length(self) -> int:
        return self.audio.shape[-1]

    def describe(self) -> str:
        return (f"{self.name}, {self.start / self.rate:.1f}–{(self.start + self.length) / self.rate:.1f} s")


def choose_start(audio, rate: int, length: int, block_seconds: float = 1.0, read_blocks: int = 16) -> int:
    """First sample of the ``length``-sample window where the four sources
    are loudest together: the largest mean over sources of the log energy of
    the window, on a grid of ``block_seconds`` blocks. ``audio`` is the
    shard's dataset ``(streams, channels, samples)`` (read in pieces)."""
    n = audio.shape[-1]
    if length >= n:
        return 0
    hop = max(1, int(rate * block_seconds))
    blocks = n // hop
    width = max(1, length // hop)
    if width >= blocks:
        return 0
    rows = [STREAMS.index(s) for s in SOURCES]
    energy = np.zeros((len(rows), blocks))
    for b0 in range(0, blocks, read_blocks):
        b1 = min(blocks, b0 + read_blocks)
        part = np.stack([np.asarray(audio[r, :, b0 * hop:b1 * hop], dtype=np.float64) for r in rows])
        energy[:, b0:b1] = np.square(part).reshape(len(rows), part.shape[1], b1 - b0, hop).mean(axis=(1, 3))
    csum = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(energy, axis=1)], axis=1)
    window = (csum[:, width:] - csum[:, :-width]) / width
    best = int(np.argmax(np.log10(window + 1e-10).mean(axis=0)))
    return min(best * hop, n - length)


def read_excerpt(shard: str | Path, seconds: float = 10.0, start: float | None = None) -> Excerpt:
    """An excerpt of ``seconds`` (the whole track when shorter) of a shard,
    from ``start`` seconds or, by default, from :func:`choose_start`."""
    import h5py

    if not seconds > 0:
        raise MusicsepError(f"the excerpt must be longer than 0 s (got {seconds})")
    try:
        h5 = h5py.File(shard, "r")
    except OSError as err:
        raise MusicsepError(f"{shard}: not a readable shard ({err})") from None
    with h5:
        audio = h5.get("audio")
        if audio is None or audio.ndim != 3 or audio.shape[0] != len(STREAMS) or "sample_rate" not in h5.attrs:
            raise MusicsepError(f"{shard}: not a musicsep shard (no audio of {len(STREAMS)} streams and sample rate)")
        rate = int(h5.attrs["sample_rate"])
        n = audio.shape[-1]
        if n == 0:
            raise MusicsepError(f"{shard}: the track is empty")
        length = min(n, int(round(seconds * rate)))
        if start is None:
            first = choose_start(audio, rate, length)
        else:
            if start < 0:
                raise MusicsepError(f"the excerpt's start must be at least 0 s (got {start})")
            first = min(int(round(start * rate)), n - length)
        data = np.asarray(audio[:, :, first:first + length], dtype=np.float32)
        name = h5.attrs.get("name", Path(shard).stem)
        slug = h5.attrs.get("slug", Path(shard).stem)
    name = name.decode() if isinstance(name, bytes) else str(name)
    slug = slug.decode() if isinstance(slug, bytes) else str(slug)
    return Excerpt(data, rate, first, name, slug)


# --------------------------------------------------------------------------- masks and embeddings


def _load(model_path: str | Path):
    from musicsep.models import load_model

    model, state = load_model(model_path)
    spec = state.get("spec") if isinstance(state.get("spec"), dict) else {}
    return model.float().eval(), spec.get("name") or Path(model_path).parent.name


def _spectra(model, excerpt: Excerpt, channel: int = 0):
    """Magnitudes of one channel of the excerpt: mixture ``(1, freq, frames)``
    and sources ``(1, 4, freq, frames)``."""
    import torch

    if excerpt.rate != model.features.sample_rate:
        raise MusicsepError(f"the shard is at {excerpt.rate} Hz, the model at {model.features.sample_rate} Hz")
    mixture = torch.from_numpy(np.ascontiguousarray(excerpt.mixture[channel]))[None]
    sources = torch.from_numpy(np.ascontiguousarray(excerpt.sources[:, channel]))[None]
    with torch.no_grad():
        return model.features.stft(mixture).abs(), model.features.stft(sources).abs()


def _log_frequency(values: np.ndarray, rate: int, n_fft: int, rows: int = 256, fmin: float = 30.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``values`` ``(freq, frames)`` at ``rows`` log-spaced
    frequencies from ``fmin`` to Nyquist (nearest bin): for display."""
    nyquist = rate / 2
    grid = np.geomspace(min(fmin, nyquist / 2), nyquist, rows)
    bins = np.clip(np.round(grid * n_fft / rate).astype(int), 0, values.shape[0] - 1)
    return values[bins], grid


def _frequency_axis(ax, grid: np.ndarray) -> None:
    ticks = [f for f in (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000) if grid[0] <= f <= grid[-1]]
    positions = np.interp(np.log(ticks), np.log(grid), np.arange(len(grid)))
    ax.set_yticks(positions, [f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks])


def plot_masks(model_path: str | Path, shard: str | Path, out: str | Path, *, seconds: float = 10.0,
               start: float | None = None, name: str | None = None, channel: int = 0) -> Excerpt:
    """The mixture's log spectrogram of an excerpt (one channel), the model's
    mask per source (``model.masks``) and, for comparison, the ideal ratio
    mask of the true sources (|s_j| / Σ|s_i|)."""
    import torch

    plt = _pyplot()
    model, default_name = _load(model_path)
    name = name or default_name
    excerpt = read_excerpt(shard, seconds, start)
    mix_mag, src_mag = _spectra(model, excerpt, channel)
    with torch.no_grad():
        masks = model.masks(mix_mag)[0].float().numpy()                        # (sources, freq, frames)
    src = src_mag[0].numpy()
    ideal = src / (src.sum(0, keepdims=True) + 1e-10)
    f = model.features
    db = 20 * np.log10(mix_mag[0].numpy() + 1e-8)
    db_display, grid = _log_frequency(db, f.sample_rate, f.n_fft)
    vmax = float(db.max())
    extent = (0, excerpt.length / excerpt.rate, -0.5, len(grid) - 0.5)
    with plt.rc_context(_RC):
        fig = plt.figure(figsize=(13, 8.2))
        gs = fig.add_gridspec(3, len(SOURCES) + 1, width_ratios=[1] * len(SOURCES) + [0.05],
                              height_ratios=[1.1, 1, 1], hspace=0.45, wspace=0.12)
        ax = fig.add_subplot(gs[0, :len(SOURCES)])
        image = ax.imshow(db_display, origin="lower", aspect="auto", extent=extent, cmap="magma",
                          vmin=vmax - 80, vmax=vmax, interpolation="nearest")
        _frequency_axis(ax, grid)
        ax.set_ylabel("frequency (Hz)")
        ax.set_title(f"mixture, channel {channel + 1}: log magnitude (dB)")
        fig.colorbar(image, cax=fig.add_subplot(gs[0, -1]), label="dB")
        mask_image = None
        for row, (label, data) in enumerate([(f"{name} mask", masks), ("ideal ratio mask", ideal)], start=1):
            for k, source in enumerate(SOURCES):
                ax = fig.add_subplot(gs[row, k])
                shown, _ = _log_frequency(data[k], f.sample_rate, f.n_fft)
                mask_image = ax.imshow(shown, origin="lower", aspect="auto", extent=extent, cmap="viridis",
                                       vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"{source}: {label}")
                if k == 0:
                    _frequency_axis(ax, grid)
                    ax.set_ylabel("frequency (Hz)")
                else:
                    ax.set_yticks([])
                if row == 2:
                    ax.set_xlabel("time in the excerpt (s)")
        fig.colorbar(mask_image, cax=fig.add_subplot(gs[1:, -1]), label="mask")
        fig.suptitle(f"{name}: masks on {excerpt.describe()}", y=0.97)
    _save(fig, out, dpi=100)
    return excerpt


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first two principal components by SVD: ``points`` ``(n, dim)`` ->
    projections ``(n, 2)``, components ``(2, dim)``, the mean ``(dim,)`` and
    the explained variance ratios ``(2,)``. Signs are fixed (each
    component's largest loading positive) so that reruns agree."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) < 2:
        raise MusicsepError(f"PCA needs at least two points of shape (n, dim), got {points.shape}")
    mean = points.mean(axis=0)
    centred = points - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    if components.shape[0] < 2:
        components = np.vstack([components, np.zeros_like(components)])
        s = np.append(s, 0.0)
    signs = np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1, signs)[:, None]
    total = float(np.square(s).sum())
    ratio = np.square(s[:2]) / total if total > 0 else np.zeros(2)
    return centred @ components.T, components, mean, ratio


def embedding_points(model, excerpt: Excerpt, channel: int = 0) -> dict[str, np.ndarray]:
    """The embeddings of an excerpt's mel time-frequency points that are not
    silent (``dc_targets``' weight > 0: within 40 dB of the loudest), with
    their true dominant source and the model's assignment (the argmax of its
    masks taken back to mel resolution): ``embeddings`` (n, dim), ``true``
    (n,), ``assigned`` (n,), all as numpy arrays, and ``centroids`` (4, dim)
    when the model has class centroids (its conditional means, or deep
    clustering's class centroids)."""
    import torch

    from musicsep.losses import dc_targets

    if not hasattr(model, "embeddings"):
        raise MusicsepError(f"model {getattr(model, 'name', type(model).__name__)} has no embeddings")
    mix_mag, src_mag = _spectra(model, excerpt, channel)
    f = model.features
    with torch.no_grad():
        v = model.embeddings(mix_mag)[0].float()                                   # (frames * n_mels, dim)
        labels, weights = dc_targets(f.to_mel(mix_mag), f.to_mel(src_mag))
        mel_masks = f.to_mel(model.masks(mix_mag).float())                          # (1, sources, n_mels, frames)
        assigned = mel_masks.permute(0, 3, 2, 1).reshape(-1, mel_masks.shape[1]).argmax(-1)
        centroids = None
        if hasattr(model, "initial_parameters"):
            centroids = model.initial_parameters()[0].float().numpy()
        elif hasattr(model, "class_centroids"):
            centroids = model.class_centroids.float().numpy()
    active = (weights[0] > 0).numpy()
    return {"embeddings": v.numpy()[active], "true": labels[0].argmax(-1).numpy()[active],
            "assigned": assigned.numpy()[active], "centroids": centroids}


def plot_embeddings(model_path: str | Path, shard: str | Path, out: str | Path, *, seconds: float = 10.0,
                    start: float | None = None, name: str | None = None, points: int = 3000, seed: int = 0,
                    channel: int = 0) -> dict:
    """2-D PCA (fitted on every non-silent point of the excerpt) of an
    embedding model's embeddings, ``points`` of them drawn at random: left
    coloured by the true dominant source, right by the model's assignment;
    class centroids as stars. Returns the counts and the agreement."""
    plt = _pyplot()
    model, default_name = _load(model_path)
    name = name or default_name
    excerpt = read_excerpt(shard, seconds, start)
    found = embedding_points(model, excerpt, channel)
    x = found["embeddings"]
    if len(x) < 2:
        raise MusicsepError(f"{shard}: the excerpt has fewer than two non-silent time-frequency points")
    projected, components, mean, ratio = pca_2d(x)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(x), size=min(points, len(x)), replace=False))
    agreement = float((found["true"] == found["assigned"]).mean())
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
        for ax, key, title in [(axes[0], "true", "true dominant source"),
                               (axes[1], "assigned", f"assignment by {name} (argmax of its masks)")]:
            classes = found[key][keep]
            for k, source in enumerate(SOURCES):
                sel = classes == k
                ax.scatter(projected[keep][sel, 0], projected[keep][sel, 1], s=4, alpha=0.5, linewidths=0,
                           color=SOURCE_COLOURS[source], label=f"{source} ({int((found[key] == k).sum())})",
                           rasterized=True)
            if found["centroids"] is not None:
                c = (found["centroids"] - mean) @ components.T
                for k, source in enumerate(SOURCES):
                    ax.scatter(c[k, 0], c[k, 1], marker="*", s=220, color=SOURCE_COLOURS[source],
                               edgecolors="black", linewidths=0.8, zorder=4)
            ax.set_title(title)
            ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f}% of the variance)")
            ax.legend(markerscale=3, fontsize=8, frameon=False, title="points (all non-silent)",
                      title_fontsize=8)
            ax.grid(color="0.92", linewidth=0.6)
        axes[0].set_ylabel(f"PC 2 ({100 * ratio[1]:.0f}% of the variance)")
        fig.suptitle(f"{name}: embeddings of {excerpt.describe()}, channel {channel + 1}; "
                     f"{len(keep)} of {len(x)} non-silent points shown; assignment = true source for "
                     f"{100 * agreement:.0f}%", y=0.99, fontsize=10)
        fig.tight_layout()
    _save(fig, out, dpi=110)
    return {"points": len(x), "shown": len(keep), "agreement": agreement, "explained": ratio.tolist()}


# --------------------------------------------------------------------------- audio


PAGE_LIMIT = 1_500_000
"""Bytes above which a player page may not show in Chrome: the report shows
an HTML result in an iframe from a base64 data URL (a third larger), and
Chrome has refused navigations to URLs over 2 MB."""


def _encode(audio: np.ndarray, rate: int, fmt: str) -> bytes:
    """``(channels, samples)`` clipped to [-1, 1] as a file's bytes: 16-bit
    WAV, or MP3 (variable bit rate, about 120 kbit/s for stereo music)."""
    import soundfile

    data = np.ascontiguousarray(np.clip(audio, -1, 1).T, dtype=np.float32)
    buffer = io.BytesIO()
    if fmt == "wav":
        soundfile.write(buffer, data, rate, subtype="PCM_16", format="WAV")
    else:
        soundfile.write(buffer, data, rate, format="MP3", subtype="MPEG_LAYER_III", compression_level=0.5,
                        bitrate_mode="VARIABLE")
    return buffer.getvalue()


def _player_format() -> str:
    """mp3 where this libsndfile writes MP3 (1.1 and later), else wav."""
    import soundfile

    return "mp3" if "MP3" in soundfile.available_formats() else "wav"


def _read_estimate(path: Path, start: int, length: int, rate: int) -> np.ndarray:
    import soundfile

    try:
        info = soundfile.info(str(path))
        if info.samplerate != rate:
            raise MusicsepError(f"{path}: sample rate {info.samplerate} Hz, the shard's {rate} Hz")
        audio, _ = soundfile.read(str(path), start=start, stop=start + length, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise MusicsepError(f"{path}: not a readable WAV file ({err})") from None
    if len(audio) < length:
        raise MusicsepError(f"{path}: {len(audio) + start} samples, shorter than the track's excerpt "
                            f"({start + length})")
    return audio.T


def audio_examples(shard: str | Path, out_dir: str | Path, page: str | Path, *,
                   estimates: str | Path | None = None, name: str | None = None, seconds: float = 10.0,
                   start: float | None = None) -> dict[str, Path]:
    """One system's audio of an excerpt (:func:`read_excerpt`): the
    excerpt of each ``{target}.wav`` in the folder ``estimates`` (whole-track
    estimates, as ``musicsep separate`` writes them), or without
    ``estimates`` the reference: the mixture and the true sources
    (accompaniment included). Writes ``{out_dir}/{target}.wav`` (16-bit, the
    shard's rate and channels) and ``page``: an HTML page with a player for
    the mixture and for each clip, the audio embedded (MP3 where libsndfile
    writes it) so that the page stands alone. ``name`` defaults to the
    folder's parent (``estimates/{system}/{slug}``). Returns the clips."""
    from musicsep.evaluate import accompaniment

    excerpt = read_excerpt(shard, seconds, start)
    if estimates is None:
        name = name or REFERENCE
        truth = {s: excerpt.sources[k] for k, s in enumerate(SOURCES)}
        truth["accompaniment"] = accompaniment({s: truth[s].T for s in SOURCES}).T
        clips = {"mixture": excerpt.mixture, **{t: truth[t] for t in TARGETS}}
    else:
        folder = Path(estimates)
        name = name or folder.parent.name
        if not folder.is_dir():
            raise MusicsepError(f"{folder}: estimates folder does not exist")
        found = {t: folder / f"{t}.wav" for t in TARGETS if (folder / f"{t}.wav").exists()}
        if not found:
            raise MusicsepError(f"{folder}: no estimates ({', '.join(t + '.wav' for t in TARGETS)})")
        clips = {t: _read_estimate(p, excerpt.start, excerpt.length, excerpt.rate) for t, p in found.items()}
    out_dir = Path(out_dir)
    written = {}
    for target, audio in clips.items():
        written[target] = out_dir / f"{target}.wav"
        with atomic_path(written[target]) as tmp:
            Path(tmp).write_bytes(_encode(audio, excerpt.rate, "wav"))
    fmt = _player_format()
    players = {target: f"data:audio/{'mpeg' if fmt == 'mp3' else 'wav'};base64,"
               + base64.b64encode(_encode(audio, excerpt.rate, fmt)).decode()
               for target, audio in {"mixture": excerpt.mixture, **clips}.items()}
    text = _audio_page(name, players, excerpt, fmt, reference=estimates is None)
    with atomic_path(page) as tmp:
        Path(tmp).write_text(text)
    if len(text) > PAGE_LIMIT:
        log.warning("%s: %.1f MB: the report may not show a page this large in Chrome (shorten the excerpt)",
                    page, len(text) / 1e6)
    log.info("%s, %s: %d clips -> %s, %s", excerpt.describe(), name, len(written), out_dir, page)
    return written


def _audio_page(name: str, players: dict[str, str], excerpt: Excerpt, fmt: str, reference: bool) -> str:
    what = "true source" if reference else f"estimate by {html.escape(name)}"
    rows = [f'<tr><th>mixture</th><td><audio controls preload="none" src="{players["mixture"]}"></audio></td></tr>']
    rows += [f'<tr><th>{target}</th><td><audio controls preload="none" src="{players[target]}"></audio></td></tr>'
             if target in players else f"<tr><th>{target}</th><td>–</td></tr>" for target in TARGETS]
    title = "Reference: the mixture and the true sources" if reference else f"{html.escape(name)}: estimates"
    coding = "MP3 (about 120 kbit/s)" if fmt == "mp3" else "16-bit WAV"
    style = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;margin:1em;color:#222}"
             "table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:4px 8px}"
             "th{background:#f3f3f3;text-align:left}audio{width:360px;height:34px;vertical-align:middle}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style>"
            f"</head><body>\n<h2>{title}</h2>\n<p>{html.escape(excerpt.describe())}: the mixture, then the "
            f"{what} of each target; {excerpt.rate} Hz, {excerpt.audio.shape[1]} channel(s), {coding}, not "
            f"normalised.</p>\n<table><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n</body></html>\n")


__all__ = ["plot_scores", "plot_training", "plot_masks", "plot_embeddings", "audio_examples", "read_excerpt",
           "choose_start", "pca_2d", "markdown_html", "track_medians", "read_metrics", "system_order",
           "embedding_points"]
