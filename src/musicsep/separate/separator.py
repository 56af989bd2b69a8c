"""Separation by a trained model: mixture in, sources out.

:class:`Separator` puts the STFT, the mask model and the optional
multichannel Wiener post-filter together (as open-unmix's ``Separator``).
Every estimate uses the mixture's phase: ``estimate_k = istft(mask_k * X)``
with ``X`` the mixture's STFT. Outputs are a dict of ``(channels, samples)``
float32 arrays, exactly as long as the input, for every name of
:data:`musicsep.TARGETS`: the four sources and ``accompaniment`` (drums +
bass + other, summed as musdb sums it).

Bounded memory. The STFT (:class:`musicsep.spectral.stft.Framing`: Hann,
``center=True`` with reflection padding, the frame grid of
:meth:`musicsep.spectral.features.Features.stft`) is never computed for the
whole track at once: frames are computed chunk by chunk
(``chunk_seconds``) straight from the padded waveform, the model sees each
chunk with ``context_seconds`` of extra frames on each side (so its BLSTM
has context across the boundary) whose output is discarded, and each chunk's
masked frames are overlap-added into the output and normalised by the
window's squared sum, exactly as ``torch.istft`` does. Frames are therefore
bit-for-bit those of the whole-track STFT; only the model's view differs,
and with context the chunked and whole-track estimates agree closely (how
closely: ``benchmarks/RESULTS.md``, context). How far a trained BLSTM carries
context is for a measurement on its test tracks to say
(``benchmarks/bench_context.py``); ``context_seconds`` sets it, 1 s by
default (:data:`CONTEXT_SECONDS` says why). Models that
cluster each example on its own (deep clustering, conditional centroids with
EM iterations) cluster each chunk separately, so they agree less closely.

The oracles (:mod:`musicsep.separate.oracles`) use the same frame grid and
write the same outputs.

Shapes: audio ``(channels, samples)``; spectrograms ``(..., freq, frames)``,
``freq = n_fft // 2 + 1``; stacked estimates ``(sources, channels, ...)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from musicsep import ACCOMPANIMENT, SOURCES, TARGETS, MusicsepError
from musicsep.data.shard import Shard
from musicsep.io import progress_bar
from musicsep.separate import BATCH_CHUNKS, CHUNK_SECONDS, CONTEXT_SECONDS
from musicsep.spectral.stft import Framing, OverlapAdd, magnitude
from musicsep.spectral.wiener import wiener

log = logging.getLogger(__name__)


def as_targets(estimates: np.ndarray) -> dict[str, np.ndarray]:
    """Stacked source estimates ``(4, channels, samples)`` -> ``{target: audio}`` in :data:`TARGETS` order."""
    out = {name: np.ascontiguousarray(estimates[k], dtype=np.float32) for k, name in enumerate(SOURCES)}
    acc = out[ACCOMPANIMENT[0]].copy()
    for name in ACCOMPANIMENT[1:]:
        acc += out[name]
    out["accompaniment"] = acc
    return {target: out[target] for target in TARGETS}


def check_audio(mixture, what: str = "mixture") -> np.ndarray:
    mixture = np.asarray(mixture, dtype=np.float32)
    if mixture.ndim != 2:
        raise MusicsepError(f"{what}: expected audio of shape (channels, samples), got {mixture.shape}")
    if not np.isfinite(mixture).all():
        raise MusicsepError(f"{what}: NaN or Inf in the audio")
    return mixture


def apply_masks(masks: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
    """Masks ``(channels, sources, freq, frames)`` times the mixture's STFT
    ``(channels, freq, frames)``: ``(sources, channels, freq, frames)``. With
    both laid out frames-major, so is the product: the layout that the inverse
    FFT over frequencies reads without a copy. (A complex-by-real product:
    the same values as a real product on the complex numbers' parts with each
    mask value broadcast over the pair, and a faster masking loop:
    ``benchmarks/RESULTS.md``, masking.)"""
    return masks.transpose(0, 1) * spec


BLOCK_FRAMES = 256
"""Frames whose masks, masked spectrogram and inverse FFT are made at once:
small enough to stay in cache between the stages, large enough for efficient
calls; it also bounds the memory that masking adds to a chunk's model call
(a block's size, and the time and memory against whole chunks:
``benchmarks/RESULTS.md``, blocked masking)."""


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
    frame on a batch of sequences; memory grows with it: by how much of each,
    ``benchmarks/RESULTS.md``, batched chunks);
    ``wiener``: refine the masked estimates with one multichannel Wiener
    iteration (:func:`wiener`; on each chunk with its
    context, the spatial covariances estimated over those frames, as
    open-unmix does per window); ``device``: where the model runs.
    """

    def __init__(self, model, *, chunk_seconds: float = CHUNK_SECONDS, context_seconds: float = CONTEXT_SECONDS,
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
        naming the file for anything else (:func:`musicsep.models.checkpoint.load_model`)."""
        from musicsep.models.checkpoint import load_model

        model, _ = load_model(path)
        return cls(model, **kw)

    @property
    def sample_rate(self) -> int:
        return self.model.features.sample_rate

    def framing(self, length: int) -> Framing:
        """The STFT frame grid of a ``length``-sample signal, on the model's device."""
        f = self.model.features
        return Framing(length, f.n_fft, f.hop, f.window.to(self.device))

    def chunk_frames(self) -> tuple[int, int]:
        """Output frames per chunk and context frames on each side."""
        rate, hop = self.sample_rate, self.model.features.hop
        return max(1, int(np.ceil(self.chunk_seconds * rate / hop))), int(np.ceil(self.context_seconds * rate / hop))

    def n_chunks(self, samples: int) -> int:
        return len(self.framing(samples).chunks(*self.chunk_frames()))

    @torch.no_grad()
    def separate(self, mixture: np.ndarray, *, progress: bool = False, desc: str = "separate") -> dict[str, np.ndarray]:
        """``mixture`` ``(channels, samples)`` float32 at :attr:`sample_rate`
        -> ``{target: (channels, samples)}`` for :data:`TARGETS`."""
        mixture = check_audio(mixture)
        channels, length = mixture.shape
        if length == 0:
            return as_targets(np.zeros((len(SOURCES), channels, 0), dtype=np.float32))
        framing = self.framing(length)
        acc = OverlapAdd(framing, (len(SOURCES), channels))
        chunks = framing.chunks(*self.chunk_frames())

        def read(a, b):
            return mixture[:, a:b]

        to_linear = self.model.features.to_linear
        batches = _balanced(chunks, self.batch_chunks)
        batch_done = progress_bar(len(batches), desc, unit="batch of chunks", show=progress and len(batches) > 1)
        for batch in batches:
            specs = framing.stft_many(read, [(c0, c1) for _, _, c0, c1 in batch])
            # (chunks, channels, freq, frames) -> one model call on (chunks * channels, freq, frames),
            # mel masks (chunks, channels, sources, n_mels, frames); each chunk's are taken to full
            # resolution on its kept frames only (all of them for the Wiener filter's covariances)
            mel = self.model.mel_masks(magnitude(specs.flatten(0, 1))).unflatten(0, specs.shape[:2])
            for (f0, f1, c0, _), m, spec in zip(batch, mel, specs):
                if self.wiener:
                    estimates = wiener(apply_masks(to_linear(m.float()), spec), spec)
                    acc.add(estimates[..., f0 - c0:f1 - c0], f0, f1)
                    continue
                # the kept frames in blocks: masks, product and inverse FFT of a block stay in cache
                for b0 in range(f0, f1, BLOCK_FRAMES):
                    b1 = min(b0 + BLOCK_FRAMES, f1)
                    keep = slice(b0 - c0, b1 - c0)
                    acc.add(apply_masks(to_linear(m[..., keep].float()), spec[..., keep]), b0, b1)
            batch_done()
        return as_targets(acc.result())


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
                  wiener: bool = False, chunk_seconds: float = CHUNK_SECONDS, context_seconds: float = CONTEXT_SECONDS,
                  batch_chunks: int = BATCH_CHUNKS, progress: bool = True,
                  device: str | None = None) -> dict[str, Path]:
    """Separate any audio file ffmpeg reads into ``{out_dir}/{target}.wav``.

    The file is decoded once at its own rate as stereo (mono duplicated, more
    channels downmixed: :func:`musicsep.data.audio.decode`), resampled to the
    model's rate with soxr, separated, and each estimate resampled back to the
    input rate and trimmed or padded to exactly the decoded input's length.
    Returns the written paths by target.
    """
    from musicsep.data.audio import AudioError, decode, probe

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


def separate_shard(shard_path: str | Path, model_or_separator, out_dir: str | Path, *,
                   wiener: bool = False, chunk_seconds: float = CHUNK_SECONDS, context_seconds: float = CONTEXT_SECONDS,
                   batch_chunks: int = BATCH_CHUNKS, progress: bool = True,
                   device: str | None = None) -> dict[str, Path]:
    """The workflow's separation job: the mixture (row 0) of a shard, separated
    by a model (a model file, a model, or a :class:`Separator`) into
    ``{out_dir}/{target}.wav`` at the shard's rate (which must be the model's)."""
    separator = _separator(model_or_separator, chunk_seconds=chunk_seconds, context_seconds=context_seconds,
                           batch_chunks=batch_chunks, wiener=wiener, device=device or _default_device())
    with Shard(shard_path) as shard:
        rate, name = shard.sample_rate, shard.name
        if rate != separator.sample_rate:
            raise MusicsepError(f"{shard_path}: shard is at {rate} Hz, the model at {separator.sample_rate} Hz")
        mixture = shard.mixture()
    log.info("%s: %.1f s, %s, %d chunk(s)", name, mixture.shape[-1] / rate, separator.name,
             separator.n_chunks(mixture.shape[-1]))
    estimates = separator.separate(mixture, progress=progress, desc=name)
    paths = write_targets(estimates, out_dir, rate)
    log.info("%s -> %s", name, out_dir)
    return paths
