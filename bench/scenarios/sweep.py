"""GuideLLM's sweep: synchronous and maximum throughput, then k open-loop rates evenly between.

`sweep=sync` is one closed-loop client, `sweep=max` is `max_clients` closed-loop clients; their
request throughputs (successes / measured window, as the summary's `request_throughput_req_s`)
set the rates of `sweep=r1..rk`: r_i = sync + i * (max - sync) / (k + 1), strictly between the
two. The runner tells the scenario every completed cell's records (`observe`), those logged
before a resume included, so a resumed sweep sends at the same rates. In-process backends run
the points through the static-batching queue (batches of up to `max_clients`), served ones
through the served driver.
"""
from __future__ import annotations

from dataclasses import replace

from llmbench.config import MIN_RATE
from llmbench.metrics import window_s
from llmbench.records import RequestRecord
from llmbench.scenarios.base import Point, Scenario
from llmbench.scenarios.concurrency import ConcurrencyScenario

SYNC, MAX = "sweep=sync", "sweep=max"
_RATE_PREFIX = "sweep=r"


def request_throughput(records: list[RequestRecord]) -> float:
    """Successful requests per second over the measured window (0 when nothing succeeded)."""
    ok = [r for r in records if r.ok]
    window = window_s(ok)
    return len(ok) / window if window > 0 else 0.0


def spaced_rates(sync_rps: float, max_rps: float, k: int) -> list[float]:
    """k rates evenly spaced strictly between the synchronous and maximum throughputs."""
    return [sync_rps + i * (max_rps - sync_rps) / (k + 1) for i in range(1, k + 1)]


class SweepScenario(ConcurrencyScenario):
    kind = "sweep"

    def __init__(self, config, seed: int = 0) -> None:
        Scenario.__init__(self, config)
        self.seed = seed
        self.max_batch = config.max_clients
        self.arrivals = config.arrivals
        self.throughput: dict[tuple[str, str, str], float] = {}  # (model, variant, label) -> req/s

    def points(self) -> list[Point]:
        m = self.config.max_clients
        pts = [Point(SYNC, batch_size=1, clients=1, parallel=1), Point(MAX, batch_size=m, clients=m, parallel=m)]
        return pts + [Point(f"{_RATE_PREFIX}{i}", parallel=m) for i in range(1, self.config.rates + 1)]

    def observe(self, point: Point, records: list[RequestRecord]) -> None:
        if point.label in (SYNC, MAX) and records:
            self.throughput[(records[0].model, records[0].variant, point.label)] = request_throughput(records)

    def rates(self, model: str, variant: str) -> list[float]:
        """The k rates of one (model, variant), from its measured sync and max throughputs."""
        missing = [label for label in (SYNC, MAX) if (model, variant, label) not in self.throughput]
        if missing:
            raise RuntimeError(f"the sweep's rates need {' and '.join(missing)} measured first")
        lo, hi = self.throughput[(model, variant, SYNC)], self.throughput[(model, variant, MAX)]
        return spaced_rates(lo, hi, self.config.rates)

    def resolve(self, point: Point, model: str, variant: str) -> Point:
        if not point.label.startswith(_RATE_PREFIX):
            return point
        rate = self.rates(model, variant)[int(point.label[len(_RATE_PREFIX):]) - 1]
        if rate < MIN_RATE:
            raise RuntimeError(f"{point.label}: {rate:.3g} requests/s is below {MIN_RATE} "
                               "(no request succeeded at sweep=sync or sweep=max?)")
        return replace(point, rate=rate)
