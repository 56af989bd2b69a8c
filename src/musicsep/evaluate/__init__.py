"""Evaluation: BSS Eval v4 per track (ours or museval), aggregation into tables."""

ENGINES: tuple[str, ...] = ("bsseval", "museval")
"""What computes BSS Eval v4: ours (:mod:`musicsep.evaluate.bsseval`, the
default: museval's numbers, many times faster) or museval's own
``evaluate`` (the reference implementation)."""

ACCOMPANIMENT_TARGET = "accompaniment"


def ordered_targets(names) -> list[str]:
    """Targets (or sources) in the order of every table and figure: MUSDB18's
    sources in :data:`musicsep.TARGETS` order, then any other in the order
    given, then ``accompaniment``. For MUSDB18's targets this is
    :data:`musicsep.TARGETS` itself."""
    from musicsep import TARGETS

    names = list(dict.fromkeys(names))
    known = [t for t in TARGETS if t in names and t != ACCOMPANIMENT_TARGET]
    others = [t for t in names if t not in TARGETS]
    return known + others + ([ACCOMPANIMENT_TARGET] if ACCOMPANIMENT_TARGET in names else [])
