"""What the benchmark scripts share: running contenders in turn
(:func:`interleave`), waiting for a device's queued work (:func:`sync`), the
paired ratio of two contenders, and the figures they collect for their
summary and how they print it."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

SUMMARY: list[tuple[str, str, str, bool | None]] = []   # (figure, value, goal, met)


def sync(device: torch.device | str | None) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a
    timing covers it; nothing to wait for on the CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleave(runs: dict[str, Callable[[], object]], reps: int, *, warm_up: bool = True,
               alternate: bool = False, before: Callable[[int], object] | None = None,
               device: torch.device | str | None = None) -> dict[str, list[float]]:
    """Seconds of each contender per repetition, the contenders run in turn.

    ``warm_up``: each runs once, untimed, first. Then A, B, ... ``reps`` times
    (``alternate``: A, B, then B, A, ..., so that neither always runs first).
    ``before(rep)`` runs untimed before every call (``rep`` is -1 for the
    warm-up). ``device``: each timing waits for its queued work (:func:`sync`).
    A contender that measures something other than its own wall time records
    it itself, and the returned seconds can be ignored."""
    def call(fn, rep: int) -> float:
        if before is not None:
            before(rep)
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - start

    if warm_up:
        for fn in runs.values():
            call(fn, -1)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(reps):
        order = list(runs.items())
        for name, fn in (order[::-1] if alternate and rep % 2 else order):
            times[name].append(call(fn, rep))
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    """The median of each contender's repetitions."""
    return {name: statistics.median(v) for name, v in times.items()}


def paired(numerators: list[float], denominators: list[float]) -> float:
    """The median over repetitions of the ratio of two contenders' timings in
    the same repetition (seconds apart, so a burst of other work that slows
    both cancels)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def note(figure: str, value: float, fmt: str, goal: str | None = None, met: bool | None = None) -> None:
    SUMMARY.append((figure, format(value, fmt), goal or "", met))


def print_summary(value_width: int = 9) -> None:
    """The collected figures, one a line, with their goals and whether each is met."""
    width = max(len(f) for f, *_ in SUMMARY)
    for figure, value, goal, met in SUMMARY:
        mark = "" if met is None else ("met" if met else "MISSED")
        print(f"{figure:{width}} {value:>{value_width}} {goal:>7} {mark}")
