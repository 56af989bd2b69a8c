"""What every report item shares: figures saved without dates, the order of systems, colours."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from musicsep import MIXTURE_SYSTEM, ORACLES, TARGETS
from musicsep.io import atomic_path

log = logging.getLogger(__name__)

SOURCE_COLOURS = {"drums": "#1f77b4", "bass": "#2ca02c", "other": "#ff7f0e", "vocals": "#d62728"}


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
    present = set(table["target"])
    return [t for t in TARGETS if t in present] + sorted(present - set(TARGETS))
