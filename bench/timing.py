"""What every benchmark here times with: medians of functions run in turn, so a shared,
busy machine slows each alike and their ratio holds (the benchmarks print ratios)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def alternating_medians(fns: dict[str, Callable], runs: int, warmup: Callable | None = None) -> dict[str, float]:
    """Median seconds of each function over ``runs`` rounds, the functions run in turn in
    every round, after a warm-up (``warmup``, or one run of each)."""
    for fn in [warmup] if warmup else fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}
