"""Evaluation against what musdb reads: a shard's references are musdb's
``track.targets[t].audio`` bit for bit, whatever rate and channels the models
use, and ``evaluate_shard`` scores as ``museval.eval_mus_track`` scores on
musdb's own Track (every frame, every metric, to the 5 decimals of museval's
JSON). The track is the real MUSDB18 excerpt in stempeg's wheel, read by
musdb itself, sharded by the package's ``write_shard``; musdb's decode is
slow-ish and museval slow, so each is computed once per module."""

from __future__ import annotations

import logging
from pathlib import Path

import musdb
import museval
import numpy as np
import pytest
import simplejson
import soundfile

from musicsep import SOURCES, STREAMS, TARGETS, MusicsepError
from musicsep.data.musdb import scan
from musicsep.data.shard import Shard, write_shard
from musicsep.evaluate.track import evaluate_shard, read_estimates, read_shard_references

CONFIGS = {"44100 Hz stereo": {}, "22050 Hz": {"sample_rate": 22050}, "mono": {"mono": True},
           "22050 Hz mono": {"sample_rate": 22050, "mono": True}}
METRICS = ("SDR", "SIR", "ISR", "SAR")
DECIMALS = 1e-5 + 1e-9
"""museval's JSON rounds every score to 5 decimals: two equal computations may differ by one unit there."""


def on_float32_grid(audio: np.ndarray) -> np.ndarray:
    """float64 values that a float32 WAV holds exactly (estimates are read as float32)."""
    return audio.astype(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def track(musdb_example):
    (track,) = musdb.DB(root=str(musdb_example), is_wav=False, subsets="test").tracks
    return track


@pytest.fixture(scope="module")
def targets(track) -> dict[str, np.ndarray]:
    return {t: track.targets[t].audio for t in TARGETS}


@pytest.fixture(scope="module")
def shards(musdb_example, tmp_path_factory) -> dict[str, Path]:
    dataset, (entry,) = scan(musdb_example, subsets=["test"])
    folder = tmp_path_factory.mktemp("shards")
    paths = {config: folder / f"{k}.h5" for k, config in enumerate(CONFIGS)}
    for config, path in paths.items():
        write_shard(dataset, entry.member, "test", path, **CONFIGS[config])
    return paths


def scores(path) -> list[tuple[str, dict[str, np.ndarray]]]:
    content = simplejson.loads(Path(path).read_text(), allow_nan=True)
    return [(t["name"], {m: np.array([float(f["metrics"][m]) for f in t["frames"]]) for m in METRICS})
            for t in content["targets"]]


def assert_same_scores(ours, theirs) -> float:
    """Every target, frame and metric of two museval JSON files equal to the
    JSON's 5 decimals (NaN where the other is NaN); returns the largest difference."""
    ours, theirs = scores(ours), scores(theirs)
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    largest = 0.0
    for (name, a), (_, b) in zip(ours, theirs):
        for m in METRICS:
            assert a[m].shape == b[m].shape and a[m].size > 0, (name, m)
            np.testing.assert_array_equal(np.isnan(a[m]), np.isnan(b[m]), err_msg=f"{name} {m}")
            diff = np.abs(a[m] - b[m])[~np.isnan(a[m])]
            assert (diff <= DECIMALS).all(), (name, m, diff.max())
            largest = max(largest, float(diff.max(initial=0)))
    return largest


def write_wavs(folder: Path, estimates: dict[str, np.ndarray], rate: int) -> Path:
    folder.mkdir(parents=True)
    for target, audio in estimates.items():
        soundfile.write(folder / f"{target}.wav", audio, rate, subtype="FLOAT")
    return folder


def museval_json(track, estimates, folder: Path) -> Path:
    museval.eval_mus_track(track, estimates, output_dir=str(folder))
    return folder / track.subset / f"{track.name}.json"


# --- the references ----------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_references_are_musdbs_bit_for_bit(shards, track, targets, config):
    refs, rate, name = read_shard_references(shards[config])
    assert (rate, name) == (track.rate, track.name) == (44100, "The Easton Ellises - Falcon 69")
    for target in TARGETS:       # accompaniment included: summed as musdb sums it
        assert refs[target].dtype == np.float64 and refs[target].shape == targets[target].shape, target
        np.testing.assert_array_equal(refs[target], targets[target], err_msg=target)
    with Shard(shards[config]) as shard:       # the models' audio is as configured
        assert (shard.sample_rate, shard.channels) == (CONFIGS[config].get("sample_rate", 44100),
                                                       1 if CONFIGS[config].get("mono") else 2)


def test_hq_references_are_musdbs_bit_for_bit(track, tmp_path):
    """MUSDB18-HQ's 16-bit WAVs, read by musdb (``is_wav=True``) and by a 22050 Hz mono shard."""
    folder = tmp_path / "hq" / "test" / track.name
    folder.mkdir(parents=True)
    for stream, audio in zip(STREAMS, track.stems):            # musdb's decode, written as 16-bit WAVs
        soundfile.write(folder / f"{stream}.wav", audio, track.rate, subtype="PCM_16")
    (hq,) = musdb.DB(root=str(tmp_path / "hq"), is_wav=True, subsets="test").tracks
    dataset, (entry,) = scan(tmp_path / "hq", subsets=["test"])
    write_shard(dataset, entry.member, "test", tmp_path / "t.h5", sample_rate=22050, mono=True)
    refs, rate, _ = read_shard_references(tmp_path / "t.h5")
    assert rate == hq.rate == 44100
    for target in TARGETS:
        np.testing.assert_array_equal(refs[target], hq.targets[target].audio, err_msg=target)


# --- museval's scores --------------------------------------------------------------------


@pytest.fixture(scope="module")
def realistic(track, targets, tmp_path_factory):
    """Estimates with some of the other sources in them (on the float32 grid),
    scored by museval on musdb's own Track, once."""
    mixture = track.audio
    estimates = {t: on_float32_grid(targets[t] + 0.1 * (mixture - targets[t])) for t in TARGETS}
    folder = tmp_path_factory.mktemp("realistic")
    return estimates, museval_json(track, estimates, folder / "museval"), write_wavs(folder / "wav", estimates, 44100)


@pytest.mark.parametrize("config", ["44100 Hz stereo", pytest.param("22050 Hz mono", marks=pytest.mark.slow)])
def test_scores_equal_musevals_on_musdbs_track(shards, realistic, config, tmp_path):
    estimates, theirs, wavs = realistic
    read, _ = read_estimates(wavs, 44100, shard=shards[config])
    for target in TARGETS:                     # the WAVs hold exactly what museval was given
        np.testing.assert_array_equal(read[target], estimates[target])
    result = evaluate_shard(shards[config], wavs, tmp_path / "ours.json")
    assert result["targets"] == ["drums", "bass", "other", "vocals", "accompaniment"] and result["frames"] == 6
    assert_same_scores(tmp_path / "ours.json", theirs)


def test_musevals_regression_recipe(track, shards, tmp_path):
    """sigsep-mus-eval's tests/test_regression.py: seed 0, uniform random
    vocals then accompaniment of the track's shape (put on the float32 grid,
    which WAV estimates read as float32 need), scored both ways."""
    np.random.seed(0)
    estimates = {"vocals": np.random.random(track.audio.shape), "accompaniment": np.random.random(track.audio.shape)}
    estimates = {t: on_float32_grid(a) for t, a in estimates.items()}
    theirs = museval_json(track, estimates, tmp_path / "museval")
    wavs = write_wavs(tmp_path / "wav", estimates, track.rate)
    evaluate_shard(shards["44100 Hz stereo"], wavs, tmp_path / "ours.json")
    assert [name for name, _ in scores(theirs)] == ["vocals", "accompaniment"]
    assert_same_scores(tmp_path / "ours.json", theirs)


# --- estimates at the models' rate and channels -----------------------------------------------


def test_estimates_at_the_models_rate_and_channels_are_brought_to_the_references(shards, targets, tmp_path,
                                                                                  caplog):
    """A 22050 Hz mono shard's own sources written as estimates: resampled to
    44100 Hz (soxr), duplicated to both channels, logged; close to the
    references' downmix (all but what lies above 11 kHz). Another rate is refused."""
    shard = shards["22050 Hz mono"]
    with Shard(shard) as sh:
        own = dict(zip(SOURCES, sh.sources()))
    own["accompaniment"] = own["bass"] + own["drums"] + own["other"]
    wavs = write_wavs(tmp_path / "est", {t: a.T for t, a in own.items()}, 22050)
    with caplog.at_level(logging.INFO, logger="musicsep.evaluate.track"):
        estimates, _ = read_estimates(wavs, 44100, shard=shard)
    assert "at the shard's 22050 Hz, 1 channel(s), as its models separate: resampled from 22050 to 44100 Hz " \
           "(soxr), mono duplicated to 2 channels" in caplog.text
    for target in TARGETS:
        est, ref = estimates[target], targets[target]
        assert est.shape == ref.shape, target
        np.testing.assert_array_equal(est[:, 0], est[:, 1])
        downmix = ref.mean(axis=1)
        error_db = 10 * np.log10(np.sum((est[:, 0] - downmix) ** 2) / np.sum(downmix ** 2))
        assert error_db < -20, (target, error_db)
    soundfile.write(wavs / "vocals.wav", np.zeros((16000, 1)), 16000)
    with pytest.raises(MusicsepError, match=r"vocals.wav: sample rate 16000 Hz, the references' 44100 Hz "
                                            r"\(or the shard's models' 22050 Hz\)"):
        evaluate_shard(shard, wavs, tmp_path / "t.json")
