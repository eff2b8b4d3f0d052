"""N closed-loop clients, or Poisson arrivals at a fixed rate, against one model instance.

The instance is a static-batching server: it takes up to `max_batch` waiting requests, runs them
to completion, then takes the next. Time spent waiting in the queue counts in TTFT and E2EL,
as a user would feel it. Everything runs on one thread on the real clock, so there is no
client-side overhead to subtract.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Iterator

import numpy as np

from llmbench.scenarios.base import CellContext, Point, Scenario, run_batch


class ConcurrencyScenario(Scenario):
    kind = "concurrency"

    def __init__(self, config, seed: int = 0) -> None:
        super().__init__(config)
        self.seed = seed

    def points(self) -> list[Point]:
        mb = self.config.max_batch
        pts = [Point(f"clients={c}", batch_size=min(c, mb), clients=c) for c in self.config.clients]
        pts += [Point(f"rate={r:g}", batch_size=1, rate=r) for r in self.config.rates]
        return pts

    def one_pass(self, backend, prompts, ctx: CellContext) -> Iterator:
        if ctx.point.clients is not None:
            yield from self._closed_loop(backend, prompts, ctx)
        else:
            yield from self._open_loop(backend, prompts, ctx)

    def _closed_loop(self, backend, prompts, ctx) -> Iterator:
        clients = ctx.point.clients
        total = max(len(prompts), clients)
        now = time.perf_counter()
        queue = deque((prompts[i % len(prompts)], now) for i in range(clients))
        sent = clients
        while queue:
            take = [queue.popleft() for _ in range(min(self.config.max_batch, len(queue)))]
            records = run_batch(backend, [p for p, _ in take], [t for _, t in take], ctx)
            yield from records
            # Each client whose request just finished sends its next one at once.
            finished = time.perf_counter()
            for _ in take:
                if sent < total:
                    queue.append((prompts[sent % len(prompts)], finished))
                    sent += 1

    def _open_loop(self, backend, prompts, ctx) -> Iterator:
        rng = np.random.default_rng(self.seed)
        gaps = rng.exponential(1.0 / ctx.point.rate, size=len(prompts))
        start = time.perf_counter()
        arrivals = list(start + np.cumsum(gaps))
        pending = deque(zip(prompts, arrivals))
        while pending:
            now = time.perf_counter()
            if pending[0][1] > now:
                time.sleep(pending[0][1] - now)
                now = time.perf_counter()
            take = []
            while pending and pending[0][1] <= now and len(take) < self.config.max_batch:
                take.append(pending.popleft())
            yield from run_batch(backend, [p for p, _ in take], [t for _, t in take], ctx)
