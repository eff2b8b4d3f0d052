"""What a scenario is: a set of load points, each turning prompts into request records."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Iterator

from llmbench.backends.base import Backend, Generation
from llmbench.errors import BadInput
from llmbench.records import RequestRecord
from llmbench.scenarios.sampling import Sampler, Sampling
from llmbench.scenarios.served import Driver, Load, Warmup
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
    # The most requests the point can have in flight at once: what sizes a server's --parallel.
    parallel: int = 1


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


def check_outputs(batch: list[Prompt]) -> None:
    """A request must ask for at least one output token (TTFT and E2EL need one)."""
    for p in batch:
        if p.output_tokens < 1:
            raise BadInput(f"a request asks for {p.output_tokens} output tokens; every request needs at least 1")


def to_records(gen: Generation, batch: list[Prompt], arrivals: list[float], ctx: CellContext) -> list[RequestRecord]:
    """Per-row request records from one static batch (each row ends at its own last token)."""
    busy = gen.end - gen.start
    records = []
    batch_id = None
    for row, (prompt, arrived) in enumerate(zip(batch, arrivals)):
        n = prompt.output_tokens
        times = gen.token_times[:n]
        rid = ctx.next_id()
        batch_id = rid if batch_id is None else batch_id
        records.append(
            RequestRecord(
                timestamp=arrived + _WALL_OFFSET,
                run_id=ctx.run_id,
                model=ctx.model,
                variant=ctx.variant,
                scenario=ctx.scenario,
                point=ctx.point.label,
                request_id=rid,
                prompt_tokens=len(prompt.ids),
                output_tokens=n,
                ttft_ms=(times[0] - arrived) * 1e3,
                e2el_ms=(times[-1] - arrived) * 1e3,
                itl_ms=[(b - a) * 1e3 for a, b in zip(times, times[1:])],
                queue_ms=max(0.0, (gen.start - arrived) * 1e3),
                batch_size=len(batch),
                batch_id=batch_id,
                cost=ctx.usd_per_second * busy / len(batch),
                prompt_length=prompt.length_chars,
                template=prompt.template,
                template_version=prompt.template_version,
                dataset=prompt.dataset,
                prompt=prompt.recorded_text,
                prompt_sha256=prompt.sha256,
                usage_source="engine",  # in-process: exact counts from generate
            )
        )
    return records


def run_batch(backend: Backend, batch: list[Prompt], arrivals: list[float], ctx: CellContext) -> list[RequestRecord]:
    """Send one static batch and turn it into records."""
    check_outputs(batch)
    gen = backend.generate([p.ids for p in batch], max(p.output_tokens for p in batch))
    return to_records(gen, batch, arrivals, ctx)


class Scenario(ABC):
    """A kind of load. Subclasses list their points and send units (batches) of requests at a point."""

    kind: ClassVar[str]

    def __init__(self, config) -> None:
        self.config = config

    @abstractmethod
    def points(self) -> list[Point]:
        """The load points this scenario measures, in order."""

    @abstractmethod
    def pass_size(self, prompts: list[Prompt], point: Point) -> int:
        """Requests in one pass over the prompts at `point` (`iterations` counts passes)."""

    @abstractmethod
    def stream(self, backend: Backend, prompts: list[Prompt], ctx: CellContext, sampler: Sampler) -> Iterator[RequestRecord]:
        """Send requests at ctx.point while `sampler.more(sent)` says so, yielding records as they complete."""

    def warmup_batch(self, point: Point) -> int:
        """The largest batch the point can form: warm-up runs at that size (allocator peaks, kernels)."""
        return point.batch_size

    def served_load(self, point: Point) -> Load | None:
        """The load shape of `point` on a served backend; None where a point has no meaning for a
        server (static batches: a server batches continuously)."""
        if point.clients is not None:
            return Load(clients=point.clients, parallel=point.parallel)
        if point.rate is not None:
            return Load(rate=point.rate, arrivals=getattr(self.config, "arrivals", "poisson"),
                        seed=getattr(self, "seed", 0), parallel=point.parallel)
        return Load(clients=1)

    def resolve(self, point: Point, model: str, variant: str) -> Point:
        """The point as measured for one (model, variant): a sweep fills in rates from earlier cells."""
        return point

    def observe(self, point: Point, records: list[RequestRecord]) -> None:
        """Told the records of every completed cell (also those logged before a resume), in order."""

    def warmup(self, backend: Backend, prompts: list[Prompt], point: Point, count: int) -> int:
        """Run `count` unrecorded warm-up batches at the point's largest batch; returns requests sent.

        `warmup` in a config counts these batches (see RunConfig.warmup). On a served backend as
        many requests (at most 8 output tokens each) go out from `point.parallel` closed-loop
        clients, so every server slot has run once; they are sent at the start of measure(), on
        the connection pool the cell then measures with.
        """
        size = self.warmup_batch(point)
        self._served_warmup = None
        if getattr(backend, "served", False):
            short = [replace(p, output_tokens=max(1, min(8, p.output_tokens))) for p in prompts]
            check_outputs(short)
            self._served_warmup = Warmup(short, count * size, max(1, min(point.parallel, count * size)))
            return count * size
        for i in range(count):
            batch = [prompts[(i * size + j) % len(prompts)] for j in range(size)]
            check_outputs(batch)
            backend.generate([p.ids for p in batch], min(8, max(p.output_tokens for p in batch)))
        return count * size

    def measure(self, backend: Backend, prompts: list[Prompt], ctx: CellContext, sampling: Sampling) -> Iterator[RequestRecord]:
        """Records of one cell: at least `sampling.iterations` passes and `min_duration_s`, then until
        the p50 TPOT is known to `precision_pct` or `time_cap_s` has passed. `self.last_sampler`
        holds how it ended."""
        sampler = Sampler(sampling, self.pass_size(prompts, ctx.point))
        self.last_sampler = sampler
        self.last_facts = {"rate_rps": ctx.point.rate} if ctx.point.rate is not None else {}
        if getattr(backend, "served", False):
            load = self.served_load(ctx.point)
            if load is None:
                raise BadInput(f"{self.kind} {ctx.point.label} has no meaning for a served backend")
            check_outputs(prompts)
            driver = Driver(backend, prompts, ctx, load, sampler, getattr(self, "_served_warmup", None))
            self._served_warmup = None
            yield from driver
            self.last_facts.update(driver.facts())
            return
        yield from self.stream(backend, prompts, ctx, sampler)


class UnitScenario(Scenario):
    """A scenario whose requests go out as a fixed sequence of units (static batches), one after another."""

    @abstractmethod
    def unit(self, prompts: list[Prompt], point: Point, i: int) -> list[Prompt]:
        """The i-th unit (batch) of the endless sequence at `point`."""

    def stream(self, backend, prompts, ctx, sampler) -> Iterator[RequestRecord]:
        i = sent = 0
        while sampler.more(sent):
            batch = self.unit(prompts, ctx.point, i)
            records = run_batch(backend, batch, [time.perf_counter()] * len(batch), ctx)
            sampler.add(records)
            yield from records
            i += 1
            sent += len(batch)
