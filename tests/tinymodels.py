"""Tiny models and their inputs for the tests of the models, their losses and
the features (tests/models, tests/spectral): CPU sizes at 8 kHz."""

from __future__ import annotations

import torch

from musicsep import SOURCES
from musicsep.models.centroids import COVARIANCES
from musicsep.models.registry import build_model
from musicsep.spectral.features import Features

SR, N_FFT, HOP, N_MELS = 8000, 256, 64, 16
N_FREQ = N_FFT // 2 + 1
K = len(SOURCES)
TINY = dict(sample_rate=SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS, hidden=8, layers=2, dropout=0.0)

MODEL_CASES = ([("blstm_mask", {})]
               + [("conditional_centroids", {"em_iterations": em, "covariance": cov})
                  for em in (0, 2) for cov in COVARIANCES]
               + [("deep_clustering", {"clustering": c}) for c in ("kmeans", "gmm")])


def case_id(case) -> str:
    name, kw = case
    return "-".join([name] + [f"{k}={v}" for k, v in kw.items()])


def tiny(name: str, **kwargs):
    torch.manual_seed(0)
    return build_model(name, **(TINY | kwargs))


def noise_mix(batch: int = 3, samples: int = 600, seed: int = 0) -> torch.Tensor:
    """Mixture magnitudes ``(batch, freq, frames)`` of random audio."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, samples, generator=g) * torch.linspace(0.1, 1.0, batch)[:, None]
    return Features(**{k: TINY[k] for k in ("sample_rate", "n_fft", "hop", "n_mels")}).stft(audio).abs()


def random_sources(mix: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Source magnitudes ``(batch, sources, freq, frames)`` that share out the mixture."""
    g = torch.Generator().manual_seed(seed)
    share = torch.rand(mix.shape[0], K, *mix.shape[1:], generator=g)
    return share / share.sum(1, keepdim=True) * mix[:, None]


def set_centroids(model, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.class_centroids.copy_(torch.nn.functional.normalize(torch.randn(K, model.dim, generator=g), dim=-1))
