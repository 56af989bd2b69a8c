"""Mask models for music source separation, rebuilt from self-describing files.

Every model reads the mixture magnitude spectrogram and returns soft masks for
its sources (the constructor's ``sources``, MUSDB18's four by default, kept in
the model file) at full frequency resolution. Shapes (channels of a stereo
track are folded into the batch):

- ``mix_mag``: ``(batch, freq, frames)``, ``freq = n_fft // 2 + 1``
- masks: ``(batch, sources, freq, frames)`` in [0, 1], sources in the
  model's :attr:`~SeparationModel.sources` order
- embeddings: ``(batch, frames * n_mels, dim)``, frame-major

``forward`` returns a dict: ``masks`` (the mask models), ``embeddings`` (the
embedding models). With ``full_resolution=False`` the mask models return
``mel_masks`` ``(batch, sources, n_mels, frames)`` instead of ``masks`` (what
the training loss takes: :func:`musicsep.models.losses.l1_mel_mask_loss` applies the
inverse projection itself, without materialising the full-resolution masks);
``features.to_linear(mel_masks)`` gives ``masks``. :meth:`SeparationModel.masks` is what separation calls: for
deep clustering it clusters the embeddings.

Models take typed keyword arguments (validated by :func:`musicsep.models.registry.build_model`, errors
naming the key); a checkpoint stores the model's name, its kwargs and its
weights, so :func:`musicsep.models.checkpoint.load_model` rebuilds it from the file alone.
"""

from __future__ import annotations

import torch
from torch import nn

from musicsep import SOURCES
from musicsep.spectral.features import Features


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
    sources: tuple[str, ...] = SOURCES
    """The names of the model's outputs, in their order (a model file without them: MUSDB18's four)."""

    def __init__(self, *, sample_rate: int, n_fft: int, hop: int, n_mels: int, log_eps: float,
                 hidden: int, layers: int, dropout: float, sources: tuple[str, ...] = SOURCES):
        super().__init__()
        self.sources = tuple(sources)
        self.features = Features(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, log_eps=log_eps)
        self.blstm = BLSTM(n_mels, hidden, layers, dropout)

    @property
    def n_sources(self) -> int:
        return len(self.sources)

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
