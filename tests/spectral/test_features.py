"""The mel features (musicsep.spectral.features): the filterbank against
librosa, frozen projections, the pseudo-inverse, and the banded products
against the dense ones."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from tinymodels import HOP, K, N_FFT, N_FREQ, N_MELS, SR, noise_mix, random_sources, tiny

from musicsep.models.losses import l1_mask_loss
from musicsep.spectral.features import Features, banded_linear, banded_linear_t, mel_filterbank, row_blocks

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mel_filterbank_matches_librosa():
    fb = mel_filterbank(SR, N_FFT, N_MELS)
    assert fb.shape == (N_MELS, N_FREQ) and fb.dtype == np.float32
    assert (fb >= 0).all()
    np.testing.assert_allclose(fb.sum(1), 1.0, rtol=0, atol=1e-6)
    for norm in (None, "slaney"):
        ref = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, htk=False, norm=norm)
        np.testing.assert_allclose(fb, ref / ref.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    ref = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, htk=False, norm=None)
    np.testing.assert_allclose(fb * ref.sum(1, keepdims=True), ref, rtol=1e-5, atol=1e-7)


def test_mel_projections_are_frozen():
    model = tiny("blstm_mask")
    feats = model.features
    assert not feats.mel.weight.requires_grad and not feats.mel_inverse.weight.requires_grad
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-2)
    mix = noise_mix()
    l1_mask_loss(model(mix)["masks"], mix, random_sources(mix)).backward()
    opt.step()
    assert feats.mel.weight.grad is None and feats.mel_inverse.weight.grad is None
    after = model.state_dict()
    for key in ("features.mel.weight", "features.mel_inverse.weight", "features.mean", "features.std"):
        assert torch.equal(after[key], frozen[key]), key
    assert not torch.equal(after["head.weight"], frozen["head.weight"])        # the step did happen
    np.testing.assert_array_equal(feats.mel.weight.numpy(), mel_filterbank(SR, N_FFT, N_MELS))


def test_mel_pseudo_inverse():
    feats = Features(sample_rate=SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS)
    mel = feats.mel.weight.double()                         # (n_mels, freq)
    inverse = feats.mel_inverse.weight.double()             # (freq, n_mels)
    assert mel.shape == (N_MELS, N_FREQ) and inverse.shape == (N_FREQ, N_MELS)
    np.testing.assert_allclose(inverse.numpy(), np.linalg.pinv(mel.numpy()), rtol=1e-4, atol=1e-5)
    proj = inverse @ mel
    torch.testing.assert_close(proj @ proj, proj, rtol=0, atol=1e-5)
    torch.testing.assert_close(proj, proj.T, rtol=0, atol=1e-5)
    assert torch.linalg.matrix_rank(proj).item() == N_MELS
    torch.testing.assert_close(mel @ inverse, torch.eye(N_MELS, dtype=torch.float64), rtol=0, atol=1e-5)

    mag = noise_mix()
    torch.testing.assert_close(feats.to_mel(mag), torch.einsum("mf,bft->bmt", feats.mel.weight, mag))
    # masks in [0, 1] at mel resolution come back through the pseudo-inverse, clamped
    g = torch.Generator().manual_seed(0)
    mel_masks = torch.rand(2, K, N_MELS, 5, generator=g)
    linear = feats.to_linear(mel_masks)
    assert linear.shape == (2, K, N_FREQ, 5)
    assert linear.min() >= 0 and linear.max() <= 1
    torch.testing.assert_close(linear, torch.einsum("fm,bkmt->bkft", feats.mel_inverse.weight, mel_masks).clamp(0, 1))
    # a mask the clamp leaves alone projects back to itself at mel resolution
    half = torch.full((K, N_MELS, 3), 0.5)
    assert feats.to_linear(half).max() < 1
    torch.testing.assert_close(feats.to_mel(feats.to_linear(half)), half, rtol=0, atol=1e-5)
    # values far outside [0, 1] are clamped to the bounds
    wild = feats.to_linear(torch.randn(2, N_MELS, 5, generator=g) * 100)
    assert wild.min() == 0 and wild.max() == 1


@pytest.mark.parametrize("config", [(SR, N_FFT, N_MELS), (44100, 2048, 300)], ids=["tiny", "paper"])
def test_banded_projections_equal_the_dense_ones(config):
    sr, n_fft, n_mels = config
    feats = Features(sample_rate=sr, n_fft=n_fft, n_mels=n_mels)
    g = torch.Generator().manual_seed(0)
    for weight in (feats.mel.weight, feats.mel_inverse.weight):          # (out, in)
        blocks = row_blocks(weight)
        covered = torch.zeros_like(weight, dtype=torch.bool)
        for r0, r1, c0, c1, block in blocks:
            covered[r0:r1, c0:c1] = True
            assert torch.equal(block, weight[r0:r1, c0:c1])
        # what the blocks leave out is negligible (the filterbank's rounding residues, the inverse's tails)
        assert weight[~covered].abs().max() <= 1e-12 * weight.abs().max()
        if n_mels == 300:
            assert covered.float().mean() < 0.5                              # and it is the point
        for shape in ((7, weight.shape[1]), (2, 3, 5, weight.shape[1])):
            x = torch.randn(*shape, generator=g)
            torch.testing.assert_close(banded_linear(x, weight), x @ weight.T, rtol=1e-5, atol=1e-5)
            y = torch.randn(*shape[:-1], weight.shape[0], generator=g)
            torch.testing.assert_close(banded_linear_t(y, weight), y @ weight, rtol=1e-5, atol=1e-5)
    # the features use them without autograd, and the dense products with it: the same values
    mag = noise_mix() if n_mels == N_MELS else torch.rand(2, n_fft // 2 + 1, 9, generator=g)
    with torch.no_grad():
        fast = feats.to_mel(mag), feats.inputs(mag), feats.to_linear(feats.to_mel(mag) / mag.max())
    dense = (torch.einsum("mf,bft->bmt", feats.mel.weight, mag), None,
             torch.einsum("fm,bmt->bft", feats.mel_inverse.weight, fast[0] / mag.max()).clamp(0, 1))
    torch.testing.assert_close(fast[0], dense[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast[2], dense[2], rtol=1e-5, atol=1e-6)
    grad_mag = mag.clone().requires_grad_(True)
    torch.testing.assert_close(fast[1], feats.inputs(grad_mag), rtol=1e-5, atol=1e-5)
    # new weights (a loaded checkpoint) are never multiplied by blocks of the old ones
    with torch.no_grad():
        feats.mel_inverse.weight.mul_(2)
    x = torch.randn(3, n_mels, generator=g)
    torch.testing.assert_close(banded_linear(x, feats.mel_inverse.weight), x @ feats.mel_inverse.weight.T,
                               rtol=1e-5, atol=1e-5)
