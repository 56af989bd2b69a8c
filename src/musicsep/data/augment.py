"""Augmentation of training excerpts, each source on its own (``loader.augment``).

The augmentations the field trains with, applied to an excerpt's sources
after :class:`musicsep.data.excerpts.ExcerptDataset` has drawn them (the
remixing of ``loader.incoherent`` and ``incoherent_tracks`` comes first):

- ``gain: [low, high]``: each source scaled by a gain drawn uniformly from
  the range (open-unmix's ``_augment_gain`` and demucs' ``Scale``, both
  [0.25, 1.25]);
- ``channel_swap``: each source's two channels swapped with probability 0.5
  (open-unmix's ``_augment_channelswap``, demucs' ``FlipChannels``); nothing
  on mono shards;
- ``polarity_flip``: each source negated with probability 0.5 (demucs'
  ``FlipSign``);
- ``source_dropout: p``: each source silenced with probability ``p``, on its
  own; when the draws silence all of them, one of them, drawn at random, is
  kept, so dropout never leaves an excerpt without a source (a plain
  description: no codebase's variant is followed).

The draws continue the excerpt's own generator (seeded with the loader seed,
the rank, the epoch and the excerpt's index) after the excerpt's tracks and
offsets, so they are as reproducible as those, and an augmentation that is
off draws nothing: with all of them off the excerpts are bit for bit those
of no augmentation. Gain, sign and dropout are one scale per source, applied
in one multiplication; the swap reverses the channels of the swapped sources.
The mixture stays the sum of the (augmented) sources: it is formed where it
is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicsep import MusicsepError

OFF = {"gain": None, "channel_swap": False, "polarity_flip": False, "source_dropout": 0}
"""``loader.augment`` with everything off: the schema's defaults."""


def is_off(config: dict | None) -> bool:
    """Whether a ``loader.augment`` block (None: none) changes nothing."""
    return not config or all(config.get(key, off) == off for key, off in OFF.items())


def problems(config: dict | None) -> list[tuple[str, str]]:
    """What is wrong with a ``loader.augment`` block: (key, why) pairs, the
    key under ``loader.augment``; none for a good block (or None)."""
    if config is None:
        return []
    if not isinstance(config, dict):
        return [("", f"{config!r} is not a mapping of augmentations")]
    found = [(key, f"unknown augmentation (known: {', '.join(OFF)})") for key in config if key not in OFF]
    gain = config.get("gain")
    if gain is not None:
        numbers = isinstance(gain, (list, tuple)) and len(gain) == 2 and \
            all(isinstance(g, (int, float)) and not isinstance(g, bool) and np.isfinite(g) for g in gain)
        if not numbers:
            found.append(("gain", f"{gain!r} is not a range [low, high] of two numbers (or null: off)"))
        elif gain[0] < 0:
            found.append(("gain", f"{list(gain)}: the low gain is negative"))
        elif gain[0] > gain[1]:
            found.append(("gain", f"{list(gain)}: the low gain {gain[0]} is above the high gain {gain[1]}"))
    for key in ("channel_swap", "polarity_flip"):
        if not isinstance(config.get(key, False), bool):
            found.append((key, f"{config[key]!r} is not true or false"))
    p = config.get("source_dropout", 0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        found.append(("source_dropout", f"{p!r}: a probability in [0, 1) expected"))
    return found


@dataclass(frozen=True)
class Augment:
    """The augmentations of ``loader.augment``; see the module docstring."""

    gain: tuple[float, float] | None = None
    channel_swap: bool = False
    polarity_flip: bool = False
    source_dropout: float = 0.0

    @classmethod
    def from_config(cls, config: dict | None, where: str = "loader.augment") -> Augment:
        """From a ``loader.augment`` block (None: all off); a bad block raises
        MusicsepError naming its first bad key under ``where``."""
        for key, why in problems(config):
            raise MusicsepError(f"{where}{'.' * bool(key)}{key}: {why}")
        config = {**OFF, **(config or {})}
        gain = config["gain"]
        return cls(None if gain is None else (float(gain[0]), float(gain[1])), config["channel_swap"],
                   config["polarity_flip"], float(config["source_dropout"]))

    @property
    def active(self) -> bool:
        return self.gain is not None or self.channel_swap or self.polarity_flip or self.source_dropout > 0

    def __call__(self, sources: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment ``sources`` ``(n_sources, channels, samples)`` in place,
        drawing from ``rng``; returns it."""
        n = len(sources)
        scale = np.ones(n)
        if self.gain is not None:
            scale *= rng.uniform(self.gain[0], self.gain[1], n)
        if self.channel_swap:
            swapped = np.flatnonzero(rng.random(n) < 0.5)
            if sources.shape[1] == 2 and len(swapped):
                sources[swapped] = sources[swapped, ::-1]
        if self.polarity_flip:
            scale *= np.where(rng.random(n) < 0.5, -1.0, 1.0)
        if self.source_dropout > 0:
            dropped = rng.random(n) < self.source_dropout
            if dropped.all():
                dropped[rng.integers(n)] = False
            scale[dropped] = 0.0
        if np.any(scale != 1):
            np.multiply(sources, scale.astype(np.float32)[:, None, None], out=sources)
        return sources
