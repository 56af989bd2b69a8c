"""Inputs and checks for the separation tests (tests/separate, tests/spectral):
a tiny model at 16 kHz, synthetic sources and mixtures, SDR, and the shape of
a separation's result."""

from __future__ import annotations

import numpy as np
import torch

from musicsep import TARGETS
from musicsep.models.registry import build_model

SR, N_FFT, HOP = 16000, 512, 128

TINY = dict(hidden=8, layers=1, n_mels=32, n_fft=N_FFT, hop=HOP, sample_rate=SR)


def tiny(name: str = "blstm_mask", seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(name, **TINY, **kw).eval()


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
