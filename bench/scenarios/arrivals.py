"""Open-loop arrival schedules: the gaps between sends at a rate, Poisson or constant."""
from __future__ import annotations

from typing import Iterator, Literal

import numpy as np

Arrivals = Literal["poisson", "constant"]


def arrival_gaps(kind: str, rate: float, seed: int) -> Iterator[float]:
    """Endless gaps in seconds between arrivals at `rate` per second.

    Poisson: exponential gaps from a generator seeded with `seed` (the same schedule on every
    run); constant: every gap is 1/rate. The first arrival comes one gap after the start.
    """
    if rate <= 0:
        raise ValueError(f"an arrival rate must be above 0, got {rate:g}")
    mean_gap = 1.0 / rate
    if kind == "constant":
        while True:
            yield mean_gap
    if kind != "poisson":
        raise ValueError(f"unknown arrivals {kind!r} (poisson or constant)")
    rng = np.random.default_rng(seed)
    while True:
        yield float(rng.exponential(mean_gap))
