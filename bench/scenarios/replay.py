"""The workload's own arrivals (workload.log), open loop: each request at its logged time, or `speedup` times faster.

A point `replay=2x` sends the log's requests with every gap halved; its rate (`rate_rps`) is the
log's mean rate times the speedup. In-process backends take the arrivals through the static-batching
queue (batches of up to `max_batch`), served ones through the served driver, as a rate point does.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from llmbench.errors import BadInput
from llmbench.monitor.log_workload import arrival_offsets
from llmbench.scenarios.base import Point, Scenario
from llmbench.scenarios.concurrency import ConcurrencyScenario
from llmbench.scenarios.served import Load

PREFIX = "replay="


def log_rate(prompts: list) -> float:
    """The log's mean arrival rate (requests/s over its span); BadInput when it has no span."""
    offsets = arrival_offsets(prompts)
    if offsets is None or len(offsets) < 2 or offsets[-1] <= offsets[0]:
        raise BadInput("scenario 'replay' needs workload.log with two or more requests spread over time")
    return (len(offsets) - 1) / (offsets[-1] - offsets[0])


class ReplayScenario(ConcurrencyScenario):
    kind = "replay"

    def __init__(self, config, seed: int = 0) -> None:
        Scenario.__init__(self, config)
        self.seed = seed
        self.max_batch = config.max_batch
        self.arrivals = "log"

    def points(self) -> list[Point]:
        # The rate here is the speedup; measure() puts the log's own rate times it in its place.
        return [Point(f"{PREFIX}{s:g}x", batch_size=1, rate=s, parallel=self.max_batch) for s in self.config.speedups]

    def served_load(self, point: Point) -> Load:
        return Load(rate=point.rate, arrivals="log", seed=self.seed, parallel=point.parallel)

    def measure(self, backend, prompts, ctx, sampling) -> Iterator:
        speedup = float(ctx.point.label[len(PREFIX):-1])
        ctx.point = replace(ctx.point, rate=log_rate(prompts) * speedup)
        yield from super().measure(backend, prompts, ctx, sampling)
