"""Training and validation data over the HDF5 shards.

:class:`ExcerptDataset` draws random excerpts for training. With
``incoherent=True`` (the original experiments' setting) each source comes from
its own random offset, and with ``incoherent_tracks=True`` also from its own
random track, so the model sees mixtures no musician played. Draws are a pure
function of
``(seed, rank, epoch, index)``: reproducible, different on every rank and
epoch, and independent of how many loader workers there are. ``augment``
(``loader.augment``: :mod:`musicsep.data.augment`) then scales, swaps the
channels of, negates or silences each source, drawing from the same generator
after the excerpt's tracks and offsets (all off, it draws and changes nothing).

:class:`ValidationSet` is fixed: evenly spaced, coherent excerpts of each
validation track, the same on every run, never augmented.

Both yield the sources, a float32 tensor ``(n_sources, channels, samples)`` in
the shards' order (their ``sources``, :attr:`MappedShards.sources`: MUSDB18's
are :data:`musicsep.SOURCES`; shards of other sources are refused); the
mixture is their sum, formed where it is used (``sources.sum(-3)``, on the
device), so a loader worker ships the sources only, not one more signal.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from musicsep import MusicsepError
from musicsep.data.augment import Augment
from musicsep.data.shard import Shard


class MappedShards:
    """Shard metadata, and excerpt reads straight from memory maps.

    A shard's ``audio`` is uncompressed and chunked ``(1, channels, chunk)``;
    the byte offset of every chunk is looked up once, and an excerpt is then
    copied out of a read-only ``np.memmap`` of the file, chunk piece by chunk
    piece: no HDF5 call per excerpt. Maps are opened lazily in each process
    (forked DataLoader workers open their own). A shard written otherwise
    (filters, another dtype) is read through h5py instead.
    """

    def __init__(self, paths: Sequence[str | Path]):
        if not paths:
            raise MusicsepError("no shards given to the loader")
        self.paths = [str(p) for p in paths]
        self.lengths, self.names, self.chunks, self.offsets = [], [], [], []
        rates, channels = set(), set()
        self.sources: tuple[str, ...] = ()
        """The shards' sources (the same in every shard), in the order of their rows."""
        for path in self.paths:
            with Shard(path) as shard:
                audio = shard.audio
                if self.sources and shard.source_names != self.sources:
                    raise MusicsepError(f"{path}: its sources ({', '.join(shard.source_names)}) are not those "
                                        f"of {self.paths[0]} ({', '.join(self.sources)}); one model trains on "
                                        "shards of one source set")
                self.sources = shard.source_names
                self.lengths.append(shard.length)
                channels.add(shard.channels)
                rates.add(shard.sample_rate)
                self.names.append(shard.name)
                self.chunks.append(audio.chunks[-1] if audio.chunks else 0)
                self.offsets.append(_chunk_offsets(audio))
        if len(rates) != 1 or len(channels) != 1:
            raise MusicsepError(f"shards differ in sample rate {sorted(rates)} or channels {sorted(channels)}")
        self.sample_rate = rates.pop()
        self.channels = channels.pop()
        self.rows: tuple[int, ...] = tuple(range(1, 1 + len(self.sources)))
        """The rows of the sources in each shard's ``audio`` (the mixture is row 0)."""
        self._pid = None
        self._open: dict[int, object] = {}

    def _handle(self, track: int):
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        if track not in self._open:
            if self.offsets[track] is not None:
                self._open[track] = np.memmap(self.paths[track], dtype=np.uint8, mode="r")
            else:
                self._open[track] = Shard(self.paths[track]).audio
        return self._open[track]

    def read_into(self, out: np.ndarray, track: int, row: int, offset: int) -> None:
        """Fill ``out`` (channels, length) with ``audio[row, :, offset:...]``,
        zero-padded at the end when the track is shorter."""
        handle = self._handle(track)
        length = out.shape[-1]
        stop = max(offset, min(offset + length, self.lengths[track]))
        out[:, stop - offset:] = 0
        offsets = self.offsets[track]
        if stop == offset:
            return
        if offsets is None:
            handle.read_direct(out, np.s_[row, :, offset:stop], np.s_[:, : stop - offset])
            return
        chunk, count = self.chunks[track], self.channels * self.chunks[track]
        for j in range(offset // chunk, (stop - 1) // chunk + 1):
            lo, hi = max(offset, j * chunk), min(stop, (j + 1) * chunk)
            if offsets[row, j] < 0:          # a chunk never written reads as zeros, as in HDF5
                out[:, lo - offset: hi - offset] = 0
                continue
            data = np.frombuffer(handle, "<f4", count, int(offsets[row, j])).reshape(self.channels, chunk)
            out[:, lo - offset: hi - offset] = data[:, lo - j * chunk: hi - j * chunk]

    def read(self, track: int, rows: Sequence[int], offset: int, length: int) -> np.ndarray:
        """``audio[rows, :, offset:offset+length]`` as ``(len(rows), channels, length)``."""
        out = np.empty((len(rows), self.channels, length), dtype=np.float32)
        for i, row in enumerate(rows):
            self.read_into(out[i], track, row, offset)
        return out

    def __getstate__(self):
        return {**self.__dict__, "_open": {}, "_pid": None}


def _chunk_offsets(audio: h5py.Dataset) -> np.ndarray | None:
    """Byte offsets ``(rows, time chunks)`` of an uncompressed float32 dataset
    chunked ``(1, channels, chunk)``; -1 for chunks never written; None when
    the layout does not allow reading chunks directly."""
    chunks = audio.chunks
    if (chunks is None or chunks[:2] != (1, audio.shape[1]) or audio.dtype != np.dtype("<f4")
            or audio.compression or audio.shuffle or audio.fletcher32 or audio.scaleoffset):
        return None
    offsets = np.full((audio.shape[0], -(-audio.shape[-1] // chunks[-1])), -1, dtype=np.int64)

    def visit(info):
        offsets[info.chunk_offset[0], info.chunk_offset[2] // chunks[-1]] = info.byte_offset

    audio.id.chunk_iter(visit)
    return offsets


class ExcerptDataset(Dataset):
    """Random training excerpts from shards; see the module docstring."""

    def __init__(self, shards: Sequence[str | Path], excerpt_seconds: float = 3.2, *,
                 incoherent: bool = True, incoherent_tracks: bool = False,
                 samples_per_epoch: int = 1000, seed: int = 0, rank: int = 0,
                 augment: Augment | dict | None = None):
        self.augment = augment if isinstance(augment, Augment) else Augment.from_config(augment)
        self.shards = MappedShards(shards)
        self.incoherent = incoherent
        self.incoherent_tracks = incoherent_tracks
        self.samples_per_epoch = samples_per_epoch
        self.seed, self.rank, self.epoch = seed, rank, 0
        self.set_excerpt_seconds(excerpt_seconds)

    @property
    def sample_rate(self) -> int:
        return self.shards.sample_rate

    @property
    def sources(self) -> tuple[str, ...]:
        return self.shards.sources

    def set_epoch(self, epoch: int) -> None:
        """Draw a new sequence of excerpts (call at the start of every epoch)."""
        self.epoch = epoch

    def set_excerpt_seconds(self, seconds: float) -> None:
        """Change the excerpt length (a curriculum shortens the first epochs)."""
        self.excerpt = max(1, int(round(seconds * self.shards.sample_rate)))

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _offset(self, rng: np.random.Generator, track: int) -> int:
        return int(rng.integers(0, max(self.shards.lengths[track] - self.excerpt, 0) + 1))

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.rank, self.epoch, index])
        n_tracks = len(self.shards.paths)
        track = int(rng.integers(n_tracks))
        if not self.incoherent:
            sources = self.shards.read(track, self.shards.rows, self._offset(rng, track), self.excerpt)
        else:
            sources = np.empty((len(self.shards.rows), self.shards.channels, self.excerpt), dtype=np.float32)
            for i, row in enumerate(self.shards.rows):
                src_track = int(rng.integers(n_tracks)) if self.incoherent_tracks else track
                self.shards.read_into(sources[i], src_track, row, self._offset(rng, src_track))
        if self.augment.active:        # its draws come after the excerpt's: off, nothing changes
            self.augment(sources, rng)
        return torch.from_numpy(sources)


class ValidationSet(Dataset):
    """Fixed validation excerpts: ``per_track`` evenly spaced, coherent excerpts
    of each track (fewer when a track holds fewer non-overlapping ones), never
    augmented."""

    def __init__(self, shards: Sequence[str | Path], excerpt_seconds: float = 3.2, per_track: int = 8):
        self.shards = MappedShards(shards)
        self.excerpt = max(1, int(round(excerpt_seconds * self.shards.sample_rate)))
        self.items = []
        for track, length in enumerate(self.shards.lengths):
            count = max(1, min(per_track, length // self.excerpt))
            for offset in np.linspace(0, max(length - self.excerpt, 0), count).round().astype(int):
                self.items.append((track, int(offset)))

    @property
    def sample_rate(self) -> int:
        return self.shards.sample_rate

    @property
    def sources(self) -> tuple[str, ...]:
        return self.shards.sources

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        track, offset = self.items[index]
        return torch.from_numpy(self.shards.read(track, self.shards.rows, offset, self.excerpt))
