"""Separation on the CPU with tiny models (musicsep.separate.separator):
exact output lengths, chunked against whole-track processing, the STFT grid
against the feature module, files of any format and rate, shards, and the
command line's errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from separation_inputs import HOP, N_FFT, SR, assert_targets, music, synthetic_sources, tiny

from musicsep import SOURCES, TARGETS, MusicsepError
from musicsep.cli import main
from musicsep.data.audio import decode
from musicsep.separate.oracles import oracle, oracle_shard
from musicsep.separate.separator import BLOCK_FRAMES, Separator, separate_file, separate_shard
from musicsep.spectral.stft import Framing, OverlapAdd

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = tiny()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save({"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict()}, path)
    return path


@pytest.mark.parametrize("length", [1, 100, 257, 4099, 3 * SR + 17])
def test_outputs_have_the_input_length(length):
    mixture = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32) * 0.1
    assert_targets(Separator(tiny(), chunk_seconds=0.5).separate(mixture), (2, length))


def test_mono_and_empty_inputs():
    separator = Separator(tiny())
    assert_targets(separator.separate(music(0.5)[:1]), (1, SR // 2 + 33))
    assert_targets(separator.separate(np.zeros((2, 0), np.float32)), (2, 0))
    with pytest.raises(MusicsepError, match="channels, samples"):
        separator.separate(np.zeros(100, np.float32))
    with pytest.raises(MusicsepError, match="NaN"):
        separator.separate(np.full((2, 100), np.nan, np.float32))
    with pytest.raises(MusicsepError, match="chunk_seconds"):
        Separator(tiny(), chunk_seconds=0)


def test_frames_and_overlap_add_match_the_feature_module():
    """Chunked framing gives exactly Features.stft's frames, and overlap-add
    inverts them like Features.istft: whole-track separation is the model's
    own masks applied to its own STFT (3 s: 376 frames, so the masking runs
    in more than one block of frames)."""
    model = tiny()
    x = music(3.0)
    assert 1 + x.shape[-1] // HOP > BLOCK_FRAMES
    framing = Framing(x.shape[-1], N_FFT, HOP, model.features.window)
    reference = model.features.stft(torch.from_numpy(x))
    spec = torch.cat([framing.stft(lambda a, b: x[:, a:b], f0, f1) for f0, f1, _, _ in framing.chunks(7)], -1)
    torch.testing.assert_close(spec, reference, rtol=0, atol=1e-6)
    acc = OverlapAdd(framing, (2,))
    for f0, f1, _, _ in framing.chunks(5):
        acc.add(framing.stft(lambda a, b: x[:, a:b], f0, f1), f0, f1)
    np.testing.assert_allclose(acc.result(), x, atol=1e-6)

    with torch.no_grad():
        masks = model.masks(reference.abs())
        expected = model.features.istft(masks * reference[:, None], x.shape[-1]).numpy()
    out = Separator(model).separate(x)
    for k, name in enumerate(SOURCES):
        np.testing.assert_allclose(out[name], expected[:, k], atol=1e-5)


def test_chunked_separation_matches_whole_track():
    """Tolerance: with 1 s of context on each side the chunked estimates are
    within 1e-2 of the signal's peak of whole-track ones (they come out near
    1e-7: a BLSTM forgets in far less than a second); without context the
    chunk boundaries show."""
    model = tiny()
    x = music(7.0)
    whole = Separator(model, chunk_seconds=60.0).separate(x)
    peak = np.abs(x).max()

    def worst(out):
        return max(np.abs(out[k] - whole[k]).max() for k in TARGETS) / peak

    chunked = Separator(model, chunk_seconds=1.0, context_seconds=1.0, batch_chunks=1)
    assert chunked.n_chunks(x.shape[-1]) == 8
    one_by_one = chunked.separate(x)
    assert worst(one_by_one) < 1e-2
    assert worst(Separator(model, chunk_seconds=1.0, context_seconds=0.0).separate(x)) > worst(one_by_one)
    # chunks stacked into model calls (3 + 3 + 2 of the 8) give the chunk-by-chunk result
    batched = Separator(model, chunk_seconds=1.0, context_seconds=1.0, batch_chunks=3).separate(x)
    for k in TARGETS:
        np.testing.assert_allclose(batched[k], one_by_one[k], atol=1e-6 * peak)


def test_separator_rejects_a_bad_batch():
    with pytest.raises(MusicsepError, match="batch_chunks must be a positive integer"):
        Separator(tiny(), batch_chunks=0)


@pytest.mark.parametrize("name,kw", [("conditional_centroids", {"em_iterations": 1}),
                                     ("deep_clustering", {"clustering": "kmeans", "cluster_iterations": 3})])
def test_embedding_models_separate(name, kw):
    assert_targets(Separator(tiny(name, **kw), chunk_seconds=1.0).separate(music(2.5)), (2, int(2.5 * SR) + 33))


# files, shards, command line ----------------------------------------------------------------


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "musicsep", *map(str, args)], capture_output=True, text=True)


def test_separate_cli_on_an_mp3(tmp_path, model_file):
    mp3 = tmp_path / "x.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                    "-ac", "2", "-ar", "44100", str(mp3)], check=True)
    proc = run_cli("separate", mp3, "--model", model_file, "--out", tmp_path / "out", "--chunk-seconds", "1")
    assert proc.returncode == 0, proc.stderr
    length = decode(mp3).shape[-1]
    for target in TARGETS:
        info = soundfile.info(str(tmp_path / "out" / f"{target}.wav"))
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (44100, length, 2, "FLOAT")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{t}.wav" for t in TARGETS)


def test_separate_file_at_another_rate(tmp_path, model_file):
    """A mono 22.05 kHz WAV: resampled to the model's rate and back, written
    at 22.05 kHz with exactly its length, in mono."""
    wav = tmp_path / "in.wav"
    audio = music(1.3)[0]
    audio = np.interp(np.arange(int(len(audio) * 22050 / SR) - 3) * SR / 22050, np.arange(len(audio)), audio)
    soundfile.write(wav, audio.astype(np.float32), 22050, subtype="FLOAT")
    paths = separate_file(wav, model_file, tmp_path / "out", wiener=True, progress=False)
    assert list(paths) == list(TARGETS)
    for target, path in paths.items():
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        assert rate == 22050 and data.shape == (len(audio), 1), target
        assert np.isfinite(data).all()


def test_unreadable_input_is_a_one_line_error(tmp_path, model_file, capsys):
    bad = tmp_path / "noise.mp3"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    assert main(["separate", str(bad), "--model", str(model_file), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: ") and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, says", [
    ("dict", "not a musicsep model file (no model name, kwargs and weights)"),
    ("bytes", "not a PyTorch file ("),
    ("empty", "not a PyTorch file (EOFError)"),
    ("module", "it holds pickled Python objects"),
    ("unknown model", "unknown model 'nosuch'"),
    ("unknown argument", "kwargs.bogus: unknown argument of blstm_mask"),
    ("misfit", "the weights do not fit blstm_mask with the file's kwargs: size mismatch for blstm.lstm."),
    ("missing weight", 'Missing key(s) in state_dict: "head.bias"'),
])
def test_model_file_of_another_kind_is_a_one_line_error(tmp_path, capsys, content, says):
    wav = tmp_path / "in.wav"
    soundfile.write(wav, music(0.2).T, SR)
    other = tmp_path / "other.pt"
    model = tiny()
    state = {"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict()}
    if content == "dict":
        torch.save({"foo": 1}, other)
    elif content == "bytes":
        other.write_bytes(np.random.default_rng(1).bytes(3000))
    elif content == "empty":
        other.write_bytes(b"")
    elif content == "module":
        torch.save(model, other)                   # the whole module pickled: not loaded
    elif content == "unknown model":
        torch.save(state | {"model": "nosuch"}, other)
    elif content == "unknown argument":
        torch.save(state | {"kwargs": state["kwargs"] | {"bogus": 1}}, other)
    elif content == "misfit":                      # weights of another size than the kwargs say
        torch.save(state | {"kwargs": state["kwargs"] | {"hidden": 2 * state["kwargs"]["hidden"]}}, other)
    else:
        torch.save(state | {"weights": {k: v for k, v in state["weights"].items() if k != "head.bias"}}, other)
    assert main(["separate", str(wav), "--model", str(other), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {other}: ") and says in err[0]
    assert "\x1b" not in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()


def read_targets(out_dir):
    result = {}
    for target in TARGETS:
        data, rate = soundfile.read(out_dir / f"{target}.wav", dtype="float32", always_2d=True)
        assert rate == SR
        result[target] = data.T
    return result


def test_shards_through_the_cli(tmp_path, model_file, capsys, make_shard):
    sources = synthetic_sources(1.5)
    shard = make_shard(tmp_path / "track.h5", sources, sample_rate=SR)
    assert main(["separate", str(shard), "--shard", "--model", str(model_file), "--out", str(tmp_path / "m")]) == 0
    expected = Separator.from_file(model_file).separate(sources.sum(0))
    for target, audio in read_targets(tmp_path / "m").items():
        np.testing.assert_array_equal(audio, expected[target])

    assert main(["separate", str(shard), "--shard", "--oracle", "mwf", "--out", str(tmp_path / "o"),
                 "--n-fft", "1024", "--hop", "256"]) == 0
    expected = oracle("mwf", sources, n_fft=1024, hop=256)
    for target, audio in read_targets(tmp_path / "o").items():
        np.testing.assert_allclose(audio, expected[target], atol=1e-5)
    # the same, called directly with small chunks
    oracle_shard(shard, "ibm", tmp_path / "ibm", chunk_frames=5, progress=False)
    expected = oracle("ibm", sources)
    for target, audio in read_targets(tmp_path / "ibm").items():
        np.testing.assert_allclose(audio, expected[target], atol=1e-5)

    capsys.readouterr()
    assert main(["separate", str(shard), "--oracle", "irm1", "--out", str(tmp_path / "x")]) == 1
    assert "--oracle needs --shard" in capsys.readouterr().err
    other_rate = make_shard(tmp_path / "other.h5", sources, sample_rate=8000)
    with pytest.raises(MusicsepError, match="8000 Hz, the model at 16000 Hz"):
        separate_shard(other_rate, model_file, tmp_path / "y", progress=False)
    not_a_shard = tmp_path / "bad.h5"
    not_a_shard.write_bytes(b"not hdf5")
    with pytest.raises(MusicsepError, match="not a readable shard"):
        oracle_shard(not_a_shard, "irm2", tmp_path / "z")
