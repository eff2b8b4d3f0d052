"""Static batches of 1, 2, 4, 8, ...: offline throughput and the latency it costs."""
from __future__ import annotations

import math

from llmbench.scenarios.base import Point, UnitScenario


class BatchScenario(UnitScenario):
    kind = "batch"

    def points(self) -> list[Point]:
        return [Point(f"batch={b}", batch_size=b, parallel=b) for b in self.config.batch_sizes]

    def served_load(self, point):
        return None  # a server batches continuously: a static batch has no meaning for it

    def pass_size(self, prompts, point) -> int:
        # At least two batches per pass, so even the largest size has a spread to report.
        return max(2, math.ceil(len(prompts) / point.batch_size)) * point.batch_size

    def unit(self, prompts, point, i):
        b = point.batch_size
        return [prompts[(i * b + j) % len(prompts)] for j in range(b)]
