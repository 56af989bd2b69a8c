"""Separation on the CPU with tiny models: exact output lengths, chunked
against whole-track processing, the STFT grid against the feature module, the
oracles against the true sources, the Wiener post-filter, files of any format
and rate, shards, and the command line's errors."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile
import torch

from musicsep import ORACLES, SOURCES, STREAMS, TARGETS, MusicsepError
from musicsep.cli import main
from musicsep.data.audio import decode
from musicsep.models.registry import build_model
from musicsep.separate.oracles import _oracle_masks, oracle, oracle_shard
from musicsep.separate.separator import BLOCK_FRAMES, Separator, separate_file, separate_shard
from musicsep.spectral.stft import Framing, OverlapAdd, padded_segment
from musicsep.spectral.wiener import wiener

SR, N_FFT, HOP = 16000, 512, 128
TINY = dict(hidden=8, layers=1, n_mels=32, n_fft=N_FFT, hop=HOP, sample_rate=SR)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(name: str = "blstm_mask", seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(name, **TINY, **kw).eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = tiny()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save({"model": model.name, "kwargs": model.kwargs(), "weights": model.state_dict()}, path)
    return path


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB (plain energy ratio, no projection)."""
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2)))


def synthetic_sources(seconds: float = 2.0, seed: int = 1) -> np.ndarray:
    """Four stereo sources ``(4, 2, samples)`` in SOURCES order, each panned
    to its own place: noise bursts, a low tone, a gated chord, a sung-like
    harmonic tone with vibrato."""
    n = int(seconds * SR) + 33
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)

    def pan(x, angle):
        return np.stack([x * np.cos(angle), x * np.sin(angle)])

    drums = pan(0.3 * rng.standard_normal(n) * np.exp(-30 * ((4 * t) % 1)), 0.3)
    bass = pan(0.5 * np.sin(2 * np.pi * 70 * t) * (1 + 0.3 * np.sin(2 * np.pi * 1.3 * t)), 0.785)
    other = pan(sum(0.15 * np.sin(2 * np.pi * f * t) for f in (330, 415, 494)) * (t % 1 < 0.7), 1.2)
    phase = 2 * np.pi * np.cumsum(220 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / SR
    vocals = pan(sum(0.2 / h * np.sin(h * phase) for h in range(1, 8)) * (t % 0.5 < 0.4), 0.6)
    return np.stack([drums, bass, other, vocals]).astype(np.float32)


def music(seconds: float, seed: int = 0) -> np.ndarray:
    """A stereo mixture with tones and a little noise ``(2, samples)``."""
    return synthetic_sources(seconds, seed).sum(0) + 0.01 * np.random.default_rng(seed).standard_normal(
        (2, int(seconds * SR) + 33)).astype(np.float32)


def assert_targets(out: dict, shape: tuple) -> None:
    assert list(out) == list(TARGETS)
    for name, audio in out.items():
        assert audio.shape == shape and audio.dtype == np.float32, name
        assert np.isfinite(audio).all(), name
    np.testing.assert_array_equal(out["accompaniment"], out["drums"] + out["bass"] + out["other"])


# ------------------------------------------------------------------ Separator


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


@pytest.mark.parametrize("n_fft,hop", [(512, 128), (512, 256), (400, 160)])
def test_chunked_stft_and_overlap_add_reconstruct_the_signal(n_fft, hop):
    """Frames computed and overlap-added chunk by chunk invert exactly, where
    the hop divides the frame (strided additions) and where it does not (fold)."""
    x = np.random.default_rng(0).standard_normal((2, 5003)).astype(np.float32)
    framing = Framing(x.shape[-1], n_fft, hop, torch.hann_window(n_fft))
    acc = OverlapAdd(framing, (2,))
    for f0, f1, _, _ in framing.chunks(7):
        acc.add(framing.stft(lambda a, b: x[:, a:b], f0, f1), f0, f1)
    np.testing.assert_allclose(acc.result(), x, atol=1e-5)


def test_padded_segments_are_the_reflection_padded_signal():
    """Any span of the signal padded as torch.stft(center=True) pads it, read
    in pieces: the reflected ends, the inside, or both for a short signal."""
    rng = np.random.default_rng(0)
    pad = 64
    for length in (65, 66, 200, 1000):
        x = rng.standard_normal((2, length)).astype(np.float32)
        padded = torch.nn.functional.pad(torch.from_numpy(x)[None], (pad, pad), mode="reflect")[0].numpy()
        for start in range(0, length + 2 * pad, 7):
            for stop in {start + 1, start + 50, start + 2 * pad + 1, length + 2 * pad}:
                stop = min(stop, length + 2 * pad)
                got = padded_segment(lambda a, b: x[:, a:b], length, start, stop, pad)
                np.testing.assert_array_equal(got, padded[:, start:stop], err_msg=f"{length} [{start}, {stop})")


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


def test_chunk_windows_have_one_length_tile_the_track_and_keep_their_context():
    """Windows of one length (they stack into one batch), none longer than
    chunk + 2 * context; the chunks tile the track, each with the context
    frames on both sides that the track has; tiled so that the model sees
    ``frames + 2 * (chunks - 1) * context`` frames up to rounding; a track
    that fits one window is one chunk."""
    framing = Framing(44100 * 7, 2048, 512, torch.hann_window(2048))
    frames = framing.frames
    for chunk, context in [(50, 10), (100, 0), (200, 300), (1000, 5), (150, 40), (1, 0), (3, 1), (7, 2)]:
        chunks = framing.chunks(chunk, context)
        window = chunks[0][3] - chunks[0][2]
        assert all(c1 - c0 == window for *_, c0, c1 in chunks)
        assert window <= chunk + 2 * context
        assert chunks[0][0] == 0 and chunks[-1][1] == frames
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        for f0, f1, c0, c1 in chunks:
            assert 0 <= c0 <= f0 < f1 <= c1 <= frames
            assert f0 - c0 >= min(context, f0) and c1 - f1 >= min(context, frames - f1)
        if frames <= chunk + 2 * context:
            assert chunks == [(0, frames, 0, frames)]
        else:
            assert len(chunks) <= -(-frames // chunk)
            assert len(chunks) * window < frames + 2 * (len(chunks) - 1) * context + len(chunks)
    # a track just over one chunk: two windows of half its length plus context, not two of chunk + context
    framing = Framing(512 * 3400, 2048, 512, torch.hann_window(2048))
    assert [c1 - c0 for *_, c0, c1 in framing.chunks(2584, 173)] == [1874, 1874]


def test_separator_rejects_a_bad_batch():
    with pytest.raises(MusicsepError, match="batch_chunks must be a positive integer"):
        Separator(tiny(), batch_chunks=0)


@pytest.mark.parametrize("name,kw", [("conditional_centroids", {"em_iterations": 1}),
                                     ("deep_clustering", {"clustering": "kmeans", "cluster_iterations": 3})])
def test_embedding_models_separate(name, kw):
    assert_targets(Separator(tiny(name, **kw), chunk_seconds=1.0).separate(music(2.5)), (2, int(2.5 * SR) + 33))


# ------------------------------------------------------------------ oracles and Wiener filter


@pytest.mark.parametrize("kind", ORACLES)
def test_oracles_recover_the_sources(kind):
    sources = synthetic_sources()
    mixture = sources.sum(0)
    out = oracle(kind, dict(zip(SOURCES, sources)), mixture, n_fft=N_FFT, hop=HOP)
    assert_targets(out, mixture.shape)
    for k, name in enumerate(SOURCES):
        gain = sdr(sources[k], out[name]) - sdr(sources[k], mixture)
        assert gain > 15, (name, gain)
    total = sum(out[name] for name in SOURCES)
    if kind in ("irm1", "ibm", "mwf"):                 # their masks sum to one (mwf: up to the regulariser)
        assert sdr(mixture, total) > 50
    # chunked reading gives the whole-track result (mwf: covariances over the whole track)
    chunked = oracle(kind, sources, mixture, n_fft=N_FFT, hop=HOP, chunk_frames=17)
    for name in TARGETS:
        np.testing.assert_allclose(chunked[name], out[name], atol=1e-4)


def test_sisec_binary_masks_threshold_the_ratio_to_the_mixture():
    """IBM1 and IBM2 as in SiSEC 2018's oracles: a source keeps a bin where its
    magnitude (IBM1) or power (IBM2) is at least half the mixture's, so a bin
    may go to no source; ``ibm`` gives every bin to its loudest source."""
    # one channel, one frame, three bins; magnitudes of the four sources
    mags = torch.tensor([[0.6, 0.3, 0.72], [0.4, 0.3, 0.0], [0.0, 0.2, 0.28], [0.0, 0.2, 0.0]])
    src = mags[:, None, :, None].to(torch.complex64)
    mix = src.sum(0)                                    # |X| = 1 in every bin
    ibm1 = _oracle_masks("ibm1", src, mix)[:, 0, :, 0]
    ibm2 = _oracle_masks("ibm2", src, mix)[:, 0, :, 0]
    ibm = _oracle_masks("ibm", src, mix)[:, 0, :, 0]
    assert ibm1[:, 0].tolist() == [1, 0, 0, 0] and ibm1[:, 1].tolist() == [0, 0, 0, 0]
    assert ibm1[:, 2].tolist() == [1, 0, 0, 0]
    assert ibm2[:, 0].tolist() == [0, 0, 0, 0]          # 0.36 < 0.5
    assert ibm2[:, 2].tolist() == [1, 0, 0, 0]          # 0.5184 >= 0.5
    assert ibm.sum(0).tolist() == [1, 1, 1] and ibm[0].tolist() == [1, 1, 1]


def test_oracle_rejects_bad_input():
    sources = synthetic_sources(0.2)
    with pytest.raises(MusicsepError, match="unknown oracle 'irm3'"):
        oracle("irm3", sources)
    with pytest.raises(MusicsepError, match="lack vocals"):
        oracle("irm1", dict(zip(SOURCES[:3], sources)))
    with pytest.raises(MusicsepError, match="differ in shape"):
        oracle("irm1", sources, sources.sum(0)[:, :-1])


def test_wiener_of_true_sources_is_the_mwf_oracle():
    sources = synthetic_sources()
    mixture = sources.sum(0)
    framing = Framing(mixture.shape[-1], N_FFT, HOP, torch.hann_window(N_FFT))
    x = framing.stft(lambda a, b: mixture[:, a:b], 0, framing.frames)
    s = framing.stft(lambda a, b: sources[..., a:b], 0, framing.frames)
    filtered = wiener(s, x)
    assert filtered.shape == s.shape
    acc = OverlapAdd(framing, (4, 2))
    acc.add(filtered, 0, framing.frames)
    reference = oracle("mwf", sources, n_fft=N_FFT, hop=HOP)
    for k, name in enumerate(SOURCES):
        assert sdr(reference[name], acc.result()[k]) > 40, name


def test_wiener_post_filter_keeps_shapes_and_sums_to_the_mixture():
    sources = synthetic_sources()
    mixture = sources.sum(0)
    model = tiny()
    plain = Separator(model).separate(mixture)
    filtered = Separator(model, wiener=True, chunk_seconds=1.0).separate(mixture)
    assert_targets(filtered, mixture.shape)
    # the BLSTM's independent sigmoid masks do not sum to one; the filter's outputs do
    assert sdr(mixture, sum(filtered[n] for n in SOURCES)) > 25
    assert sdr(mixture, sum(filtered[n] for n in SOURCES)) > sdr(mixture, sum(plain[n] for n in SOURCES)) + 10
    # an untrained model's estimates stay bounded by the mixture's energy
    for name in SOURCES:
        assert np.sum(filtered[name] ** 2) < 1.5 * np.sum(mixture ** 2)


# ------------------------------------------------------------------ files, shards, command line


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
    at 22.05 kHz with exactly its length, in stereo."""
    wav = tmp_path / "in.wav"
    audio = music(1.3)[0]
    audio = np.interp(np.arange(int(len(audio) * 22050 / SR) - 3) * SR / 22050, np.arange(len(audio)), audio)
    soundfile.write(wav, audio.astype(np.float32), 22050, subtype="FLOAT")
    paths = separate_file(wav, model_file, tmp_path / "out", wiener=True, progress=False)
    assert list(paths) == list(TARGETS)
    for target, path in paths.items():
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        assert rate == 22050 and data.shape == (len(audio), 2), target
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


def write_shard(path, sources: np.ndarray, rate: int = SR, name: str = "Artist - Title"):
    with h5py.File(path, "w") as h5:
        h5["audio"] = np.concatenate([sources.sum(0, keepdims=True), sources]).astype(np.float32)
        h5.attrs.update({"sample_rate": rate, "name": name, "streams": list(STREAMS)})
    return path


def read_targets(out_dir):
    result = {}
    for target in TARGETS:
        data, rate = soundfile.read(out_dir / f"{target}.wav", dtype="float32", always_2d=True)
        assert rate == SR
        result[target] = data.T
    return result


def test_shards_through_the_cli(tmp_path, model_file, capsys):
    sources = synthetic_sources(1.5)
    shard = write_shard(tmp_path / "track.h5", sources)
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
    other_rate = write_shard(tmp_path / "other.h5", sources, rate=8000)
    with pytest.raises(MusicsepError, match="8000 Hz, the model at 16000 Hz"):
        separate_shard(other_rate, model_file, tmp_path / "y", progress=False)
    not_a_shard = tmp_path / "bad.h5"
    not_a_shard.write_bytes(b"not hdf5")
    with pytest.raises(MusicsepError, match="not a readable shard"):
        oracle_shard(not_a_shard, "irm2", tmp_path / "z")
