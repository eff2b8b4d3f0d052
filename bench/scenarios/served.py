"""Load on a served backend: closed-loop clients or open-loop arrivals, streamed over HTTP.

One cell runs an asyncio event loop in a background thread; the runner's thread iterates the
Driver and gets each record as soon as its request completes (a queue between the two), so every
measured request is logged at once and a resume keeps it. Closing the iterator (Ctrl-C, or a
failure in the runner) cancels the requests in flight and joins the thread; an exception in the
loop is raised again in the runner's thread and fails the cell.

The warm-up runs first on the same connection pool and loop (closed loop, nothing recorded), so
no measured request pays for opening a connection or the pool's first use.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

from llmbench.records import RequestRecord
from llmbench.monitor.log_workload import arrival_offsets
from llmbench.scenarios.arrivals import arrival_gaps
from llmbench.scenarios.served_gate import CountGate, SamplerGate
from llmbench.served.loop import run as run_loop, sleep_until

# An open-loop request is sent at its arrival time whatever is in flight: the client's pool must
# never hold it back (queueing is the server's), so it gets at least this many connections.
OPEN_LOOP_POOL = 256
# A send this far behind its scheduled time is counted late (the loop's timers wake within ~1 ms).
LATE_S = 2e-3
_JOIN_S = 30.0  # cancelled streams close within this; the thread is a daemon in any case


@dataclass(frozen=True)
class Load:
    """How requests go out: `clients` closed-loop clients, or open-loop arrivals at `rate` per second."""

    clients: int | None = None
    rate: float | None = None
    arrivals: str = "poisson"
    seed: int = 0
    parallel: int = 1

    def pool(self) -> int:
        """Connections the client may open at once."""
        return self.clients if self.clients is not None else max(self.parallel, OPEN_LOOP_POOL)


@dataclass(frozen=True)
class Warmup:
    """Unrecorded requests sent before measuring: `count` of `prompts` from `clients` closed-loop clients."""

    prompts: list
    count: int
    clients: int


@dataclass
class _Phase:
    """Warm-up or measurement: what is sent, until when, and whether it is recorded."""

    prompts: list
    gate: CountGate | SamplerGate
    record: bool
    sent: int = 0

    def next_prompt(self):
        prompt = self.prompts[self.sent % len(self.prompts)]
        self.sent += 1
        return prompt


_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Driver:
    """One cell's load on a served backend; iterate it for the records, in completion order."""

    def __init__(self, backend, prompts: list, ctx, load: Load, sampler, warmup: Warmup | None = None):
        self.backend, self.ctx, self.load, self.warmup = backend, ctx, load, warmup
        self.sampler = sampler
        self.measured = _Phase(prompts, SamplerGate(sampler), record=True)
        self.in_flight = 0
        self.max_in_flight = 0
        self.late = 0
        self.max_lag_s = 0.0
        self._queue: queue.Queue = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._started = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._thread_main, name=f"llmbench-load-{ctx.point.label}", daemon=True)

    @property
    def sent(self) -> int:
        """Measured requests sent so far."""
        return self.measured.sent

    def facts(self) -> dict:
        """Cell facts for run.json: how late the open loop's sends were."""
        if self.load.rate is None:
            return {}
        return {"late_sends": self.late, "max_send_lag_ms": self.max_lag_s * 1e3}

    # ---- the runner's side ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[RequestRecord]:
        self._thread.start()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.2)  # a timeout keeps Ctrl-C prompt
                except queue.Empty:
                    continue
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
        finally:
            self.stop()

    def stop(self) -> None:
        """Cancel what is in flight and wait for the loop's thread to end."""
        self._stopping = True
        if self._thread.is_alive() and self._started.wait(_JOIN_S):
            loop, task = self._loop, self._task
            if loop is not None and task is not None:
                try:
                    loop.call_soon_threadsafe(task.cancel)
                except RuntimeError:  # the loop closed meanwhile: nothing left to cancel
                    pass
        if self._thread.ident is not None:
            self._thread.join(_JOIN_S)

    # ---- the loop's side -----------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            run_loop(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to the runner's thread
            self._started.set()
            self._queue.put(_Failed(_first_cause(exc)))
        else:
            self._queue.put(_DONE)

    async def _main(self) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        self._started.set()
        if self._stopping:
            return
        client = self.backend.open_client(self.load.pool())
        try:
            if self.warmup is not None and self.warmup.count > 0:
                w = self.warmup
                await self._closed_loop(client, _Phase(w.prompts, CountGate(w.count), record=False), w.clients)
                self.sampler.start = time.perf_counter()  # the cell's duration counts from here
            if self.load.clients is not None:
                await self._closed_loop(client, self.measured, self.load.clients)
            else:
                await self._open_loop(client, self.measured)
        finally:
            await _close(client)

    async def _closed_loop(self, client, phase: _Phase, clients: int) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(clients):
                tg.create_task(self._client(client, phase))

    async def _client(self, client, phase: _Phase) -> None:
        """One closed-loop client: its next request goes out the moment its previous one ends."""
        while await phase.gate.more(phase.sent):
            prompt = phase.next_prompt()
            await self._request(client, phase, prompt, None)  # closed loop: from the send

    async def _open_loop(self, client, phase: _Phase) -> None:
        """Arrivals on a fixed schedule, each sent at its time whatever is still in flight."""
        gaps = self._gaps(phase)
        due = time.perf_counter() + next(gaps)
        async with asyncio.TaskGroup() as tg:
            while True:
                await sleep_until(due)
                if not await phase.gate.more(phase.sent):
                    break
                lag = time.perf_counter() - due
                self.max_lag_s = max(self.max_lag_s, lag)
                self.late += lag > LATE_S
                tg.create_task(self._request(client, phase, phase.next_prompt(), due))
                due += next(gaps)

    def _gaps(self, phase: _Phase):
        """The open loop's gaps between arrivals (a hook: a distributed generator sends every K-th of them)."""
        offsets = arrival_offsets(phase.prompts) if self.load.arrivals == "log" else None
        return arrival_gaps(self.load.arrivals, float(self.load.rate), self.load.seed, offsets)

    async def _request(self, client, phase: _Phase, prompt, arrived: float | None) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            res = await self.backend.send(client, prompt)
        finally:
            self.in_flight -= 1
        if not phase.record:
            return
        rec = _to_record(res, prompt, arrived, self.ctx)
        if self.load.rate is not None:
            # Open loop: latency counts from the scheduled arrival; a late send is the client's
            # delay, not a queue at the server, so it is counted in the cell's facts instead.
            rec.queue_ms = 0.0
        phase.gate.add(rec)
        self._queue.put(rec)


def _to_record(res, prompt, arrived: float | None, ctx) -> RequestRecord:
    from llmbench.served.client import to_record  # the CLIENT part: imported when first used

    return to_record(res, prompt, arrived, ctx)


def _first_cause(exc: BaseException) -> BaseException:
    """The first real exception inside a task group's exception group (its message says what failed)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _close(client: Any) -> None:
    """Close a client pool however it offers to be closed."""
    if hasattr(client, "aclose"):
        await client.aclose()
    elif hasattr(client, "close") and asyncio.iscoroutinefunction(client.close):
        await client.close()
    elif hasattr(client, "__aexit__"):
        await client.__aexit__(None, None, None)
