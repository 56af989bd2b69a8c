"""Spectral features: the one place where audio becomes model input.

The same functions run in the stats job, in training and in separation, on
whatever device the tensors live on, so training and test cannot drift apart.
Shapes: audio ``(..., samples)``; spectrograms ``(..., freq, frames)`` with
``freq = n_fft // 2 + 1``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch

from musicsep import STREAMS, MusicsepError, __version__
from musicsep.io import atomic_path

log = logging.getLogger(__name__)


def stft(audio: torch.Tensor, n_fft: int = 2048, hop: int = 512, center: bool = True) -> torch.Tensor:
    """Complex STFT with a Hann window: ``(..., samples)`` -> ``(..., freq, frames)``."""
    shape = audio.shape
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    spec = torch.stft(audio.reshape(-1, shape[-1]), n_fft=n_fft, hop_length=hop, window=window,
                      center=center, return_complex=True)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def log_magnitude(magnitude: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Log compression of a magnitude spectrogram."""
    return torch.log(magnitude + eps)


def compute_stats(shards: Sequence[str | Path], out: str | Path, *, n_fft: int = 2048, hop: int = 512,
                  log_eps: float = 1e-6, block_frames: int = 2048) -> dict:
    """Whitening statistics of the training mixtures: per-frequency mean and
    standard deviation of the log magnitude, pooled over channels, frames and
    tracks. Reads each shard in blocks of ``block_frames`` STFT frames (bounded
    memory, exact frame grid). Writes ``mean`` and ``std`` of shape ``(freq,)``
    to ``out`` (HDF5) with the feature settings as attributes."""
    if not shards:
        raise MusicsepError("no training shards: whitening statistics need at least one training track")
    n_freq = n_fft // 2 + 1
    total = np.zeros(n_freq)
    total_sq = np.zeros(n_freq)
    count = 0
    names, rates = [], set()
    mixture = STREAMS.index("mixture")
    for path in shards:
        try:
            h5 = h5py.File(path, "r")
        except OSError as err:
            raise MusicsepError(f"{path}: not a readable shard ({err})") from None
        with h5:
            audio = h5["audio"]
            rates.add(int(h5.attrs["sample_rate"]))
            names.append(str(h5.attrs["name"]))
            samples = audio.shape[-1]
            step = block_frames * hop
            for start in range(0, max(samples - n_fft, 0) + 1, step):
                block = torch.from_numpy(audio[mixture, :, start:start + step + n_fft - hop])
                if block.shape[-1] < n_fft:
                    break
                logmag = log_magnitude(stft(block, n_fft, hop, center=False).abs(), log_eps).double()
                total += logmag.sum(dim=(0, 2)).numpy()
                total_sq += logmag.square().sum(dim=(0, 2)).numpy()
                count += logmag.shape[0] * logmag.shape[2]
    if len(rates) != 1:
        raise MusicsepError(f"training shards have different sample rates: {sorted(rates)}")
    if count == 0:
        raise MusicsepError("training shards are shorter than one STFT frame")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    attrs = {"n_fft": n_fft, "hop": hop, "log_eps": log_eps, "sample_rate": rates.pop(),
             "frames": count, "tracks": names, "stream": "mixture", "musicsep_version": __version__}
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5["mean"] = mean.astype(np.float32)
            h5["std"] = std.astype(np.float32)
            h5.attrs.update(attrs)
    log.info("whitening statistics from %d tracks, %d frames -> %s", len(names), count, out)
    return {"mean": mean, "std": std, **attrs}
