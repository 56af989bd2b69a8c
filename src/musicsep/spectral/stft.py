"""The one STFT: Hann-windowed frames on the grid of ``torch.stft(center=True)``.

:func:`stft` is the whole-signal transform (training batches, statistics,
figures); :class:`Framing` computes the same frames a chunk at a time straight
from a reflection-padded signal and overlap-adds them back
(:class:`OverlapAdd`), normalised by the window's squared sum exactly as
``torch.istft`` does, so separation needs memory bounded by the chunk, not the
track, and its frames are bit-for-bit those of the whole-track STFT.

Shapes: audio ``(..., samples)``; spectrograms ``(..., freq, frames)``,
``freq = n_fft // 2 + 1``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from musicsep import HOP, LOG_EPS, N_FFT, MusicsepError

# A reader returns samples [start, stop) of a signal as float32 (..., channels, stop - start).
Reader = Callable[[int, int], np.ndarray]


def stft(audio: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP, center: bool = True) -> torch.Tensor:
    """Complex STFT with a Hann window: ``(..., samples)`` -> ``(..., freq, frames)``."""
    shape = audio.shape
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    spec = torch.stft(audio.reshape(-1, shape[-1]), n_fft=n_fft, hop_length=hop, window=window,
                      center=center, return_complex=True)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def magnitude(spec: torch.Tensor) -> torch.Tensor:
    """``spec.abs()`` of a complex spectrogram, as sqrt(re² + im²) in three
    passes over its real view (the same layout): faster on the CPU than
    complex ``abs``, which computes a complex result and copies its real part
    (``benchmarks/RESULTS.md``, magnitude). Equal to ``abs`` up to float
    rounding (one unit in the last place: ``abs`` computes the same formula
    with other rounding)."""
    if not spec.is_complex():
        return spec.abs()
    parts = torch.view_as_real(spec)
    re, im = parts[..., 0], parts[..., 1]
    return torch.addcmul(re * re, im, im).sqrt_()


def log_magnitude(magnitude: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """Log compression of a magnitude spectrogram."""
    return torch.log(magnitude + eps)


def padded_segment(read: Reader, length: int, start: int, stop: int, pad: int) -> np.ndarray:
    """Samples ``[start, stop)`` of the signal reflection-padded by ``pad`` on
    both sides (``torch.stft(center=True)``'s padding), reading only what is
    needed (inside the signal, what ``read`` gives: possibly a view). Signals
    too short to reflect (``length <= pad``) are zero-padded."""
    lo, hi = start - pad, stop - pad                      # in the signal's indices
    if 0 <= lo and hi <= length:                          # inside the signal: no padding to make
        return read(lo, hi)
    idx = np.arange(lo, hi)
    if length > pad:            # the reflected ends gathered, the part inside the signal read as it is
        parts = []
        if lo < 0:
            head = -idx[:min(-lo, hi - lo)]
            parts.append(read(int(head.min()), int(head.max()) + 1)[..., head - head.min()])
        if max(lo, 0) < min(hi, length):
            parts.append(read(max(lo, 0), min(hi, length)))
        if hi > length:
            tail = 2 * (length - 1) - idx[max(length - lo, 0):]
            parts.append(read(int(tail.min()), int(tail.max()) + 1)[..., tail - tail.min()])
        return np.concatenate(parts, axis=-1)
    block = read(0, length)
    out = np.zeros(block.shape[:-1] + (len(idx),), dtype=np.float32)
    inside = (idx >= 0) & (idx < length)
    out[..., inside] = block[..., idx[inside]]
    return out


class Framing:
    """The STFT frame grid of a signal of ``length`` samples (``center=True``:
    ``1 + length // hop`` frames over the signal padded by ``n_fft // 2``),
    frames computed and overlap-added a chunk at a time."""

    def __init__(self, length: int, n_fft: int, hop: int, window: torch.Tensor):
        if n_fft % 2 or not 0 < hop <= n_fft // 2:
            raise MusicsepError(f"cannot separate with n_fft {n_fft} and hop {hop} "
                                "(n_fft must be even, hop at most n_fft / 2)")
        self.length, self.n_fft, self.hop, self.window = length, n_fft, hop, window
        self.pad = n_fft // 2
        self.frames = 1 + length // hop

    def samples(self, f0: int, f1: int) -> tuple[int, int]:
        """The padded-signal samples that frames ``[f0, f1)`` cover."""
        return f0 * self.hop, (f1 - 1) * self.hop + self.n_fft

    def stft(self, read: Reader, f0: int, f1: int) -> torch.Tensor:
        """Frames ``[f0, f1)``: complex ``(..., freq, f1 - f0)`` on the window's device."""
        return self.stft_many(read, [(f0, f1)])[0]

    def stft_many(self, read: Reader, windows: list[tuple[int, int]]) -> torch.Tensor:
        """Frames ``[c0, c1)`` of each window (all of one length), in one
        ``torch.stft`` call: complex ``(windows, ..., freq, frames)``."""
        segment = np.stack([padded_segment(read, self.length, *self.samples(c0, c1), self.pad)
                            for c0, c1 in windows])
        segment = torch.from_numpy(segment).to(self.window.device)
        shape = segment.shape
        spec = torch.stft(segment.reshape(-1, shape[-1]), n_fft=self.n_fft, hop_length=self.hop,
                          window=self.window, center=False, return_complex=True)
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def overlap_add_into(self, out: torch.Tensor, spec: torch.Tensor) -> None:
        """Windowed inverse FFT of frames ``(..., freq, frames)``, overlap-added
        into ``out`` ``(..., (frames - 1) * hop + n_fft)`` (not normalised; all
        on the window's device)."""
        frames = torch.fft.irfft(spec.transpose(-1, -2), n=self.n_fft, dim=-1)   # (..., frames, n_fft)
        overlap_add(out, frames, self.hop, self.window)

    def envelope(self) -> torch.Tensor:
        """The squared window overlap-added over all frames: ``(length + 2 * pad,)``."""
        out = torch.zeros(self.length + 2 * self.pad, device=self.window.device)
        overlap_add(out[:self.samples(0, self.frames)[1]], self.window.square().expand(self.frames, -1), self.hop)
        return out

    def chunks(self, chunk_frames: int, context_frames: int = 0) -> list[tuple[int, int, int, int]]:
        """``(f0, f1, c0, c1)``: output frames ``[f0, f1)`` computed from the
        frames ``[c0, c1)`` around them; the chunks tile the track.

        A track of at most ``chunk_frames + 2 * context_frames`` frames is one
        window. A longer one is cut into ``n = ceil(frames / chunk_frames)``
        windows of one length (so that they stack into one batch), tiled so
        that each has ``context_frames`` of context on its inner sides and the
        two edge chunks, which need none on their outer side, keep those
        frames instead: ``n * window = frames + 2 * (n - 1) * context`` (up to
        rounding), against ``n * (chunk + 2 * context)`` for windows centred
        on chunks of ``chunk_frames``. No window is longer than
        ``chunk_frames + 2 * context_frames``."""
        frames, ctx = self.frames, context_frames
        n = -(-frames // chunk_frames)
        if n == 1 or frames <= chunk_frames + 2 * ctx:
            return [(0, frames, 0, frames)]
        window = -(-(frames + 2 * (n - 1) * ctx) // n)
        bounds = [0] + list(range(window - ctx, frames, window - 2 * ctx))[:n - 1] + [frames]
        out = []
        for f0, f1 in zip(bounds[:-1], bounds[1:]):
            c0 = min(max(0, f0 - ctx), frames - window)
            out.append((f0, f1, c0, c0 + window))
        return out


def overlap_add(out: torch.Tensor, frames: torch.Tensor, hop: int, window: torch.Tensor | None = None) -> None:
    """``out[..., t * hop + i] += frames[..., t, i] * window[i]``: overlap-add
    of frames ``(..., frames, n_fft)`` in place, windowed when ``window`` is
    given. Where the hop divides the frame length (the usual case) each of the
    ``n_fft / hop`` segments of every frame lands on a contiguous run of
    ``out``: a few strided additions (multiply-adds with the window's
    segment), faster on the CPU than ``nn.functional.fold`` (col2im), which
    takes the other hops (``benchmarks/RESULTS.md``, overlap-add)."""
    count, n_fft = frames.shape[-2:]
    if n_fft % hop:
        if window is not None:
            frames = frames * window
        lead = frames.shape[:-2]
        folded = torch.nn.functional.fold(frames.reshape(-1, count, n_fft).transpose(1, 2),
                                          output_size=(1, (count - 1) * hop + n_fft),
                                          kernel_size=(1, n_fft), stride=(1, hop))
        out += folded.reshape(*lead, -1)
        return
    for j in range(n_fft // hop):
        run = out[..., j * hop:j * hop + count * hop].unflatten(-1, (count, hop))
        if window is None:
            run.add_(frames[..., j * hop:(j + 1) * hop])
        else:
            run.addcmul_(frames[..., j * hop:(j + 1) * hop], window[j * hop:(j + 1) * hop])


class OverlapAdd:
    """Accumulates overlap-added chunks of ``(sources, channels)`` signals on
    the framing's device and normalises them at the end, like
    ``torch.istft(center=True, length=length)``. (On a GPU the track's
    signals stay there until the end, so that no block's frames travel to
    the CPU, a transfer that dominated a separation's time there. On the CPU
    the sum is a NumPy array, whose zeros cost nothing until touched, and
    NumPy normalises it faster than torch. Both: ``benchmarks/RESULTS.md``,
    overlap-add.)"""

    def __init__(self, framing: Framing, lead_shape: tuple[int, ...]):
        self.framing = framing
        shape, device = lead_shape + (framing.length + 2 * framing.pad,), framing.window.device
        self.out = torch.from_numpy(np.zeros(shape, dtype=np.float32)) if device.type == "cpu" \
            else torch.zeros(shape, device=device)

    def add(self, spec: torch.Tensor, f0: int, f1: int) -> None:
        s0, s1 = self.framing.samples(f0, f1)
        self.framing.overlap_add_into(self.out[..., s0:s1], spec)

    def result(self) -> np.ndarray:
        """The sum normalised by the squared window over all frames (every
        frame is added once by the end), as a NumPy array."""
        pad, length = self.framing.pad, self.framing.length
        env = self.framing.envelope()[pad:pad + length]
        scale = torch.where(env > 1e-11, 1.0 / env, 0.0)
        if self.out.device.type == "cpu":
            return self.out.numpy()[..., pad:pad + length] * scale.numpy()
        return (self.out[..., pad:pad + length] * scale).cpu().numpy()
