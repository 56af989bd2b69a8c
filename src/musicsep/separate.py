"""Separation: a trained model (or an oracle) turns a mixture into sources.

:class:`Separator` puts the STFT, the mask model and the optional
multichannel Wiener post-filter together (as open-unmix's ``Separator``).
Every estimate uses the mixture's phase: ``estimate_k = istft(mask_k * X)``
with ``X`` the mixture's STFT. Outputs are a dict of ``(channels, samples)``
float32 arrays, exactly as long as the input: the four sources in
:data:`musicsep.SOURCES` order and ``accompaniment`` (drums + bass + other).

Bounded memory. The STFT (Hann, ``center=True`` with reflection padding, the
frame grid of :meth:`musicsep.features.Features.stft`) is never computed for
the whole track at once: frames are computed chunk by chunk
(``chunk_seconds``) straight from the padded waveform, the model sees each
chunk with ``context_seconds`` of extra frames on each side (so its BLSTM
has context across the boundary) whose output is discarded, and each chunk's
masked frames are overlap-added into the output and normalised by the
window's squared sum, exactly as ``torch.istft`` does. Frames are therefore
bit-for-bit those of the whole-track STFT; only the model's view differs,
and with context the chunked and whole-track estimates agree closely: on a
random tiny BLSTM with 1 s of context the largest difference is about 1e-7
of the signal's peak (without context, about 1e-2); the test's bound is
1e-2 of the peak. How far a trained BLSTM carries context is for a
measurement on its test tracks to say (``benchmarks/bench_context.py``);
``context_seconds`` sets it, 1 s by default (:data:`CONTEXT_SECONDS` gives
the measurements behind that).
Models that
cluster each example on its own (deep clustering, conditional centroids with
EM iterations) cluster each chunk separately, so they agree less closely.

Oracles (:func:`oracle`) compute masks from the true sources on the same STFT
grid and apply them to the mixture's STFT: ``irm1``, ``irm2``, ``ibm``,
``ibm1``, ``ibm2`` and ``mwf``, the upper bounds every mask method is
measured against.

Shapes: audio ``(channels, samples)``; spectrograms ``(..., freq, frames)``,
``freq = n_fft // 2 + 1``; stacked estimates ``(sources, channels, ...)``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from musicsep import ORACLES, SOURCES, STREAMS, MusicsepError
from musicsep.features import magnitude

log = logging.getLogger(__name__)

TARGETS: tuple[str, ...] = SOURCES + ("accompaniment",)
"""What separation writes: the four sources and the accompaniment (all but vocals)."""

_ACCOMPANIMENT = [SOURCES.index(s) for s in SOURCES if s != "vocals"]

# A reader returns samples [start, stop) of a signal as float32 (..., channels, stop - start).
Reader = Callable[[int, int], np.ndarray]


# --------------------------------------------------------------------------- STFT in chunks


def _padded_segment(read: Reader, length: int, start: int, stop: int, pad: int) -> np.ndarray:
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


class _Framing:
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
        segment = np.stack([_padded_segment(read, self.length, *self.samples(c0, c1), self.pad)
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
        _overlap_add(out, frames, self.hop, self.window)

    def envelope(self) -> torch.Tensor:
        """The squared window overlap-added over all frames: ``(length + 2 * pad,)``."""
        out = torch.zeros(self.length + 2 * self.pad, device=self.window.device)
        _overlap_add(out[:self.samples(0, self.frames)[1]], self.window.square().expand(self.frames, -1), self.hop)
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


def _overlap_add(out: torch.Tensor, frames: torch.Tensor, hop: int, window: torch.Tensor | None = None) -> None:
    """``out[..., t * hop + i] += frames[..., t, i] * window[i]``: overlap-add
    of frames ``(..., frames, n_fft)`` in place, windowed when ``window`` is
    given. Where the hop divides the frame length (the usual case) each of the
    ``n_fft / hop`` segments of every frame lands on a contiguous run of
    ``out``: a few strided additions (multiply-adds with the window's
    segment), several times faster on the CPU than ``nn.functional.fold``
    (col2im)."""
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


class _OverlapAdd:
    """Accumulates overlap-added chunks of ``(sources, channels)`` signals on
    the framing's device and normalises them at the end, like
    ``torch.istft(center=True, length=length)``. (On a GPU the track's
    signals stay there until the end: moving each block's frames to the CPU
    and adding them there took over half of a separation's time on an H200.
    On the CPU the sum is a NumPy array, whose zeros cost nothing until
    touched, and NumPy normalises it about twice as fast as torch.)"""

    def __init__(self, framing: _Framing, lead_shape: tuple[int, ...]):
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


# --------------------------------------------------------------------------- Wiener filter


def _mwf(v: torch.Tensor, R: torch.Tensor, x: torch.Tensor, reg: float) -> torch.Tensor:
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


def _regulariser(mixture_peak: float, eps: float, scale_factor: float) -> float:
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
    return _mwf(v, R, mixture, _regulariser(float(mixture.abs().max()), eps, scale_factor))


# --------------------------------------------------------------------------- separation


def _progress(total: int, desc: str, show: bool) -> Iterator[int]:
    """Chunk indices, with a tqdm bar when ``show`` and stderr is a terminal,
    plain log lines otherwise (batch jobs)."""
    if show and total > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(range(total), desc=desc, unit="chunk")
        return
    for i in range(total):
        if show and total > 1:
            log.info("%s: chunk %d/%d", desc, i + 1, total)
        yield i


def _as_targets(estimates: np.ndarray) -> dict[str, np.ndarray]:
    """Stacked source estimates ``(4, channels, samples)`` -> the output dict."""
    out = {name: np.ascontiguousarray(estimates[k], dtype=np.float32) for k, name in enumerate(SOURCES)}
    acc = out[SOURCES[_ACCOMPANIMENT[0]]].copy()
    for k in _ACCOMPANIMENT[1:]:
        acc += out[SOURCES[k]]
    out["accompaniment"] = acc
    return out


def _check_audio(mixture, what: str = "mixture") -> np.ndarray:
    mixture = np.asarray(mixture, dtype=np.float32)
    if mixture.ndim != 2:
        raise MusicsepError(f"{what}: expected audio of shape (channels, samples), got {mixture.shape}")
    if not np.isfinite(mixture).all():
        raise MusicsepError(f"{what}: NaN or Inf in the audio")
    return mixture


def _apply_masks(masks: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
    """Masks ``(channels, sources, freq, frames)`` times the mixture's STFT
    ``(channels, freq, frames)``: ``(sources, channels, freq, frames)``. With
    both laid out frames-major, so is the product: the layout that the inverse
    FFT over frequencies reads without a copy. (On blocks of 256 frames, the
    complex-by-real product makes the whole masking loop about 8% faster than
    a real product on the complex numbers' parts with each mask value
    broadcast over the pair; the values are the same.)"""
    return masks.transpose(0, 1) * spec


BATCH_CHUNKS = 6
"""Chunks stacked into one model call at most, by default: a 3-minute track
(6 chunks of 30 s) in one call of 12 sequences, which a BLSTM runs about 10%
faster per frame than two calls of 6 on a 2-core CPU."""

CONTEXT_SECONDS = 1.0
"""Context on each side of a chunk, by default. Two trained BLSTM mask
models (the toy run's, and one of paper size trained for 1,500 steps of 20
excerpts on a GPU) give the same estimates in chunks as whole to float32
rounding from 1 s of context on (``benchmarks/bench_context.py``, 4 s
chunks on toy test tracks: 34 and 46 dB without context, 112 and 138 dB with
0.5 s, 148 and 145 dB with 1 s); 1 s leaves a margin and costs
a 3-minute track in 30 s chunks 5.6% more model frames, 2 s 11.2%. A model
that carries context further (a model trained on real music for longer may:
measure it with that script) can be given more: ``context_seconds``,
``evaluation.context_seconds``, ``--context-seconds``."""

BLOCK_FRAMES = 256
"""Frames whose masks, masked spectrogram and inverse FFT are made at once
(about 50 MB for a stereo four-source block at n_fft 2048): small enough to
stay in cache between the stages, large enough for efficient calls; it also
bounds the memory that masking adds to a chunk's model call."""


def _balanced(items: list, most: int) -> list[list]:
    """``items`` cut into the fewest batches of at most ``most``, of sizes
    that differ by at most one (a BLSTM's time per frame grows as its batch
    shrinks: 8 chunks at most 6 a call run as 4 + 4, not 6 + 2)."""
    if not items:
        return []
    calls = -(-len(items) // most)
    size, extra = divmod(len(items), calls)
    bounds = np.cumsum([0] + [size + (k < extra) for k in range(calls)])
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class Separator:
    """A mask model with its STFT and post-filter: mixture in, sources out.

    ``chunk_seconds``: output frames per chunk (bounds memory);
    ``context_seconds``: extra frames on each side fed to the model and
    discarded from its output; ``batch_chunks``: chunks stacked into one
    model call at most, in calls of balanced sizes (a BLSTM runs faster per
    frame on a batch of sequences: about 1.7x on 12 sequences against 2 on a
    2-core CPU; memory grows with it, by about 0.2 GB per 30 s stereo chunk
    for the paper-size BLSTM mask model);
    ``wiener``: refine the masked estimates with one multichannel Wiener
    iteration (:func:`wiener`; on each chunk with its
    context, the spatial covariances estimated over those frames, as
    open-unmix does per window); ``device``: where the model runs.
    """

    def __init__(self, model, *, chunk_seconds: float = 30.0, context_seconds: float = CONTEXT_SECONDS,
                 batch_chunks: int = BATCH_CHUNKS, wiener: bool = False, device: str | torch.device = "cpu"):
        features = getattr(model, "features", None)
        if features is None or not callable(getattr(model, "mel_masks", None)):
            raise MusicsepError(f"cannot separate with a {type(model).__name__}: not a mask model")
        if not chunk_seconds > 0 or not context_seconds >= 0:
            raise MusicsepError(f"chunk_seconds must be positive and context_seconds at least 0 "
                                f"(got {chunk_seconds}, {context_seconds})")
        if not (isinstance(batch_chunks, int) and batch_chunks >= 1):
            raise MusicsepError(f"batch_chunks must be a positive integer (got {batch_chunks!r})")
        if not (isinstance(features.sample_rate, int) and features.sample_rate > 0):
            raise MusicsepError(f"the model's sample rate {features.sample_rate!r} is not a positive integer")
        self.device = torch.device(device)
        self.model = model.float().to(self.device).eval()
        self.chunk_seconds, self.context_seconds, self.wiener = chunk_seconds, context_seconds, wiener
        self.batch_chunks = batch_chunks
        self.name = getattr(model, "name", type(model).__name__)

    @classmethod
    def from_file(cls, path: str | Path, **kw) -> "Separator":
        """A separator for a model file (it describes itself); MusicsepError
        naming the file for anything else (:func:`musicsep.models.load_model`)."""
        from musicsep.models import load_model

        model, _ = load_model(path)
        return cls(model, **kw)

    @property
    def sample_rate(self) -> int:
        return self.model.features.sample_rate

    def _framing(self, length: int) -> _Framing:
        f = self.model.features
        return _Framing(length, f.n_fft, f.hop, f.window.to(self.device))

    def chunk_frames(self) -> tuple[int, int]:
        """Output frames per chunk and context frames on each side."""
        rate, hop = self.sample_rate, self.model.features.hop
        return max(1, int(np.ceil(self.chunk_seconds * rate / hop))), int(np.ceil(self.context_seconds * rate / hop))

    def n_chunks(self, samples: int) -> int:
        return len(self._framing(samples).chunks(*self.chunk_frames()))

    @torch.no_grad()
    def separate(self, mixture: np.ndarray, *, progress: bool = False, desc: str = "separate") -> dict[str, np.ndarray]:
        """``mixture`` ``(channels, samples)`` float32 at :attr:`sample_rate`
        -> ``{target: (channels, samples)}`` for :data:`TARGETS`."""
        mixture = _check_audio(mixture)
        channels, length = mixture.shape
        if length == 0:
            return _as_targets(np.zeros((len(SOURCES), channels, 0), dtype=np.float32))
        framing = self._framing(length)
        acc = _OverlapAdd(framing, (len(SOURCES), channels))
        chunks = framing.chunks(*self.chunk_frames())

        def read(a, b):
            return mixture[:, a:b]

        to_linear = self.model.features.to_linear
        batches = _balanced(chunks, self.batch_chunks)
        for i in _progress(len(batches), desc, progress):
            specs = framing.stft_many(read, [(c0, c1) for _, _, c0, c1 in batches[i]])
            # (chunks, channels, freq, frames) -> one model call on (chunks * channels, freq, frames),
            # mel masks (chunks, channels, sources, n_mels, frames); each chunk's are taken to full
            # resolution on its kept frames only (all of them for the Wiener filter's covariances)
            mel = self.model.mel_masks(magnitude(specs.flatten(0, 1))).unflatten(0, specs.shape[:2])
            for (f0, f1, c0, _), m, spec in zip(batches[i], mel, specs):
                if self.wiener:
                    estimates = wiener(_apply_masks(to_linear(m.float()), spec), spec)
                    acc.add(estimates[..., f0 - c0:f1 - c0], f0, f1)
                    continue
                # the kept frames in blocks: masks, product and inverse FFT of a block stay in cache
                for b0 in range(f0, f1, BLOCK_FRAMES):
                    b1 = min(b0 + BLOCK_FRAMES, f1)
                    keep = slice(b0 - c0, b1 - c0)
                    acc.add(_apply_masks(to_linear(m[..., keep].float()), spec[..., keep]), b0, b1)
        return _as_targets(acc.result())


# --------------------------------------------------------------------------- oracles


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
                desc: str = "oracle") -> dict[str, np.ndarray]:
    """The oracle over a signal read in chunks of frames (exact: oracles need
    no context). ``mwf`` takes two passes: the spatial covariances are
    estimated over the whole track first."""
    if kind not in ORACLES:
        raise MusicsepError(f"unknown oracle {kind!r} (known: {', '.join(ORACLES)})")
    if length == 0:
        return _as_targets(np.zeros((len(SOURCES), channels, 0), dtype=np.float32))
    eps = 1e-10
    framing = _Framing(length, n_fft, hop, torch.hann_window(n_fft))
    chunks = framing.chunks(chunk_frames)
    acc = _OverlapAdd(framing, (len(SOURCES), channels))
    if kind == "mwf":
        # pass 1: Σ_t s sᴴ and Σ_t v per source and frequency, over the whole track
        cov = torch.zeros(n_fft // 2 + 1, len(SOURCES), channels, channels, dtype=torch.complex128)
        power = torch.zeros(n_fft // 2 + 1, len(SOURCES), dtype=torch.float64)
        peak = 0.0
        for f0, f1, _, _ in chunks:
            s = framing.stft(read_sources, f0, f1).to(torch.complex128)        # (sources, channels, freq, frames)
            cov += torch.einsum("jcft,jdft->fjcd", s, s.conj())
            power += s.abs().square().mean(1).sum(-1).T
            peak = max(peak, float(s.sum(0).abs().max()))
        R = cov / (eps + power)[..., None, None]
        reg = _regulariser(peak, eps, 10.0)
    for i in _progress(len(chunks), desc, progress):
        f0, f1, _, _ = chunks[i]
        x = framing.stft(read_mixture, f0, f1)                                 # (channels, freq, frames)
        s = framing.stft(read_sources, f0, f1)                                 # (sources, channels, freq, frames)
        if kind == "mwf":
            estimates = _mwf(s.abs().square().mean(1), R, x, reg)
        else:
            estimates = _oracle_masks(kind, s, x) * x
        acc.add(estimates, f0, f1)
    return _as_targets(acc.result())


def oracle(kind: str, sources: Mapping[str, np.ndarray] | np.ndarray, mixture: np.ndarray | None = None,
           n_fft: int = 2048, hop: int = 512, *, chunk_frames: int = 2048) -> dict[str, np.ndarray]:
    """Oracle estimates from the true sources, applied to the mixture's STFT
    (with its phase); returns a dict like :meth:`Separator.separate`.

    ``sources``: ``{name: (channels, samples)}`` with every name of
    :data:`SOURCES`, or an array ``(4, channels, samples)`` in that order;
    ``mixture``: ``(channels, samples)`` (default: the sum of the sources;
    MUSDB's stored mixture is not exactly that sum). ``kind``:

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
    if isinstance(sources, Mapping):
        missing = [s for s in SOURCES if s not in sources]
        if missing:
            raise MusicsepError(f"oracle: sources lack {', '.join(missing)}")
        sources = np.stack([_check_audio(sources[s], s) for s in SOURCES])
    sources = np.asarray(sources, dtype=np.float32)
    if sources.ndim != 3 or sources.shape[0] != len(SOURCES):
        raise MusicsepError(f"oracle: expected sources of shape ({len(SOURCES)}, channels, samples), "
                            f"got {sources.shape}")
    mixture = sources.sum(0) if mixture is None else _check_audio(mixture)
    if mixture.shape != sources.shape[1:]:
        raise MusicsepError(f"oracle: mixture {mixture.shape} and sources {sources.shape[1:]} differ in shape")
    return _run_oracle(kind, lambda a, b: sources[..., a:b], lambda a, b: mixture[:, a:b],
                       mixture.shape[0], mixture.shape[1], n_fft, hop, chunk_frames)


# --------------------------------------------------------------------------- files and shards


def write_targets(estimates: Mapping[str, np.ndarray], out_dir: str | Path, sample_rate: int) -> dict[str, Path]:
    """``{out_dir}/{target}.wav`` (float32 WAV), each written atomically."""
    import soundfile

    from musicsep.io import atomic_path

    out_dir = Path(out_dir)
    paths = {}
    for target in TARGETS:
        path = out_dir / f"{target}.wav"
        with atomic_path(path) as tmp:
            soundfile.write(tmp, np.ascontiguousarray(estimates[target].T), sample_rate,
                            subtype="FLOAT", format="WAV")
        paths[target] = path
    return paths


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])])


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``(channels, samples)`` from ``rate_in`` to ``rate_out`` (soxr, high quality)."""
    if rate_in == rate_out or audio.shape[-1] == 0:
        return audio
    import soxr

    return np.ascontiguousarray(soxr.resample(audio.T, rate_in, rate_out, quality="HQ").T, dtype=np.float32)


def _separator(model_or_separator, **kw) -> Separator:
    if isinstance(model_or_separator, Separator):
        return model_or_separator
    if isinstance(model_or_separator, (str, Path)):
        return Separator.from_file(model_or_separator, **kw)
    return Separator(model_or_separator, **kw)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def separate_file(input_path: str | Path, model_path: str | Path | Separator, out_dir: str | Path, *,
                  wiener: bool = False, chunk_seconds: float = 30.0, context_seconds: float = CONTEXT_SECONDS,
                  batch_chunks: int = BATCH_CHUNKS, progress: bool = True,
                  device: str | None = None) -> dict[str, Path]:
    """Separate any audio file ffmpeg reads into ``{out_dir}/{target}.wav``.

    The file is decoded once at its own rate as stereo (mono duplicated, more
    channels downmixed: :func:`musicsep.audio.decode`), resampled to the
    model's rate with soxr, separated, and each estimate resampled back to the
    input rate and trimmed or padded to exactly the decoded input's length.
    Returns the written paths by target.
    """
    from musicsep.audio import AudioError, decode, probe

    input_path = Path(input_path)
    if not input_path.is_file():
        raise MusicsepError(f"{input_path}: no such input file")
    separator = _separator(model_path, chunk_seconds=chunk_seconds, context_seconds=context_seconds,
                           batch_chunks=batch_chunks, wiener=wiener, device=device or _default_device())
    try:
        streams = probe(input_path)
        if not streams:
            raise MusicsepError(f"{input_path}: no audio stream")
        rate = streams[0].sample_rate
        if rate <= 0:
            raise MusicsepError(f"{input_path}: cannot handle its audio (sample rate {rate!r}, "
                                f"codec {streams[0].codec})")
        audio = decode(input_path)
    except AudioError as err:
        raise MusicsepError(f"{input_path}: {err}") from None
    if audio.shape[-1] == 0:
        raise MusicsepError(f"{input_path}: no audio decoded (empty file?)")
    if not np.isfinite(audio).all():
        raise MusicsepError(f"{input_path}: NaN or Inf in the decoded audio")
    length = audio.shape[-1]
    mixture = _resample(audio, rate, separator.sample_rate)
    del audio
    log.info("%s: %.1f s at %d Hz, %s -> %d Hz, %d chunk(s)", input_path, length / rate, rate,
             separator.name, separator.sample_rate, separator.n_chunks(mixture.shape[-1]))
    estimates = separator.separate(mixture, progress=progress, desc=input_path.name)
    estimates = {k: _fit_length(_resample(v, separator.sample_rate, rate), length) for k, v in estimates.items()}
    paths = write_targets(estimates, out_dir, rate)
    log.info("%s -> %s", input_path, out_dir)
    return paths


@contextlib.contextmanager
def _open_shard(path: str | Path):
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as err:
        raise MusicsepError(f"{path}: not a readable shard ({err})") from None
    with h5:
        if "audio" not in h5 or h5["audio"].ndim != 3 or h5["audio"].shape[0] != len(STREAMS) \
                or "sample_rate" not in h5.attrs:
            raise MusicsepError(f"{path}: not a musicsep shard (no audio of {len(STREAMS)} streams "
                                "and sample rate)")
        yield h5


def separate_shard(shard_path: str | Path, model_or_separator, out_dir: str | Path, *,
                   wiener: bool = False, chunk_seconds: float = 30.0, context_seconds: float = CONTEXT_SECONDS,
                   batch_chunks: int = BATCH_CHUNKS, progress: bool = True,
                   device: str | None = None) -> dict[str, Path]:
    """The workflow's separation job: the mixture (row 0) of a shard, separated
    by a model (a model file, a model, or a :class:`Separator`) into
    ``{out_dir}/{target}.wav`` at the shard's rate (which must be the model's)."""
    separator = _separator(model_or_separator, chunk_seconds=chunk_seconds, context_seconds=context_seconds,
                           batch_chunks=batch_chunks, wiener=wiener, device=device or _default_device())
    with _open_shard(shard_path) as h5:
        rate, name = int(h5.attrs["sample_rate"]), str(h5.attrs.get("name", Path(shard_path).stem))
        if rate != separator.sample_rate:
            raise MusicsepError(f"{shard_path}: shard is at {rate} Hz, the model at {separator.sample_rate} Hz")
        mixture = h5["audio"][STREAMS.index("mixture")]
    log.info("%s: %.1f s, %s, %d chunk(s)", name, mixture.shape[-1] / rate, separator.name,
             separator.n_chunks(mixture.shape[-1]))
    estimates = separator.separate(mixture, progress=progress, desc=name)
    paths = write_targets(estimates, out_dir, rate)
    log.info("%s -> %s", name, out_dir)
    return paths


def oracle_shard(shard_path: str | Path, kind: str, out_dir: str | Path, *, n_fft: int = 2048, hop: int = 512,
                 chunk_frames: int = 2048, progress: bool = True) -> dict[str, Path]:
    """The oracle ``kind`` on a shard: masks from its true sources (rows 1..4)
    applied to its mixture (row 0), read in chunks of frames, written to
    ``{out_dir}/{target}.wav`` at the shard's rate."""
    if kind not in ORACLES:
        raise MusicsepError(f"unknown oracle {kind!r} (known: {', '.join(ORACLES)})")
    rows = [STREAMS.index(s) for s in SOURCES]
    mix_row = STREAMS.index("mixture")
    with _open_shard(shard_path) as h5:
        audio = h5["audio"]
        rate, name = int(h5.attrs["sample_rate"]), str(h5.attrs.get("name", Path(shard_path).stem))
        _, channels, length = audio.shape
        contiguous = rows == list(range(rows[0], rows[0] + len(rows)))

        def read_sources(a, b):
            if contiguous:
                return audio[rows[0]:rows[-1] + 1, :, a:b]
            return np.stack([audio[r, :, a:b] for r in rows])

        def read_mixture(a, b):
            return audio[mix_row, :, a:b]

        log.info("%s: oracle %s, %.1f s", name, kind, length / rate)
        estimates = _run_oracle(kind, read_sources, read_mixture, channels, length, n_fft, hop, chunk_frames,
                                progress=progress, desc=f"{name} ({kind})")
    paths = write_targets(estimates, out_dir, rate)
    log.info("%s -> %s", name, out_dir)
    return paths
