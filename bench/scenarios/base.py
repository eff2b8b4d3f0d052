"""What a scenario is: a set of load points, each turning prompts into request records."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator

from llmbench.backends.base import Backend, Generation
from llmbench.records import RequestRecord
from llmbench.workload import Prompt

# perf_counter is the clock for intervals; records also carry wall-clock send times.
_WALL_OFFSET = time.time() - time.perf_counter()


@dataclass(frozen=True)
class Point:
    """One load point of a scenario: a label for results and its parameters."""

    label: str
    batch_size: int = 1
    clients: int | None = None
    rate: float | None = None


@dataclass
class CellContext:
    """Identity and prices shared by every record of one (model, variant, scenario, point) cell."""

    run_id: str
    model: str
    variant: str
    scenario: str
    point: Point
    usd_per_second: float
    next_id: Callable[[], int] = field(default=lambda: 0)


def to_records(gen: Generation, batch: list[Prompt], arrivals: list[float], ctx: CellContext) -> list[RequestRecord]:
    """Per-row request records from one static batch (each row ends at its own last token)."""
    busy = gen.end - gen.start
    records = []
    for row, (prompt, arrived) in enumerate(zip(batch, arrivals)):
        n = prompt.output_tokens
        times = gen.token_times[:n]
        records.append(
            RequestRecord(
                timestamp=round(arrived + _WALL_OFFSET, 6),
                run_id=ctx.run_id,
                model=ctx.model,
                variant=ctx.variant,
                scenario=ctx.scenario,
                point=ctx.point.label,
                request_id=ctx.next_id(),
                prompt_tokens=len(prompt.ids),
                output_tokens=n,
                ttft_ms=(times[0] - arrived) * 1e3,
                e2el_ms=(times[-1] - arrived) * 1e3,
                itl_ms=[round((b - a) * 1e3, 4) for a, b in zip(times, times[1:])],
                queue_ms=max(0.0, (gen.start - arrived) * 1e3),
                batch_size=len(batch),
                cost=ctx.usd_per_second * busy / len(batch),
                prompt_length=prompt.length_chars,
                template=prompt.template,
                template_version=prompt.template_version,
                dataset=prompt.dataset,
            )
        )
    return records


def run_batch(backend: Backend, batch: list[Prompt], arrivals: list[float], ctx: CellContext) -> list[RequestRecord]:
    """Send one static batch and turn it into records."""
    gen = backend.generate([p.ids for p in batch], max(p.output_tokens for p in batch))
    return to_records(gen, batch, arrivals, ctx)


class Scenario(ABC):
    """A kind of load. Subclasses list their points and run one pass of the prompts at a point."""

    kind: ClassVar[str]

    def __init__(self, config) -> None:
        self.config = config

    @abstractmethod
    def points(self) -> list[Point]:
        """The load points this scenario measures, in order."""

    @abstractmethod
    def one_pass(self, backend: Backend, prompts: list[Prompt], ctx: CellContext) -> Iterator[RequestRecord]:
        """Send the prompts once at ctx.point, yielding records as requests complete."""

    def warmup(self, backend: Backend, prompts: list[Prompt], point: Point, count: int) -> None:
        """Run `count` unrecorded batches of the point's batch size (first-call costs, allocator)."""
        for i in range(count):
            batch = [prompts[(i + j) % len(prompts)] for j in range(point.batch_size)]
            backend.generate([p.ids for p in batch], min(8, max(p.output_tokens for p in batch)))

    def measure(self, backend: Backend, prompts: list[Prompt], ctx: CellContext, iterations: int, min_duration_s: float) -> Iterator[RequestRecord]:
        """Passes over the prompts: at least `iterations`, and until `min_duration_s` has passed."""
        start = time.perf_counter()
        done = 0
        while done < iterations or time.perf_counter() - start < min_duration_s:
            yield from self.one_pass(backend, prompts, ctx)
            done += 1
