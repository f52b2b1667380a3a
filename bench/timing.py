"""Side-by-side timing: the contenders of one comparison run interleaved, repeat by repeat.

The machine is shared and noisy, so every ratio is taken between figures measured in the same loop:
each repeat times every contender once, in turn (order rotated each repeat), so load spikes hit all of
them alike. Each repeat calls a contender ``number`` times, with ``number`` picked so one repeat lasts
at least ``min_repeat_s``; a figure is seconds per call. Noise only ever adds time, so ratios are taken
between minimums (as ``timeit`` advises) and the medians are recorded beside them.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

__all__ = ["calibrate_number", "time_side_by_side", "fit_exponent", "time_method"]


def calibrate_number(fn: Callable[[], object], min_repeat_s: float) -> int:
    """Calls per repeat so that one repeat lasts at least ``min_repeat_s`` seconds (1, 2, 5, 10, ...)."""
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - t0 >= min_repeat_s or number >= 100_000:
            return number
        number *= 10 if number in (1, 10, 100, 1000, 10_000) else 2


def time_side_by_side(fns: dict[str, Callable[[], object]], repeats: int,
                      min_repeat_s: float = 0.005) -> dict[str, dict]:
    """Time every callable in ``fns`` interleaved; per name ``{min_s, median_s, repeats, number}``.

    Each callable runs once first (warm-up: JIT compile, caches, allocator), then ``repeats`` times
    ``number`` calls. Times are seconds per call.
    """
    names = list(fns)
    numbers = {n: calibrate_number(fns[n], min_repeat_s) for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            fn, number = fns[n], numbers[n]
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples[n].append((time.perf_counter() - t0) / number)
    return {n: {"min_s": min(samples[n]), "median_s": statistics.median(samples[n]),
                "repeats": repeats, "number": numbers[n]} for n in names}


def fit_exponent(sizes: list[float], times_s: list[float]) -> float:
    """Least-squares slope of log(time) against log(size): time ~ size**exponent."""
    import numpy as np
    return float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(times_s, float)), 1)[0])


def time_method(cls, name: str, clock: dict):
    """Wrap method ``name`` of ``cls`` so that its wall time adds up in ``clock[name]``; returns the original
    attribute as the class holds it (a static or class method stays one), to put back with ``setattr``."""
    held = cls.__dict__[name]
    kind = type(held) if isinstance(held, (staticmethod, classmethod)) else None
    original = held.__func__ if kind else held

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            clock[name] += time.perf_counter() - t

    setattr(cls, name, kind(wrapper) if kind else wrapper)
    return held
