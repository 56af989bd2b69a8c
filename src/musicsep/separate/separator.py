"""Separation by a trained model: mixture in, sources out.

:class:`Separator` puts the STFT, the mask model and the optional
multichannel Wiener post-filter together (as open-unmix's ``Separator``).
Every estimate uses the mixture's phase: ``estimate_k = istft(mask_k * X)``
with ``X`` the mixture's STFT. Outputs are a dict of ``(channels, samples)``
float32 arrays, exactly as long as the input, for every target of the
model's sources (:func:`~musicsep.separate.stems.separation_targets`): the
sources (MUSDB18's four unless the model was trained on others) and
``accompaniment`` when one is ``vocals`` (every other source, summed as musdb
sums bass, drums and other).

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

Streaming. :meth:`Separator.stream` hands out the estimates chunk by chunk
as they are finished (:class:`~musicsep.separate.streaming.StreamingOverlapAdd`),
and the files and shards are separated that way: an input file is decoded
and resampled to the model's rate into a scratch file beside the output,
read back a window at a time, and the estimates are resampled back and
written to the stems block by block (:class:`~musicsep.separate.stems.StemWriter`,
which also makes the set of stems appear whole or not at all). No signal of
the whole track is held in memory, a batch holds its windows' magnitudes
(not their complex STFTs: each chunk's STFT is computed again for its
masking), and the heap's free pages go back to the system after each batch
(:func:`~musicsep.separate.streaming.release_free_memory`), so memory does
not grow with the track's length (``benchmarks/RESULTS.md``, separation
memory); the estimates are those of :meth:`Separator.separate` on the whole
signal, value for value.

The oracles (:mod:`musicsep.separate.oracles`) use the same frame grid and
write the same outputs.

Shapes: audio ``(channels, samples)``; spectrograms ``(..., freq, frames)``,
``freq = n_fft // 2 + 1``; stacked estimates ``(sources, channels, ...)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import torch

from musicsep import SOURCES, MusicsepError
from musicsep.data.shard import Shard
from musicsep.io import progress_bar
from musicsep.separate import BATCH_CHUNKS, CHUNK_SECONDS, CONTEXT_SECONDS, DEFAULT_FORMAT
from musicsep.separate.stems import StemWriter, as_targets, check_destination, format_of
from musicsep.separate.streaming import (
    Resampler,
    ScratchReader,
    StreamingOverlapAdd,
    decode_to_scratch,
    release_free_memory,
)
from musicsep.spectral.stft import Framing, Reader, magnitude
from musicsep.spectral.wiener import wiener

log = logging.getLogger(__name__)


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
    open-unmix does per window); ``device``: where the model runs. A model
    that joins the channels (a ``channels`` attribute above 1: umx) is given
    a mono mixture on each of its channels, as open-unmix's separator upmixes
    it, and refuses audio of other channel counts.
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
        self.sources: tuple[str, ...] = tuple(getattr(model, "sources", SOURCES))
        """The model's sources, in the order of its outputs (and of :meth:`stream`'s blocks)."""

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

    def counts(self, samples: int) -> str:
        """What a ``samples``-long signal is cut into, in words: "21 chunks in 4 batches"."""
        chunks = self.n_chunks(samples)
        batches = len(_balanced(list(range(chunks)), self.batch_chunks))
        return f"{chunks} chunk{'s' * (chunks != 1)} in {batches} batch{'es' * (batches != 1)}"

    @torch.no_grad()
    def stream(self, read: Reader, length: int, channels: int, *, progress: bool = False,
               desc: str = "separate") -> Iterator[np.ndarray]:
        """The estimates of the signal that ``read`` gives (``length`` samples
        of ``channels`` at :attr:`sample_rate`), handed out chunk by chunk:
        blocks ``(sources, channels, n)`` float32 in :attr:`sources` order
        whose concatenation is the sources' estimates. ``read`` is asked for
        windows in order (a batch of chunks at a time), and memory is bounded
        by a batch, whatever the length. Progress is counted in batches."""
        if length == 0:
            return
        joined = getattr(self.model, "channels", 1)     # channels the model reads together (umx: 1 or 2)
        if channels not in (1, joined) and joined > 1:
            raise MusicsepError(f"the model {self.name} separates {joined}-channel audio; this has {channels}")
        framing = self.framing(length)
        acc = StreamingOverlapAdd(framing, (len(self.sources), channels))
        to_linear = self.model.features.to_linear
        batches = _balanced(framing.chunks(*self.chunk_frames()), self.batch_chunks)
        batch_done = progress_bar(len(batches), desc, unit="batch", show=progress and len(batches) > 1)
        freq = framing.n_fft // 2 + 1
        for batch in batches:
            # the windows' magnitudes, a window's STFT at a time, in one (chunks, channels, freq, frames)
            # tensor laid out frames-major as torch.stft's output (what the model reads without copies)
            frames = batch[0][3] - batch[0][2]
            mag = torch.empty((len(batch), channels, frames, freq), device=self.device).transpose(-1, -2)
            for k, (_, _, c0, c1) in enumerate(batch):
                mag[k] = magnitude(framing.stft(read, c0, c1))
            # one model call on (chunks * channels, freq, frames): mel masks (chunks, channels, sources,
            # n_mels, frames); each chunk's are taken to full resolution on its kept frames only (all of
            # them for the Wiener filter's covariances), against its STFT computed again (holding the
            # batch's complex STFTs instead would double the batch's memory, for 2% of the time)
            if joined > channels:           # a mono mixture on every channel, as open-unmix's Separator upmixes it
                mag = mag.expand(-1, joined, -1, -1)
            mel = self.model.mel_masks(mag.flatten(0, 1)).unflatten(0, (len(batch), mag.shape[1]))[:, :channels]
            del mag
            for (f0, f1, c0, c1), m in zip(batch, mel):
                spec = framing.stft(read, c0, c1)
                if self.wiener:
                    estimates = wiener(apply_masks(to_linear(m.float()), spec), spec)
                    acc.add(estimates[..., f0 - c0:f1 - c0], f0, f1)
                else:
                    # the kept frames in blocks: masks, product and inverse FFT of a block stay in cache
                    for b0 in range(f0, f1, BLOCK_FRAMES):
                        b1 = min(b0 + BLOCK_FRAMES, f1)
                        keep = slice(b0 - c0, b1 - c0)
                        acc.add(apply_masks(to_linear(m[..., keep].float()), spec[..., keep]), b0, b1)
                yield acc.flush(f1)
            del mel, m
            release_free_memory()
            batch_done()

    def separate(self, mixture: np.ndarray, *, progress: bool = False, desc: str = "separate") -> dict[str, np.ndarray]:
        """``mixture`` ``(channels, samples)`` float32 at :attr:`sample_rate`
        -> ``{target: (channels, samples)}`` for every target of :attr:`sources`
        (:func:`as_targets`; in memory: :meth:`stream` gathered)."""
        mixture = check_audio(mixture)
        channels, length = mixture.shape
        out = np.empty((len(self.sources), channels, length), dtype=np.float32)
        done = 0
        for block in self.stream(lambda a, b: mixture[:, a:b], length, channels, progress=progress, desc=desc):
            out[..., done:done + block.shape[-1]] = block
            done += block.shape[-1]
        return as_targets(out, self.sources)


def write_targets(estimates: Mapping[str, np.ndarray], out_dir: str | Path, sample_rate: int,
                  fmt: str = DEFAULT_FORMAT, sources=SOURCES) -> dict[str, Path]:
    """``{out_dir}/{target}.wav`` (float32 WAV by default: ``fmt``, one of
    :data:`musicsep.separate.FORMATS`) for every target of a separation into
    ``sources``, written as a set (:class:`~musicsep.separate.stems.StemWriter`)."""
    channels = np.shape(next(iter(estimates.values())))[0]
    with StemWriter(out_dir, sample_rate, channels, fmt, sources) as writer:
        writer.write_targets(estimates)
        return writer.commit()


def _write_exactly(writer: StemWriter, blocks: Iterable[np.ndarray], length: int, channels: int) -> None:
    """Blocks of sources ``(sources, channels, n)`` to ``writer``, trimmed or
    padded with zeros to exactly ``length`` samples."""
    written = 0
    for block in blocks:
        take = min(block.shape[-1], length - written)
        if take > 0:
            writer.write(block[..., :take])
            written += take
    if written < length:
        writer.write(np.zeros((len(writer.sources), channels, length - written), dtype=np.float32))


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
                  batch_chunks: int = BATCH_CHUNKS, progress: bool = True, device: str | None = None,
                  fmt: str = DEFAULT_FORMAT) -> dict[str, Path]:
    """Separate any audio file ffmpeg reads into ``{out_dir}/{target}{ext}``
    (float32 WAV unless ``fmt`` says otherwise).

    The file's first audio stream is decoded at its own rate, mono as mono
    (one channel in, one out: the stems sum as the input does), anything
    else as stereo (more channels downmixed by ffmpeg), resampled to the
    model's rate with soxr into a scratch file beside the output, separated
    as a stream (:meth:`Separator.stream`), and the estimates are resampled
    back to the input rate and written block by block, trimmed or padded to
    exactly the decoded input's length. A file that decodes to less than its
    header declares (by more than
    :data:`~musicsep.data.audio.TRUNCATION_TOLERANCE`) is an error naming
    the missing duration, as for the shards. Returns the written paths by
    target; every error is a MusicsepError naming the file.
    """
    from musicsep.data.audio import AudioError, check_complete, declared_seconds, probe

    input_path = Path(input_path)
    if input_path.is_dir():
        raise MusicsepError(f"{input_path}: is a folder, not an audio file")
    if not input_path.is_file():
        raise MusicsepError(f"{input_path}: no such input file")
    format_of(fmt)
    check_destination(out_dir)
    separator = _separator(model_path, chunk_seconds=chunk_seconds, context_seconds=context_seconds,
                           batch_chunks=batch_chunks, wiener=wiener, device=device or _default_device())
    try:
        streams = probe(input_path)
    except AudioError as err:
        raise MusicsepError(f"{input_path}: {err}") from None
    if not streams:
        raise MusicsepError(f"{input_path}: no audio stream")
    rate, channels = streams[0].sample_rate, 1 if streams[0].channels == 1 else 2
    if rate <= 0:
        raise MusicsepError(f"{input_path}: cannot handle its audio (sample rate {rate!r}, "
                            f"codec {streams[0].codec})")
    with StemWriter(out_dir, rate, channels, fmt, separator.sources) as writer:
        scratch = writer.scratch("mixture.f32")
        try:
            length, model_length = decode_to_scratch(input_path, rate, channels, separator.sample_rate, scratch)
            if length == 0:
                raise MusicsepError(f"{input_path}: no audio decoded (empty file?)")
            check_complete(length, rate, declared_seconds(input_path, streams[0]))
        except AudioError as err:
            raise MusicsepError(f"{input_path}: {err}") from None
        except OSError as err:
            raise MusicsepError(f"{writer.out}: cannot write the decoded input there ({err.strerror})") from None
        log.info("%s: %.1f s at %d Hz, %s, %s at %d Hz: %s", input_path, length / rate, rate,
                 "mono" if channels == 1 else "stereo", separator.name, separator.sample_rate,
                 separator.counts(model_length))
        back = Resampler(separator.sample_rate, rate, len(separator.sources) * channels, frames_last=True)
        read = ScratchReader(scratch, channels)

        def blocks():
            for block in separator.stream(read, model_length, channels, progress=progress, desc=input_path.name):
                yield back(block)
            yield back.end()
        try:
            _write_exactly(writer, blocks(), length, channels)
        finally:
            read.close()
        paths = writer.commit()
    log.info("%s -> %s", input_path, writer.out)
    return paths


def separate_shard(shard_path: str | Path, model_or_separator, out_dir: str | Path, *,
                   wiener: bool = False, chunk_seconds: float = CHUNK_SECONDS, context_seconds: float = CONTEXT_SECONDS,
                   batch_chunks: int = BATCH_CHUNKS, progress: bool = True,
                   device: str | None = None, fmt: str = DEFAULT_FORMAT) -> dict[str, Path]:
    """The workflow's separation job: the mixture (row 0) of a shard, separated
    by a model (a model file, a model, or a :class:`Separator`) into
    ``{out_dir}/{target}.wav`` at the shard's rate (which must be the
    model's; its sources too), read and written a chunk at a time."""
    format_of(fmt)
    check_destination(out_dir)
    separator = _separator(model_or_separator, chunk_seconds=chunk_seconds, context_seconds=context_seconds,
                           batch_chunks=batch_chunks, wiener=wiener, device=device or _default_device())
    with Shard(shard_path) as shard:
        rate, name, channels, length = shard.sample_rate, shard.name, shard.channels, shard.length
        if rate != separator.sample_rate:
            raise MusicsepError(f"{shard_path}: shard is at {rate} Hz, the model at {separator.sample_rate} Hz")
        if shard.source_names != separator.sources:
            raise MusicsepError(f"{shard_path}: the shard's sources are {', '.join(shard.source_names)}, the "
                                f"model's {', '.join(separator.sources)}: a model separates the sources it was "
                                "trained on")

        def read(a: int, b: int) -> np.ndarray:
            block = shard.mixture(a, b)
            if not np.isfinite(block).all():
                raise MusicsepError(f"{shard_path}: NaN or Inf in the mixture, near {a / rate:.2f} s")
            return block
        log.info("%s: %.1f s, %s, %s", name, length / rate, separator.name, separator.counts(length))
        with StemWriter(out_dir, rate, channels, fmt, separator.sources) as writer:
            for block in separator.stream(read, length, channels, progress=progress, desc=name):
                writer.write(block)
            paths = writer.commit()
    log.info("%s -> %s", name, writer.out)
    return paths
