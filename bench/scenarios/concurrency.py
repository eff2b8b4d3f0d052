"""N closed-loop clients, or arrivals at a fixed rate (Poisson or constant), against one model instance.

The instance is a static-batching server: it takes up to `max_batch` waiting requests, runs them
to completion, then takes the next. Time spent waiting in the queue counts in TTFT and E2EL,
as a user would feel it. Everything runs on one thread on the real clock, so there is no
client-side overhead to subtract. (A served backend batches continuously itself: its points go
through the served driver instead, see base.Scenario.measure.)
"""
from __future__ import annotations

import time
from collections import deque
from typing import Iterator

from llmbench.monitor.log_workload import arrival_offsets
from llmbench.scenarios.arrivals import arrival_gaps
from llmbench.scenarios.base import CellContext, Point, Scenario, run_batch


class ConcurrencyScenario(Scenario):
    kind = "concurrency"

    def __init__(self, config, seed: int = 0) -> None:
        super().__init__(config)
        self.seed = seed
        # The in-process instance's largest static batch, and how a rate point's arrivals are spaced.
        self.max_batch = config.max_batch if config is not None else 1
        self.arrivals = getattr(config, "arrivals", "poisson")

    def points(self) -> list[Point]:
        mb = self.max_batch
        pts = [Point(f"clients={c}", batch_size=min(c, mb), clients=c, parallel=c) for c in self.config.clients]
        pts += [Point(f"rate={r:g}", batch_size=1, rate=r, parallel=mb) for r in self.config.rates]
        return pts

    def pass_size(self, prompts, point: Point) -> int:
        return max(len(prompts), point.clients or 0)

    def warmup_batch(self, point: Point) -> int:
        # A rate point's queue can fill a whole batch: warm up at the largest batch it may run.
        return point.batch_size if point.clients is not None else self.max_batch

    def stream(self, backend, prompts, ctx: CellContext, sampler) -> Iterator:
        if ctx.point.clients is not None:
            yield from self._closed_loop(backend, prompts, ctx, sampler)
        else:
            yield from self._open_loop(backend, prompts, ctx, sampler)

    def _closed_loop(self, backend, prompts, ctx, sampler) -> Iterator:
        clients = ctx.point.clients
        now = time.perf_counter()
        queue = deque((prompts[i % len(prompts)], now) for i in range(clients))
        sent = clients
        while queue:
            take = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
            records = run_batch(backend, [p for p, _ in take], [t for _, t in take], ctx)
            sampler.add(records)
            yield from records
            # Each client sends its next request the moment its own response ends (not when the
            # whole batch ends): rows with fewer tokens come back earlier and wait in the queue.
            ends = sorted(arrived + rec.e2el_ms / 1e3 for rec, (_, arrived) in zip(records, take))
            for end in ends:
                if not sampler.more(sent):
                    break
                queue.append((prompts[sent % len(prompts)], end))
                sent += 1

    def _open_loop(self, backend, prompts, ctx, sampler) -> Iterator:
        # One continuous arrival process for the whole point, however many passes it takes.
        gaps = arrival_gaps(self.arrivals, ctx.point.rate, self.seed, arrival_offsets(prompts))
        next_arrival = time.perf_counter() + next(gaps)
        pending: deque = deque()
        sent = 0
        while True:
            now = time.perf_counter()
            while next_arrival <= now and sampler.more(sent):
                pending.append((prompts[sent % len(prompts)], next_arrival))
                sent += 1
                next_arrival += next(gaps)
            if not pending:
                if not sampler.more(sent):
                    return
                time.sleep(max(0.0, next_arrival - time.perf_counter()))
                continue
            take = [pending.popleft() for _ in range(min(self.max_batch, len(pending)))]
            records = run_batch(backend, [p for p, _ in take], [t for _, t in take], ctx)
            sampler.add(records)
            yield from records
