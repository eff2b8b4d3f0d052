"""One request at a time, as MLPerf's SingleStream: latency without queueing or batching."""
from __future__ import annotations

from llmbench.scenarios.base import Point, UnitScenario


class SingleStreamScenario(UnitScenario):
    kind = "single-stream"

    def points(self) -> list[Point]:
        return [Point("single")]

    def pass_size(self, prompts, point) -> int:
        return len(prompts)

    def unit(self, prompts, point, i):
        return [prompts[i % len(prompts)]]
