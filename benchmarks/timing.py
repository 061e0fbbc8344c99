"""Wall-clock timing of one benchmark case: warm up, repeat until a time budget is spent, report
the median (robust on a noisy shared machine, where the mean is dragged up by stalls). Peers
of one case are timed in turns (measure_turns), so that a slow spell of the machine falls on
all of them alike instead of on whichever ran then."""
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


TURNS = 8  # a peer's budget is spent in this many turns, alternating with the other peers
# Pause before each turn: the previous peer's thread pool (OpenMP, ONNX Runtime) spins for a
# while after its last call, and spinning workers would take the cores from the next peer.
IDLE_BEFORE_TURN_S = 0.05


def measure_turns(fns: dict[str, Callable[[], object]], budget: Budget, per_call: int = 1,
                  warmup: dict[str, int] | None = None,
                  on_turn: Callable[[str], None] | None = None) -> dict[str, dict]:
    """``measure`` for several peers of one case at once: each peer's calls are spread over
    ``TURNS`` turns taken in rotation, each turn about 1/TURNS of the time budget (at least one
    call), until every peer has met the budget's stopping rule. ``on_turn(name)`` is called
    before each turn (the caller records which peer runs, for crash reports)."""
    for name, fn in fns.items():
        for _ in range(budget.warmup if warmup is None else warmup.get(name, budget.warmup)):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    spent = dict.fromkeys(fns, 0.0)

    def done(name: str) -> bool:
        n = len(times[name])
        return (n >= budget.max_repeats or (n >= budget.min_repeats and spent[name] >= budget.seconds)
                or (n >= 2 and spent[name] >= budget.max_s))

    while not all(done(name) for name in fns):
        for name, fn in fns.items():
            if done(name):
                continue
            if on_turn is not None:
                on_turn(name)
            if len(fns) > 1:
                time.sleep(IDLE_BEFORE_TURN_S)
            turn_start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                if done(name) or time.perf_counter() - turn_start >= budget.seconds / TURNS:
                    break
            spent[name] += time.perf_counter() - turn_start
    return {name: {"median_s": statistics.median(t) / per_call, "min_s": min(t) / per_call,
                   "repeats": len(t)} for name, t in times.items()}
