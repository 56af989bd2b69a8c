"""Models of other sources than MUSDB18's four: the ``sources`` argument
checked, one output per source in every family, a training step of each
loss, and the model file keeping the sources (an old file without them
loads as MUSDB18's four)."""

from __future__ import annotations

import pytest
import torch
from tinymodels import noise_mix, tiny

from musicsep import SOURCES, MusicsepError
from musicsep.models.checkpoint import load_model, save_model_file
from musicsep.models.registry import MODELS, check_model_args, signature
from musicsep.train.loop import make_optimizer
from musicsep.train.objective import compute_loss

SIX = ("vocals", "drums", "bass", "guitar", "piano", "other")
FAMILIES = list(MODELS)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_takes_a_list_of_sources(family):
    assert signature(family)["sources"] == "tuple[str, ...]"
    check_model_args(family, sources=list(SIX))
    check_model_args(family, sources=SIX)
    for bad in [[], ["drums", "drums"], ["drums", 3], "drums", ["drums", ""]]:
        with pytest.raises(MusicsepError, match=r"^model\.sources: .* is not a list of distinct names$"):
            check_model_args(family, sources=bad)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_six_source_model_has_six_outputs(family):
    model = tiny(family, sources=list(SIX)).eval()
    assert model.sources == SIX and model.n_sources == 6 and model.kwargs()["sources"] == SIX
    mix = noise_mix(batch=2)
    with torch.no_grad():
        masks = model.masks(mix)
    assert masks.shape == (2, 6, *mix.shape[1:])
    assert tiny(family).sources == SOURCES and tiny(family).kwargs()["sources"] == SOURCES


@pytest.mark.parametrize("family", FAMILIES)
def test_a_six_source_model_trains_a_step(family):
    """Every loss of the family on a batch of six sources: finite, and a step
    of the optimiser changes the weights; open-unmix's loss is named per source."""
    torch.manual_seed(0)
    sources = torch.randn(2, 6, 2 if family == "umx" else 1, 1200) * 0.1
    for loss_name in MODELS[family].losses:
        model = tiny(family, sources=list(SIX)).train()
        optimizer = make_optimizer(model, 1e-2)
        before = [p.detach().clone() for p in model.parameters()]
        loss, parts = compute_loss(model, loss_name, sources, 0.5)
        assert torch.isfinite(loss), loss_name
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), loss_name
        if loss_name == "mse":
            assert {f"mse_{s}" for s in SIX} <= set(parts)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_model_file_keeps_the_sources(tmp_path, family):
    model = tiny(family, sources=list(SIX))
    save_model_file(tmp_path / "six.pt", model, {"name": "six"}, 1, 0.0)
    loaded, state = load_model(tmp_path / "six.pt")
    assert loaded.sources == SIX and state["kwargs"]["sources"] == SIX
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # a model file written before models had sources: MUSDB18's four
    four = tiny(family)
    save_model_file(tmp_path / "old.pt", four, {"name": "old"}, 1, 0.0)
    saved = torch.load(tmp_path / "old.pt", weights_only=True)
    del saved["kwargs"]["sources"]
    torch.save(saved, tmp_path / "old.pt")
    old, _ = load_model(tmp_path / "old.pt")
    assert old.sources == SOURCES and old.n_sources == 4
    # weights of four sources do not fit a file that says six
    saved["kwargs"]["sources"] = SIX
    torch.save(saved, tmp_path / "wrong.pt")
    with pytest.raises(MusicsepError, match=r"wrong\.pt: the weights do not fit"):
        load_model(tmp_path / "wrong.pt")

