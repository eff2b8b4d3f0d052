"""When the served driver sends another request: a fixed count (warm-up) or the cell's Sampler."""
from __future__ import annotations

import asyncio
import copy
import math
import time

from llmbench.records import RequestRecord
from llmbench.scenarios.sampling import MIN_UNITS, Sampler

# The precision check is a bootstrap (2 ms at 20 TPOTs, 15 ms at 500): asked at most this often.
PRECISION_EVERY_S = 0.1


class CountGate:
    """Exactly `count` requests, nothing recorded (warm-up)."""

    def __init__(self, count: int):
        self.count = count

    async def more(self, sent: int) -> bool:
        return sent < self.count

    def add(self, record: RequestRecord) -> None:
        """Warm-up keeps nothing."""


class SamplerGate:
    """`Sampler.more` for an event loop, with the same rules as an in-process cell.

    The cheap rules (minimum requests, minimum duration, no precision target, too few units for
    an interval) are asked inline. The precision check runs in a worker thread on a copy of the TPOTs, one check at a time and
    at most every PRECISION_EVERY_S, so it never holds up the loop that timestamps the chunks of
    the streams in flight; requests keep going out while it runs (a cell may send a few more
    than the in-process one would, never fewer).
    """

    def __init__(self, sampler: Sampler):
        self.sampler = sampler
        self._checking = False
        self._last_check = -math.inf
        self._enough_units = False  # once MIN_UNITS distinct units are in, always

    def add(self, record: RequestRecord) -> None:
        self.sampler.add([record])

    def _precision_due(self, sent: int) -> bool:
        s = self.sampler
        cfg = s.sampling
        if cfg.precision_pct is None or sent < s.min_requests or s.elapsed_s() < cfg.min_duration_s:
            return False
        self._enough_units = self._enough_units or len(set(s.units)) >= MIN_UNITS
        return self._enough_units

    async def more(self, sent: int) -> bool:
        """Whether to send another request, `sent` having been sent. Once no, always no."""
        s = self.sampler
        if s.stopped or not self._precision_due(sent):
            return s.more(sent)  # no bootstrap on this path (too few units: precision_pct() is None)
        if self._checking or time.perf_counter() - self._last_check < PRECISION_EVERY_S:
            return True
        self._checking = True
        try:
            snap = copy.copy(s)
            snap.tpot, snap.units = list(s.tpot), list(s.units)
            answer = await asyncio.to_thread(snap.more, sent)
        finally:
            self._checking = False
            self._last_check = time.perf_counter()
        s.reached, s.hit_cap = snap.reached, snap.hit_cap
        s.stopped = s.stopped or snap.stopped
        return answer and not s.stopped
