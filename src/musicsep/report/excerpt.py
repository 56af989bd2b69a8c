"""The excerpt every figure and audio page shows: where the sources are loudest together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicsep import SOURCES, MusicsepError
from musicsep.data.shard import MIXTURE_ROW, Shard
from musicsep.report import EXCERPT_SECONDS


@dataclass
class Excerpt:
    """Samples ``[start, start + length)`` of a shard's streams
    ``(streams, channels, samples)``, float32: the mixture, then the sources
    named by ``source_names``."""

    audio: np.ndarray
    rate: int
    start: int
    name: str
    slug: str
    path: str = ""
    """The shard's."""
    source_names: tuple[str, ...] = SOURCES
    """The shard's sources, in the order of :attr:`sources`."""

    @property
    def mixture(self) -> np.ndarray:
        return self.audio[MIXTURE_ROW]

    @property
    def sources(self) -> np.ndarray:
        """``(sources, channels, samples)`` in :attr:`source_names` order."""
        return self.audio[1:]

    @property
    def length(self) -> int:
        return self.audio.shape[-1]

    def describe(self) -> str:
        return (f"{self.name}, {self.start / self.rate:.1f}–{(self.start + self.length) / self.rate:.1f} s")


def choose_start(audio, rate: int, length: int, block_seconds: float = 1.0, read_blocks: int = 16) -> int:
    """First sample of the ``length``-sample window where the sources
    are loudest together: the largest mean over sources of the log energy of
    the window, on a grid of ``block_seconds`` blocks. ``audio`` is the
    shard's dataset ``(streams, channels, samples)`` (read in pieces)."""
    n = audio.shape[-1]
    if length >= n:
        return 0
    hop = max(1, int(rate * block_seconds))
    blocks = n // hop
    width = max(1, length // hop)
    if width >= blocks:
        return 0
    rows = range(1, audio.shape[0])                 # the sources (the mixture is row 0)
    energy = np.zeros((len(rows), blocks))
    for b0 in range(0, blocks, read_blocks):
        b1 = min(blocks, b0 + read_blocks)
        part = np.stack([np.asarray(audio[r, :, b0 * hop:b1 * hop], dtype=np.float64) for r in rows])
        energy[:, b0:b1] = np.square(part).reshape(len(rows), part.shape[1], b1 - b0, hop).mean(axis=(1, 3))
    csum = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(energy, axis=1)], axis=1)
    window = (csum[:, width:] - csum[:, :-width]) / width
    best = int(np.argmax(np.log10(window + 1e-10).mean(axis=0)))
    return min(best * hop, n - length)


def read_excerpt(shard: str | Path, seconds: float = EXCERPT_SECONDS, start: float | None = None) -> Excerpt:
    """An excerpt of ``seconds`` (the whole track when shorter) of a shard,
    from ``start`` seconds or, by default, from :func:`choose_start`."""
    if not seconds > 0:
        raise MusicsepError(f"the excerpt must be longer than 0 s (got {seconds})")
    with Shard(shard) as sh:
        rate, n = sh.sample_rate, sh.length
        if n == 0:
            raise MusicsepError(f"{shard}: the track is empty")
        length = min(n, int(round(seconds * rate)))
        if start is None:
            first = choose_start(sh.audio, rate, length)
        else:
            if start < 0:
                raise MusicsepError(f"the excerpt's start must be at least 0 s (got {start})")
            first = min(int(round(start * rate)), n - length)
        data = np.asarray(sh.audio[:, :, first:first + length], dtype=np.float32)
        return Excerpt(data, rate, first, sh.name, sh.slug, str(shard), sh.source_names)
