"""Separation as a stream: what lets a track of any length be separated in
memory bounded by a chunk, not the track.

- :class:`StreamingOverlapAdd` is :class:`musicsep.spectral.stft.OverlapAdd`
  handing out finished samples as it goes: chunks arrive in order, so once a
  chunk's frames are added every sample before its last frame's start is
  final; those are normalised by the window envelope of the frames that
  cover them (the same sums, in the same order, as the whole-track envelope)
  and handed out, and only the samples still open stay in its buffer.
- :func:`decode_to_scratch` decodes an input file block by block, resamples
  it to the model's rate in the same pass (soxr's streaming resampler: the
  same samples as resampling the whole signal at once) and writes it to a
  scratch file, which :class:`ScratchReader` reads back a window at a time
  (plain reads, so the file's pages are the system's cache, not the
  process's memory).
- :class:`Resampler` takes the estimates back to the input's rate block by
  block, trimmed or padded to exactly the input's length.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from pathlib import Path

import numpy as np
import torch

from musicsep import MusicsepError
from musicsep.spectral.stft import Framing, overlap_add


class StreamingOverlapAdd:
    """Overlap-adds chunks of ``(*lead_shape, samples)`` signals given in
    order of frames and hands out the finished samples, normalised like
    ``torch.istft(center=True, length=length)``: the concatenation of what
    :meth:`flush` returns is :meth:`OverlapAdd.result`'s array. The sum stays
    on the framing's device until it is handed out."""

    def __init__(self, framing: Framing, lead_shape: tuple[int, ...]):
        self.framing, self.lead_shape = framing, lead_shape
        self.device = framing.window.device
        self.base = 0                     # padded-signal index of buf[..., 0]
        self.buf = torch.zeros(lead_shape + (0,), device=self.device)
        self.done = 0                     # signal samples handed out

    def add(self, spec: torch.Tensor, f0: int, f1: int) -> None:
        """Frames ``[f0, f1)`` ``(*lead_shape, freq, f1 - f0)``: every frame
        before ``f0`` must have been added."""
        s0, s1 = self.framing.samples(f0, f1)
        if s0 < self.base:
            raise MusicsepError(f"frames from {f0} added after samples up to {self.base} were handed out")
        if s1 - self.base > self.buf.shape[-1]:
            grow = torch.zeros(self.lead_shape + (s1 - self.base - self.buf.shape[-1],), device=self.device)
            self.buf = torch.cat([self.buf, grow], dim=-1)
        self.framing.overlap_add_into(self.buf[..., s0 - self.base:s1 - self.base], spec)

    def envelope(self, a: int, b: int) -> torch.Tensor:
        """The squared window overlap-added over the frames that cover
        padded-signal samples ``[a, b)``, summed in the whole-track
        envelope's order (:meth:`Framing.envelope`)."""
        f = self.framing
        t0 = max(0, -(-(a - f.n_fft + 1) // f.hop))
        t1 = min(f.frames, (b - 1) // f.hop + 1)
        start = t0 * f.hop
        out = torch.zeros(max(b, (t1 - 1) * f.hop + f.n_fft) - start, device=self.device)
        if t1 > t0:
            overlap_add(out[:(t1 - 1 - t0) * f.hop + f.n_fft], f.window.square().expand(t1 - t0, -1), f.hop)
        return out[a - start:b - start]

    def flush(self, frames_added: int) -> np.ndarray:
        """The samples finished once frames ``[0, frames_added)`` are added
        (all of them when that is every frame), from where the last call
        stopped: ``(*lead_shape, n)`` float32 on the CPU."""
        f = self.framing
        final = f.length + 2 * f.pad if frames_added >= f.frames else frames_added * f.hop
        stop = max(self.done, min(final - f.pad, f.length))
        a, b = self.done + f.pad, stop + f.pad                  # padded-signal indices
        env = self.envelope(a, b)
        scale = torch.where(env > 1e-11, 1.0 / env, 0.0)
        part = self.buf[..., a - self.base:b - self.base]
        if self.device.type == "cpu":
            block = part.numpy() * scale.numpy()
        else:
            block = (part * scale).cpu().numpy()
        self.buf, self.base, self.done = self.buf[..., b - self.base:], b, stop
        return block


class ScratchReader:
    """Samples ``[a, b)`` ``(channels, b - a)`` of a scratch file of
    interleaved float32 frames (:func:`decode_to_scratch`), read when asked."""

    def __init__(self, path: str | Path, channels: int):
        self.fh = open(path, "rb")
        self.channels = channels

    def __call__(self, a: int, b: int) -> np.ndarray:
        self.fh.seek(4 * self.channels * a)
        data = np.fromfile(self.fh, dtype="<f4", count=(b - a) * self.channels)
        if data.size != (b - a) * self.channels:
            raise MusicsepError(f"{self.fh.name}: the scratch file ends before sample {b}")
        return data.reshape(b - a, self.channels).T

    def close(self) -> None:
        self.fh.close()


class Resampler:
    """Signals from ``rate_in`` to ``rate_out`` block by block (soxr, high
    quality, as one stream), or passed through at one rate; :meth:`end`
    gives what remains. Blocks are ``(samples, channels)`` (``frames_last``
    false) or ``(..., samples)`` with ``channels`` signals in all."""

    def __init__(self, rate_in: int, rate_out: int, channels: int, *, frames_last: bool = False):
        self.stream = None
        if rate_in != rate_out:
            import soxr

            self.stream = soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32", quality="HQ")
        self.channels, self.frames_last, self.lead = channels, frames_last, (channels,)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if self.stream is None:
            return block
        if self.frames_last:
            self.lead = block.shape[:-1]
            block = block.reshape(self.channels, -1).T
        out = self.stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))
        return out.T.reshape(*self.lead, -1) if self.frames_last else out

    def end(self) -> np.ndarray:
        empty = np.zeros((0, self.channels), dtype=np.float32)
        if self.stream is None:
            return empty.T.reshape(*self.lead, 0) if self.frames_last else empty
        out = self.stream.resample_chunk(empty, last=True)
        return out.T.reshape(*self.lead, -1) if self.frames_last else out


def decode_to_scratch(path: Path, rate: int, channels: int, model_rate: int, scratch: Path) -> tuple[int, int]:
    """Decode the first audio stream of ``path`` (at its ``rate``, in
    ``channels``), resampled to ``model_rate``, into ``scratch``; returns the
    decoded input's samples and the scratch file's. Raises MusicsepError
    naming the file for NaN or Inf in the decoded audio, AudioError (ffmpeg's
    message) for what ffmpeg cannot decode and OSError for a failed write."""
    from musicsep.data.audio import decode_blocks

    resample = Resampler(rate, model_rate, channels)
    samples = written = 0
    with open(scratch, "wb") as fh:
        for block in decode_blocks([(path, 0)], channels=channels):
            block = block[:, 0, :]
            if not np.isfinite(block).all():
                raise MusicsepError(f"{path}: NaN or Inf in the decoded audio, near {samples / rate:.2f} s")
            samples += len(block)
            out = resample(block)
            fh.write(np.ascontiguousarray(out, dtype="<f4").data)
            written += len(out)
        out = resample.end()
        fh.write(np.ascontiguousarray(out, dtype="<f4").data)
        written += len(out)
    return samples, written


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``).

    The command line keeps freed blocks in the heap for reuse
    (:func:`musicsep.memory.reuse_freed_memory`), and over the batches of a
    long track the blocks of one batch fit the holes left by the last only in
    part, so the heap and its resident pages grow batch after batch. Called
    between batches, this keeps the peak near one batch's working set
    whatever the track's length, for a page fault per reused page once a
    batch (``benchmarks/RESULTS.md``, separation memory). A no-op returning
    False where the C library is not glibc."""
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
                trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
                _TRIM = trim
    return bool(_TRIM) and bool(_TRIM(0))


_TRIM = None
