"""What every separation model does (musicsep.models.base), on the CPU at
tiny sizes: shapes and mask ranges, mel masks before their projection, and
overfitting one fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinymodels import HOP, K, MODEL_CASES, N_FREQ, N_MELS, SR, case_id, noise_mix, set_centroids, tiny

from musicsep.models.losses import affinity_loss, dc_targets, l1_mask_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("case", MODEL_CASES, ids=case_id)
def test_shapes_and_mask_range(case):
    name, kw = case
    model = tiny(name, **kw).eval()
    mix = noise_mix()
    batch, frames = mix.shape[0], mix.shape[-1]
    assert mix.shape[1] == N_FREQ and frames == 600 // HOP + 1
    with torch.no_grad():
        out = model(mix)
    expected_keys = {"blstm_mask": {"masks"}, "conditional_centroids": {"masks", "embeddings"},
                     "deep_clustering": {"embeddings"}}[name]
    assert set(out) == expected_keys
    if "masks" in out:
        assert out["masks"].shape == (batch, K, N_FREQ, frames)
    if "embeddings" in out:
        assert out["embeddings"].shape == (batch, frames * N_MELS, model.dim)
        # unit_norm is the default of both embedding models
        torch.testing.assert_close(out["embeddings"].norm(dim=-1), torch.ones(batch, frames * N_MELS))
    if name == "deep_clustering":
        set_centroids(model)
    masks = model.masks(mix)
    assert masks.shape == (batch, K, N_FREQ, frames)
    assert masks.dtype == torch.float32
    assert masks.min() >= 0 and masks.max() <= 1
    assert masks.max() > 0                                  # not all clamped away


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if c[0] != "deep_clustering"], ids=case_id)
def test_mel_masks_are_the_masks_before_projection(case):
    name, kw = case
    model = tiny(name, **kw).eval()
    mix = noise_mix()
    with torch.no_grad():
        out = model(mix)
        mel = model(mix, full_resolution=False)
    assert "masks" not in mel and mel["mel_masks"].shape == (mix.shape[0], K, N_MELS, mix.shape[-1])
    torch.testing.assert_close(model.features.to_linear(mel["mel_masks"]), out["masks"])
    if "embeddings" in out:
        assert torch.equal(mel["embeddings"], out["embeddings"])


def fixed_audio(examples: int = 2, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Stereo sources ``(examples, sources, channels, samples)`` in SOURCES order:
    high-passed noise bursts, a low tone, a chord, a gated tone with vibrato."""
    rng = np.random.default_rng(seed)
    n = int(SR * seconds)
    t = np.arange(n) / SR
    out = []
    for _ in range(examples):
        noise = rng.standard_normal(n)
        env = np.zeros(n)
        period = int(SR * rng.uniform(0.1, 0.15))
        for start in range(int(rng.integers(0, period)), n, period):
            env[start:] += np.exp(-40 * t[: n - start])
        drums = (noise - np.convolve(noise, np.ones(4) / 4, mode="same")) * env
        f0 = rng.uniform(55, 110)
        bass = (np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t)) * (
            0.7 + 0.3 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
        other = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(300, 700, 3)) / 2
        vocals = np.sin(2 * np.pi * rng.uniform(1200, 1800) * t + 3 * np.sin(2 * np.pi * 5 * t))
        vocals *= np.sin(2 * np.pi * rng.uniform(2, 4) * t) > -0.3
        sources = 0.25 * np.stack([drums, bass, other, vocals])
        out.append(np.stack([sources, sources * rng.uniform(0.6, 1.0, (K, 1))], axis=1))
    return torch.tensor(np.stack(out), dtype=torch.float32)


@pytest.mark.parametrize("name", ["blstm_mask", "conditional_centroids", "deep_clustering"])
def test_overfits_one_batch(name):
    model = tiny(name)
    feats = model.features
    audio = fixed_audio()                                               # (2, 4, 2, samples)
    mix_mag = feats.stft(audio.sum(1)).abs().flatten(0, 1)              # channels into the batch
    src_mag = feats.stft(audio).abs().transpose(1, 2).flatten(0, 1)     # (4, sources, freq, frames)
    assert mix_mag.shape[0] == 4 and src_mag.shape == (4, K, *mix_mag.shape[1:])
    labels, weights = dc_targets(feats.to_mel(mix_mag), feats.to_mel(src_mag))

    def loss_fn():
        out = model(mix_mag)
        if name == "blstm_mask":
            return l1_mask_loss(out["masks"], mix_mag, src_mag)
        if name == "deep_clustering":
            return affinity_loss(out["embeddings"], labels, weights)
        return l1_mask_loss(out["masks"], mix_mag, src_mag) + affinity_loss(out["embeddings"], labels, weights)

    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    with torch.no_grad():
        initial = loss_fn().item()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = loss_fn().item()
    assert np.isfinite(final)
    assert final <= 0.2 * initial, (initial, final)
