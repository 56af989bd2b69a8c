"""Deep clustering (musicsep.models.deep_clustering) labels its clusters by the
class centroids."""

from __future__ import annotations

import pytest
import torch
from tinymodels import K, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("clustering", ["kmeans", "gmm"])
@pytest.mark.parametrize("seed", range(4))
def test_clusters_are_labelled_by_class_centroids(clustering, seed):
    dim = 6
    model = tiny("deep_clustering", clustering=clustering, dim=dim)
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(K, dim, generator=g), dim=-1)
    assert torch.pdist(centres).min() > 0.3
    origin = torch.arange(K).repeat_interleave(40)
    origin = origin[torch.randperm(len(origin), generator=g)]          # centre of each point
    v = centres[origin] + 0.03 * torch.randn(len(origin), dim, generator=g)
    perm = torch.tensor([2, 0, 3, 1]).roll(seed)                       # class i has centre perm[i]
    with torch.no_grad():
        model.class_centroids.copy_(centres[perm] + 0.05 * torch.randn(K, dim, generator=g))
    assign = model._cluster(v)
    assert assign.shape == (len(v), K)
    torch.testing.assert_close(assign.sum(-1), torch.ones(len(v)))
    expected_class = torch.argsort(perm)[origin]
    assert torch.equal(assign.argmax(-1), expected_class)
    assert assign[torch.arange(len(v)), expected_class].min() > 0.99
