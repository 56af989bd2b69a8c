"""The shard format: one track -> one HDF5 file, its writer and its reader.

A shard ``{slug}.h5`` holds the dataset ``audio`` of shape
``(5 streams, channels, samples)`` float32, streams in MUSDB order
(mixture, drums, bass, other, vocals), decoded once and resampled to the model
rate. It is chunked ``(1, channels, chunk)``: a few-second excerpt of one
source is one read touching a few contiguous chunks, and incoherent excerpts
(each source from its own offset) read only the source they need.

Attributes: ``name``, ``slug``, ``subset``, ``split``, ``sample_rate``,
``source_sample_rate``, ``streams``, ``channels``, ``samples``, ``duration``,
``source`` (dataset entry), ``source_checksum`` (sha256 of the source
file(s)), ``rms_db`` (per stream), ``silent`` (silent sources), and
``musicsep_version``.

A shard is written under a temporary name and renamed when complete, so a
killed job leaves nothing that passes for a finished shard. :func:`write_layout`
is the one writer of the layout (:func:`write_shard` decodes a track into it)
and :class:`Shard` the one reader: every module that reads shards opens them
through it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath

import h5py
import numpy as np
import soundfile

from musicsep import SAMPLE_RATE, SOURCES, STREAMS, MusicsepError, __version__
from musicsep.data import SHARD_CHUNK_SECONDS, SILENCE_DB
from musicsep.data.audio import AudioError, AudioStream, decode_blocks, probe
from musicsep.data.musdb import STEM_SUFFIX, Dataset, mp4_audio_streams
from musicsep.io import atomic_path, sha256_stream

log = logging.getLogger(__name__)

MIXTURE_ROW = STREAMS.index("mixture")
SOURCE_ROWS: tuple[int, ...] = tuple(STREAMS.index(s) for s in SOURCES)
"""The rows of the sources in a shard's ``audio``, in :data:`musicsep.SOURCES` order (contiguous)."""
assert SOURCE_ROWS == tuple(range(SOURCE_ROWS[0], SOURCE_ROWS[0] + len(SOURCES)))


def track_name(member: str) -> str:
    name = PurePosixPath(member).name
    return name[: -len(STEM_SUFFIX)] if name.endswith(STEM_SUFFIX) else name


def _gather(dataset: Dataset, member: str, tmpdir: Path, where: str) -> tuple[list[Path], str]:
    """Local paths of a track's files (extracted from a zip into ``tmpdir``)
    and the sha256 of their bytes."""
    paths, digests = [], []
    for entry in dataset.files(member):
        try:
            with dataset.open_entry(entry) as fh:
                if dataset.is_zip:
                    local = tmpdir / f"{len(paths)}{PurePosixPath(entry).suffix}"
                    with open(local, "wb") as out:
                        digests.append(sha256_stream(fh, out))
                else:
                    local = dataset.local_path(entry)
                    digests.append(sha256_stream(fh))
        except FileNotFoundError:
            raise MusicsepError(f"{dataset.describe(entry)}: missing file of {where}") from None
        paths.append(local)
    checksum = digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()
    return paths, "sha256:" + checksum


def _stream_info(dataset: Dataset, path: Path) -> list[AudioStream]:
    """The audio streams of a track file, from its header (mp4 boxes, WAV
    header: no subprocess); ffprobe only for what those cannot read, so that
    a broken file gets ffmpeg's own diagnosis."""
    try:
        if dataset.kind == "stems":
            with open(path, "rb") as fh:
                found = mp4_audio_streams(fh, os.fstat(fh.fileno()).st_size)
            return [AudioStream(i, "mp4a", rate, ch, dur) for i, (rate, ch, dur) in enumerate(found)]
        info = soundfile.info(str(path))
        return [AudioStream(0, info.format, info.samplerate, info.channels, info.frames / info.samplerate)]
    except Exception:
        return probe(path)


def _check_streams(dataset: Dataset, member: str, paths: list[Path], where: str) -> tuple[list, int, float]:
    """Check a track's files; return (decoder inputs, source rate, duration)."""
    entries = dataset.files(member)
    streams = []
    for entry, path in zip(entries, paths):
        try:
            found = _stream_info(dataset, path)
        except AudioError as err:
            raise MusicsepError(f"{dataset.describe(entry)}: {where}: {err}") from None
        if not found:
            raise MusicsepError(f"{dataset.describe(entry)}: {where}: no audio stream")
        streams.append(found)
    if dataset.kind == "stems":
        found = streams[0]
        if len(found) != len(STREAMS):
            raise MusicsepError(
                f"{dataset.describe(member)}: {where}: has {len(found)} audio stream(s); a MUSDB18 "
                f"stem file has {len(STREAMS)} ({', '.join(STREAMS)})")
        inputs = [(paths[0], k) for k in range(len(STREAMS))]
        flat = found
    else:
        inputs = [(p, 0) for p in paths]
        flat = [s[0] for s in streams]
    rates = {s.sample_rate for s in flat}
    if len(rates) != 1:
        detail = ", ".join(f"{name} {s.sample_rate} Hz" for name, s in zip(STREAMS, flat))
        raise MusicsepError(f"{dataset.describe(member)}: {where}: sources differ in sample rate ({detail})")
    rate = rates.pop()
    durations = [s.duration for s in flat]
    if dataset.kind == "hq" and max(durations) - min(durations) > 0.5 / rate:
        detail = ", ".join(f"{name} {d:.4f} s" for name, d in zip(STREAMS, durations))
        raise MusicsepError(f"{dataset.describe(member)}: {where}: sources differ in length ({detail})")
    return inputs, rate, float(np.nanmax(durations))


def write_layout(out: str | Path, blocks: Iterable[np.ndarray], attrs: Mapping | Callable[[int], Mapping], *,
                 channels: int, chunk: int, compression: str | None = None) -> dict:
    """Write a shard's HDF5 layout to ``out``, atomically: the dataset ``audio``
    ``(streams, channels, samples)`` float32, chunked ``(1, channels, chunk)``,
    from ``blocks`` ``(streams, channels, n)`` appended in order, then the
    attributes: ``attrs``, or what ``attrs(samples)`` returns once every block
    is written (it may raise to discard the file). Returns the attributes.

    The one writer of the format: :func:`write_shard` gives it decoded blocks,
    the tests give it arrays. ``compression`` (an h5py filter) writes a
    filtered shard, which :class:`Shard` reads too; :func:`write_shard` writes
    none."""
    samples = 0
    with atomic_path(out) as tmp_out:
        with h5py.File(tmp_out, "w", rdcc_nbytes=32 << 20) as h5:
            audio = h5.create_dataset("audio", shape=(len(STREAMS), channels, 0),
                                      maxshape=(len(STREAMS), channels, None),
                                      chunks=(1, channels, chunk), dtype="float32", compression=compression)
            for block in blocks:
                audio.resize(samples + block.shape[2], axis=2)
                audio[:, :, samples:] = block
                samples += block.shape[2]
            written = dict(attrs(samples) if callable(attrs) else attrs)
            h5.attrs.update(written)
    return written


def write_shard(dataset: Dataset, member: str, split: str, out: str | Path, *,
                sample_rate: int = SAMPLE_RATE, mono: bool = False, chunk_seconds: float = SHARD_CHUNK_SECONDS,
                silence_db: float = SILENCE_DB, slug: str | None = None) -> dict:
    """Decode a track once and write its shard to ``out``; returns the attributes."""
    name = track_name(member)
    where = f"track '{name}'"
    channels = 1 if mono else 2
    chunk = max(1, int(round(chunk_seconds * sample_rate)))
    with tempfile.TemporaryDirectory(prefix="musicsep-shard-") as tmp:
        paths, checksum = _gather(dataset, member, Path(tmp), where)
        inputs, source_rate, duration = _check_streams(dataset, member, paths, where)
        resample = sample_rate if sample_rate != source_rate else None
        power = np.zeros(len(STREAMS))

        def blocks():
            samples = 0
            # blocks of whole chunks: each chunk is written once, never read back
            for block in decode_blocks(inputs, resample, block_frames=chunk * max(1, (1 << 16) // chunk)):
                if mono:
                    block = block.mean(axis=2, keepdims=True)
                flat = block.reshape(len(block), -1)
                energy = np.diag(flat.T @ flat).reshape(len(STREAMS), -1).sum(axis=1, dtype=np.float64)
                if not np.isfinite(energy).all():
                    bad = STREAMS[int(np.nonzero(~np.isfinite(energy))[0][0])]
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
            silent = [s for s, level in zip(STREAMS, rms_db) if s in SOURCES and level < silence_db]
            return {
                "name": name, "slug": slug or "", "subset": PurePosixPath(member).parts[0],
                "split": split, "sample_rate": sample_rate, "source_sample_rate": source_rate,
                "streams": list(STREAMS), "channels": channels, "samples": samples,
                "duration": samples / sample_rate, "source": member, "source_checksum": checksum,
                "rms_db": rms_db.round(2), "silent": silent, "musicsep_version": __version__,
            }

        try:
            attrs = write_layout(out, blocks(), attributes, channels=channels, chunk=chunk)
        except AudioError as err:
            raise MusicsepError(f"{dataset.describe(member)}: {where}: {err}") from None
    samples, rms_db = attrs["samples"], attrs["rms_db"]
    for source in attrs["silent"]:
        log.warning("%s: source '%s' is silent (RMS %.1f dBFS)", name, source,
                    rms_db[STREAMS.index(source)])
    log.info("%s: %.1f s, %d Hz, %d channel(s) -> %s", name, samples / sample_rate, sample_rate, channels, out)
    return attrs


class Shard:
    """A shard opened for reading, checked once: ``with Shard(path) as shard``.

    Anything that is not a shard (a missing or unreadable file, HDF5 without
    ``audio`` of :data:`STREAMS` rows or without a sample rate) is a
    MusicsepError naming the file. ``audio`` is the h5py dataset
    ``(streams, channels, samples)``, read in pieces by :meth:`mixture` and
    :meth:`sources`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise MusicsepError(f"{path}: not a readable shard ({err})") from None
        audio = self.h5.get("audio")
        if not isinstance(audio, h5py.Dataset) or audio.ndim != 3 or audio.shape[0] != len(STREAMS) \
                or "sample_rate" not in self.h5.attrs:
            self.h5.close()
            raise MusicsepError(f"{path}: not a musicsep shard (no audio of {len(STREAMS)} streams "
                                "and sample rate)")
        self.audio = audio
        self.attrs = {k: _plain(v) for k, v in self.h5.attrs.items()}

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
        """The sources ``(4, channels, samples)`` in :data:`SOURCES` order, samples ``[start, stop)``."""
        return self.audio[SOURCE_ROWS[0]:SOURCE_ROWS[-1] + 1, :, start:stop]


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
