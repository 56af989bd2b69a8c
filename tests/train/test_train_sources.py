"""Training on shards of other sources than MUSDB18's four: the model is
built with the shards' sources (every family), validated per source, and
separates them; shards, specs and checkpoints of another source set are
refused naming both lists; the workflow's specs name the sources only when
they are not MUSDB18's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT, shard_from_arrays

from musicsep import SOURCES, MusicsepError
from musicsep.data.shard import write_layout
from musicsep.models.checkpoint import load_model
from musicsep.separate.separator import separate_shard
from musicsep.spectral.features import compute_stats
from musicsep.train.loop import train
from musicsep.workflow.plan import experiment_specs, load_config

SIX = ("vocals", "drums", "bass", "guitar", "piano", "other")
SR = 16000


def tones(n_sources: int, seconds: float, seed: int) -> np.ndarray:
    """``(n_sources, 2, samples)``: each source a tone of its own pitch and rhythm, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for k in range(n_sources):
        x = 0.2 * np.sin(2 * np.pi * (90 * 1.6 ** k) * t) * ((t * (k + 2)) % 1 < 0.6)
        out.append(np.stack([x, 0.5 * x]) + 0.005 * rng.standard_normal((2, len(t))))
    return np.asarray(out, dtype=np.float32)


def six_shard(path, seed: int, split: str = "train"):
    sources = tones(6, 2.0, seed)
    audio = np.concatenate([sources.sum(0)[None], sources])
    attrs = {"name": path.stem, "slug": path.stem, "subset": "train", "split": split, "sample_rate": SR,
             "source_sample_rate": SR, "channels": 2, "samples": audio.shape[-1]}
    write_layout(path, [audio], attrs, channels=2, chunk=SR, sources=SIX)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("six")
    six = [six_shard(root / f"six{k}.h5", k, "train" if k < 2 else "valid") for k in range(3)]
    four = [str(shard_from_arrays(root / f"four{k}.h5", tones(4, 2.0, k), sample_rate=SR, name=f"Four {k}"))
            for k in range(2)]
    compute_stats(six[:2], root / "stats.h5", n_fft=512, hop=128)
    return {"six": six, "four": four, "stats": root / "stats.h5"}


def config(model: str = "blstm_mask", dataset_sources=None, **model_args) -> dict:
    cfg = load_config({
        "data": {"sample_rate": SR},
        "features": {"n_fft": 512, "hop": 128, "n_mels": 24},
        "loader": {"samples_per_epoch": 4, "excerpt_seconds": 0.5, "valid_excerpts_per_track": 1},
        "training": {"epochs": 1, "batch_size": 2, "workers": 0, "deterministic": True, "sdr_every": 1},
        "experiments": {"x": {"model": model, "model_args": {"hidden": 8, "layers": 1, **model_args}}},
    }, ROOT)
    if dataset_sources is not None:
        cfg["dataset"]["sources"] = list(dataset_sources)
    return cfg


def spec(model: str = "blstm_mask", sources=SIX, **model_args) -> dict:
    return experiment_specs(config(model, sources, **model_args))["x"]


def fit(data, tmp_path, the_spec, train_shards=None, valid=None):
    train(the_spec, train_shards or data["six"][:2], valid or data["six"][2:], data["stats"], tmp_path / "run",
          tmp_path / "model.pt", tmp_path / "metrics.jsonl", processes=1)


@pytest.mark.parametrize("model", ["blstm_mask", "conditional_centroids", "deep_clustering", "umx"])
def test_a_model_trains_on_six_sources_and_separates_them(data, tmp_path, model):
    """One epoch on six-source shards: the model file holds the six sources,
    the validation names each (fast SI-SDR and BSS Eval SDR, accompaniment
    too), and the model separates a six-source shard into seven stems."""
    fit(data, tmp_path, spec(model))
    loaded, state = load_model(tmp_path / "model.pt")
    assert loaded.sources == SIX and state["spec"]["model_args"]["sources"] == list(SIX)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"sdr/guitar", "sdr/piano", "sdr/accompaniment"} <= set(record) and np.isfinite(record["sdr"])
    assert not {"sdr/drums", "sdr/guitar"} - set(record) or model == "deep_clustering"
    per_source = {k[len("valid_si_sdr_fast_not_bss_eval_"):] for k in record
                  if k.startswith("valid_si_sdr_fast_not_bss_eval_")}
    assert per_source <= set(SIX) and "guitar" in per_source
    paths = separate_shard(data["six"][2], tmp_path / "model.pt", tmp_path / "out", device="cpu", progress=False)
    assert list(paths) == [*SIX, "accompaniment"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{t}.wav" for t in paths)


def test_the_model_follows_the_shards_without_named_sources(data, tmp_path):
    """A spec of MUSDB18's form (no sources) trains on six-source shards with
    their sources; on MUSDB18 shards the model is MUSDB18's, as before."""
    fit(data, tmp_path / "a", spec(sources=None))
    assert load_model(tmp_path / "a" / "model.pt")[0].sources == SIX
    fit(data, tmp_path / "b", spec(sources=None), data["four"][:1], data["four"][1:])
    model, state = load_model(tmp_path / "b" / "model.pt")
    assert model.sources == SOURCES and "sources" not in state["spec"]["model_args"]


def test_other_sources_are_refused_naming_both(data, tmp_path):
    listed = "vocals, drums, bass, guitar, piano, other"
    with pytest.raises(MusicsepError, match=r"four0\.h5: its sources \(drums, bass, other, vocals\) are not "
                                            rf"those of .*six0\.h5 \({listed}\)"):
        fit(data, tmp_path, spec(), [data["six"][0], data["four"][0]])
    with pytest.raises(MusicsepError, match=rf"the validation shards hold drums, bass, other, vocals, the "
                                            rf"training shards \(.*\) {listed}"):
        fit(data, tmp_path, spec(), valid=data["four"][:1])
    with pytest.raises(MusicsepError, match=rf"model_args.sources {listed}, but the training shards \(.*four0\.h5\) "
                                            "hold drums, bass, other, vocals"):
        fit(data, tmp_path, spec(), data["four"][:1], data["four"][1:])
    assert not (tmp_path / "run").exists() and not (tmp_path / "model.pt").exists()
    # a run of six sources resumed on MUSDB18 shards: the checkpoint's model is refused
    first = spec(sources=None)
    fit(data, tmp_path, first)
    more = first | {"training": first["training"] | {"epochs": 2}}
    with pytest.raises(MusicsepError, match=rf"latest\.pt: a model of {listed}, but the training shards "
                                            r"\(.*four0\.h5\) hold drums, bass, other, vocals"):
        fit(data, tmp_path, more, data["four"][:1], data["four"][1:])
    assert torch.load(tmp_path / "run" / "latest.pt", weights_only=True)["kwargs"]["sources"] == SIX


def test_specs_name_the_sources_only_when_they_are_not_musdbs():
    musdb = experiment_specs(config(dataset_sources=SOURCES))["x"]
    assert "sources" not in musdb["model_args"]
    assert musdb == experiment_specs(config())["x"]
    assert experiment_specs(config(dataset_sources=SIX))["x"]["model_args"]["sources"] == list(SIX)
    # naming the dataset's sources again changes nothing; naming others is refused
    assert experiment_specs(config(dataset_sources=SOURCES, sources=list(SOURCES)))["x"] == musdb
    with pytest.raises(MusicsepError, match=r"^experiments\.x\.model_args\.sources: drums, bass are not "
                                            r"dataset\.sources \(vocals, drums, bass, guitar, piano, other\)"):
        experiment_specs(config(dataset_sources=SIX, sources=["drums", "bass"]))
