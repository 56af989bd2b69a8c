"""Separation and the oracles for other sources than MUSDB18's four: a model
of six sources writes its six stems and accompaniment, from a file and from a
shard of its sources; it refuses a shard of other sources; every oracle on a
six-source shard writes the shard's targets."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile
from separation_inputs import HOP, N_FFT, SR, sdr, synthetic_sources, tiny

from musicsep import ORACLES, SOURCES, TARGETS, MusicsepError, targets_of
from musicsep.cli import main
from musicsep.data.shard import Shard, write_layout
from musicsep.models.checkpoint import load_model, save_model_file
from musicsep.separate.oracles import oracle, oracle_shard
from musicsep.separate.separator import Separator, separate_file, separate_shard

pytestmark = pytest.mark.usefixtures("one_thread")

SIX = ("vocals", "drums", "bass", "guitar", "piano", "other")
SEVEN = SIX + ("accompaniment",)
FAMILIES = ["blstm_mask", "conditional_centroids", "deep_clustering", "umx"]


def six_sources(seconds: float = 1.0, seed: int = 1) -> np.ndarray:
    """Six stereo sources ``(6, 2, samples)`` in :data:`SIX` order: the four
    synthetic ones and two more tones (a plucked-like guitar, a piano-like chord)."""
    drums, bass, other, vocals = synthetic_sources(seconds, seed)
    t = np.arange(drums.shape[-1]) / SR
    guitar = 0.2 * np.sin(2 * np.pi * 196 * t) * np.exp(-6 * (t % 0.5))
    piano = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (523, 659)) * np.exp(-3 * (t % 1))
    pan = np.array([[0.8], [0.4]])
    return np.stack([vocals, drums, bass, guitar * pan, piano * pan[::-1], other]).astype(np.float32)


def write_six_shard(path, sources: np.ndarray, names=SIX, mixture: np.ndarray | None = None):
    """A shard of ``names`` through the format's one writer."""
    audio = np.concatenate([(sources.sum(0) if mixture is None else mixture)[None], sources]).astype(np.float32)
    attrs = {"name": path.stem, "slug": path.stem, "subset": "test", "split": "test", "sample_rate": SR,
             "source_sample_rate": SR, "streams": ["mixture", *names], "channels": 2,
             "samples": audio.shape[-1], "duration": audio.shape[-1] / SR}
    write_layout(path, [audio], attrs, channels=2, chunk=SR, sources=names)
    return path


def read(path) -> np.ndarray:
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    assert rate == SR
    return audio.T


def test_targets_of_follow_the_sources():
    assert targets_of(SIX) == SEVEN
    assert set(targets_of(SOURCES)) == set(TARGETS)
    assert targets_of(("drums", "bass")) == ("drums", "bass")              # no vocals: no accompaniment
    assert targets_of(("vocals",)) == ("vocals",)                          # nothing to accompany


@pytest.mark.parametrize("family", FAMILIES)
def test_a_six_source_model_writes_its_stems(tmp_path, family):
    """The model file keeps the sources; separating a shard of them and an
    audio file writes the six stems and accompaniment (the sum of all but
    the vocals), each as long as the input."""
    model = tiny(family, sources=list(SIX))
    assert model.sources == SIX and model.n_sources == 6
    save_model_file(tmp_path / "model.pt", model, {"name": "six"}, 1, 0.0)
    loaded, state = load_model(tmp_path / "model.pt")
    assert loaded.sources == SIX and state["kwargs"]["sources"] == SIX
    sources = six_sources()
    shard = write_six_shard(tmp_path / "six.h5", sources)
    paths = separate_shard(shard, tmp_path / "model.pt", tmp_path / "out", device="cpu", progress=False)
    assert list(paths) == list(SEVEN)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{t}.wav" for t in SEVEN)
    stems = {t: read(tmp_path / "out" / f"{t}.wav") for t in SEVEN}
    for target, audio in stems.items():
        assert audio.shape == sources.shape[1:] and np.isfinite(audio).all(), target
    accompaniment = stems["drums"] + stems["bass"] + stems["guitar"] + stems["piano"] + stems["other"]
    np.testing.assert_allclose(stems["accompaniment"], accompaniment, atol=1e-6)
    # the same in memory, and from an audio file through ffmpeg
    separator = Separator(loaded)
    assert separator.sources == SIX
    assert list(separator.separate(sources.sum(0))) == list(SEVEN)
    soundfile.write(tmp_path / "mix.wav", sources.sum(0).T, SR, subtype="FLOAT")
    paths = separate_file(tmp_path / "mix.wav", separator, tmp_path / "file", progress=False)
    assert list(paths) == list(SEVEN) and all(read(p).shape == sources.shape[1:] for p in paths.values())


def test_a_model_refuses_a_shard_of_other_sources(tmp_path, make_shard):
    """A six-source model and a MUSDB18 shard (and the other way round): one
    line naming both lists, exit status 1, nothing written."""
    save_model_file(tmp_path / "six.pt", tiny(sources=list(SIX)), {"name": "six"}, 1, 0.0)
    save_model_file(tmp_path / "four.pt", tiny(), {"name": "four"}, 1, 0.0)
    musdb = make_shard(tmp_path / "musdb.h5", synthetic_sources(0.5), sample_rate=SR)
    six = write_six_shard(tmp_path / "six.h5", six_sources(0.5))
    for model, shard in [("six.pt", musdb), ("four.pt", six)]:
        with pytest.raises(MusicsepError, match="the shard's sources are .*, the model's") as err:
            separate_shard(shard, tmp_path / model, tmp_path / "out", device="cpu", progress=False)
        assert "vocals, drums, bass, guitar, piano, other" in str(err.value)
        assert "drums, bass, other, vocals" in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "musicsep", "separate", str(musdb), "--shard", "--model",
                           str(tmp_path / "six.pt"), "--out", str(tmp_path / "out"), "--device", "cpu"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "guitar" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["four.pt", "musdb.h5", "six.h5", "six.pt"]


@pytest.mark.parametrize("kind", ORACLES)
def test_every_oracle_on_a_six_source_shard(tmp_path, kind):
    """Every oracle of a six-source shard writes its seven targets; the
    masks that sum to one give back the mixture, each source gains on the
    mixture, accompaniment is the sum of all but the vocals, and ``mix`` is
    the shard's own mixture as every target."""
    sources = six_sources()
    mixture = sources.sum(0) + (np.float32(0.01) if kind == "mix" else np.float32(0))
    shard = write_six_shard(tmp_path / "six.h5", sources, mixture=mixture)
    paths = oracle_shard(shard, kind, tmp_path / kind, n_fft=N_FFT, hop=HOP, progress=False)
    assert list(paths) == list(SEVEN)
    out = {t: read(p) for t, p in paths.items()}
    with Shard(shard) as sh:
        assert sh.source_names == SIX
    if kind == "mix":
        for target in SEVEN:
            np.testing.assert_array_equal(out[target], mixture, err_msg=target)
        return
    for k, name in enumerate(SIX):
        if kind not in ("ibm1", "ibm2"):          # SiSEC's binary masks may leave a weak source's bins out
            assert sdr(sources[k], out[name]) > sdr(sources[k], mixture), name
    np.testing.assert_allclose(out["accompaniment"], sum(out[s] for s in SIX if s != "vocals"), atol=1e-5)
    if kind in ("irm1", "ibm", "mwf"):            # their masks sum to one (mwf: up to the regulariser)
        assert sdr(mixture, sum(out[s] for s in SIX)) > 50
    # in memory, by name and by array, the same
    direct = oracle(kind, dict(zip(SIX, sources)), mixture, n_fft=N_FFT, hop=HOP, source_names=SIX)
    assert list(direct) == list(SEVEN)
    np.testing.assert_allclose(direct["guitar"], out["guitar"], atol=1e-6)
    with pytest.raises(MusicsepError, match="sources lack guitar"):
        oracle(kind, dict(zip(SOURCES, sources)), n_fft=N_FFT, hop=HOP, source_names=SIX)
    assert main(["separate", str(shard), "--shard", "--oracle", kind, "--out", str(tmp_path / "cli"),
                 "--n-fft", str(N_FFT), "--hop", str(HOP)]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(f"{t}.wav" for t in SEVEN)
