"""The training losses and the fast validation metric (musicsep.models.losses):
the affinity loss and its gradient against their naive form, the deep
clustering targets, the L1 loss on mel masks against autograd through their
full-resolution masks, and SI-SDR against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinymodels import HOP, K, N_FFT, N_MELS, SR, noise_mix, random_sources

from musicsep.models.losses import (
    affinity_loss,
    affinity_loss_naive,
    dc_targets,
    l1_mask_loss,
    l1_mel_mask_loss,
    si_sdr,
)
from musicsep.spectral.features import Features

pytestmark = pytest.mark.usefixtures("one_thread")


def np_affinity(v: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Σ_ij w_i w_j (v_i·v_j − y_i·y_j)² / (Σw)², pair by pair, averaged over the batch."""
    losses = []
    for vb, yb, wb in zip(v, labels, weights):
        total = 0.0
        for i in range(len(vb)):
            for j in range(len(vb)):
                total += wb[i] * wb[j] * (vb[i] @ vb[j] - yb[i] @ yb[j]) ** 2
        losses.append(total / wb.sum() ** 2)
    return float(np.mean(losses))


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_affinity_loss_matches_naive(n_classes):
    g = torch.Generator().manual_seed(n_classes)
    batch, points, dim = 2, 14, 5
    v = torch.randn(batch, points, dim, generator=g, dtype=torch.float64)
    labels = torch.nn.functional.one_hot(torch.randint(n_classes, (batch, points), generator=g), n_classes).double()
    weights = torch.rand(batch, points, generator=g, dtype=torch.float64)
    weights[:, :3] = 0                                      # silent bins
    fast = affinity_loss(v, labels, weights)
    naive = affinity_loss_naive(v, labels, weights)
    explicit = np_affinity(v.numpy(), labels.numpy(), weights.numpy())
    assert fast.shape == ()
    assert explicit > 0.1
    torch.testing.assert_close(fast, naive, rtol=1e-10, atol=1e-12)
    assert fast.item() == pytest.approx(explicit, rel=1e-10)
    # the weights matter: unweighted is another value
    assert affinity_loss(v, labels, torch.ones_like(weights)).item() != pytest.approx(explicit, rel=1e-3)
    # and the ideal embeddings (the labels themselves) give zero
    assert affinity_loss(labels, labels, weights).item() == pytest.approx(0.0, abs=1e-12)
    # float32 agrees too
    torch.testing.assert_close(affinity_loss(v.float(), labels.float(), weights.float()),
                               affinity_loss_naive(v.float(), labels.float(), weights.float()), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_affinity_loss_gradient_matches_naive(n_classes):
    """The hand-written backward pass against autograd through the naive form."""
    g = torch.Generator().manual_seed(10 + n_classes)
    batch, points, dim = 3, 17, 6
    v = torch.randn(batch, points, dim, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.nn.functional.one_hot(torch.randint(n_classes, (batch, points), generator=g), n_classes).double()
    weights = torch.rand(batch, points, generator=g, dtype=torch.float64)
    weights[0, :4] = 0
    upstream = 2.5                                          # a scale on the loss reaches the gradient
    fast, = torch.autograd.grad(upstream * affinity_loss(v, labels, weights), v)
    naive, = torch.autograd.grad(upstream * affinity_loss_naive(v, labels, weights), v)
    assert naive.abs().max() > 1e-3
    torch.testing.assert_close(fast, naive, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: affinity_loss(x, labels, weights), (v,))


def test_dc_targets_hand_made():
    """One example, 2 mel bands x 3 frames; points are frame-major."""
    mix = torch.tensor([[[1.0, 0.1, 0.005],                  # band 0: 0, -20, -46 dB
                         [0.02, 0.5, 0.011]]])               # band 1: -34, -6, -39.2 dB
    dominant = torch.tensor([[0, 1, 0],
                             [0, 2, 3]])                     # class of each (band, frame)
    src = torch.full((1, K, 2, 3), 0.01)
    for band in range(2):
        for frame in range(3):
            src[0, dominant[band, frame], band, frame] = 1.0
    labels, weights = dc_targets(mix, src)
    # frame-major points: (f0,b0) (f0,b1) (f1,b0) (f1,b1) (f2,b0) (f2,b1)
    assert labels.shape == (1, 6, K) and weights.shape == (1, 6)
    assert labels[0].argmax(-1).tolist() == [0, 0, 1, 2, 0, 3]
    assert (labels.sum(-1) == 1).all()
    # active: all but (f2, b0) at -46 dB; class 0 has 2 active bins, classes 1, 2, 3 one each
    expected = [2 ** -0.5, 2 ** -0.5, 1.0, 1.0, 0.0, 1.0]
    torch.testing.assert_close(weights[0], torch.tensor(expected))


def test_dc_targets_random_against_loops():
    g = torch.Generator().manual_seed(5)
    batch, n_mels, frames = 2, 4, 7
    src = torch.rand(batch, K, n_mels, frames, generator=g) ** 4
    mix = src.sum(1) * torch.exp(torch.randn(batch, n_mels, frames, generator=g) * 3)   # wide dynamic range
    labels, weights = dc_targets(mix, src)
    for b in range(batch):
        top = 20 * np.log10(mix[b].max().item())
        cls, active = {}, {}
        for t in range(frames):
            for m in range(n_mels):
                p = t * n_mels + m
                cls[p] = int(src[b, :, m, t].argmax())
                active[p] = 20 * np.log10(mix[b, m, t].item()) > top - 40
        assert not all(active.values()) and any(active.values())
        counts = np.bincount([cls[p] for p in cls if active[p]], minlength=K)
        for p in cls:
            assert labels[b, p].tolist() == np.eye(K)[cls[p]].tolist()
            want = counts[cls[p]] ** -0.5 if active[p] else 0.0
            assert weights[b, p].item() == pytest.approx(want, rel=1e-6)


# the training loss on mel masks is the L1 loss of their full-resolution masks --------------


def frames_major(x: torch.Tensor) -> torch.Tensor:
    """The same values as ``x`` (..., a, b), laid out as (..., b, a) in memory (as torch.stft's output)."""
    return x.transpose(-1, -2).contiguous().transpose(-1, -2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["frames_major", "contiguous"])
def test_l1_mel_mask_loss_matches_autograd(dtype, layout):
    feats = Features(sample_rate=SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS).to(dtype)
    mix = noise_mix(batch=3).to(dtype)
    src = random_sources(mix)
    src[0, 1] = 0                                           # a silent source: target 0
    src[1, 2] = 2 * mix[1]                                  # a source above the mixture: target capped
    g = torch.Generator().manual_seed(4)
    # mel masks whose projections fall inside and outside [0, 1] (the clamp matters), exact zeros included
    mel = (torch.rand(3, K, N_MELS, mix.shape[-1], generator=g, dtype=dtype) * 1.6 - 0.3)
    mel[2, 3] = 0
    if layout == "frames_major":
        mix, src, mel = frames_major(mix), frames_major(src), frames_major(mel)
    linear = torch.einsum("fm,bkmt->bkft", feats.mel_inverse.weight, mel)
    assert (linear < 0).any() and (linear > 1).any() and ((linear > 0) & (linear < 1)).any()

    mel_ref = mel.clone().requires_grad_(True)
    ref = l1_mask_loss(feats.to_linear(mel_ref), mix, src)
    ref.backward()
    mel_new = mel.clone().requires_grad_(True)
    new = l1_mel_mask_loss(mel_new, feats.mel_inverse.weight, mix, src)
    (3 * new).backward()                                    # the incoming gradient scales it
    tol = dict(rtol=1e-5, atol=1e-8) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-15)
    assert new.dtype == dtype and new.shape == ()
    torch.testing.assert_close(new, ref, **tol)
    assert mel_new.grad.dtype == dtype and mel_new.grad.shape == mel.shape
    torch.testing.assert_close(mel_new.grad, 3 * mel_ref.grad, **tol)
    # the clamp is part of it: without it, loss and gradient are others
    mel_free = mel.clone().requires_grad_(True)
    free = l1_mask_loss(torch.einsum("fm,bkmt->bkft", feats.mel_inverse.weight, mel_free), mix, src)
    free.backward()
    assert not torch.allclose(free, ref, rtol=1e-3) and not torch.allclose(mel_free.grad, mel_ref.grad, rtol=1e-2)


# the fast validation metric ---------------------------------------------------------------


def np_si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    alpha = estimate @ reference / (reference @ reference)
    target = alpha * reference
    return 10 * np.log10((target @ target) / ((estimate - target) @ (estimate - target)))


def test_si_sdr():
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(3, 2000, generator=g)
    noise = torch.randn(3, 2000, generator=g)
    estimate = reference + noise * torch.tensor([[0.05], [0.3], [1.0]])
    scores = si_sdr(estimate, reference)
    assert scores.shape == (3,) and scores.dtype == torch.float64
    for got, est, ref in zip(scores, estimate.double().numpy(), reference.double().numpy()):
        assert got.item() == pytest.approx(np_si_sdr(est, ref), abs=1e-9)
    assert 25 < scores[0] < 27 and scores[0] > scores[1] > scores[2]         # ~ -20 log10(0.05), then worse
    assert abs(scores[2].item()) < 1                                         # as much noise as signal: ~0 dB
    assert (si_sdr(reference, reference) > 100).all()                       # the true source
    # scale invariance: any gain on the estimate scores the same, and so does any gain on the reference
    torch.testing.assert_close(si_sdr(0.01 * estimate, reference), scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(si_sdr(-7.0 * estimate, -reference), scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(si_sdr(estimate, 3.0 * reference), scores, rtol=0, atol=1e-6)
    # unrelated noise scores low
    assert (si_sdr(noise, reference) < -20).all()
    for got, est, ref in zip(si_sdr(noise, reference), noise.double().numpy(), reference.double().numpy()):
        assert got.item() == pytest.approx(np_si_sdr(est, ref), abs=1e-9)
