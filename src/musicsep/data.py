"""Training and validation data over the HDF5 shards.

:class:`ExcerptDataset` draws random excerpts for training. With
``incoherent=True`` (the original experiments' setting) each source comes from
its own random offset, and with ``incoherent_tracks=True`` also from its own
random track, so the model sees mixtures no musician played; the mixture is
always the sum of the returned sources. Draws are a pure function of
``(seed, rank, epoch, index)``: reproducible, different on every rank and
epoch, and independent of how many loader workers there are.

:class:`ValidationSet` is fixed: evenly spaced, coherent excerpts of each
validation track, the same on every run.

Both yield ``(mixture, sources)`` as float32 tensors of shapes
``(channels, samples)`` and ``(n_sources, channels, samples)``, sources in
:data:`musicsep.SOURCES` order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from musicsep import SOURCES, STREAMS, MusicsepError

_SOURCE_ROWS = [STREAMS.index(s) for s in SOURCES]


class _Shards:
    """Shard metadata plus file handles opened lazily in each process (a
    DataLoader worker must not share the parent's HDF5 handles)."""

    def __init__(self, paths: Sequence[str | Path]):
        if not paths:
            raise MusicsepError("no shards given to the loader")
        self.paths = [str(p) for p in paths]
        self.lengths, self.names, rates, channels = [], [], set(), set()
        for path in self.paths:
            try:
                with h5py.File(path, "r") as h5:
                    self.lengths.append(h5["audio"].shape[-1])
                    channels.add(h5["audio"].shape[1])
                    rates.add(int(h5.attrs["sample_rate"]))
                    self.names.append(str(h5.attrs["name"]))
            except (OSError, KeyError) as err:
                raise MusicsepError(f"{path}: not a readable shard ({err})") from None
        if len(rates) != 1 or len(channels) != 1:
            raise MusicsepError(f"shards differ in sample rate {sorted(rates)} or channels {sorted(channels)}")
        self.sample_rate = rates.pop()
        self.channels = channels.pop()
        self._pid = None
        self._files: dict[int, h5py.Dataset] = {}

    def audio(self, track: int) -> h5py.Dataset:
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if track not in self._files:
            self._files[track] = h5py.File(self.paths[track], "r")["audio"]
        return self._files[track]

    def read(self, track: int, rows, offset: int, length: int) -> np.ndarray:
        """``audio[rows, :, offset:offset+length]``, zero-padded at the end when
        the track is shorter than ``length``."""
        data = self.audio(track)[rows, :, offset:offset + length]
        if data.shape[-1] < length:
            data = np.pad(data, [(0, 0)] * (data.ndim - 1) + [(0, length - data.shape[-1])])
        return data

    def __getstate__(self):
        return {**self.__dict__, "_files": {}, "_pid": None}


class ExcerptDataset(Dataset):
    """Random training excerpts from shards; see the module docstring."""

    def __init__(self, shards: Sequence[str | Path], excerpt_seconds: float = 3.2, *,
                 incoherent: bool = True, incoherent_tracks: bool = False,
                 samples_per_epoch: int = 1000, seed: int = 0, rank: int = 0):
        self.shards = _Shards(shards)
        self.incoherent = incoherent
        self.incoherent_tracks = incoherent_tracks
        self.samples_per_epoch = samples_per_epoch
        self.seed, self.rank, self.epoch = seed, rank, 0
        self.set_excerpt_seconds(excerpt_seconds)

    @property
    def sample_rate(self) -> int:
        return self.shards.sample_rate

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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, self.epoch, index])
        n_tracks = len(self.shards.paths)
        track = int(rng.integers(n_tracks))
        if self.incoherent:
            parts = []
            for row in _SOURCE_ROWS:
                src_track = int(rng.integers(n_tracks)) if self.incoherent_tracks else track
                parts.append(self.shards.read(src_track, row, self._offset(rng, src_track), self.excerpt))
            sources = np.stack(parts)
        else:
            sources = self.shards.read(track, slice(1, len(STREAMS)), self._offset(rng, track), self.excerpt)
        sources = torch.from_numpy(sources)
        return sources.sum(dim=0), sources


class ValidationSet(Dataset):
    """Fixed validation excerpts: ``per_track`` evenly spaced, coherent excerpts
    of each track (fewer when a track holds fewer non-overlapping ones)."""

    def __init__(self, shards: Sequence[str | Path], excerpt_seconds: float = 3.2, per_track: int = 8):
        self.shards = _Shards(shards)
        self.excerpt = max(1, int(round(excerpt_seconds * self.shards.sample_rate)))
        self.items = []
        for track, length in enumerate(self.shards.lengths):
            count = max(1, min(per_track, length // self.excerpt))
            for offset in np.linspace(0, max(length - self.excerpt, 0), count).round().astype(int):
                self.items.append((track, int(offset)))

    @property
    def sample_rate(self) -> int:
        return self.shards.sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        track, offset = self.items[index]
        sources = torch.from_numpy(self.shards.read(track, slice(1, len(STREAMS)), offset, self.excerpt))
        return sources.sum(dim=0), sources
