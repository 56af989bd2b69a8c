"""Deep clustering (Hershey et al., ICASSP 2016): embeddings trained on the affinity
loss, clustered at separation time."""

from __future__ import annotations

import math
import typing

import torch
from torch import nn

from musicsep import HOP, LOG_EPS, N_FFT, N_MELS, SAMPLE_RATE, SOURCES
from musicsep.models.base import EmbeddingModel
from musicsep.models.centroids import ConditionalCentroids
from musicsep.models.registry import check_model_args

Clustering = typing.Literal["kmeans", "gmm"]


class DeepClustering(EmbeddingModel):
    """Deep clustering (Hershey, Chen, Le Roux, Watanabe, "Deep clustering:
    discriminative embeddings for segmentation and separation", ICASSP 2016,
    arXiv:1508.04306), trained with the affinity loss alone.

    At separation time the embeddings of each example are clustered (K-means,
    or an unconditioned spherical GMM, ``clustering``) into one cluster per
    source class; clusters get their class by matching their centroids to the
    class centroids estimated on the training set (``class_centroids``, set by
    :meth:`fit_class_centroids` at the end of training), so outputs are
    labelled sources.
    """

    name = "deep_clustering"

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS,
                 log_eps: float = LOG_EPS, hidden: int = 300, layers: int = 4, dropout: float = 0.3,
                 dim: int = 20, unit_norm: bool = True, clustering: Clustering = "kmeans",
                 cluster_iterations: int = 20, sources: tuple[str, ...] = SOURCES):
        check_model_args(self.name, clustering=clustering)
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, log_eps=log_eps,
                         hidden=hidden, layers=layers, dropout=dropout, dim=dim, unit_norm=unit_norm,
                         sources=sources)
        self.clustering, self.cluster_iterations = clustering, cluster_iterations
        self.register_buffer("class_centroids", torch.zeros(self.n_sources, dim))

    def forward(self, mix_mag: torch.Tensor, full_resolution: bool = True) -> dict:
        return {"embeddings": self.embeddings(mix_mag)}       # masks come from clustering (:meth:`masks`)

    @torch.no_grad()
    def fit_class_centroids(self, embeddings: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> None:
        """Class centroids from training embeddings ``(n, dim)``, their one-hot
        dominant classes ``(n, sources)`` and weights ``(n,)`` (0 for silent bins)."""
        w = labels * weights[:, None]
        self.class_centroids.copy_((w.T @ embeddings) / w.sum(0)[:, None].clamp_min(1e-8))

    @torch.no_grad()
    def mel_masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        v = self.embeddings(mix_mag)
        posteriors = torch.stack([self._cluster(x) for x in v])
        return self._mel_masks(posteriors, mix_mag.shape[-1])

    def _cluster(self, v: torch.Tensor) -> torch.Tensor:
        """Soft (GMM) or hard (K-means) assignments ``(points, sources)`` of one
        example's embeddings, columns ordered by source class."""
        from scipy.optimize import linear_sum_assignment

        k = self.n_sources
        generator = torch.Generator(device="cpu").manual_seed(0)
        # farthest-first seeding: a random point, then each time the point farthest
        # from the seeds so far (k random points often put two seeds in one
        # cluster, and the iterations then stall in that local minimum)
        centroids = v[torch.randint(len(v), (1,), generator=generator).to(v.device)]
        for _ in range(k - 1):
            centroids = torch.cat([centroids, v[torch.cdist(v, centroids).amin(-1).argmax()][None]])
        var = torch.ones(k, 1, device=v.device)
        log_prior = torch.full((k,), -math.log(k), device=v.device)
        for _ in range(self.cluster_iterations):
            if self.clustering == "kmeans":
                assign = nn.functional.one_hot(torch.cdist(v, centroids).argmin(-1), k).float()
            else:
                assign = ConditionalCentroids.posteriors(
                    v[None], centroids[None], var.expand(k, v.shape[-1])[None], log_prior[None])[0]
            counts = assign.sum(0) + 1e-8
            centroids = (assign.T @ v) / counts[:, None]
            var = ((assign * torch.cdist(v, centroids).square()).sum(0) / (counts * v.shape[-1]))[:, None] + 1e-4
            log_prior = torch.log(counts / counts.sum())
        cost = torch.cdist(centroids, self.class_centroids).cpu().numpy()
        cluster_of_class = linear_sum_assignment(cost.T)[1]          # class i <- cluster cluster_of_class[i]
        return assign[:, torch.as_tensor(cluster_of_class, device=v.device)]
