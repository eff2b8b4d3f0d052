"""The after-idle slowdown: a batch that starts after the server sat idle runs slower than one that
follows another at once.

Seen on this project's shared 2-core CPU (llama-5m, one thread): batches that started after an
idle gap took a median 8-29% and a 90th percentile 60-110% longer than the fit from back-to-back
batches predicts; back-to-back ones 1-8% (the core and its caches go to other work while the
server waits). A batch sweep never idles, so its fit cannot see this; a server that waits for
arrivals (the concurrency scenario's rate points) shows it. Where such measurements exist, the
measured/modelled duration ratios of the after-idle batches are kept per idle-gap bin, divided by
the back-to-back batches' mean ratio in the same measurements (so that an overall drift between the
sweep and the rate points is not taken for an idle effect), and the simulator draws each
after-idle batch's factor from the bin of its own gap.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from llmbench.planner.service import ServiceModel, batch_timeline

MIN_AFTER_IDLE = 10  # after-idle batches needed to model the effect
MIN_BUSY = 5  # back-to-back batches needed to normalise by (else no normalisation)
MIN_PER_BIN = 3  # a bin with fewer batches borrows its nearest populated neighbour's
# Idle-gap bins (s): the slowdown grows with the gap (about 1.2x after 2-20 ms, 1.6x after 0.3 s
# in the measurements above), so each bin keeps its own factors.
EDGES_S = (0.002, 0.02, 0.1, 0.3, math.inf)
MIN_EXTRA = 0.02  # a smaller mean slowdown is within the noise: not modelled


@dataclass(frozen=True)
class IdlePenalty:
    """Measured duration factors of batches that start after an idle gap, per gap bin (EDGES_S)."""

    bins: tuple[tuple[float, ...], ...]
    drift: float = 1.0

    @property
    def idle_s(self) -> float:
        """Gaps up to this are back-to-back: no penalty."""
        return EDGES_S[0]

    def bin_of(self, idle_s: float) -> tuple[float, ...]:
        return self.bins[min(len(self.bins) - 1, bisect.bisect_left(EDGES_S, idle_s, lo=1) - 1)]

    @property
    def ratios(self) -> tuple[float, ...]:
        """Factors of a batch after a long idle (a request served alone)."""
        return self.bins[-1]

    @property
    def mean(self) -> float:
        return float(np.mean([x for b in self.bins for x in b]))

    def describe(self) -> dict:
        means = {f"{1e3 * lo:g}-{1e3 * hi:g}ms" if hi < math.inf else f">{1e3 * lo:g}ms": float(np.mean(b))
                 for lo, hi, b in zip(EDGES_S, EDGES_S[1:], self.bins)}
        p90 = float(np.percentile([x for b in self.bins for x in b], 90))
        return {"mean_extra_pct": 100 * (self.mean - 1), "ratio_p90": p90, "mean_ratio_by_idle_gap": means,
                "normalised_by_back_to_back_ratio": self.drift}


def idle_points(service: ServiceModel, records: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """(idle before each batch s, measured / modelled duration) over the concurrency cells' batches."""
    idle, ratio = [], []
    for batches in batch_timeline(r for r in records if r.scenario == "concurrency").values():
        prev_end = None
        for start, o in batches:
            got, model = service.observed_ms(o)
            if prev_end is not None and model > 0:  # the first batch follows warm-up: unknown idle
                idle.append(max(0.0, start - prev_end))
                ratio.append(got / model)
            prev_end = start + got / 1e3
    return np.array(idle), np.array(ratio)


def fit_idle_penalty(service: ServiceModel, records: Iterable) -> IdlePenalty | None:
    """The after-idle factors from concurrency measurements; None when too few or no slowdown."""
    idle, ratio = idle_points(service, records)
    after = idle > EDGES_S[0]
    if after.sum() < MIN_AFTER_IDLE:
        return None
    busy = ratio[~after]
    drift = float(busy.mean()) if len(busy) >= MIN_BUSY else 1.0
    rel = ratio / drift
    if rel[after].mean() - 1 < MIN_EXTRA:
        return None
    bins = [rel[(idle > lo) & (idle <= hi)] for lo, hi in zip(EDGES_S, EDGES_S[1:])]
    full = [i for i, b in enumerate(bins) if len(b) >= MIN_PER_BIN]
    if not full:
        full = [max(range(len(bins)), key=lambda i: len(bins[i]))]
    # A sparse bin takes the nearest populated one (the longer gap on a tie: the safer side).
    filled = [bins[i] if i in full else bins[min(full, key=lambda j: (abs(j - i), -j))] for i in range(len(bins))]
    return IdlePenalty(tuple(tuple(float(x) for x in b) for b in filled), drift)
