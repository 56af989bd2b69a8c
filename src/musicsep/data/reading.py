"""How a track's files become a shard's rows: the files gathered (from a
folder or out of a zip), checked from their headers, and the plan of their
decoding (:class:`Reading`), for MUSDB18's layouts here and for a dataset
laid out as stems in :mod:`musicsep.data.stems`."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile

from musicsep import SOURCES, STREAMS, MusicsepError
from musicsep.data.audio import AudioError, AudioStream, probe
from musicsep.data.musdb import Dataset, mp4_audio_streams
from musicsep.io import sha256_stream


@dataclass(frozen=True)
class Reading:
    """A track's decoding: ``inputs`` ``(file, audio stream)`` decoded in
    step at ``source_rate`` (all of them at the shard's rate when
    ``mixed_rates``), each ``pad_frames`` long when set; ``rows`` ``(inputs,
    1 + sources)`` sums the decoded inputs into the shard's rows (None: the
    inputs are the rows, in order: the mixture, then ``sources``).
    ``missing`` names the sources the track has no file of (silence)."""

    inputs: list
    source_rate: int
    duration: float
    sources: tuple[str, ...] = SOURCES
    rows: np.ndarray | None = None
    missing: tuple[str, ...] = ()
    pcm16: bool = False
    mixed_rates: bool = False
    pad_seconds: float | None = None

    def combine(self, block: np.ndarray) -> np.ndarray:
        """A decoded block ``(frames, inputs, channels)`` as rows ``(frames, 1 + sources, channels)``."""
        if self.rows is None:
            return block
        return np.einsum("fic,ir->frc", block, self.rows, optimize=True).astype(np.float32, copy=False)


def gather(dataset: Dataset, entries: list[str], tmpdir: Path, where: str) -> tuple[list[Path], str]:
    """Local paths of a track's files (extracted from a zip into ``tmpdir``)
    and the sha256 of their bytes."""
    paths, digests = [], []
    for entry in entries:
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


def stream_info(path: Path, mp4: bool = False) -> list[AudioStream]:
    """The audio streams of a track file, from its header (mp4 boxes, a
    header soundfile reads: no subprocess); ffprobe only for what those
    cannot read, so that a broken file gets ffmpeg's own diagnosis."""
    try:
        if mp4:
            with open(path, "rb") as fh:
                found = mp4_audio_streams(fh, os.fstat(fh.fileno()).st_size)
            return [AudioStream(i, "mp4a", rate, ch, dur) for i, (rate, ch, dur) in enumerate(found)]
        info = soundfile.info(str(path))
        return [AudioStream(0, info.format, info.samplerate, info.channels, info.frames / info.samplerate)]
    except Exception:
        return probe(path)


def first_streams(dataset: Dataset, entries: list[str], paths: list[Path], where: str,
                  mp4: bool = False) -> list[list[AudioStream]]:
    """The audio streams of each file; a file without any is a MusicsepError naming it."""
    streams = []
    for entry, path in zip(entries, paths):
        try:
            found = stream_info(path, mp4)
        except AudioError as err:
            raise MusicsepError(f"{dataset.describe(entry)}: {where}: {err}") from None
        if not found:
            raise MusicsepError(f"{dataset.describe(entry)}: {where}: no audio stream")
        streams.append(found)
    return streams


def musdb_reading(dataset: Dataset, member: str, paths: list[Path], where: str) -> Reading:
    """Check a MUSDB18 track's files (one five-stream stem file, or five WAVs)."""
    streams = first_streams(dataset, dataset.files(member), paths, where, mp4=dataset.kind == "stems")
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
    return Reading(inputs, rate, float(np.nanmax(durations)), pcm16=dataset.kind == "stems")
