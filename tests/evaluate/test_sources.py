"""Evaluation of other sources than MUSDB18's: a shard of six sources (vocals,
drums, bass, guitar, piano, other, as the stems toy), scored as museval's
``eval_mus_track`` scores a track with these targets (all sources as one
group, vocals and accompaniment as their own pair), then aggregated,
summarised and plotted with seven targets."""

from __future__ import annotations

import logging
from collections import OrderedDict
from types import SimpleNamespace

import museval
import numpy as np
import pandas as pd
import pytest
import soundfile

from musicsep import MusicsepError, targets_of
from musicsep.data.shard import write_layout
from musicsep.evaluate import ordered_targets
from musicsep.evaluate.aggregate import aggregate
from musicsep.evaluate.track import (
    evaluate_shard,
    read_estimates,
    read_shard_references,
)
from musicsep.report.scores import plot_scores

SIX = ("vocals", "drums", "bass", "guitar", "piano", "other")
RATE, SECONDS = 8000, 4
GAINS = dict(zip(SIX, (1.2, 1.0, 0.5, 0.8, 0.6, 0.7)))


def six_shard(path, sources=SIX, seed=0, name="Artist - Six"):
    """A shard of ``sources`` (mono, white noise at their gains) through the format's one writer."""
    rng = np.random.default_rng(seed)
    audio = np.stack([0.1 * GAINS[s] * rng.standard_normal((1, SECONDS * RATE)) for s in sources]).astype(np.float32)
    write_layout(path, [np.concatenate([audio.sum(0, keepdims=True), audio])],
                 {"name": name, "slug": path.stem, "sample_rate": RATE, "split": "test"},
                 channels=1, chunk=RATE, sources=sources)
    return path


def write_estimates(folder, refs, noise, seed=1, targets=None):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for target in targets or refs:
        audio = refs[target] + noise * rng.standard_normal(refs[target].shape)
        soundfile.write(folder / f"{target}.wav", audio.astype(np.float32), RATE, subtype="FLOAT")
    return folder


def as_museval_track(name, refs):
    return SimpleNamespace(name=name, rate=RATE, subset="test", targets=OrderedDict(
        (t, SimpleNamespace(audio=refs[t])) for t in ordered_targets(refs)))


def test_references_of_six_sources(tmp_path):
    refs, rate, name = read_shard_references(six_shard(tmp_path / "six.h5"))
    assert (rate, name) == (RATE, "Artist - Six")
    assert list(refs) == [*SIX, "accompaniment"] == list(targets_of(SIX))
    np.testing.assert_array_equal(refs["accompaniment"], sum(refs[s] for s in SIX if s != "vocals"))
    # no vocals: no accompaniment
    refs, _, _ = read_shard_references(six_shard(tmp_path / "three.h5", ("drums", "bass", "guitar")))
    assert list(refs) == ["drums", "bass", "guitar"]


def test_six_sources_score_as_musevals_eval_mus_track(tmp_path):
    shard = six_shard(tmp_path / "six.h5")
    refs, _, _ = read_shard_references(shard)
    folder = write_estimates(tmp_path / "est", refs, noise=0.01)
    result = evaluate_shard(shard, folder, tmp_path / "ours" / "six.json")
    # the six sources as one group (vocals kept from the vocals/accompaniment pair), as eval_mus_track
    assert result["targets"] == ["drums", "bass", "other", "guitar", "piano", "vocals", "accompaniment"]
    assert result["frames"] == SECONDS and result["warnings"] == []
    estimates, _ = read_estimates(folder, RATE, shard=shard)
    museval.eval_mus_track(as_museval_track("six", refs), estimates, output_dir=str(tmp_path / "museval"))
    assert (tmp_path / "ours" / "six.json").read_text() == (tmp_path / "museval" / "test" / "six.json").read_text()
    for target in result["targets"]:
        assert 10 < result["scores"][target]["SDR"] < 60, target


def test_missing_and_extra_estimates_are_named(tmp_path, caplog):
    shard = six_shard(tmp_path / "six.h5")
    refs, _, _ = read_shard_references(shard)
    folder = write_estimates(tmp_path / "est", refs, noise=0.05, targets=SIX)       # no accompaniment.wav
    with pytest.raises(MusicsepError, match=f"^{folder}/accompaniment.wav: missing estimate for target "
                                            "'accompaniment'$"):
        evaluate_shard(shard, folder, tmp_path / "t.json", targets=targets_of(SIX))
    with caplog.at_level(logging.WARNING, logger="musicsep"):
        result = evaluate_shard(shard, folder, tmp_path / "t.json")
    assert f"{folder}: no estimate of accompaniment (accompaniment.wav): scoring the others" in caplog.text
    assert result["targets"] == ["vocals", "drums", "bass", "other", "guitar", "piano"]    # one group of six
    (tmp_path / "t.json").unlink()
    soundfile.write(folder / "flute.wav", refs["vocals"].astype(np.float32), RATE)
    with pytest.raises(MusicsepError, match=f"^{folder}: estimate\\(s\\) of no target: flute.wav \\(the targets "
                                            f"of {shard}: vocals, drums, bass, other, guitar, piano, accompaniment\\)$"):
        evaluate_shard(shard, folder, tmp_path / "t.json")
    with pytest.raises(MusicsepError, match="unknown target.*'flute'"):
        evaluate_shard(shard, folder, tmp_path / "t.json", targets=["vocals", "flute"])
    assert not (tmp_path / "t.json").exists()


def test_six_targets_aggregate_summarise_and_plot(tmp_path):
    """Three systems (the mixture, an ideal-like and a model-like estimate)
    on two tracks: the share's median is over the six sources."""
    for k in range(2):
        shard = six_shard(tmp_path / f"track_{k}.h5", seed=10 + k, name=f"Track {k}")
        refs, _, _ = read_shard_references(shard)
        mix = sum(refs[s] for s in SIX)
        for system, noise in (("oracle_irm1", 0.01), ("model", 0.05)):
            folder = write_estimates(tmp_path / "est" / system / shard.stem, refs, noise, seed=k)
            evaluate_shard(shard, folder, tmp_path / "scores" / system / f"{shard.stem}.json")
        folder = tmp_path / "est" / "oracle_mix" / shard.stem
        write_estimates(folder, {t: mix for t in refs}, 0.001, seed=k)
        evaluate_shard(shard, folder, tmp_path / "scores" / "oracle_mix" / f"{shard.stem}.json")
    table = aggregate([tmp_path / "scores"], tmp_path / "scores.csv", tmp_path / "summary.md",
                      medians_csv=tmp_path / "medians.csv")
    assert set(table["target"]) == {*SIX, "accompaniment"} and table["track"].nunique() == 2
    summary = (tmp_path / "summary.md").read_text()
    assert "| system | tracks | vocals | drums | bass | other | guitar | piano | accompaniment |" in summary
    assert "| accompaniment | 6 sources (median) |" in summary
    assert "its median over vocals, drums, bass, other, guitar and piano;" in summary
    medians = pd.read_csv(tmp_path / "medians.csv", keep_default_na=False)
    shares = medians[(medians["metric"] == "share") & (medians["system"] == "model")].set_index("target")["median"]
    assert list(shares.index) == [*ordered_targets(SIX), "accompaniment", "sources"]
    assert shares["sources"] == pytest.approx(np.median(shares[list(SIX)]))
    assert 0 < shares["sources"] < 1
    row = next(line for line in summary.splitlines() if line.startswith("| 6 sources (median) |"))
    assert row.endswith(f"| {shares['sources']:.2f} |")

    plot_scores(tmp_path / "scores.csv", box=tmp_path / "box.svg", heatmap=tmp_path / "heat.svg")
    for figure in ("box.svg", "heat.svg"):
        svg = (tmp_path / figure).read_text()
        for target in (*SIX, "accompaniment"):
            assert svg.count(f">{target}</text>") == 1, (figure, target)     # a panel each
