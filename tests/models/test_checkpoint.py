"""Model files (musicsep.models.checkpoint): a saved model loads back as the
same model, weights, whitening buffers and outputs; and files written before
the package was laid out by stage still do.

tests/fixtures/old/ holds tiny model files of the three families written by
musicsep 0.1.0 at commit c44956b (flat modules), and expected.npz the
per-frame sums of their masks for a fixed input, computed by that code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT
from tinymodels import K, N_FREQ, noise_mix, set_centroids, tiny

from musicsep.models.checkpoint import load_model
from musicsep.models.registry import MODELS

OLD = ROOT / "tests" / "fixtures" / "old"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name,kw", [
    ("blstm_mask", {}),
    ("conditional_centroids", {"covariance": "diag", "em_iterations": 2, "dim": 7}),
    ("deep_clustering", {"clustering": "gmm", "dim": 6}),
], ids=["blstm_mask", "conditional_centroids", "deep_clustering"])
def test_checkpoint_round_trip(tmp_path, name, kw):
    model = tiny(name, **kw | {"dropout": 0.3})
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():                                   # non-trivial whitening buffers travel too
        model.features.mean.copy_(torch.randn(N_FREQ, generator=g))
        model.features.std.copy_(torch.rand(N_FREQ, generator=g) + 0.5)
    if name == "deep_clustering":
        set_centroids(model)
    model.eval()
    path = tmp_path / "model.pt"
    torch.save({"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict()}, path)

    loaded, state = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.kwargs() == model.kwargs() and state["model"] == name
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    mix = noise_mix()
    with torch.no_grad():
        out, out_loaded = model(mix), loaded(mix)
        assert out.keys() == out_loaded.keys()
        for key in out:
            assert torch.equal(out[key], out_loaded[key]), key
        masks = model.masks(mix)
        assert torch.equal(masks, loaded.masks(mix))
    assert masks.shape == (mix.shape[0], K, N_FREQ, mix.shape[-1])


@pytest.mark.parametrize("name", sorted(MODELS.keys() - {"umx"}))      # the families of musicsep 0.1.0
def test_an_old_model_file_loads_and_masks_as_before(name):
    expected = np.load(OLD / "expected.npz")
    model, state = load_model(OLD / f"{name}.pt")
    assert state["model"] == name and state["git_commit"] == "c44956b"
    assert type(model).__module__ == MODELS[name].module
    with torch.no_grad():
        masks = model.masks(torch.from_numpy(expected["input"]))
    np.testing.assert_array_equal(masks.sum(2).numpy(), expected[name])
