"""Mask models for music source separation, rebuilt from self-describing files.

Every model reads the mixture magnitude spectrogram and returns soft masks for
the four sources at full frequency resolution. Shapes (channels of a stereo
track are folded into the batch):

- ``mix_mag``: ``(batch, freq, frames)``, ``freq = n_fft // 2 + 1``
- masks: ``(batch, sources, freq, frames)`` in [0, 1], sources in
  :data:`musicsep.SOURCES` order
- embeddings: ``(batch, frames * n_mels, dim)``, frame-major

``forward`` returns a dict: ``masks`` (the mask models), ``embeddings`` (the
embedding models). With ``full_resolution=False`` the mask models return
``mel_masks`` ``(batch, sources, n_mels, frames)`` instead of ``masks`` (what
the training loss takes: :func:`musicsep.losses.l1_mel_mask_loss` applies the
inverse projection itself, without materialising the full-resolution masks);
``features.to_linear(mel_masks)`` gives ``masks``. :meth:`SeparationModel.masks` is what separation calls: for
deep clustering it clusters the embeddings.

Models take typed keyword arguments (validated by :func:`build_model`, errors
naming the key); a checkpoint stores the model's name, its kwargs and its
weights, so :func:`load_model` rebuilds it from the file alone.
"""

from __future__ import annotations

import inspect
import math
import re
import typing
from pathlib import Path

import torch
from torch import nn

from musicsep import SOURCES, MusicsepError
from musicsep.features import Features


class BLSTM(nn.Module):
    """A stack of bidirectional LSTMs: ``(batch, frames, n_in)`` -> ``(batch, frames, 2 * hidden)``."""

    def __init__(self, n_in: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                            bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class SeparationModel(nn.Module):
    """What every model shares: the feature pipeline, the BLSTM trunk, the
    kwargs that rebuild it, and the mask interface used by separation."""

    name = ""
    n_sources = len(SOURCES)

    def __init__(self, *, sample_rate: int, n_fft: int, hop: int, n_mels: int, log_eps: float,
                 hidden: int, layers: int, dropout: float):
        super().__init__()
        self.features = Features(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, log_eps=log_eps)
        self.blstm = BLSTM(n_mels, hidden, layers, dropout)

    def kwargs(self) -> dict:
        return dict(self._kwargs)

    def mel_masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """Soft masks at mel resolution ``(batch, sources, n_mels, frames)``
        for separation (a view, in whatever memory layout the model makes them)."""
        return self(mix_mag, full_resolution=False)["mel_masks"]

    def masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """Soft masks ``(batch, sources, freq, frames)`` for separation: the
        mel masks through the inverse mel projection, clamped to [0, 1]."""
        return self.features.to_linear(self.mel_masks(mix_mag))


class BLSTMMask(SeparationModel):
    """The mask baseline: a BLSTM on whitened log-mel features predicts one
    sigmoid mask per source at mel resolution, taken to full resolution by the
    inverse mel projection. Trained with the L1 loss on masked magnitudes (as
    the baseline of Seetharaman et al., ICASSP 2019, arXiv:1811.03076)."""

    name = "blstm_mask"

    def __init__(self, *, sample_rate: int = 44100, n_fft: int = 2048, hop: int = 512, n_mels: int = 300,
                 log_eps: float = 1e-6, hidden: int = 300, layers: int = 4, dropout: float = 0.3):
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, log_eps=log_eps,
                         hidden=hidden, layers=layers, dropout=dropout)
        self.head = nn.Linear(2 * hidden, self.n_sources * n_mels)

    def _head_masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """Mel masks in the head's memory layout, (batch, frames, sources, n_mels)."""
        batch, _, frames = mix_mag.shape
        hidden = self.blstm(self.features.inputs(mix_mag))                    # (batch, frames, 2h)
        return self.head(hidden).sigmoid_().view(batch, frames, self.n_sources, -1)

    def forward(self, mix_mag: torch.Tensor, full_resolution: bool = True) -> dict:
        # (batch, sources, n_mels, frames), a view of (batch, sources, frames, n_mels) memory (the loss's)
        mel_masks = self._head_masks(mix_mag).transpose(1, 2).contiguous().transpose(-1, -2)
        if not full_resolution:
            return {"mel_masks": mel_masks}
        return {"masks": self.features.to_linear(mel_masks)}

    def mel_masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        return self._head_masks(mix_mag).permute(0, 2, 3, 1)                   # without forward's copy


class _UnitNorm(torch.autograd.Function):
    """``nn.functional.normalize(v, dim=-1)``, the same values, with a backward
    pass of three passes over the embeddings, (g − u (g·u)) / ‖v‖ (u the
    output), where autograd's division by the broadcast norm takes about seven."""

    @staticmethod
    def forward(ctx, v, eps):
        norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        denom = norm.clamp_min(eps)
        u = v / denom
        ctx.save_for_backward(u, denom, norm >= eps)
        return u

    @staticmethod
    def backward(ctx, grad):
        u, denom, unclamped = ctx.saved_tensors
        along = (grad * u).sum(-1, keepdim=True).mul_(unclamped)      # no norm gradient where clamped
        return torch.addcmul(grad, u, along, value=-1).div_(denom), None


def unit_norm(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit-length rows along the last dimension, as ``nn.functional.normalize``."""
    return _UnitNorm.apply(v, eps)


class EmbeddingModel(SeparationModel):
    """A BLSTM that maps every mel time-frequency point to a ``dim``-dimensional
    embedding (unit length when ``unit_norm``)."""

    def __init__(self, *, dim: int, unit_norm: bool, hidden: int, n_mels: int, **common):
        super().__init__(hidden=hidden, n_mels=n_mels, **common)
        self.dim, self.unit_norm = dim, unit_norm
        self.embed = nn.Linear(2 * hidden, n_mels * dim)

    def embeddings(self, mix_mag: torch.Tensor) -> torch.Tensor:
        batch, _, frames = mix_mag.shape
        v = self.embed(self.blstm(self.features.inputs(mix_mag))).view(batch, -1, self.dim)
        return unit_norm(v) if self.unit_norm else v

    def _mel_masks(self, posteriors: torch.Tensor, frames: int) -> torch.Tensor:
        """Posteriors ``(batch, frames * n_mels, sources)`` -> mel masks
        ``(batch, sources, n_mels, frames)``, a view of (batch, sources,
        frames, n_mels) memory (without a copy where the posteriors are
        sources-major already, as :meth:`ConditionalCentroids.posteriors`
        makes them)."""
        batch = posteriors.shape[0]
        return posteriors.transpose(1, 2).reshape(batch, self.n_sources, frames, -1).transpose(-1, -2)


Covariance = typing.Literal["diag", "spherical", "tied_diag", "tied_spherical"]
Clustering = typing.Literal["kmeans", "gmm"]
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

    def __init__(self, *, sample_rate: int = 44100, n_fft: int = 2048, hop: int = 512, n_mels: int = 300,
                 log_eps: float = 1e-6, hidden: int = 300, layers: int = 4, dropout: float = 0.3,
                 dim: int = 15, unit_norm: bool = True, covariance: Covariance = "tied_diag",
                 em_iterations: int = 0, var_floor: float = 1e-3):
        check_model_args(self.name, covariance=covariance)
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, log_eps=log_eps,
                         hidden=hidden, layers=layers, dropout=dropout, dim=dim, unit_norm=unit_norm)
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
        along contiguous points, about ten times faster than along a last
        dimension of 4). The squared distance is expanded into matrix
        products, never materialising (points, sources, dim):
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

    def __init__(self, *, sample_rate: int = 44100, n_fft: int = 2048, hop: int = 512, n_mels: int = 300,
                 log_eps: float = 1e-6, hidden: int = 300, layers: int = 4, dropout: float = 0.3,
                 dim: int = 20, unit_norm: bool = True, clustering: Clustering = "kmeans",
                 cluster_iterations: int = 20):
        check_model_args(self.name, clustering=clustering)
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, log_eps=log_eps,
                         hidden=hidden, layers=layers, dropout=dropout, dim=dim, unit_norm=unit_norm)
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


MODELS: dict[str, type[SeparationModel]] = {m.name: m for m in (BLSTMMask, ConditionalCentroids, DeepClustering)}


def _check_type(value, annotation) -> bool:
    kind = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(
        annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""), object)
    return isinstance(value, kind) and not (kind in (int, (int, float)) and isinstance(value, bool))


def check_model_args(name: str, where: str = "model", **kwargs) -> None:
    """Refuse an unknown model name, an unknown keyword or a value of the wrong
    type, naming the key (``where`` prefixes it); nothing is built."""
    if name not in MODELS:
        raise MusicsepError(f"{where}: unknown model {name!r} (known: {', '.join(MODELS)})")
    cls = MODELS[name]
    params = inspect.signature(cls.__init__).parameters
    hints = typing.get_type_hints(cls.__init__)
    for key, value in kwargs.items():
        if key not in params or key == "self":
            known = ", ".join(p for p in params if p != "self")
            raise MusicsepError(f"{where}.{key}: unknown argument of {name} (known: {known})")
        hint = hints.get(key)
        if typing.get_origin(hint) is typing.Literal:
            if value not in typing.get_args(hint):
                raise MusicsepError(f"{where}.{key}: {value!r} is not one of "
                                    f"{', '.join(map(repr, typing.get_args(hint)))}")
        elif not _check_type(value, hint):
            raise MusicsepError(f"{where}.{key}: {value!r} is not of type {hint.__name__}")


def _first_line(err: Exception) -> str:
    """An error's message cut to its first line, without terminal escapes
    (torch's load errors run to several paragraphs; the command line prints one)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else ""


def build_model(name: str, where: str = "model", **kwargs) -> SeparationModel:
    """Build a model by name, its arguments checked by :func:`check_model_args`."""
    check_model_args(name, where, **kwargs)
    cls = MODELS[name]
    params = inspect.signature(cls.__init__).parameters
    model = cls(**kwargs)
    model._kwargs = {k: v.default for k, v in params.items() if k != "self"} | kwargs
    return model


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SeparationModel, dict]:
    """Rebuild a model from a model file or checkpoint (``weights_only`` load);
    returns the model (eval mode) and the file's contents. Anything else (a
    file torch cannot read, one holding pickled objects, a dict of other
    things, weights that do not fit the file's model arguments) is a
    one-line MusicsepError naming the file."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise MusicsepError(f"{path}: no such model file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
        if found:
            raise MusicsepError(f"{path}: not a musicsep model file: it holds pickled Python objects "
                                f"({found[1]}; a module saved whole with torch.save(model)?), which are not "
                                "loaded; a model file holds a model name, its arguments and weights, as "
                                "musicsep train writes it") from None
        found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        raise MusicsepError(f"{path}: not a PyTorch file "
                            f"({found[1].strip() if found else _first_line(err) or 'unpickling failed'})") from None
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
        reason = ": ".join(filter(None, (type(err).__name__, _first_line(err))))
        raise MusicsepError(f"{path}: not a PyTorch file ({reason})") from None
    if not isinstance(state, dict) or not {"model", "kwargs", "weights"} <= set(state) \
            or not isinstance(state["kwargs"], dict) or not isinstance(state["weights"], dict):
        raise MusicsepError(f"{path}: not a musicsep model file (no model name, kwargs and weights)")
    if state["model"] not in MODELS:
        raise MusicsepError(f"{path}: unknown model {state['model']!r} (known: {', '.join(MODELS)})")
    model = build_model(state["model"], where=f"{path}: kwargs", **state["kwargs"])
    try:
        model.load_state_dict(state["weights"])
    except RuntimeError as err:           # missing, unexpected or misshapen weights, listed one per line
        problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MusicsepError(f"{path}: the weights do not fit {state['model']} with the file's kwargs: "
                            f"{problems[0] if problems else _first_line(err)}{more}") from None
    return model.eval(), state
