"""The shard format: one track -> one HDF5 file, its writer and its reader.

A shard ``{slug}.h5`` holds the dataset ``audio`` of shape
``(1 + sources, channels, samples)`` float32: the mixture first, then the
dataset's sources in order (its attribute ``sources``; a MUSDB18 shard's are
:data:`musicsep.SOURCES`, and a shard without the attribute reads as one),
decoded as musdb decodes them (below) and resampled to the model rate. It is chunked ``(1, channels, chunk)``: a
few-second excerpt of one source is one read touching a few contiguous
chunks, and incoherent excerpts (each source from its own offset) read only
the source they need.

What a shard holds is what musdb decodes, so that training, the oracles and
evaluation see the same audio as every published number (museval, SiSEC
2018). musdb reads a ``.stem.mp4`` through ffmpeg as 16-bit samples
(stempeg's ``s16le``) and divides them by 32768; a float decode of the same
AAC differs in nearly every sample (by up to 2^-16, and more where the
decoded signal passes full scale, which 16 bits clip), enough to move
museval's SIR, SAR and ISR by many dB on real tracks. So stems are decoded
to 16 bits by the same ffmpeg conversion and stored as ``int16 / 32768``
(exact in float32); WAVs (MUSDB18-HQ) keep their PCM values as they are.
When the model's rate is not the source's, or the shard is mono, ``audio``
is that decode resampled (soxr) or downmixed, and the shard also holds
``references`` ``(sources, 2, samples)`` float32: the sources at the
source rate in stereo, musdb's decode exactly, chunked as ``audio``;
evaluation scores against them whatever the models' rate and channels
(:meth:`Shard.references`, :attr:`Shard.reference_rate`).

Attributes: ``format_version`` (:data:`musicsep.data.SHARD_FORMAT`; a shard
of an older format is refused), ``name``, ``slug`` (the one given, else
:func:`~musicsep.data.musdb.slugify` of the name, as the workflow makes it), ``subset``, ``split``,
``sample_rate``, ``source_sample_rate``, ``streams`` (``mixture`` and the
sources), ``sources``, ``channels``, ``samples``, ``duration``, ``source``
(dataset entry), ``source_checksum`` (sha256 of the source file(s)),
``rms_db`` (per stream), ``silent`` (silent sources), ``musicsep_version``
and, from a dataset of stems, ``missing`` (sources the track has no file
of, silence in the shard; none when absent).

A shard is written under a temporary name and renamed when complete, so a
killed job leaves nothing that passes for a finished shard. :func:`write_layout`
is the one writer of the layout (:func:`write_shard` decodes a track into it)
and :class:`Shard` the one reader: every module that reads shards opens them
through it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import h5py
import numpy as np

from musicsep import SAMPLE_RATE, SOURCES, STREAMS, MusicsepError, __version__
from musicsep.data import SHARD_CHUNK_SECONDS, SHARD_FORMAT, SILENCE_DB
from musicsep.data.audio import AudioError, decode_blocks
from musicsep.data.musdb import STEM_SUFFIX, Dataset, slugify
from musicsep.data.reading import gather, musdb_reading
from musicsep.io import atomic_path

log = logging.getLogger(__name__)

MIXTURE_ROW = STREAMS.index("mixture")
SOURCE_ROWS: tuple[int, ...] = tuple(STREAMS.index(s) for s in SOURCES)
"""The rows of the sources in a MUSDB18 shard's ``audio``, in :data:`musicsep.SOURCES` order (contiguous;
any shard's sources are rows 1 to len(:attr:`Shard.source_names`), :meth:`Shard.sources`)."""
assert SOURCE_ROWS == tuple(range(SOURCE_ROWS[0], SOURCE_ROWS[0] + len(SOURCES)))
SOURCE_SLICE = slice(SOURCE_ROWS[0], SOURCE_ROWS[-1] + 1)


def track_name(member: str) -> str:
    name = PurePosixPath(member).name
    return name[: -len(STEM_SUFFIX)] if name.endswith(STEM_SUFFIX) else name


def write_layout(out: str | Path, blocks: Iterable[np.ndarray], attrs: Mapping | Callable[[int], Mapping], *,
                 channels: int, chunk: int, compression: str | None = None,
                 references: Iterable[np.ndarray] | None = None, reference_chunk: int | None = None,
                 sources: Sequence[str] = SOURCES) -> dict:
    """Write a shard's HDF5 layout to ``out``, atomically: the dataset ``audio``
    ``(streams, channels, samples)`` float32, chunked ``(1, channels, chunk)``,
    from ``blocks`` ``(streams, channels, n)`` appended in order; then, if
    given, the dataset ``references`` ``(sources, 2, samples)`` at the source
    rate from ``references`` blocks, chunked ``(1, 2, reference_chunk)``; then
    the attributes: ``attrs``, or what ``attrs(samples)`` returns once every
    block is written (it may raise to discard the file), ``sources`` (the
    names of the rows after the mixture) and ``format_version``. Returns the attributes.

    The one writer of the format: :func:`write_shard` gives it decoded blocks,
    the tests give it arrays. ``compression`` (an h5py filter) writes a
    filtered shard, which :class:`Shard` reads too; :func:`write_shard` writes
    none."""
    with atomic_path(out) as tmp_out:
        with h5py.File(tmp_out, "w", rdcc_nbytes=32 << 20) as h5:
            samples = _append(h5, "audio", blocks, (1 + len(sources), channels, chunk), compression)
            if references is not None:
                _append(h5, "references", references, (len(sources), 2, reference_chunk or chunk), compression)
            written = {**(attrs(samples) if callable(attrs) else attrs), "sources": list(sources),
                       "format_version": SHARD_FORMAT}
            h5.attrs.update(written)
    return written


def _append(h5: h5py.File, name: str, blocks: Iterable[np.ndarray], layout: tuple[int, int, int],
            compression: str | None) -> int:
    """A dataset ``(rows, channels, samples)`` float32 of ``blocks`` appended
    along the samples, chunked ``(1, channels, chunk)``; returns its length."""
    rows, channels, chunk = layout
    data = h5.create_dataset(name, shape=(rows, channels, 0), maxshape=(rows, channels, None),
                             chunks=(1, channels, chunk), dtype="float32", compression=compression)
    samples = 0
    for block in blocks:
        data.resize(samples + block.shape[2], axis=2)
        data[:, :, samples:] = block
        samples += block.shape[2]
    return samples


def write_shard(dataset: Dataset, member: str, split: str, out: str | Path, *,
                sample_rate: int = SAMPLE_RATE, mono: bool = False, chunk_seconds: float = SHARD_CHUNK_SECONDS,
                silence_db: float = SILENCE_DB, slug: str | None = None) -> dict:
    """Decode a track and write its shard to ``out``; returns the attributes.
    Stems are decoded as musdb decodes them (16-bit samples); at another rate
    than the source's, or mono, the track is decoded a second time for the
    shard's ``references`` (the module docstring says why). ``dataset`` is a
    MUSDB18 :class:`~musicsep.data.musdb.Dataset` or a
    :class:`~musicsep.data.stems.StemsDataset` (its ``reading`` plans the rows)."""
    name = track_name(member)
    where = f"track '{name}'"
    channels = 1 if mono else 2
    reader = getattr(dataset, "reading", None) or (lambda m, paths, w: musdb_reading(dataset, m, paths, w))

    def whole_chunks(chunk: int) -> int:   # decoded blocks of whole chunks: each chunk written once
        return chunk * max(1, (1 << 16) // chunk)

    chunk = max(1, int(round(chunk_seconds * sample_rate)))
    with tempfile.TemporaryDirectory(prefix="musicsep-shard-") as tmp:
        paths, checksum = gather(dataset, dataset.files(member), Path(tmp), where)
        plan = reader(member, paths, where)
        inputs, source_rate, duration, pcm16 = plan.inputs, plan.source_rate, plan.duration, plan.pcm16
        streams, sources = ("mixture", *plan.sources), plan.sources
        if plan.mixed_rates:        # stems at several rates: every one resampled to the shard's
            source_rate = sample_rate
        resample = sample_rate if sample_rate != source_rate or plan.mixed_rates else None
        power = np.zeros(len(streams))

        def pad(rate: int) -> int | None:
            return int(round(plan.pad_seconds * rate)) if plan.pad_seconds else None

        def blocks():
            samples = 0
            for block in decode_blocks(inputs, resample, block_frames=whole_chunks(chunk), pcm16=pcm16,
                                       pad_frames=pad(sample_rate)):
                block = plan.combine(block)
                if mono:
                    block = block.mean(axis=2, keepdims=True)
                flat = block.reshape(len(block), -1)
                energy = np.diag(flat.T @ flat).reshape(len(streams), -1).sum(axis=1, dtype=np.float64)
                if not np.isfinite(energy).all():
                    bad = streams[int(np.nonzero(~np.isfinite(energy))[0][0])]
                    raise MusicsepError(
                        f"{dataset.describe(member)}: {where}: NaN or Inf in '{bad}' after decoding, "
                        f"near {samples / sample_rate:.2f} s")
                power[:] += energy
                samples += len(block)
                yield block.transpose(1, 2, 0)

        def attributes(samples: int) -> dict:
            expected = duration * sample_rate
            if samples == 0 or (np.isfinite(expected) and samples < expected - 0.1 * sample_rate):
                raise MusicsepError(
                    f"{dataset.describe(member)}: {where}: truncated or corrupt: decoded "
                    f"{samples / sample_rate:.2f} s of the {duration:.2f} s its header declares")
            rms_db = 10 * np.log10(np.maximum(power / (samples * channels), 1e-20))
            silent = [s for s, level in zip(streams[1:], rms_db[1:]) if level < silence_db]
            subset = dataset.subset_of(split) if hasattr(dataset, "subset_of") else PurePosixPath(member).parts[0]
            return {
                "name": name, "slug": slug or slugify(name), "subset": subset,
                "split": split, "sample_rate": sample_rate, "source_sample_rate": source_rate,
                "streams": list(streams), "channels": channels, "samples": samples,
                "duration": samples / sample_rate, "source": member, "source_checksum": checksum,
                "rms_db": rms_db.round(2), "silent": silent, "musicsep_version": __version__,
                **({"missing": list(plan.missing)} if plan.rows is not None else {}),     # stems: absent files
            }

        references, reference_chunk = None, max(1, int(round(chunk_seconds * source_rate)))
        if resample and not plan.mixed_rates or mono:
            references = (plan.combine(block)[:, 1:].transpose(1, 2, 0) for block in decode_blocks(
                inputs, resample if plan.mixed_rates else None, block_frames=whole_chunks(reference_chunk),
                pcm16=pcm16,
                pad_frames=pad(source_rate)))
        try:
            attrs = write_layout(out, blocks(), attributes, channels=channels, chunk=chunk,
                                 references=references, reference_chunk=reference_chunk, sources=sources)
        except AudioError as err:
            raise MusicsepError(f"{dataset.describe(member)}: {where}: {err}") from None
    samples, rms_db = attrs["samples"], attrs["rms_db"]
    for source in attrs["silent"]:
        log.warning("%s: source '%s' is %s (RMS %.1f dBFS)", name, source,
                    "missing: silence" if source in plan.missing else "silent", rms_db[streams.index(source)])
    log.info("%s: %.1f s, %d Hz, %d channel(s)%s -> %s", name, samples / sample_rate, sample_rate, channels,
             f", references at {source_rate} Hz in stereo" if references is not None else "", out)
    return attrs


class Shard:
    """A shard opened for reading, checked once: ``with Shard(path) as shard``.

    Anything that is not a shard (a missing or unreadable file, HDF5 without
    ``audio`` of one row more than its sources or without a sample rate,
    ``references`` that are not its sources) and a shard of another format
    version than :data:`SHARD_FORMAT` are a MusicsepError naming the file.
    ``audio`` is the h5py dataset ``(streams, channels, samples)``, read in
    pieces by :meth:`mixture` and :meth:`sources`; :meth:`references` are what
    evaluation scores against; :attr:`source_names` names the sources."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as err:      # h5py's messages run over lines: one line, or the reason alone
            reason = "a folder" if self.path.is_dir() else "no such file" if not self.path.exists() \
                else " ".join(str(err).split())
            raise MusicsepError(f"{path}: not a readable shard ({reason})") from None
        try:
            self.audio, self._references = self._check()
        except MusicsepError:
            self.h5.close()
            raise
        self.attrs = {k: _plain(v) for k, v in self.h5.attrs.items()}

    def _check(self) -> tuple[h5py.Dataset, h5py.Dataset | None]:
        audio, refs, attrs = self.h5.get("audio"), self.h5.get("references"), self.h5.attrs
        names = _plain(attrs.get("sources", list(SOURCES)))
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise MusicsepError(f"{self.path}: not a musicsep shard (its sources are {names!r})")
        self.source_names: tuple[str, ...] = tuple(names)
        """The names of the sources, in the order of :meth:`sources` (MUSDB18's when the shard names none)."""
        if not isinstance(audio, h5py.Dataset) or audio.ndim != 3 or audio.shape[0] != 1 + len(names) \
                or "sample_rate" not in attrs:
            raise MusicsepError(f"{self.path}: not a musicsep shard (no audio of {1 + len(names)} streams "
                                "and sample rate)")
        version = attrs.get("format_version", 1)
        if not isinstance(version, (int, np.integer)):
            raise MusicsepError(f"{self.path}: not a musicsep shard (format version {version!r})")
        if version < SHARD_FORMAT:
            raise MusicsepError(
                f"{self.path}: a shard of format {version}{' (none recorded)' if version == 1 else ''}, older "
                f"than this musicsep's {SHARD_FORMAT}: its audio is decoded as float, not as musdb's 16-bit "
                "decode, so its references differ from those museval and every published score use; delete "
                "it and let Snakemake rebuild it (the shard rule reruns for a new format version)")
        if version > SHARD_FORMAT:
            raise MusicsepError(f"{self.path}: a shard of format {version}, newer than this musicsep reads "
                                f"({SHARD_FORMAT}): update musicsep, or delete the shard to rebuild it")
        if refs is not None and not (isinstance(refs, h5py.Dataset) and refs.ndim == 3
                                     and refs.shape[0] == len(names) and "source_sample_rate" in attrs):
            raise MusicsepError(f"{self.path}: not a musicsep shard (its references are not "
                                f"{len(names)} sources with a source sample rate)")
        return audio, refs

    def __enter__(self) -> "Shard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.h5.close()

    @property
    def sample_rate(self) -> int:
        return int(self.attrs["sample_rate"])

    @property
    def channels(self) -> int:
        return self.audio.shape[1]

    @property
    def length(self) -> int:
        """Samples per stream."""
        return self.audio.shape[2]

    @property
    def name(self) -> str:
        """The track's name (the file's stem when the shard has none)."""
        return str(self.attrs.get("name") or self.path.stem)

    @property
    def slug(self) -> str:
        return str(self.attrs.get("slug") or self.path.stem)

    def mixture(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The mixture ``(channels, samples)``, samples ``[start, stop)``."""
        return self.audio[MIXTURE_ROW, :, start:stop]

    def sources(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The sources ``(sources, channels, samples)`` in :attr:`source_names` order (a MUSDB18
        shard's: :data:`SOURCES`), samples ``[start, stop)``."""
        return self.audio[1:, :, start:stop]

    @property
    def reference_rate(self) -> int:
        """The rate of :meth:`references`: the source's when the shard holds
        its own references, else the shard's."""
        return int(self.attrs["source_sample_rate"]) if self._references is not None else self.sample_rate

    @property
    def reference_shape(self) -> tuple[int, int]:
        """``(channels, samples)`` of each source in :meth:`references`."""
        return tuple((self.audio if self._references is None else self._references).shape[1:])

    def references(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """What evaluation scores against, as musdb decodes it: the sources
        ``(sources, channels, samples)`` at :attr:`reference_rate`, samples ``[start,
        stop)``; the ``references`` dataset (source rate, stereo) when the
        shard holds one, else :meth:`sources`."""
        if self._references is None:
            return self.sources(start, stop)
        return self._references[:, :, start:stop]


def _plain(value):
    """An HDF5 attribute as a plain Python value (lists of str, not arrays of bytes)."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value.decode() if isinstance(value, bytes) else value


def read_attrs(path: str | os.PathLike) -> dict:
    """A shard's attributes as plain Python values."""
    with Shard(path) as shard:
        return shard.attrs
