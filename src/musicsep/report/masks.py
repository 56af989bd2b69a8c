"""A model's masks beside the ideal ratio masks on an excerpt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicsep import MusicsepError
from musicsep.report import EXCERPT_SECONDS
from musicsep.report.common import RC, pyplot, save_figure
from musicsep.report.excerpt import Excerpt, read_excerpt


def load_for_figures(model_path: str | Path):
    from musicsep.models.checkpoint import load_model

    model, state = load_model(model_path)
    spec = state.get("spec") if isinstance(state.get("spec"), dict) else {}
    return model.float().eval(), spec.get("name") or Path(model_path).parent.name


def spectra(model, excerpt: Excerpt, channel: int = 0):
    """Magnitudes of one channel of the excerpt: mixture ``(1, freq, frames)``
    and sources ``(1, sources, freq, frames)`` (the shard's must be the model's)."""
    import torch

    if excerpt.rate != model.features.sample_rate:
        raise MusicsepError(f"{excerpt.path}: the shard is at {excerpt.rate} Hz, the model at "
                            f"{model.features.sample_rate} Hz")
    if excerpt.source_names != tuple(model.sources):
        raise MusicsepError(f"{excerpt.path}: the shard's sources are {', '.join(excerpt.source_names)}, the "
                            f"model's {', '.join(model.sources)}")
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


def plot_masks(model_path: str | Path, shard: str | Path, out: str | Path, *, seconds: float = EXCERPT_SECONDS,
               start: float | None = None, name: str | None = None, channel: int = 0) -> Excerpt:
    """The mixture's log spectrogram of an excerpt (one channel), the model's
    mask per source (``model.masks``) and, for comparison, the ideal ratio
    mask of the true sources (|s_j| / Σ|s_i|)."""
    import torch

    plt = pyplot()
    model, default_name = load_for_figures(model_path)
    name = name or default_name
    excerpt = read_excerpt(shard, seconds, start)
    mix_mag, src_mag = spectra(model, excerpt, channel)
    with torch.no_grad():
        masks = model.masks(mix_mag)[0].float().numpy()                        # (sources, freq, frames)
    src = src_mag[0].numpy()
    ideal = src / (src.sum(0, keepdims=True) + 1e-10)
    f = model.features
    db = 20 * np.log10(mix_mag[0].numpy() + 1e-8)
    db_display, grid = _log_frequency(db, f.sample_rate, f.n_fft)
    vmax = float(db.max())
    extent = (0, excerpt.length / excerpt.rate, -0.5, len(grid) - 0.5)
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(11.2, 7.2))   # at most 10 inches once trimmed (common.MAX_WIDTH)
        n_src = len(model.sources)
        gs = fig.add_gridspec(3, n_src + 1, width_ratios=[1] * n_src + [0.05],
                              height_ratios=[1.1, 1, 1], hspace=0.45, wspace=0.12)
        ax = fig.add_subplot(gs[0, :n_src])
        image = ax.imshow(db_display, origin="lower", aspect="auto", extent=extent, cmap="magma",
                          vmin=vmax - 80, vmax=vmax, interpolation="nearest")
        _frequency_axis(ax, grid)
        ax.set_ylabel("frequency (Hz)")
        ax.set_title(f"mixture, channel {channel + 1}: log magnitude (dB)")
        fig.colorbar(image, cax=fig.add_subplot(gs[0, -1]), label="dB")
        mask_image = None
        for row, (label, data) in enumerate([(f"{name} mask", masks), ("ideal ratio mask", ideal)], start=1):
            for k, source in enumerate(model.sources):
                ax = fig.add_subplot(gs[row, k])
                shown, _ = _log_frequency(data[k], f.sample_rate, f.n_fft)
                mask_image = ax.imshow(shown, origin="lower", aspect="auto", extent=extent, cmap="viridis",
                                       vmin=0, vmax=1, interpolation="nearest")
                narrow = n_src > 4                  # more panels than MUSDB18's four: the row's label at its left
                ax.set_title(source if narrow else f"{source}: {label}")
                if k == 0:
                    _frequency_axis(ax, grid)
                    ax.set_ylabel(f"{label}\nfrequency (Hz)" if narrow else "frequency (Hz)")
                else:
                    ax.set_yticks([])
                if row == 2:
                    ax.set_xlabel("time (s)" if narrow else "time in the excerpt (s)")
        fig.colorbar(mask_image, cax=fig.add_subplot(gs[1:, -1]), label="mask")
        fig.suptitle(f"{name}: masks on {excerpt.describe()}", y=0.97)
    save_figure(fig, out, dpi=100)
    return excerpt
