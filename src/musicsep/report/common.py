"""What every report item shares: figures saved without dates, the order of systems, colours."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import pandas as pd

from musicsep import MIXTURE_SYSTEM, ORACLES
from musicsep.evaluate import ordered_targets
from musicsep.io import atomic_path

log = logging.getLogger(__name__)

EXTRA_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#393b79", "#637939")
"""Colours of sources other than MUSDB18's (matplotlib's tab10 without the four, then darker ones)."""


class SourceColours(dict):
    """A source's colour: MUSDB18's four (and MoisesDB's guitar and piano) fixed,
    any other name one of :data:`EXTRA_COLOURS` by a stable hash of it (the same
    in every run); :func:`source_colours` gives a set of names distinct ones."""

    def __missing__(self, name: str) -> str:
        return EXTRA_COLOURS[zlib.crc32(str(name).encode()) % len(EXTRA_COLOURS)]


SOURCE_COLOURS = SourceColours({"drums": "#1f77b4", "bass": "#2ca02c", "other": "#ff7f0e", "vocals": "#d62728",
                                "guitar": "#9467bd", "piano": "#8c564b", "accompaniment": "#17becf"})


def source_colours(names) -> dict[str, str]:
    """Distinct colours for ``names``: the fixed ones of :data:`SOURCE_COLOURS`,
    then unused :data:`EXTRA_COLOURS` in the order given (hashed past them)."""
    names = list(dict.fromkeys(names))
    colours = {n: dict.__getitem__(SOURCE_COLOURS, n) for n in names if n in SOURCE_COLOURS}
    free = [c for c in EXTRA_COLOURS if c not in colours.values()]
    for name in (n for n in names if n not in colours):
        colours[name] = free.pop(0) if free else SOURCE_COLOURS[name]
    return colours


REFERENCE = "reference"
"""Name of the mixture and true sources among the systems' audio pages."""


RC = {"svg.fonttype": "none", "svg.hashsalt": "musicsep", "font.size": 9, "axes.titlesize": 10}

MAX_WIDTH = 10.0
"""The widest a figure gets, in inches: Snakemake's report shows an image at
its natural size (an SVG's inch is 96 CSS pixels, a PNG's pixel one, and our
PNGs have 100 dpi) and shrinks one wider than its pane, text and all; 10
inches fit beside the report's menu in a 1280-pixel window."""


def panel_grid(panels: int, panel_width: float, extra_width: float = 0.0,
               max_width: float = MAX_WIDTH) -> tuple[int, int]:
    """(rows, columns) of ``panels`` panels of ``panel_width`` inches, side
    by side as far as the figure (with ``extra_width`` inches of labels and
    colour bar) stays within ``max_width``, then wrapped onto further rows."""
    columns = max(1, min(panels, int((max_width - extra_width) // panel_width)))
    return -(-panels // columns), columns


def fixed(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, never ``-0.00``: a value that rounds
    to zero is written ``0.00``."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str | Path, dpi: int = 110) -> None:
    """Save a figure atomically (format from the suffix), without dates (so
    that reruns give the same file), and close it."""
    plt = pyplot()
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    metadata = {"Date": None} if fmt in ("svg", "pdf") else {"Software": None}
    try:
        with atomic_path(out) as tmp:
            with plt.rc_context(RC):
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
    finally:
        plt.close(fig)
    log.info("-> %s", out)


def is_oracle(system: str) -> bool:
    return system.lower().startswith("oracle") or system.lower() in ORACLES


def is_mixture(system: str) -> bool:
    """The unprocessed mixture as a system: our ``oracle_mix``, SiSEC 2018's ``MIX``."""
    return system.lower() in (MIXTURE_SYSTEM, "mix")


def system_order(systems) -> list[str]:
    """Models first (sorted), then the mixture, then the other oracles (sorted)."""
    systems = list(dict.fromkeys(systems))
    return (sorted(s for s in systems if not is_oracle(s)) + sorted(s for s in systems if is_mixture(s))
            + sorted(s for s in systems if is_oracle(s) and not is_mixture(s)))


def targets_of(table: pd.DataFrame) -> list[str]:
    """The targets of a score table in the tables' order
    (:func:`musicsep.evaluate.ordered_targets`: MUSDB18's first, any others in
    the table's order, the accompaniment last)."""
    return ordered_targets(table["target"])
