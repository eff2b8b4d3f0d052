"""Open-loop arrival schedules: the gaps between sends at a rate, Poisson, constant, or a log's own."""
from __future__ import annotations

from typing import Iterator, Literal, Sequence

import numpy as np

Arrivals = Literal["poisson", "constant", "log"]


def arrival_gaps(kind: str, rate: float, seed: int, offsets: Sequence[float] | None = None) -> Iterator[float]:
    """Endless gaps in seconds between arrivals at `rate` per second.

    Poisson: exponential gaps from a generator seeded with `seed` (the same schedule on every
    run); constant: every gap is 1/rate. The first arrival comes one gap after the start.
    log: the gaps between `offsets` (each request's logged arrival), scaled so that their mean rate
    is `rate`; the first request goes at once, and a next pass over the log starts one mean gap
    after the last request.
    """
    if rate <= 0:
        raise ValueError(f"an arrival rate must be above 0, got {rate:g}")
    mean_gap = 1.0 / rate
    if kind == "log":
        yield from _log_gaps(offsets, mean_gap)
        return
    if kind == "constant":
        while True:
            yield mean_gap
    if kind != "poisson":
        raise ValueError(f"unknown arrivals {kind!r} (poisson or constant)")
    rng = np.random.default_rng(seed)
    while True:
        yield float(rng.exponential(mean_gap))


def _log_gaps(offsets: Sequence[float] | None, mean_gap: float) -> Iterator[float]:
    if not offsets or len(offsets) < 2 or offsets[-1] <= offsets[0]:
        raise ValueError("log arrivals need two or more requests with logged times spread over time")
    raw = np.diff(np.asarray(offsets, dtype=float))
    scale = mean_gap / (float(offsets[-1] - offsets[0]) / raw.size)
    yield 0.0
    while True:
        yield from (float(g) * scale for g in raw)
        yield mean_gap
