"""Spectral features: the one place where audio becomes model input.

The same functions run in the stats job, in training and in separation, on
whatever device the tensors live on, so training and test cannot drift apart.
Shapes: audio ``(..., samples)``; spectrograms ``(..., freq, frames)`` with
``freq = n_fft // 2 + 1``.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch

from musicsep import HOP, LOG_EPS, N_FFT, N_MELS, SAMPLE_RATE, MusicsepError, __version__
from musicsep.data.shard import Shard
from musicsep.io import atomic_path
from musicsep.spectral.stft import log_magnitude, stft

log = logging.getLogger(__name__)


def compute_stats(shards: Sequence[str | Path], out: str | Path, *, n_fft: int = N_FFT, hop: int = HOP,
                  log_eps: float = LOG_EPS, block_frames: int = 2048) -> dict:
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
    for path in shards:
        with Shard(path) as shard:
            rates.add(shard.sample_rate)
            names.append(shard.name)
            samples = shard.length
            step = block_frames * hop
            for start in range(0, max(samples - n_fft, 0) + 1, step):
                block = torch.from_numpy(shard.mixture(start, start + step + n_fft - hop))
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


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's mel filterbank ``(n_mels, freq)`` with rows normalised to sum
    1, so projecting a magnitude spectrogram averages it over each band."""
    import librosa

    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, htk=False, norm=None)
    sums = mel.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise MusicsepError(f"{n_mels} mel bands are too many for n_fft {n_fft}: some bands are empty")
    return (mel / sums).astype(np.float32)


BAND_ROWS, BAND_REL = 64, 1e-12


_BLOCKS: dict[int, tuple] = {}


def row_blocks(weight: torch.Tensor, rows: int = BAND_ROWS, rel: float = BAND_REL) -> list[tuple]:
    """``(r0, r1, c0, c1, weight[r0:r1, c0:c1])`` for blocks of ``rows`` rows
    of ``weight`` (out, in): every entry of the block's rows above ``rel`` times
    the largest lies in columns [c0, c1). Cached per tensor (and its version,
    storage, dtype and device)."""
    key = (weight._version, weight.data_ptr(), weight.dtype, weight.device, rows, rel)
    cached = _BLOCKS.get(id(weight))
    if cached is not None and cached[0]() is weight and cached[1] == key:
        return cached[2]
    w = weight.detach()
    big = w.abs() > rel * w.abs().max()
    blocks = []
    for r0 in range(0, w.shape[0], rows):
        r1 = min(r0 + rows, w.shape[0])
        cols = big[r0:r1].any(0).nonzero().flatten().tolist()
        c0, c1 = (cols[0], cols[-1] + 1) if cols else (0, 0)
        blocks.append((r0, r1, c0, c1, w[r0:r1, c0:c1].contiguous()))
    for k in [k for k, v in _BLOCKS.items() if v[0]() is None]:     # forget freed tensors
        del _BLOCKS[k]
    _BLOCKS[id(weight)] = (weakref.ref(weight), key, blocks)
    return blocks


def banded(x: torch.Tensor) -> bool:
    """Whether products with ``x`` take the banded path: on the CPU, without
    autograd (the banded products write into slices)."""
    return x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled())


def banded_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` for ``x`` (..., in) and ``weight`` (out, in), by
    :func:`row_blocks`."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.empty(flat.shape[0], weight.shape[0], dtype=flat.dtype, device=flat.device)
    for r0, r1, c0, c1, block in row_blocks(weight):
        if c1 > c0:
            torch.mm(flat[:, c0:c1], block.T.to(flat.dtype), out=out[:, r0:r1])
        else:                       # (the inverse's row of the Nyquist bin, which no mel band covers)
            out[:, r0:r1].zero_()
    return out.view(*x.shape[:-1], weight.shape[0])


def banded_linear_t(y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``y @ weight`` for ``y`` (..., out) and ``weight`` (out, in): the
    transposed product (the gradient of :func:`banded_linear`)."""
    flat = y.reshape(-1, y.shape[-1])
    out = torch.zeros(flat.shape[0], weight.shape[1], dtype=flat.dtype, device=flat.device)
    for r0, r1, c0, c1, block in row_blocks(weight):
        if c1 > c0:
            out[:, c0:c1].addmm_(flat[:, r0:r1], block.to(flat.dtype))
    return out.view(*y.shape[:-1], weight.shape[1])


class Features(torch.nn.Module):
    """The feature pipeline of every model, on the device.

    ``stft``: audio ``(..., samples)`` -> complex ``(..., freq, frames)``.
    ``inputs``: mixture magnitude ``(batch, freq, frames)`` -> log compression,
    whitening with the training statistics (``mean``, ``std`` of shape
    ``(freq,)``, buffers loaded from ``stats.h5`` or a checkpoint), and the
    frozen projection to ``n_mels`` mel bands -> ``(batch, frames, n_mels)``.
    ``to_mel``: magnitudes ``(..., freq, frames)`` -> ``(..., n_mels, frames)``.
    ``to_linear``: mel-resolution masks ``(..., n_mels, frames)`` -> full
    resolution ``(..., freq, frames)`` through the frozen pseudo-inverse of the
    filterbank, clamped to [0, 1].

    Memory layout: ``torch.stft`` returns ``(..., freq, frames)`` as a view of
    frames-major memory ``(..., frames, freq)``; the elementwise operations keep
    that layout, and so do the models' mel masks (``(..., n_mels, frames)``
    views of ``(..., frames, n_mels)`` memory). Kept this way, each projection
    is one matrix product without copies, and elementwise operations between
    masks, mixture and source magnitudes read all operands in the same order.
    """

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop: int = HOP,
                 n_mels: int = N_MELS, log_eps: float = LOG_EPS):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels, self.log_eps = sample_rate, n_fft, hop, n_mels, log_eps
        n_freq = n_fft // 2 + 1
        mel = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels))
        self.mel = torch.nn.Linear(n_freq, n_mels, bias=False)
        self.mel_inverse = torch.nn.Linear(n_mels, n_freq, bias=False)
        with torch.no_grad():
            self.mel.weight.copy_(mel)
            self.mel_inverse.weight.copy_(torch.linalg.pinv(mel.double()).float())
        self.mel.requires_grad_(False)
        self.mel_inverse.requires_grad_(False)
        self.register_buffer("mean", torch.zeros(n_freq))
        self.register_buffer("std", torch.ones(n_freq))
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def kwargs(self) -> dict:
        return {"sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop": self.hop,
                "n_mels": self.n_mels, "log_eps": self.log_eps}

    def load_stats(self, path: str | Path) -> None:
        """Whitening statistics from ``stats.h5``; refuses ones computed with
        other STFT settings."""
        with h5py.File(path, "r") as h5:
            for key in ("n_fft", "hop", "sample_rate"):
                if int(h5.attrs[key]) != getattr(self, key):
                    raise MusicsepError(f"{path}: statistics were computed with {key} {int(h5.attrs[key])}, "
                                        f"the model uses {getattr(self, key)}")
            self.mean.copy_(torch.from_numpy(h5["mean"][:]))
            self.std.copy_(torch.from_numpy(h5["std"][:]))

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        shape = audio.shape
        spec = torch.stft(audio.reshape(-1, shape[-1]).float(), n_fft=self.n_fft, hop_length=self.hop,
                          window=self.window, center=True, return_complex=True)
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        shape = spec.shape
        audio = torch.istft(spec.reshape(-1, *shape[-2:]), n_fft=self.n_fft, hop_length=self.hop,
                            window=self.window, center=True, length=length)
        return audio.reshape(*shape[:-2], length)

    def inputs(self, mix_mag: torch.Tensor) -> torch.Tensor:
        if (mix_mag.requires_grad and torch.is_grad_enabled()) or self.mean.dtype != torch.float32:
            white = (log_magnitude(mix_mag.float(), self.log_eps) - self.mean[:, None]) / self.std[:, None]
        else:       # the same operations in place on one new tensor (the usual case: no gradient here)
            white = torch.add(mix_mag.float(), self.log_eps).log_().sub_(self.mean[:, None]).div_(self.std[:, None])
        # a magnitude laid out frames-major (as torch.stft's output) makes this a product without copies
        return self._project(white.transpose(-1, -2), self.mel)

    def to_mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        return self._project(magnitude.transpose(-1, -2), self.mel).transpose(-1, -2)

    def to_linear(self, mel_masks: torch.Tensor) -> torch.Tensor:
        linear = self._project(mel_masks.transpose(-1, -2), self.mel_inverse)
        # a new tensor: clamped in place unless autograd needs its values
        linear = linear.clamp(0, 1) if linear.requires_grad else linear.clamp_(0, 1)
        return linear.transpose(-1, -2)

    @staticmethod
    def _project(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
        """``layer(x)``; banded (:func:`banded_linear`) on the CPU without autograd."""
        if banded(x) and x.dtype == layer.weight.dtype:
            return banded_linear(x, layer.weight)
        return layer(x)
