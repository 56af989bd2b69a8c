"""A 2-D PCA of an embedding model's embeddings of an excerpt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicsep import MusicsepError
from musicsep.report import EMBEDDING_POINTS, EXCERPT_SECONDS
from musicsep.report.common import RC, SOURCE_COLOURS, pyplot, save_figure
from musicsep.report.excerpt import Excerpt, read_excerpt
from musicsep.report.masks import load_for_figures, spectra


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
    (n,), ``assigned`` (n,), all as numpy arrays, and ``centroids`` (sources, dim)
    when the model has class centroids (its conditional means, or deep
    clustering's class centroids)."""
    import torch

    from musicsep.models.losses import dc_targets

    if not hasattr(model, "embeddings"):
        raise MusicsepError(f"model {getattr(model, 'name', type(model).__name__)} has no embeddings")
    mix_mag, src_mag = spectra(model, excerpt, channel)
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


def plot_embeddings(model_path: str | Path, shard: str | Path, out: str | Path, *, seconds: float = EXCERPT_SECONDS,
                    start: float | None = None, name: str | None = None, points: int = EMBEDDING_POINTS, seed: int = 0,
                    channel: int = 0) -> dict:
    """2-D PCA (fitted on every non-silent point of the excerpt) of an
    embedding model's embeddings, ``points`` of them drawn at random: left
    coloured by the true dominant source, right by the model's assignment;
    class centroids as stars. Returns the counts and the agreement."""
    plt = pyplot()
    model, default_name = load_for_figures(model_path)
    if not hasattr(model, "embeddings"):
        raise MusicsepError(f"{model_path}: model {model.name} has no embeddings (the figure needs an embedding "
                            "model: conditional_centroids or deep_clustering)")
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
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 5.0), sharex=True, sharey=True)   # within common.MAX_WIDTH
        for ax, key, title in [(axes[0], "true", "true dominant source"),
                               (axes[1], "assigned", f"assignment by {name} (argmax of its masks)")]:
            classes = found[key][keep]
            for k, source in enumerate(model.sources):
                sel = classes == k
                ax.scatter(projected[keep][sel, 0], projected[keep][sel, 1], s=4, alpha=0.5, linewidths=0,
                           color=SOURCE_COLOURS[source], label=f"{source} ({int((found[key] == k).sum())})",
                           rasterized=True)
            if found["centroids"] is not None:
                c = (found["centroids"] - mean) @ components.T
                for k, source in enumerate(model.sources):
                    ax.scatter(c[k, 0], c[k, 1], marker="*", s=220, color=SOURCE_COLOURS[source],
                               edgecolors="black", linewidths=0.8, zorder=4)
            ax.set_title(title)
            ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f}% of the variance)")
            ax.legend(markerscale=3, fontsize=8, frameon=False, title="points (all non-silent)",
                      title_fontsize=8)
            ax.grid(color="0.92", linewidth=0.6)
        axes[0].set_ylabel(f"PC 2 ({100 * ratio[1]:.0f}% of the variance)")
        fig.suptitle(f"{name}: embeddings of {excerpt.describe()}, channel {channel + 1}\n"
                     f"{len(keep)} of {len(x)} non-silent points shown; assignment = true source for "
                     f"{100 * agreement:.0f}%", y=0.99, fontsize=10)
        fig.tight_layout()
    save_figure(fig, out, dpi=100)
    return {"points": len(x), "shown": len(keep), "agreement": agreement, "explained": ratio.tolist()}
