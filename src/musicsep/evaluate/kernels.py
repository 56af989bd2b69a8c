"""The CPU inner loops of :mod:`musicsep.evaluate.bsseval`, compiled with
numba: each one pass over its data with no temporaries (the same
operations with numpy ufuncs made several passes and fresh arrays, and
paid in memory traffic and page faults more than in arithmetic).

They release the GIL (``nogil``), so :class:`~musicsep.evaluate.backend.NumpyOps`
runs them in threads over batches, and are compiled once per machine
(``cache``: numba keeps the machine code beside this file, or under
``NUMBA_CACHE_DIR`` where that is read-only). Arithmetic is float64; sums
may be reassociated and products fused (so that the loops vectorise),
which moves results by a few units in the last place, far below what
museval's own runs differ by.
"""

from __future__ import annotations

import numba
import numpy as np

CHUNK = 256
"""Frequency bins per pass: a chunk of every array in use stays in cache."""

_jit = numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})


@_jit
def cross_accumulate(heads, tails, out, upper):
    """``out[i, j, f] += sum_b conj(heads[b, i, f]) * tails[b, j, f]`` for the
    rows ``j`` of ``out`` (the first rows of ``tails``); with ``upper``
    (``tails`` is ``heads``), only ``j >= i`` where both index the same
    rows, the others being their conjugates. A chunk of ``out`` stays in
    cache while the blocks ``b`` are added."""
    nb, ni, nf = heads.shape
    nj = out.shape[1]
    for f0 in range(0, nf, CHUNK):
        f1 = min(nf, f0 + CHUNK)
        for i in range(ni):
            for j in range(i if upper and i < nj else 0, nj):
                row = out[i, j, f0:f1]
                for b in range(nb):
                    _conj_mac(row, heads[b, i, f0:f1], tails[b, j, f0:f1])


@_jit
def _conj_mac(out, h, t):
    """``out += conj(h) * t`` over a row of bins (indexed from 0, which
    numba needs to know to vectorise the loop)."""
    for f in range(len(out)):
        out[f] += np.conj(h[f]) * t[f]


@_jit
def _mac(out, a, b):
    """``out += a * b`` over a row of bins."""
    for f in range(len(out)):
        out[f] += a[f] * b[f]


@_jit
def _abs2(z):
    return z.real * z.real + z.imag * z.imag


@_jit
def _terms(acc, s, e, a, y, w):
    """Adds the seven terms' weighted energies of one channel's row of bins
    into ``acc`` (``s``, ``e``: reference and estimate; ``a``: ``P_all``;
    ``y``: ``P_own``)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = 0.0
    for f in range(len(w)):
        wf = w[f]
        a0 += wf * _abs2(s[f])
        a1 += wf * _abs2(e[f] - s[f])
        a2 += wf * _abs2(y[f] - s[f])
        a3 += wf * _abs2(y[f])
        a4 += wf * _abs2(a[f] - y[f])
        a5 += wf * _abs2(a[f])
        a6 += wf * _abs2(e[f] - a[f])
    acc[0] += a0
    acc[1] += a1
    acc[2] += a2
    acc[3] += a3
    acc[4] += a4
    acc[5] += a5
    acc[6] += a6


@_jit
def frame_energies(S, E, C, Cj, w, out):
    """The images decomposition's seven energies per frame and source, by
    Parseval, into ``out[term, frame, source]``.

    ``S``, ``E``: the frames' reference and estimate spectra ``(frames,
    K, F)`` (``K`` = sources x channels, source-major); ``C[k, t, c, f]``:
    the spectrum of the filter from reference channel ``k`` to source ``t``'s
    channel ``c`` (every reference: the images' projection ``P_all``);
    ``Cj[t, d, c, f]``: from source ``t``'s own channel ``d`` (``P_own``);
    ``w``: Parseval's weights. The terms, summed over channels and bins:
    ``|s|^2, |e - s|^2, |P_own - s|^2, |P_own|^2, |P_all - P_own|^2,
    |P_all|^2, |e - P_all|^2``.
    """
    nfr, nk, nf = S.shape
    nsrc, nchan = Cj.shape[0], Cj.shape[2]
    out[:] = 0.0
    a, y = np.empty(CHUNK, dtype=np.complex128), np.empty(CHUNK, dtype=np.complex128)
    acc = np.empty(7)
    for f0 in range(0, nf, CHUNK):
        f1 = min(nf, f0 + CHUNK)
        n = f1 - f0
        for fr in range(nfr):
            for t in range(nsrc):
                acc[:] = 0.0
                for c in range(nchan):
                    a[:n] = 0.0
                    for k in range(nk):
                        _mac(a[:n], C[k, t, c, f0:f1], S[fr, k, f0:f1])
                    y[:n] = 0.0
                    for d in range(nchan):
                        _mac(y[:n], Cj[t, d, c, f0:f1], S[fr, t * nchan + d, f0:f1])
                    j = t * nchan + c
                    _terms(acc, S[fr, j, f0:f1], E[fr, j, f0:f1], a[:n], y[:n], w[f0:f1])
                for m in range(7):
                    out[m, fr, t] += acc[m]


@_jit
def _copy(dest, src):
    for m in range(len(dest)):
        dest[m] = src[m]


@_jit
def fill_blocks(x, starts, n, before, out, row):
    """``out[b, row + c, m] = x[starts[b] - before + m, c]`` for the samples
    ``[start - before, start + n)`` inside ``x`` ``(samples, channels)``, zero
    elsewhere: every element of those rows written (no zeroing pass)."""
    length, nchan = x.shape
    width = out.shape[2]
    for b in range(len(starts)):
        first = starts[b] - before
        lo, hi = max(0, -first), min(width, min(length, starts[b] + n) - first)
        for c in range(nchan):
            dest = out[b, row + c]
            dest[:lo] = 0.0
            if hi > lo:
                _copy(dest[lo:hi], x[first + lo:first + hi, c])
            dest[max(lo, hi):] = 0.0


@_jit
def silent_windows(x, starts, stops):
    """Per window ``[starts[w], stops[w])``, whether the channel sum of ``x``
    ``(samples, channels)`` is zero at every sample of it (museval's silence;
    the sum in numpy's order, channel 0 + channel 1 + ...)."""
    nchan = x.shape[1]
    out = np.ones(len(starts), dtype=np.bool_)
    for w in range(len(starts)):
        for n in range(starts[w], stops[w]):
            total = x[n, 0]
            for c in range(1, nchan):
                total += x[n, c]
            if total != 0:
                out[w] = False
                break
    return out
