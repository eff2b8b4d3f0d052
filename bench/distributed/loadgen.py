"""One load generator of a distributed `endpoint:` cell: the project's served driver, run by a Ray actor.

A point's clients (or rate) are split across K generators on different nodes (`split_point`); each
generator sends its share with the same code a local run uses (llmbench.scenarios.served.Driver and
its StreamClient), starting at a moment the driver names on its own clock. Records are stamped on
the generator's clock; the driver measures that clock's offset (`clock`, see loadgroup) and moves
every timestamp onto its own. TTFT, ITL and E2EL are differences on one generator's clock, so the
offset never touches them.
"""
from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import replace

from llmbench.scenarios.base import Point
from llmbench.scenarios.sampling import Sampler
from llmbench.scenarios.served import Driver
from llmbench.served.loop import sleep_until

# Test only: "INDEX:SECONDS" shifts generator INDEX's clock (its records' timestamps too) by SECONDS,
# as a node whose clock is off would; the driver must measure it and take it out again.
SKEW_ENV = "LLMBENCH_TEST_CLOCK_SKEW"
SEND_EVERY_S = 0.25  # records go back to the driver in batches at most this far apart


def split_int(total: int, weights: list[float]) -> list[int]:
    """`total` shared out in proportion to `weights` (largest remainder): the shares add up to total."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    shares = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: shares[i] - exact[i])[: total - sum(shares)]:
        shares[i] += 1
    return shares


def split_point(point: Point, k: int) -> list[Point | None]:
    """Each generator's share of a point: clients split as evenly as whole clients go (None: no
    client for that generator). A rate point is every generator's whole: each one draws the local
    run's arrival schedule and sends its own every K-th arrival (`thinned`), so the merged stream
    is the local one. The label stays the point's: records merge into its cell."""
    if point.clients is not None:
        return [replace(point, clients=c, parallel=c, batch_size=min(point.batch_size, c)) if c else None
                for c in split_int(point.clients, [1.0] * k)]
    if point.rate is not None:
        return [point] * k
    return [point] + [None] * (k - 1)  # a point without a load shape (single stream) is one client's


def thinned(gaps: Iterator[float], index: int, k: int) -> Iterator[float]:
    """Gaps between arrivals index, index + k, index + 2k, ... of a schedule (the first: to arrival `index`).

    Splitting a fixed request count into K streams at r/K each would not do: the merged stream
    thins out at its end, as one generator finishes before another (about 10% fewer requests per
    second over the window at 64 requests, K = 2, seen here).
    """
    yield sum(next(gaps) for _ in range(index + 1))
    while True:
        yield sum(next(gaps) for _ in range(k))


def skew_s(index: int) -> float:
    """The test-only clock shift of generator `index` (0 unless SKEW_ENV names it)."""
    spec = os.environ.get(SKEW_ENV, "")
    which, _, seconds = spec.partition(":")
    return float(seconds) if spec and which.strip() == str(index) else 0.0


def fault_after(spec: str | None, index: int, point: str, attempt: int) -> int | None:
    """Test only: after how many requests generator `index` exits (os._exit) in this attempt of cell `point`.

    The spec (loadgroup.FAULT_ENV, handed on by the driver) is "INDEX:REQUESTS:POINT:ATTEMPTS",
    ATTEMPTS a comma-separated list (e.g. "1:3:clients=4:1,2": generator 1, 3 requests into both tries).
    """
    if not spec:
        return None
    which, requests, label, attempts = spec.split(":")
    hit = which == str(index) and label == point and str(attempt) in attempts.split(",")
    return int(requests) if hit else None


class _StartAt(Driver):
    """The served driver, holding its measured phase until `start_at` (perf_counter, this process)."""

    start_at: float = 0.0
    started: float | None = None
    share: tuple = (0, 1, None)  # this generator's index, K, and the cell's whole prompt list

    def _gaps(self, phase):
        index, k, prompts = self.share
        return thinned(super()._gaps(replace(phase, prompts=prompts)), index, k)

    async def _begin(self) -> None:
        await sleep_until(self.start_at)
        self.started = self.sampler.start = time.perf_counter()

    async def _closed_loop(self, client, phase, clients: int) -> None:
        if phase is self.measured:  # the warm-up runs before the barrier, on the same pool
            await self._begin()
        await super()._closed_loop(client, phase, clients)

    async def _open_loop(self, client, phase) -> None:
        await self._begin()
        await super()._open_loop(client, phase)


class LoadGenerator:
    """A Ray actor (see loadgroup): one endpoint candidate's backend, loaded once, and its cells' shares."""

    def __init__(self, index: int, prep, ci: int):
        from llmbench.backends.registry import backend_for
        from llmbench.scenarios import base
        from llmbench.workload import build_prompts

        self.index, self.prep = index, prep
        shift = skew_s(index)
        if shift:
            base._WALL_OFFSET += shift  # what records and clock() read: this whole process's wall clock
        cand = prep.config.candidates[ci]
        self.backend = backend_for("http")(prep.sources[ci], "http", prep.device, cand.dtype or prep.config.dtype,
                                           cand.trust_remote_code)
        self.backend.endpoint = cand.endpoint
        self.backend.load()  # the tokenizer, and the endpoint answering from this node
        self.prompts = build_prompts(prep.config.workload, self.backend.tokenizer, prep.config.seed)

    def node(self) -> dict:
        """Where this generator runs (the Ray node id, host, CPUs)."""
        from llmbench.distributed.worker import node_info

        return node_info()

    def prompt_count(self) -> int:
        """How many prompts the workload made (a pass's size counts them)."""
        return len(self.prompts)

    @staticmethod
    def clock() -> float:
        """This process's wall clock as records read it (perf_counter plus the offset fixed at import)."""
        from llmbench.scenarios import base

        return time.perf_counter() + base._WALL_OFFSET

    def measure(self, job: dict):
        """Ray streaming method: this generator's share of one cell, records in batches, facts last."""
        from llmbench.scenarios import base
        from llmbench.scenarios.base import CellContext
        from llmbench.trackers import CpuTracker

        scenario, point, k = job["scenario"], job["point"], job["generators"]
        prompts = self.prompts[self.index::k] or self.prompts  # together the generators send the local run's prompts
        ids = itertools.count()
        ctx = CellContext(job["run_id"], job["label"], job["variant"], scenario.kind, point, job["usd_per_second"],
                          next_id=lambda: next(ids))
        sampler = Sampler(job["sampling"], scenario.pass_size(prompts, point))
        sampler.min_requests = job["min_requests"]  # its share of the cell's, not a whole pass of its own
        scenario.warmup(self.backend, prompts, point, job["warmup"])
        load = scenario.served_load(point)
        driver = _StartAt(self.backend, prompts, ctx, load, sampler, getattr(scenario, "_served_warmup", None))
        driver.share = (self.index, k, self.prompts)
        driver.start_at = job["start_at"] - base._WALL_OFFSET  # the driver's moment, on this clock (see loadgroup)
        die_after = fault_after(job.get("fault"), self.index, point.label, job.get("attempt", 1))
        batch, last, n = [], time.monotonic(), 0
        with CpuTracker() as cpu:
            for rec in driver:
                batch.append(rec)
                n += 1
                if die_after is not None and n >= die_after:
                    os._exit(1)  # as a generator's process killed mid-cell would end
                if time.monotonic() - last >= SEND_EVERY_S:
                    yield {"records": batch}
                    batch, last = [], time.monotonic()
        started = None if driver.started is None else driver.started + base._WALL_OFFSET
        yield {"records": batch, "facts": {**driver.facts(), **sampler.outcome(), **cpu.load.as_row(),
                                           "sent": driver.sent, "max_in_flight": driver.max_in_flight,
                                           "started": started}}
