"""The synthesizer's signal processing: wavetable tones, envelopes, filters, panning, reverb."""

from __future__ import annotations

import numpy as np
from scipy import fft, signal

from musicsep.toy.song import HOP, MAX_HARMONICS, TABLE_SIZE


def _filter(x: np.ndarray, kind: str, hz: float | tuple[float, float], sr: int, order: int = 2) -> np.ndarray:
    edges = np.minimum(np.asarray(hz, dtype=float), 0.45 * sr)
    return signal.sosfilt(signal.butter(order, edges, kind, fs=sr, output="sos"), x, axis=-1)


def _envelope(m: int, sr: int, attack: float, release: float, decay: float = np.inf) -> np.ndarray:
    t = np.arange(m) / sr
    return np.clip(t / attack, 0, 1) * np.clip((m / sr - t) / release, 0, 1) * np.exp(-t / decay)


def _pan(x: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan of mono ``x`` to stereo, ``position`` in -1 (left) .. 1 (right)."""
    angle = (position + 1) * np.pi / 4
    return x[:, None] * np.array([np.cos(angle), np.sin(angle)])


def _add(out: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add ``x`` (mono or stereo) into ``out`` (n, 2) from sample ``start``, cropped."""
    begin, end = max(start, 0), min(start + len(x), len(out))
    if begin < end:
        seg = x[begin - start:end - start]
        out[begin:end] += seg[:, None] if seg.ndim == 1 else seg


def _tables(amps: np.ndarray) -> np.ndarray:
    """Single-cycle tables, one per row of ``amps`` (amplitudes of harmonics 1.., sine
    phase), each with its first sample repeated at the end for interpolation."""
    amps = np.atleast_2d(amps)[:, :TABLE_SIZE // 2 - 1]
    spectrum = np.zeros((amps.shape[0], TABLE_SIZE // 2 + 1), dtype=complex)
    spectrum[:, 1:amps.shape[1] + 1] = -0.5j * TABLE_SIZE * amps
    tables = np.fft.irfft(spectrum, TABLE_SIZE, axis=1)
    return np.concatenate([tables, tables[:, :1]], axis=1)


def _read(tables: np.ndarray, phase: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
    """Read ``tables`` at ``phase`` (cycles, >= 0), crossfading rows at fractional row ``frame``."""
    x = phase * TABLE_SIZE
    i = x.astype(np.int64)
    frac = x - i
    i &= TABLE_SIZE - 1
    flat = tables.ravel()
    if frame is None:
        a = flat[i]
        return a + frac * (flat[i + 1] - a)
    row = np.minimum(frame.astype(np.int64), len(tables) - 1)
    w = frame - row
    i0 = i + row * (TABLE_SIZE + 1)
    i1 = i + np.minimum(row + 1, len(tables) - 1) * (TABLE_SIZE + 1)
    a, b = flat[i0], flat[i1]
    a += frac * (flat[i0 + 1] - a)
    b += frac * (flat[i1 + 1] - b)
    return a + w * (b - a)


def _tone(hz: float, m: int, sr: int, amps: np.ndarray, phase0: float = 0.0) -> np.ndarray:
    """``m`` samples of a tone: ``amps`` is one spectrum, or one per HOP-sample frame."""
    t = np.arange(m)
    frame = t / HOP if amps.ndim == 2 else None
    return _read(_tables(amps), phase0 + hz * t / sr, frame)


def _saw_amps(hz: float, cutoff: float | np.ndarray, sr: int, odd: bool = False) -> np.ndarray:
    """A saw's (or square's) harmonics through a 24 dB/octave low-pass at ``cutoff``."""
    k = np.arange(1, MAX_HARMONICS + 1)
    amps = (1.0 / k) / np.sqrt(1 + (hz * k / cutoff) ** 4)
    if odd:
        amps[..., 1::2] = 0
    return amps * (hz * k < 0.45 * sr)


def _frame_times(m: int, sr: int) -> np.ndarray:
    return np.arange(m // HOP + 2) * HOP / sr


def _reverb(x: np.ndarray, sr: int, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A stereo reverb tail of mono ``x``: decaying noise, different per channel
    (convolved in float32, which is plenty for a tail and faster than float64:
    ``benchmarks/RESULTS.md``, toy MUSDB)."""
    t = np.arange(int(seconds * sr)) / sr
    ir = _filter(rng.standard_normal((2, len(t))), "lowpass", 5000, sr) * np.exp(-6.9 * t / seconds)
    ir[:, :int(0.015 * sr)] = 0
    ir /= np.sqrt((ir ** 2).sum(axis=1, keepdims=True))
    size = fft.next_fast_len(len(x) + len(t), real=True)
    spectra = fft.rfft(ir.astype(np.float32), size, axis=1) * fft.rfft(x.astype(np.float32), size)
    return fft.irfft(spectra, size, axis=1)[:, :len(x)].T
