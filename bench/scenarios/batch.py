"""Static batches of 1, 2, 4, 8, ...: offline throughput and the latency it costs."""
from __future__ import annotations

import math
import time
from typing import Iterator

from llmbench.scenarios.base import CellContext, Point, Scenario, run_batch


class BatchScenario(Scenario):
    kind = "batch"

    def points(self) -> list[Point]:
        return [Point(f"batch={b}", batch_size=b) for b in self.config.batch_sizes]

    def one_pass(self, backend, prompts, ctx: CellContext) -> Iterator:
        b = ctx.point.batch_size
        # At least two batches per point, so even the largest size has a spread to report.
        n_batches = max(2, math.ceil(len(prompts) / b))
        for i in range(n_batches):
            batch = [prompts[(i * b + j) % len(prompts)] for j in range(b)]
            sent = time.perf_counter()
            yield from run_batch(backend, batch, [sent] * b, ctx)
