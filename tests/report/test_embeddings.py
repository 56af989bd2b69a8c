"""Embedding figures (musicsep.report.embeddings, `musicsep plots
embeddings`): the PCA, the points of an excerpt and their figure."""

from __future__ import annotations

import numpy as np
import pytest
from reportdata import PNG, SR, TINY

from musicsep import SOURCES, MusicsepError
from musicsep.cli import main
from musicsep.report.embeddings import embedding_points, pca_2d, plot_embeddings
from musicsep.report.excerpt import read_excerpt

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pca_2d():
    rng = np.random.default_rng(0)
    plane = rng.standard_normal((500, 2)) * [3.0, 1.0]
    basis = np.linalg.qr(rng.standard_normal((6, 2)))[0].T                # (2, 6), orthonormal rows
    points = plane @ basis + 0.01 * rng.standard_normal((500, 6)) + 5.0
    projected, components, mean, ratio = pca_2d(points)
    assert projected.shape == (500, 2) and components.shape == (2, 6)
    np.testing.assert_allclose(np.abs(components @ basis.T), np.eye(2), atol=1e-2)
    assert ratio[0] > 0.85 and ratio.sum() > 0.999
    np.testing.assert_allclose(projected @ components + mean, points, atol=0.05)
    again = pca_2d(points[::-1])[1]
    np.testing.assert_allclose(again, components, atol=1e-9)                # signs fixed
    with pytest.raises(MusicsepError):
        pca_2d(points[:1])


def test_embedding_points_and_figure(tmp_path, shard_and_models):
    from musicsep.models.checkpoint import load_model

    shard, models = shard_and_models
    excerpt = read_excerpt(shard, 2.0)
    frames = 1 + 2 * SR // TINY["hop"]
    for exp, dim in [("cc", 5), ("dc", 6)]:
        model, _ = load_model(models[exp])
        found = embedding_points(model, excerpt)
        n = len(found["embeddings"])
        assert found["embeddings"].shape == (n, dim) and 0 < n < frames * TINY["n_mels"]   # silent bins left out
        assert found["true"].shape == found["assigned"].shape == (n,)
        assert set(np.unique(found["true"])) <= set(range(len(SOURCES)))
        assert found["centroids"].shape == (len(SOURCES), dim)
        out = tmp_path / f"{exp}.png"
        assert main(["plots", "embeddings", "--model", str(models[exp]), "--shard", str(shard),
                     "--seconds", "2", "--points", "500", "--out", str(out)]) == 0
        assert out.read_bytes().startswith(PNG)
        info = plot_embeddings(models[exp], shard, tmp_path / "e.png", seconds=2.0, points=100)
        assert info["points"] == n and info["shown"] == 100 and 0 <= info["agreement"] <= 1
    with pytest.raises(MusicsepError, match="has no embeddings"):
        plot_embeddings(models["base"], shard, tmp_path / "b.png", seconds=2.0)
