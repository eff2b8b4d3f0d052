"""One request at a time, as MLPerf's SingleStream: latency without queueing or batching."""
from __future__ import annotations

import time
from typing import Iterator

from llmbench.scenarios.base import CellContext, Point, Scenario, run_batch


class SingleStreamScenario(Scenario):
    kind = "single-stream"

    def points(self) -> list[Point]:
        return [Point("single")]

    def one_pass(self, backend, prompts, ctx: CellContext) -> Iterator:
        for prompt in prompts:
            yield from run_batch(backend, [prompt], [time.perf_counter()], ctx)
