"""The array operations of :mod:`musicsep.evaluate.bsseval`, on numpy/scipy
(CPU, threads over batches) or torch float64 (CPU or CUDA): the same
algorithm runs on either."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

EPS = np.finfo(float).eps
"""museval's regulariser of the Gram matrix (``G + eps I``)."""


@dataclass
class NumpyOps:
    """The array operations the algorithm needs, on numpy/scipy, with
    ``threads`` batches in flight (numpy and scipy release the GIL)."""
    threads: int = 1

    def asarray(self, x):
        return x

    def numpy(self, x):
        return x

    def rfft(self, x, n):
        """One worker: the batches are the threads' work (:meth:`map`)."""
        import scipy.fft
        return scipy.fft.rfft(x, n=n, axis=-1)

    def irfft(self, x, n):
        import scipy.fft
        return scipy.fft.irfft(x, n=n, axis=-1, workers=self.threads)

    def cross(self, heads, tails, out=None, count=None):
        """``out[i, j, f] += sum_b conj(heads[b, i, f]) * tails[b, j, f]`` for
        the first ``count`` rows ``j`` of ``tails`` (default all); when
        ``tails`` is ``heads``, those with ``j < i < count`` are left out
        (they are conjugates of the others)."""
        from musicsep.evaluate import kernels
        if out is None:
            out = np.zeros((heads.shape[1], count or tails.shape[1], tails.shape[2]), dtype=np.complex128)
        kernels.cross_accumulate(heads, tails, out, tails is heads)
        return out

    def energies(self, S, E, Cf, Cjf, w):
        """The images decomposition's energies ``[term, frame, source]`` of
        frames with reference and estimate spectra ``S``, ``E`` ``(frames,
        sources x channels, bins)`` (:func:`~musicsep.evaluate.kernels.frame_energies`)."""
        from musicsep.evaluate import kernels
        out = np.empty((7, len(S), Cjf.shape[0]))
        kernels.frame_energies(S, E, Cf, Cjf, w, out)
        return out

    def solve(self, A, B):
        """``A^-1 B`` for the regularised Gram matrix ``A`` (museval's
        ``G + eps I``) by Cholesky, else LU; least squares on ``G`` when
        singular, as museval falls back."""
        import scipy.linalg
        try:
            return scipy.linalg.cho_solve(scipy.linalg.cho_factor(A, check_finite=False), B, check_finite=False)
        except np.linalg.LinAlgError:
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            lu, pivots = scipy.linalg.lu_factor(A, check_finite=False)
        if np.all(np.diag(lu) != 0):          # else singular: numpy's solve raises, museval takes lstsq
            return scipy.linalg.lu_solve((lu, pivots), B, check_finite=False)
        return lstsq(A, B)

    def map(self, fn, items):
        """``[fn(item) for item in items]``, ``threads`` at a time."""
        if self.threads <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(fn, items))

    def reduce(self, fn, items):
        """The running sum ``total = fn(item, total)`` over ``items`` (``fn``
        adds into ``total``, None at first), each thread summing its share;
        the threads' sums added."""
        def share(k):
            total = None
            for item in items[k::self.threads]:
                total = fn(item, total)
            return total

        return _sum([total for total in self.map(share, list(range(min(self.threads, len(items)))))
                     if total is not None])


@dataclass
class TorchOps:
    """The same operations on torch float64 (CPU or CUDA)."""
    device: str

    def __post_init__(self):
        import torch
        self.torch = torch

    def asarray(self, x):
        return self.torch.as_tensor(x, device=self.device)

    def numpy(self, x):
        return x.cpu().numpy()

    def rfft(self, x, n):
        return self.torch.fft.rfft(x, n=n, dim=-1)

    def irfft(self, x, n):
        return self.torch.fft.irfft(x, n=n, dim=-1)

    def cross(self, heads, tails, out=None, count=None):
        value = self.torch.einsum("bif,bjf->ijf", heads.conj(), tails[:, :count])
        return value if out is None else out.add_(value)

    def energies(self, S, E, Cf, Cjf, w):
        """What :meth:`NumpyOps.energies` computes, as tensor products."""
        def energy(X):
            return self.torch.einsum("btcf,f->bt", X.real ** 2 + X.imag ** 2, w)

        P_all = self.torch.einsum("ktcf,bkf->btcf", Cf, S)
        S, E = S.reshape(P_all.shape), E.reshape(P_all.shape)
        P_own = self.torch.einsum("tdcf,btdf->btcf", Cjf, S)
        terms = (S, E - S, P_own - S, P_own, P_all - P_own, P_all, E - P_all)
        return self.torch.stack([energy(X) for X in terms]).cpu().numpy()

    def solve(self, A, B):
        torch = self.torch
        L, info = torch.linalg.cholesky_ex(A)
        if int(info) == 0:
            return torch.cholesky_solve(B, L)
        LU, pivots, info = torch.linalg.lu_factor_ex(A)
        if int(info) == 0:
            return torch.linalg.lu_solve(LU, pivots, B)
        return torch.as_tensor(lstsq(A.cpu().numpy(), B.cpu().numpy()), device=A.device)

    def map(self, fn, items):
        return [fn(item) for item in items]

    def reduce(self, fn, items):
        total = None
        for item in items:
            total = fn(item, total)
        return total


def _sum(totals: list):
    """The sum of running sums, each an array or a tuple of arrays (or None)."""
    def add(a, b):
        if isinstance(a, tuple):
            return tuple(add(x, y) for x, y in zip(a, b))
        return b if a is None else a if b is None else a + b

    out = totals[0]
    for total in totals[1:]:
        out = add(out, total)
    return out


def lstsq(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """museval's fallback for a singular Gram matrix: numpy's least squares
    on ``G`` (``A`` without the regulariser)."""
    return np.linalg.lstsq(A - EPS * np.eye(len(A)), B, rcond=None)[0]
