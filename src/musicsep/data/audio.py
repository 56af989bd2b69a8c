"""Audio through ffmpeg: probing, streamed decoding and encoding of stem files.

ffmpeg decodes every format MUSDB comes in (AAC in ``.stem.mp4``, WAV) and
whatever a user hands to ``separate``. Decoding streams fixed-size blocks out
of one ffmpeg process, so a track of any length is decoded once, with bounded
memory, and resampled in the same pass (soxr).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import queue
import shutil
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from musicsep import MusicsepError


class AudioError(MusicsepError):
    """A file that ffmpeg cannot read as expected."""


def require_ffmpeg() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise MusicsepError(
                f"{tool} not found on PATH: install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; "
                "`make setup` does this) or load your cluster's ffmpeg module")


@dataclass(frozen=True)
class AudioStream:
    index: int          # index of the stream among the file's audio streams
    codec: str
    sample_rate: int
    channels: int
    duration: float     # seconds, NaN if the container does not say


def probe(path: str | Path) -> list[AudioStream]:
    """The audio streams of a media file, via ffprobe."""
    require_ffmpeg()
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a",
           "-show_entries", "stream=codec_name,sample_rate,channels,duration",
           "-show_entries", "format=duration", "-of", "json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AudioError(f"not a readable media file ({_last_line(proc.stderr)})")
    info = json.loads(proc.stdout or "{}")
    fmt_duration = float(info.get("format", {}).get("duration", "nan"))
    return [AudioStream(index=i, codec=s.get("codec_name", "?"),
                        sample_rate=int(s.get("sample_rate", 0)), channels=int(s.get("channels", 0)),
                        duration=float(s.get("duration", fmt_duration)))
            for i, s in enumerate(info.get("streams", []))]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message from ffmpeg"


def decode_blocks(inputs: Sequence[tuple[str | Path, int]], sample_rate: int | None = None,
                  block_frames: int = 1 << 16, pcm16: bool = False, channels: int = 2,
                  pad_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode several audio streams in step, as stereo (or, with ``channels=1``, mono) float32.

    ``inputs`` lists ``(file, audio stream index)``; the streams are decoded
    together (all five streams of a stem file, or five WAV files) and, when
    ``sample_rate`` is given, resampled to it with soxr. ``pcm16`` rounds the
    decoded samples to 16 bits first, as musdb decodes a ``.stem.mp4``
    (stempeg's ``s16le``: ffmpeg's float-to-s16 conversion, the same one
    here), then to float32 exactly (``int16 / 32768``). Yields blocks of shape
    ``(frames, len(inputs), channels)``; the last block may be shorter. In
    stereo, mono streams are duplicated to both channels (by ffmpeg's upmix,
    which scales them by 0.7071: decode a mono file with ``channels=1`` to
    keep its samples), more than two channels downmixed. ``pad_frames``
    brings every stream to that many frames (at the output rate), padding the
    shorter ones with silence at their end (stems of unequal length).
    Raises AudioError with ffmpeg's own message when decoding fails.
    """
    require_ffmpeg()
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, not {channels!r}")
    layout = "mono" if channels == 1 else "stereo"
    files = list(dict.fromkeys(str(f) for f, _ in inputs))
    cmd = ["ffmpeg", "-nostdin", "-v", "error"]
    for f in files:
        cmd += ["-i", f]
    chains = []
    for k, (f, stream) in enumerate(inputs):
        chain = f"[{files.index(str(f))}:a:{stream}]"
        if pcm16:
            chain += f"aformat=sample_fmts=s16:channel_layouts={layout},"
        if sample_rate:
            chain += f"aresample={sample_rate}:resampler=soxr,"
        if pad_frames:
            chain += f"apad=whole_len={pad_frames},atrim=end_sample={pad_frames},"
        chains.append(f"{chain}aformat=sample_fmts=flt:channel_layouts={layout}[s{k}]")
    n = len(inputs)
    if n > 1:
        graph = ";".join(chains) + ";" + "".join(f"[s{k}]" for k in range(n)) + f"amerge=inputs={n}[out]"
    else:
        graph = chains[0].replace("[s0]", "[out]")
    cmd += ["-filter_complex", graph, "-map", "[out]", "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    frame_bytes = 4 * channels * n
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        with contextlib.suppress(OSError, AttributeError):   # Linux: a 1 MiB pipe, fewer wake-ups
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        # A thread drains the pipe, so ffmpeg decodes ahead while the caller
        # works on the previous block (the two overlap on two cores).
        blocks: queue.Queue = queue.Queue(maxsize=4)
        reader = threading.Thread(target=_drain, args=(proc.stdout, block_frames * frame_bytes, blocks),
                                  daemon=True)
        reader.start()
        finished = False
        try:
            pending = b""
            while (data := blocks.get()) is not None:
                data = pending + data
                usable = len(data) - len(data) % frame_bytes
                pending = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<f4").reshape(-1, n, channels)
            finished = True
        finally:
            if not finished and proc.poll() is None:
                proc.kill()
            while reader.is_alive():       # unblock the reader if the consumer stopped early
                with contextlib.suppress(queue.Empty):
                    blocks.get_nowait()
                reader.join(0.01)
            proc.stdout.close()
            proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            raise AudioError(f"ffmpeg could not decode it ({_last_line(err.read().decode(errors='replace'))})")


def _drain(pipe, size: int, blocks: queue.Queue) -> None:
    try:
        while data := pipe.read(size):
            blocks.put(data)
    finally:
        blocks.put(None)


def decode(path: str | Path, sample_rate: int | None = None, stream: int = 0) -> np.ndarray:
    """Decode one audio stream of a file completely: ``(channels=2, samples)``."""
    blocks = list(decode_blocks([(path, stream)], sample_rate))
    if not blocks:
        return np.zeros((2, 0), dtype=np.float32)
    return np.concatenate(blocks)[:, 0, :].T.copy()


TRUNCATION_TOLERANCE = 0.1
"""Seconds by which a decode may fall short of the duration its header
declares before the file counts as truncated (an encoder's priming and
padding, a container's rounding: well under this)."""


def wav_header_frames(path: str | Path) -> int | None:
    """The frames a WAV file's header declares (its ``data`` chunk's size over
    the block size; RF64's ``ds64`` size for large files), read from the
    header alone; None for what is not a RIFF/RF64 WAV or does not declare a
    size (a WAV streamed to a pipe: 0 or 0xFFFFFFFF). Decoders clamp a size
    past the end of the file to what is there, so only the header says how
    much audio a truncated WAV should hold."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:] != b"WAVE":
            return None
        block, large = None, None
        while len(chunk := fh.read(8)) == 8:
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                if size == 0xFFFFFFFF and head[:4] == b"RF64":
                    size = large
                return size // block if block and size not in (None, 0, 0xFFFFFFFF) else None
            body = fh.read(min(size, 64))
            if name == b"fmt " and len(body) >= 14:
                block = struct.unpack("<H", body[12:14])[0]
            elif name == b"ds64" and len(body) >= 16:
                large = struct.unpack("<Q", body[8:16])[0]
            fh.seek(size + (size & 1) - len(body), 1)
    return None


def declared_seconds(path: str | Path, stream: AudioStream) -> float:
    """The duration a file's header declares for its first audio stream: a
    WAV's from its header (:func:`wav_header_frames`), any other's as ffprobe
    reports it (a FLAC's STREAMINFO, an mp4's track header, an mp3's Xing
    frame count, ...); NaN where neither says."""
    try:
        frames = wav_header_frames(path)
    except OSError:
        frames = None
    if frames is not None and stream.sample_rate > 0:
        return frames / stream.sample_rate
    return stream.duration


def check_complete(samples: int, sample_rate: int, declared: float) -> None:
    """AudioError when ``samples`` decoded at ``sample_rate`` fall short of the
    ``declared`` seconds by more than :data:`TRUNCATION_TOLERANCE` (the
    check the shards make of MUSDB's files)."""
    decoded = samples / sample_rate
    if np.isfinite(declared) and decoded < declared - TRUNCATION_TOLERANCE:
        raise AudioError(f"truncated or corrupt: decoded {decoded:.2f} s of the {declared:.2f} s its header "
                         f"declares ({max(declared - decoded, 0):.2f} s missing)")


def write_stem_mp4(path: str | Path, streams: np.ndarray, sample_rate: int,
                   names: Sequence[str], bitrate: str = "256k") -> None:
    """Write ``streams`` of shape ``(n_streams, samples, 2)`` as an mp4 with one
    AAC stream each (the musdb18 ``.stem.mp4`` format), titled by ``names``."""
    require_ffmpeg()
    n = streams.shape[0]
    graph = ";".join(f"[0:a]pan=stereo|c0=c{2 * k}|c1=c{2 * k + 1}[s{k}]" for k in range(n))
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate),
           "-ac", str(2 * n), "-i", "pipe:0", "-filter_complex", graph]
    for k, name in enumerate(names):
        cmd += ["-map", f"[s{k}]", f"-metadata:s:a:{k}", f"title={name}"]
    cmd += ["-c:a", "aac", "-b:a", bitrate, "-f", "mp4", str(path)]
    interleaved = np.ascontiguousarray(streams.transpose(1, 0, 2), dtype="<f4")
    proc = subprocess.run(cmd, input=interleaved.tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise AudioError(f"{path}: ffmpeg could not write it ({_last_line(proc.stderr.decode(errors='replace'))})")
