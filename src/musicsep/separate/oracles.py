"""Oracles: masks (or the Wiener filter) computed from the true sources.

They are applied to the mixture's STFT on the separation's frame grid:
``irm1``, ``irm2``, ``ibm``, ``ibm1``, ``ibm2`` and ``mwf``, the upper bounds
every mask method is measured against; and ``mix``, the mixture itself as
every target's estimate (no STFT), the floor.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from musicsep import HOP, N_FFT, ORACLES, SOURCES, MusicsepError
from musicsep.data.shard import Shard
from musicsep.io import progress_bar
from musicsep.separate.separator import check_audio, write_targets
from musicsep.separate.stems import as_targets, separation_targets
from musicsep.spectral.stft import Framing, OverlapAdd, Reader
from musicsep.spectral.wiener import mwf, regulariser

log = logging.getLogger(__name__)


def _oracle_masks(kind: str, src: torch.Tensor, mix: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Masks ``(sources, channels, freq, frames)`` from the true sources' STFTs
    ``src`` and the mixture's ``mix`` ``(channels, freq, frames)``."""
    mag = src.abs()
    if kind == "irm1":
        return mag / (eps + mag.sum(0))
    if kind == "irm2":
        power = mag.square()
        return power / (eps + power.sum(0))
    if kind == "ibm":
        return torch.nn.functional.one_hot(mag.argmax(0), len(mag)).movedim(-1, 0).to(mag.dtype)
    if kind in ("ibm1", "ibm2"):       # sigsep-mus-oracle's IBM: alpha 1 or 2, theta 0.5
        alpha = 1 if kind == "ibm1" else 2
        return (mag.pow(alpha) >= 0.5 * (eps + mix.abs().pow(alpha))).to(mag.dtype)
    raise MusicsepError(f"unknown oracle {kind!r} (known: {', '.join(ORACLES)})")


def _run_oracle(kind: str, read_sources: Reader, read_mixture: Reader, channels: int, length: int,
                n_fft: int, hop: int, chunk_frames: int, progress: bool = False,
                desc: str = "oracle", sources=SOURCES) -> dict[str, np.ndarray]:
    """The oracle over a signal of ``sources`` read in chunks of frames (exact: oracles need
    no context). ``mwf`` takes two passes: the spatial covariances are
    estimated over the whole track first; ``mix`` reads the mixture once and
    gives it, read-only, as every target (accompaniment too)."""
    n_src = len(sources)
    if kind not in ORACLES:
        raise MusicsepError(f"unknown oracle {kind!r} (known: {', '.join(ORACLES)})")
    if kind == "mix":
        mixture = np.array(read_mixture(0, length), dtype=np.float32)
        mixture.flags.writeable = False
        return {target: mixture for target in separation_targets(sources)}
    if length == 0:
        return as_targets(np.zeros((n_src, channels, 0), dtype=np.float32), sources)
    eps = 1e-10
    framing = Framing(length, n_fft, hop, torch.hann_window(n_fft))
    chunks = framing.chunks(chunk_frames)
    acc = OverlapAdd(framing, (n_src, channels))
    if kind == "mwf":
        # pass 1: Σ_t s sᴴ and Σ_t v per source and frequency, over the whole track
        cov = torch.zeros(n_fft // 2 + 1, n_src, channels, channels, dtype=torch.complex128)
        power = torch.zeros(n_fft // 2 + 1, n_src, dtype=torch.float64)
        peak = 0.0
        for f0, f1, _, _ in chunks:
            s = framing.stft(read_sources, f0, f1).to(torch.complex128)        # (sources, channels, freq, frames)
            cov += torch.einsum("jcft,jdft->fjcd", s, s.conj())
            power += s.abs().square().mean(1).sum(-1).T
            peak = max(peak, float(s.sum(0).abs().max()))
        R = cov / (eps + power)[..., None, None]
        reg = regulariser(peak, eps, 10.0)
    chunk_done = progress_bar(len(chunks), desc, unit="chunk", show=progress and len(chunks) > 1)
    for f0, f1, _, _ in chunks:
        x = framing.stft(read_mixture, f0, f1)                                 # (channels, freq, frames)
        s = framing.stft(read_sources, f0, f1)                                 # (sources, channels, freq, frames)
        if kind == "mwf":
            estimates = mwf(s.abs().square().mean(1), R, x, reg)
        else:
            estimates = _oracle_masks(kind, s, x) * x
        acc.add(estimates, f0, f1)
        chunk_done()
    return as_targets(acc.result(), sources)


def oracle(kind: str, sources: Mapping[str, np.ndarray] | np.ndarray, mixture: np.ndarray | None = None,
           n_fft: int = N_FFT, hop: int = HOP, *, chunk_frames: int = 2048,
           source_names=SOURCES) -> dict[str, np.ndarray]:
    """Oracle estimates from the true sources, applied to the mixture's STFT
    (with its phase); returns a dict like :meth:`Separator.separate`.

    ``sources``: ``{name: (channels, samples)}`` with every name of
    ``source_names`` (MUSDB18's four, :data:`SOURCES`, by default), or an
    array ``(sources, channels, samples)`` in that order;
    ``mixture``: ``(channels, samples)`` (default: the sum of the sources;
    MUSDB's stored mixture is not exactly that sum). ``kind``:

    - ``mix``: the mixture itself as every target's estimate (SiSEC 2018's
      MIX; one read-only array for all the targets);
    - ``irm1``: ``|S_k| / Σ_j |S_j|``;
    - ``irm2``: ``|S_k|² / Σ_j |S_j|²``;
    - ``ibm1``, ``ibm2``: SiSEC 2018's ideal binary masks, 1 where
      ``|S_k|^a >= 0.5 |X|^a`` with ``a`` = 1 or 2 (a bin may go to no source);
    - ``ibm``: 1 where source k has the largest magnitude (per channel and
      time-frequency bin), else 0;
    - ``mwf``: the multichannel Wiener filter ``v_k R_k (Σ_j v_j R_j)⁻¹ x``
      with the true sources' power spectrograms ``v_j(f, t)`` and spatial
      covariance matrices ``R_j(f)`` (over the whole track).

    The STFT is computed in chunks of ``chunk_frames`` frames (bounded
    memory; the result is the same as on the whole track).
    """
    names = tuple(source_names)
    if isinstance(sources, Mapping):
        missing = [s for s in names if s not in sources]
        if missing:
            raise MusicsepError(f"oracle: sources lack {', '.join(missing)}")
        sources = np.stack([check_audio(sources[s], s) for s in names])
    sources = np.asarray(sources, dtype=np.float32)
    if sources.ndim != 3 or sources.shape[0] != len(names):
        raise MusicsepError(f"oracle: expected sources of shape ({len(names)}, channels, samples), "
                            f"got {sources.shape}")
    mixture = sources.sum(0) if mixture is None else check_audio(mixture)
    if mixture.shape != sources.shape[1:]:
        raise MusicsepError(f"oracle: mixture {mixture.shape} and sources {sources.shape[1:]} differ in shape")
    return _run_oracle(kind, lambda a, b: sources[..., a:b], lambda a, b: mixture[:, a:b],
                       mixture.shape[0], mixture.shape[1], n_fft, hop, chunk_frames, sources=names)


def oracle_shard(shard_path: str | Path, kind: str, out_dir: str | Path, *, n_fft: int = N_FFT, hop: int = HOP,
                 chunk_frames: int = 2048, progress: bool = True) -> dict[str, Path]:
    """The oracle ``kind`` on a shard: masks from its true sources (rows 1 and on, :attr:`Shard.source_names`)
    applied to its mixture (row 0), read in chunks of frames, written to
    ``{out_dir}/{target}.wav`` at the shard's rate."""
    if kind not in ORACLES:
        raise MusicsepError(f"unknown oracle {kind!r} (known: {', '.join(ORACLES)})")
    with Shard(shard_path) as shard:
        rate, name, channels, length = shard.sample_rate, shard.name, shard.channels, shard.length
        names = shard.source_names
        log.info("%s: oracle %s, %.1f s", name, kind, length / rate)
        estimates = _run_oracle(kind, shard.sources, shard.mixture, channels, length, n_fft, hop, chunk_frames,
                                progress=progress, desc=f"{name} ({kind})", sources=names)
    paths = write_targets(estimates, out_dir, rate, sources=names)
    log.info("%s -> %s", name, out_dir)
    return paths
