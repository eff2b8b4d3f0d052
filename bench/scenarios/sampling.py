"""When a cell has been measured enough: MLPerf-style early stopping on the p50 TPOT.

A cell keeps sending requests until (after its minimum passes and duration) the 95% bootstrap
interval of its p50 TPOT lies within ±`precision_pct` of the median, or `time_cap_s` has passed.
Intervals resample independent units (batches), as the summary does, so the precision a cell
stops at is the one its summary row reports.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from llmbench.records import RequestRecord
from llmbench.stats import bootstrap_ci, half_width_pct

# Fewer independent units than this give an interval that says little (two batches span
# whatever they span), so precision is never taken as reached below it.
MIN_UNITS = 6


@dataclass(frozen=True)
class Sampling:
    """How long to measure one cell."""

    iterations: int = 1
    min_duration_s: float = 0.0
    precision_pct: float | None = 2.0
    time_cap_s: float = 0.0


class Sampler:
    """Collects a cell's TPOTs as they complete and says whether to send more requests."""

    def __init__(self, sampling: Sampling, pass_size: int):
        self.sampling = sampling
        self.min_requests = sampling.iterations * max(1, pass_size)
        self.start = time.perf_counter()
        self.tpot: list[float] = []
        self.units: list[int] = []
        self.stopped = False
        self.hit_cap = False
        self.reached: float | None = None

    def add(self, records: Iterable[RequestRecord]) -> None:
        for r in records:
            if r.tpot_ms is not None:
                self.tpot.append(r.tpot_ms)
                self.units.append(r.batch_id if r.batch_id is not None else r.request_id)

    def precision_pct(self) -> float | None:
        """± half-width of the p50 TPOT's 95% interval in % of the median (None: too few units)."""
        if len(set(self.units)) < MIN_UNITS:
            return None
        median = float(np.percentile(self.tpot, 50))
        return half_width_pct(median, bootstrap_ci(self.tpot, 50, units=self.units))

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    def more(self, sent: int) -> bool:
        """Whether to send another unit, `sent` requests having been sent. Once no, always no."""
        if self.stopped:
            return False
        s = self.sampling
        elapsed = self.elapsed_s()
        if sent < self.min_requests or elapsed < s.min_duration_s:
            return True
        if s.precision_pct is not None:
            self.reached = self.precision_pct()
            if self.reached is None or self.reached > s.precision_pct:
                if elapsed < s.time_cap_s:
                    return True
                self.hit_cap = True  # stopped by the cap with the precision not reached
        self.stopped = True
        return False

    def outcome(self) -> dict:
        """What run.json records per cell about its sampling."""
        s = self.sampling
        return {"precision_target_pct": s.precision_pct, "time_cap_s": s.time_cap_s, "hit_cap": self.hit_cap,
                "measured_s": self.elapsed_s()}
