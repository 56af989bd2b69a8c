"""The STFT on a chunked grid (musicsep.spectral.stft): chunk by chunk framing
and overlap-add invert exactly, reflection padding read in pieces, chunk
windows, and the magnitude."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinymodels import HOP, N_FFT, N_MELS, SR

from musicsep.spectral.features import Features
from musicsep.spectral.stft import Framing, OverlapAdd, magnitude, padded_segment


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


def test_magnitude_is_abs():
    feats = Features(sample_rate=SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS)
    g = torch.Generator().manual_seed(0)
    spec = feats.stft(torch.randn(2, 3, 700, generator=g))                 # a view of frames-major memory
    spec[0, 0, :, 0] = 0
    mag = magnitude(spec)
    assert mag.dtype == torch.float32 and mag.shape == spec.shape and mag.stride() == spec.abs().stride()
    torch.testing.assert_close(mag, spec.abs(), rtol=2e-7, atol=0)
    assert (mag[0, 0, :, 0] == 0).all()
    torch.testing.assert_close(magnitude(spec.to(torch.complex128)), spec.to(torch.complex128).abs(), rtol=1e-15, atol=0)
    assert torch.equal(magnitude(-spec.real), spec.real.abs())
