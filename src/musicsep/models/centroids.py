"""Conditional centroids (Seetharaman et al., ICASSP 2019): a class-conditional Gaussian
mixture unfolded on a learned embedding space, its posteriors the masks."""

from __future__ import annotations

import math
import typing

import torch
from torch import nn

from musicsep import HOP, LOG_EPS, N_FFT, N_MELS, SAMPLE_RATE, SOURCES
from musicsep.models.base import EmbeddingModel
from musicsep.models.registry import check_model_args

Covariance = typing.Literal["diag", "spherical", "tied_diag", "tied_spherical"]


COVARIANCES: tuple[str, ...] = typing.get_args(Covariance)


class ConditionalCentroids(EmbeddingModel):
    """Class-conditional embeddings (Seetharaman, Wichern, Venkataramani, Le
    Roux, "Class-conditional embeddings for music source separation", ICASSP
    2019, arXiv:1811.03076).

    A Gaussian mixture with one component per source class lives on the
    embedding space. Its starting parameters come from a learned linear layer
    applied to each class's one-hot vector (the conditional starting points): a
    mean, a variance (softplus, plus a floor) and a prior (softmax) per class,
    with the variance shared and/or averaged over dimensions as ``covariance``
    says. ``em_iterations`` unrolled, differentiable EM iterations follow on
    each example's embeddings; a final E-step in log space gives the posteriors,
    which are the soft masks (through the inverse mel projection).
    """

    name = "conditional_centroids"

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS,
                 log_eps: float = LOG_EPS, hidden: int = 300, layers: int = 4, dropout: float = 0.3,
                 dim: int = 15, unit_norm: bool = True, covariance: Covariance = "tied_diag",
                 em_iterations: int = 0, var_floor: float = 1e-3, sources: tuple[str, ...] = SOURCES):
        check_model_args(self.name, covariance=covariance)
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, log_eps=log_eps,
                         hidden=hidden, layers=layers, dropout=dropout, dim=dim, unit_norm=unit_norm,
                         sources=sources)
        self.covariance, self.em_iterations, self.var_floor = covariance, em_iterations, var_floor
        self.conditional = nn.Linear(self.n_sources, 2 * dim + 1)

    def _shape_variance(self, var: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Tie and/or average a ``(..., sources, dim)`` variance as ``covariance`` says."""
        if self.covariance.endswith("spherical"):
            var = var.mean(dim=-1, keepdim=True)
        if self.covariance.startswith("tied"):
            if weights is None:
                var = var.mean(dim=-2, keepdim=True)
            else:
                var = (var * weights[..., None]).sum(dim=-2, keepdim=True) / weights.sum(-1, keepdim=True)[..., None]
        return var.expand(*var.shape[:-2], self.n_sources, self.dim)

    def initial_parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means, variances ``(sources, dim)`` and log priors ``(sources,)``
        from the class-conditional layer applied to the one-hot class vectors."""
        weight = self.conditional.weight
        out = self.conditional(torch.eye(self.n_sources, device=weight.device, dtype=weight.dtype))
        means = out[:, : self.dim]
        var = nn.functional.softplus(out[:, self.dim: 2 * self.dim]) + self.var_floor
        log_prior = torch.log_softmax(out[:, -1], dim=0)
        return means, self._shape_variance(var), log_prior

    @staticmethod
    def log_joint(v: torch.Tensor, means: torch.Tensor, var: torch.Tensor,
                  log_prior: torch.Tensor, shared_var: bool = False) -> torch.Tensor:
        """Log prior plus Gaussian log-likelihood of every point under every
        class: ``v`` (batch, points, dim); ``means``, ``var`` (batch or 1,
        sources, dim); ``log_prior`` (batch or 1, sources) -> (batch, sources,
        points) (sources-major: a normalisation over the 4 sources then runs
        along contiguous points, faster than along a last dimension of 4:
        ``benchmarks/RESULTS.md``, training step). The squared distance is
        expanded into matrix products, never materialising (points, sources, dim):
        ``(μ/σ²)·v − ½ (1/σ²)·v² + c``. ``shared_var``: the caller knows that
        every source has the same variances (the tied covariances); then
        ½ Σ_d v_d²/σ_d², the same for every source, is left out: the
        normalisation over sources cancels it exactly (the same posteriors up
        to float rounding, without a matrix product over the embeddings and its
        gradient). The gradients are the same too where the variances are tied
        in the graph (one variance expanded over the sources, as
        :meth:`_shape_variance` makes them)."""
        precision = 1.0 / var
        scaled = means * precision
        log_norm = -0.5 * (torch.log(var).sum(-1) + v.shape[-1] * math.log(2 * math.pi))
        const = log_prior + log_norm - 0.5 * (means * scaled).sum(-1)                # (batch or 1, sources)
        batch = v.shape[:-2]                   # (a batched product: matmul would broadcast points-major)
        joint = torch.matmul(scaled.expand(*batch, *scaled.shape[-2:]), v.transpose(-1, -2))
        if not shared_var:
            joint = joint - 0.5 * torch.matmul(precision.expand(*batch, *precision.shape[-2:]),
                                               v.square().transpose(-1, -2))
        return joint.add_(const[..., None])

    @classmethod
    def log_posteriors(cls, v: torch.Tensor, means: torch.Tensor, var: torch.Tensor,
                       log_prior: torch.Tensor, shared_var: bool = False) -> torch.Tensor:
        """E-step in log space: :meth:`log_joint` minus its log-sum-exp over
        the sources -> log posteriors (batch, points, sources), a view of
        sources-major memory."""
        return torch.log_softmax(cls.log_joint(v, means, var, log_prior, shared_var), dim=-2).transpose(-1, -2)

    @classmethod
    def posteriors(cls, v: torch.Tensor, means: torch.Tensor, var: torch.Tensor,
                   log_prior: torch.Tensor, shared_var: bool = False) -> torch.Tensor:
        """``log_posteriors(...).exp()`` as one softmax over the sources,
        ``exp(j − logsumexp(j))`` computed shifted by the largest ``j`` (the
        log-sum-exp trick), forward and backward in one pass each."""
        return torch.softmax(cls.log_joint(v, means, var, log_prior, shared_var), dim=-2).transpose(-1, -2)

    def m_step(self, v: torch.Tensor, posteriors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """M-step on each example: ``v`` (batch, points, dim), ``posteriors``
        (batch, points, sources) -> means, variances (batch, sources, dim) and
        log priors (batch, sources)."""
        counts = posteriors.sum(dim=1) + 1e-8                                   # (batch, sources)
        means = posteriors.transpose(1, 2) @ v / counts[..., None]
        second = posteriors.transpose(1, 2) @ v.square() / counts[..., None]
        var = (second - means.square()).clamp_min(0) + self.var_floor
        log_prior = torch.log(counts / counts.sum(-1, keepdim=True))
        return means, self._shape_variance(var, counts), log_prior

    def forward(self, mix_mag: torch.Tensor, full_resolution: bool = True) -> dict:
        frames = mix_mag.shape[-1]
        v = self.embeddings(mix_mag)
        means, var, log_prior = (p.unsqueeze(0) for p in self.initial_parameters())
        tied = self.covariance.startswith("tied")
        post = self.posteriors(v, means, var, log_prior, shared_var=tied)
        for _ in range(self.em_iterations):
            means, var, log_prior = self.m_step(v, post)
            post = self.posteriors(v, means, var, log_prior, shared_var=tied)
        mel_masks = self._mel_masks(post, frames)
        if not full_resolution:
            return {"mel_masks": mel_masks, "embeddings": v}
        return {"masks": self.features.to_linear(mel_masks), "embeddings": v}
