"""Evaluation: BSS Eval v4 per track (ours or museval), aggregation into tables."""

ENGINES: tuple[str, ...] = ("bsseval", "museval")
"""What computes BSS Eval v4: ours (:mod:`musicsep.evaluate.bsseval`, the
default: museval's numbers, many times faster) or museval's own
``evaluate`` (the reference implementation)."""
