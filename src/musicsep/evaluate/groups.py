"""Repeats of one experiment over training seeds, summarised together: the
mean and spread of their median SDRs and of their shares of the oracle's
improvement (the seed-to-seed spread that a comparison of two models must
beat)."""

from __future__ import annotations

import math
import statistics
from typing import Callable, Mapping, Sequence

import pandas as pd

from musicsep import SOURCES, MusicsepError


def parse_groups(items: Sequence[str]) -> dict[str, list[str]]:
    """``NAME=A,B,C`` items (the command line's ``--seeds``) -> {NAME: [A, B, C]}."""
    groups = {}
    for item in items:
        name, _, members = item.partition("=")
        members = [m for m in members.split(",") if m]
        if not name or len(members) < 2 or name in groups:
            raise MusicsepError(f"--seeds {item}: expected NAME=SYSTEM,SYSTEM[,...] (two or more systems), "
                                "each NAME once")
        groups[name] = members
    return groups


def _mean_spread(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{statistics.fmean(values):.2f} ± {spread:.2f}" if not math.isnan(spread) else f"{values[0]:.2f}"


def seed_lines(medians: pd.Series, shares: pd.Series, groups: Mapping[str, Sequence[str]],
               targets: Sequence[str], four: str, label: Callable[[str], str],
               sources: Sequence[str] = SOURCES) -> list[str]:
    """The summary's section on the seed groups: per group and target, the
    mean ± standard deviation over its runs of the median SDR, then of the
    share (``four``: the median over all ``sources``, MUSDB18's four by default)."""
    if not groups:
        return []
    scored = set(medians.index.get_level_values("system"))
    missing = sorted({m for members in groups.values() for m in members} - scored)
    if missing:
        raise MusicsepError(f"--seeds: no scores of {', '.join(missing)}")
    lines = ["## Over seeds", "",
             ("Runs of one setting that differ only by `training.seed` (initial weights, dropout, batch order): "
              "mean ± standard deviation over the runs. A difference between two settings smaller than their "
              "spread is not a difference."), ""]
    for title, cell, columns in [
            ("median SDR (dB)", lambda m, t: medians.get((m, t, "SDR"), math.nan), list(targets)),
            ("share of the oracle's improvement", lambda m, t: shares.get((m, t), math.nan),
             [t for t in targets if t in sources] + [four])]:
        names = [f"{len(sources)} sources (median)" if t == four else t for t in columns]
        lines += [f"**{title}**", "", "| setting | runs | " + " | ".join(names) + " |",
                  "|---|---|" + "---:|" * len(columns)]
        for name, members in groups.items():
            lines.append(f"| {label(name)} | {', '.join(members)} | "
                         + " | ".join(_mean_spread([cell(m, t) for m in members]) for t in columns) + " |")
        lines.append("")
    return lines
