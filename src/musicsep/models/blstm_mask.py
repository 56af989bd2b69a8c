"""The BLSTM mask baseline: a 4-layer BLSTM on mel features, one sigmoid mask per source."""

from __future__ import annotations

import torch
from torch import nn

from musicsep import HOP, LOG_EPS, N_FFT, N_MELS, SAMPLE_RATE, SOURCES
from musicsep.models.base import SeparationModel


class BLSTMMask(SeparationModel):
    """The mask baseline: a BLSTM on whitened log-mel features predicts one
    sigmoid mask per source at mel resolution, taken to full resolution by the
    inverse mel projection. Trained with the L1 loss on masked magnitudes (as
    the baseline of Seetharaman et al., ICASSP 2019, arXiv:1811.03076)."""

    name = "blstm_mask"

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS,
                 log_eps: float = LOG_EPS, hidden: int = 300, layers: int = 4, dropout: float = 0.3,
                 sources: tuple[str, ...] = SOURCES):
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, log_eps=log_eps,
                         hidden=hidden, layers=layers, dropout=dropout, sources=sources)
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
