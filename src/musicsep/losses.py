"""Training losses. Shapes as in :mod:`musicsep.models`.

- :func:`l1_mask_loss`: L1 between the masked mixture magnitude and each
  source's magnitude capped at the mixture's (the target of mask models).
- :func:`affinity_loss`: the deep-clustering loss ‖VVᵀ − YYᵀ‖²_F (Hershey et
  al., ICASSP 2016, arXiv:1508.04306), weighted per bin, in the efficient form
  ‖VᵀV‖² − 2‖VᵀY‖² + ‖YᵀY‖² that never builds the points × points matrix.
- :func:`dc_targets`: the dominant-source labels and bin weights of the
  affinity loss: weights are the inverse square root of the class frequency
  (Wang, Le Roux, Hershey, "Alternative objective functions for deep
  clustering", ICASSP 2018), zero for bins more than ``threshold_db`` below the
  mixture's maximum.
"""

from __future__ import annotations

import torch


def target_magnitudes(mix_mag: torch.Tensor, src_mag: torch.Tensor) -> torch.Tensor:
    """Each source's magnitude capped at the mixture's: ``(batch, sources, freq, frames)``."""
    return torch.minimum(src_mag, mix_mag[:, None])


def l1_mask_loss(masks: torch.Tensor, mix_mag: torch.Tensor, src_mag: torch.Tensor) -> torch.Tensor:
    return (masks * mix_mag[:, None] - target_magnitudes(mix_mag, src_mag)).abs().mean()


def dc_targets(mix_mel: torch.Tensor, src_mel: torch.Tensor, threshold_db: float = 40.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``(batch, points, sources)`` (one-hot dominant source) and weights
    ``(batch, points)`` from mel magnitudes ``mix_mel`` (batch, n_mels, frames)
    and ``src_mel`` (batch, sources, n_mels, frames); points are frame-major,
    as the models' embeddings."""
    n_sources = src_mel.shape[1]
    dominant = src_mel.permute(0, 3, 2, 1).reshape(src_mel.shape[0], -1, n_sources).contiguous().argmax(-1)
    labels = torch.nn.functional.one_hot(dominant, n_sources).to(mix_mel.dtype)
    level = 20 * torch.log10(mix_mel.transpose(1, 2).reshape(mix_mel.shape[0], -1) + 1e-10)
    active = (level >= level.amax(dim=1, keepdim=True) - threshold_db).to(mix_mel.dtype)
    counts = (labels * active[..., None]).sum(dim=1)                                  # (batch, sources)
    inv_sqrt = torch.where(counts > 0, counts.clamp_min(1).rsqrt(), torch.zeros_like(counts))
    weights = (labels * inv_sqrt[:, None, :]).sum(-1) * active
    return labels, weights


def affinity_loss(v: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted ‖VVᵀ − YYᵀ‖²_F / (Σw)², averaged over the batch; ``v``
    (batch, points, dim), ``labels`` (batch, points, sources), ``weights``
    (batch, points). Each pair (i, j) counts with weight w_i w_j."""
    root = weights.sqrt()[..., None]
    vw, yw = v * root, labels * root
    vv = (vw.transpose(1, 2) @ vw).square().sum((1, 2))
    vy = (vw.transpose(1, 2) @ yw).square().sum((1, 2))
    yy = (yw.transpose(1, 2) @ yw).square().sum((1, 2))
    norm = weights.sum(1).square().clamp_min(1e-8)
    return ((vv - 2 * vy + yy) / norm).mean()


def affinity_loss_naive(v: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The same loss with the points × points matrices built (for tests)."""
    w = weights[:, :, None] * weights[:, None, :]
    diff = v @ v.transpose(1, 2) - labels @ labels.transpose(1, 2)
    return ((w * diff.square()).sum((1, 2)) / weights.sum(1).square().clamp_min(1e-8)).mean()
