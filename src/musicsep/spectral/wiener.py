"""The multichannel Wiener filter: the post-filter of a separation and the MWF oracle."""

from __future__ import annotations

import numpy as np
import torch


def mwf(v: torch.Tensor, R: torch.Tensor, x: torch.Tensor, reg: float) -> torch.Tensor:
    """The multichannel Wiener filter ``y_j = v_j R_j (Σ_i v_i R_i + reg I)⁻¹ x``.

    ``v``: power spectrograms ``(sources, freq, frames)``; ``R``: spatial
    covariance matrices ``(freq, sources, channels, channels)``; ``x``: the
    mixture ``(channels, freq, frames)``. The mixture covariance is built and
    solved in double precision (nearly singular where one panned source
    dominates a bin), per bin in closed form for one or two channels.
    Returns complex64 ``(sources, channels, freq, frames)``.
    """
    sources, channels = v.shape[0], x.shape[0]
    v64 = v.double()
    R64 = R.to(torch.complex128)
    x64 = x.to(torch.complex128)
    cxx = [[sum(v64[j] * R64[:, j, c, d, None] for j in range(sources)) + (reg if c == d else 0.0)
            for d in range(channels)] for c in range(channels)]                # entries (freq, frames)
    if channels == 1:
        z = (x64[0] / cxx[0][0])[None]
    elif channels == 2:
        (a, b), (c, d) = cxx
        det = a * d - b * c
        z = torch.stack([(d * x64[0] - b * x64[1]) / det, (a * x64[1] - c * x64[0]) / det])
    else:
        full = torch.stack([torch.stack(row, dim=-1) for row in cxx], dim=-2)   # (freq, frames, c, c)
        z = torch.linalg.solve(full, x64.permute(1, 2, 0)[..., None])[..., 0].permute(2, 0, 1)
    z = z.to(torch.complex64)                                                    # C_x⁻¹ x, (channels, freq, frames)
    return torch.stack([v[j] * torch.einsum("fcd,dft->cft", R[:, j].to(torch.complex64), z)
                        for j in range(sources)])


def regulariser(mixture_peak: float, eps: float, scale_factor: float) -> float:
    """open-unmix's regulariser ``√eps I`` on signals scaled so that the
    mixture's largest STFT magnitude is at most ``scale_factor``, expressed
    at the signals' own scale."""
    return float(np.sqrt(eps)) * max(1.0, mixture_peak / scale_factor) ** 2


def wiener(estimates: torch.Tensor, mixture: torch.Tensor, eps: float = 1e-10,
           scale_factor: float = 10.0) -> torch.Tensor:
    """One iteration of the multichannel Wiener filter (the EM step of
    norbert / open-unmix's ``expectation_maximization``; Nugraha, Liutkus,
    Vincent, "Multichannel audio source separation with deep neural networks",
    IEEE/ACM TASLP 2016).

    ``estimates``: complex ``(sources, channels, freq, frames)``, initial
    source STFTs (e.g. ``mask * X``, or the true sources for the oracle);
    ``mixture``: complex ``(channels, freq, frames)``. From the estimates it
    takes each source's power spectrogram ``v_j(f, t)`` (mean over channels of
    ``|y_j|²``) and spatial covariance matrix ``R_j(f) = Σ_t y_j y_jᴴ / Σ_t
    v_j`` (over the frames given); the mixture covariance ``C_x = Σ_j v_j R_j
    + λ I`` gives the filtered sources ``y_j = v_j R_j C_x⁻¹ x``. Their sum is
    the mixture up to the regulariser (``Σ_j v_j R_j C_x⁻¹ = I - λ C_x⁻¹``),
    so bins that every estimate leaves empty stay empty. ``λ`` is
    open-unmix's ``√eps`` at its working scale (mixture peak at most
    ``scale_factor``). Returns complex64 ``(sources, channels, freq, frames)``.
    """
    v = estimates.abs().square().mean(dim=1)                                      # (sources, freq, frames)
    cov = torch.einsum("jcft,jdft->fjcd", estimates, estimates.conj())
    R = cov / (eps + v.sum(dim=-1).T)[..., None, None]                           # (freq, sources, c, c)
    return mwf(v, R, mixture, regulariser(float(mixture.abs().max()), eps, scale_factor))
