"""What the benchmark scripts share: the figures they collect for their
summary, how they print it, and the paired ratio of two contenders."""

from __future__ import annotations

import statistics

SUMMARY: list[tuple[str, str, str, bool | None]] = []   # (figure, value, goal, met)


def note(figure: str, value: float, fmt: str, goal: str | None = None, met: bool | None = None) -> None:
    SUMMARY.append((figure, format(value, fmt), goal or "", met))


def paired(numerators: list[float], denominators: list[float]) -> float:
    """The median over repetitions of the ratio of two contenders' timings in
    the same repetition (seconds apart, so a burst of other work that slows
    both cancels)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def print_summary(value_width: int = 9) -> None:
    """The collected figures, one a line, with their goals and whether each is met."""
    width = max(len(f) for f, *_ in SUMMARY)
    for figure, value, goal, met in SUMMARY:
        mark = "" if met is None else ("met" if met else "MISSED")
        print(f"{figure:{width}} {value:>{value_width}} {goal:>7} {mark}")
