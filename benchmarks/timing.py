"""Wall-clock timing of one benchmark case: warm up, repeat until a time budget is spent, report
the median (robust on a noisy shared machine, where the mean is dragged up by stalls)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """How long to spend on one case. ``max_s`` caps cases that are slow per call."""

    seconds: float = 0.75
    min_repeats: int = 5
    max_repeats: int = 2000
    warmup: int = 1
    max_s: float = 6.0

    @classmethod
    def quick(cls) -> Budget:
        return cls(seconds=0.1, min_repeats=2, max_repeats=200, warmup=1, max_s=3.0)


def measure(fn: Callable[[], object], budget: Budget, per_call: int = 1,
            warmup: int | None = None) -> dict:
    """Median seconds of ``fn()`` (divided by ``per_call`` when one call runs several units,
    e.g. a loop of streaming steps).

    Warm-up calls come first (weight packing, allocator growth, thread pools spinning up and
    lazy initialisation are not what a steady-state loop pays). Then calls repeat until both
    ``min_repeats`` and the time budget are reached, or until ``max_s``/``max_repeats``.
    ``warmup`` overrides the budget's count (the caller may have warmed up already).
    """
    for _ in range(budget.warmup if warmup is None else warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent = time.perf_counter() - start
        if len(times) >= budget.max_repeats:
            break
        if len(times) >= budget.min_repeats and spent >= budget.seconds:
            break
        if len(times) >= 2 and spent >= budget.max_s:  # very slow case: two samples must do
            break
    return {
        "median_s": statistics.median(times) / per_call,
        "min_s": min(times) / per_call,
        "repeats": len(times),
    }
