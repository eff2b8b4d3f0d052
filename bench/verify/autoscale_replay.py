"""`verify --load TRACE --autoscale`: the chosen autoscaling policy, run for real on a replayed trace.

The policy in deployment.yaml's `autoscaling:` block (written by `plan --trace --autoscale`) is
simulated on exactly the arrivals sent (the planner's model of the deployment, as for any verify
prediction); its decisions (scale to N at time t) are then carried out on the real clock: real
llama-server replicas started (billed from their spawn, serving once /health answers) and stopped
(taken out of routing at once, stopped when their requests are done). Requests go to the serving
replicas only, the least busy first: what a Kubernetes Service in front of the HPA's pods does. The
LiteLLM proxy is left out of this replay (it would send requests to the stopped replicas' entries
and cool them down); its own cost is what the plain `verify` measures.

Compared: SLO attainment (share of requests meeting every SLO; a failed request meets none) and
replica-seconds (provisioned replicas from the first arrival to the last completion), simulated
against measured, with each real cold start beside the one the policy assumed.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from llmbench.engines.llamacpp.server import free_port
from llmbench.errors import BadInput
from llmbench.planner.autoscale import Controller, Knobs, simulate_policy
from llmbench.served.client import StreamClient
from llmbench.served.loop import run as run_loop, sleep_until
from llmbench.slo import SLO
from llmbench.verify.compare import failures_by_kind
from llmbench.verify.deploy import DeployedServer, engine_for, resolve_server
from llmbench.verify.load import LEAD_S, POOL, Arrival, make_backend
from llmbench.verify.spec import Deployment

START_TIMEOUT_S = 120.0


def simulated(run_dir: Path, dep: Deployment, arrivals: list[Arrival], knobs: Knobs, slos: list[SLO],
              strategy: str | None) -> tuple[dict, list[tuple[float, int]]]:
    """(the policy's simulated figures on these arrivals, its decisions: (seconds after the start, replicas))."""
    from llmbench.planner.queue import policy_for_strategy
    from llmbench.verify.predict import fitted_service, requests_of

    service = fitted_service(run_dir, dep)
    if service is None:
        raise BadInput(f"{run_dir}: no measured rows of {dep.option} to simulate its policy on")
    reqs = requests_of(arrivals)
    ctl = Controller(knobs, reqs)
    figures, _ = simulate_policy(knobs, reqs, service, dep.parallel, policy_for_strategy(strategy), slos, 0.0, 0.0,
                                 controller=ctl)
    return figures, list(ctl.events)


@dataclass
class _Replica:
    server: DeployedServer
    state: str = "idle"  # idle, starting, serving, draining, stopped; "cancelled" while a start is undone
    spans: list = field(default_factory=list)  # [spawned, stopped or None] per start: what is billed
    ready: float = 0.0
    inflight: int = 0


def _argv_on(argv: list[str], port: int) -> list[str]:
    out = list(argv)
    out[out.index("--port") + 1] = str(port)
    return out


class _Pool:
    """Up to max_replicas servers of one deployment, started and stopped as the decisions say."""

    def __init__(self, dep: Deployment, size: int, log_dir: Path):
        engine = engine_for(resolve_server(dep.replicas[0].argv[0]))
        ports = [r.port for r in dep.replicas][:size]
        ports += [free_port() for _ in range(size - len(ports))]
        argv = dep.replicas[0].argv
        self.replicas = [_Replica(DeployedServer(_argv_on(argv, p), p, log_dir / f"{dep.served_name}-{p}.log", engine))
                         for p in ports]
        self.tasks: set[asyncio.Task] = set()
        self.cold_starts: list[float] = []  # spawn to /health 200 of each replica the decisions started
        # Each scale-up as carried out: when, how many processes it spawned, the cold start of each that came up.
        self.ups: list[dict] = []

    def provisioned(self) -> list[_Replica]:
        return [r for r in self.replicas if r.state in ("starting", "serving")]

    def serving(self) -> list[_Replica]:
        return [r for r in self.replicas if r.state == "serving"]

    async def _start(self, r: _Replica, up: dict) -> None:
        r.state = "starting"
        r.spans.append([time.perf_counter(), None])
        try:
            await asyncio.to_thread(r.server.start, START_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a start that failed is reported, not a scale-up carried out
            up["failed"].append(str(exc)[:300])
            r.state, r.spans[-1][1] = "stopped", time.perf_counter()
            return
        r.ready = time.perf_counter()
        self.cold_starts.append(r.ready - r.spans[-1][0])
        up["came_up"].append(self.cold_starts[-1])
        if r.state == "cancelled":
            await self._stop(r)
        else:
            r.state = "serving"

    async def _drain(self, r: _Replica) -> None:
        r.state = "draining"
        while r.inflight:
            await asyncio.sleep(0.05)
        await self._stop(r)

    async def _stop(self, r: _Replica) -> None:
        await asyncio.to_thread(r.server.stop)
        r.state, r.spans[-1][1] = "stopped", time.perf_counter()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def scale_to(self, n: int) -> None:
        """As the simulated controller does: start the missing ones, or cancel the latest starters
        before taking the latest serving replicas out of service."""
        have = self.provisioned()
        if n > len(have):
            idle = [r for r in self.replicas if r.state in ("idle", "stopped")][: n - len(have)]
            if idle:
                self.ups.append({"at": time.perf_counter(), "spawned": len(idle), "came_up": [], "failed": []})
            for r in idle:
                self._spawn(self._start(r, self.ups[-1]))
            return
        drop = len(have) - n
        for r in sorted((r for r in have if r.state == "starting"), key=lambda r: -r.spans[-1][0])[:drop]:
            r.state, drop = "cancelled", drop - 1
        for r in sorted(self.serving(), key=lambda r: -r.ready)[:max(0, drop)]:
            self._spawn(self._drain(r))

    def start_now(self, n: int) -> None:
        """The count the trace starts with, as if it had been running: started and ready before t = 0."""
        for r in self.replicas[:n]:
            r.spans.append([time.perf_counter(), None])
            r.server.start(START_TIMEOUT_S)
            r.state, r.ready = "serving", time.perf_counter()

    def replica_seconds(self, first: float, end: float) -> float:
        """Provisioned (starting or serving) time of every replica between `first` and `end`."""
        return sum(max(0.0, min(b or end, end) - max(a, first)) for r in self.replicas for a, b in r.spans)

    def stop_all(self) -> None:
        for r in self.replicas:
            r.server.stop()


def _attainment(outcomes: list[tuple[float, object]], slos: list[SLO]) -> float:
    """Share of requests meeting every SLO limit (a failed one meets none; TPOT undefined never fails)."""
    good = 0
    for due, res in outcomes:
        if not res.ok or not res.chunk_times:
            continue
        ttft, e2el = (res.chunk_times[0] - due) * 1e3, (res.chunk_times[-1] - due) * 1e3
        tpot = (e2el - ttft) / (res.output_tokens - 1) if res.output_tokens > 1 else float("nan")
        itl = np.diff(res.chunk_times) * 1e3 if len(res.chunk_times) > 1 else np.array([np.nan])
        values = {"ttft": [ttft], "e2el": [e2el], "tpot": [tpot], "itl": itl}
        good += all(not (np.asarray(values[s.metric]) > s.limit_ms).any() for s in slos)
    return good / len(outcomes) if outcomes else 1.0


async def _drive(pool: _Pool, dep: Deployment, arrivals: list[Arrival], events: list[tuple[float, int]],
                 tok, timeout_s: float) -> tuple[list, float]:
    client = StreamClient(POOL, timeout_s)
    start = time.perf_counter() + LEAD_S
    t0 = arrivals[0].at  # the simulated decisions' clock starts at the first arrival
    outcomes: list = []
    backends = {id(r): make_backend(r.server.url, dep.served_name, tok, timeout_s) for r in pool.replicas}

    async def decide() -> None:
        for at, n in events[1:]:
            await sleep_until(start + at)
            pool.scale_to(n)

    async def one(a: Arrival, due: float) -> None:
        while not pool.serving():  # only while a replacement starts: the request waits, as behind a Service
            await asyncio.sleep(0.01)
        r = min(pool.serving(), key=lambda x: x.inflight)
        r.inflight += 1
        try:
            res = await backends[id(r)].send(client, a.prompt)
        finally:
            r.inflight -= 1
        outcomes.append((due, res))

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(decide())
            for a in arrivals:
                due = start + a.at
                await sleep_until(due)
                tg.create_task(one(a, due))
        while pool.tasks:  # scale-downs still draining
            await asyncio.gather(*list(pool.tasks))
    finally:
        await client.aclose()
    return outcomes, start + t0


def replay(run_dir: Path, dep: Deployment, arrivals: list[Arrival], knobs: Knobs, slos: list[SLO], strategy: str | None,
           tok, timeout_s: float, log_dir: Path, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Simulate the policy on `arrivals`, carry out its decisions with real replicas; both sets of figures."""
    sim, events = simulated(run_dir, dep, arrivals, knobs, slos, strategy)
    pool = _Pool(dep, knobs.max_replicas, log_dir)
    progress(f"autoscale replay: {len(arrivals)} requests, {events[0][1]} replica(s) at the start, "
             f"{len(events) - 1} scaling decision(s) from the simulation")
    try:
        pool.start_now(events[0][1])
        outcomes, first = run_loop(_drive(pool, dep, arrivals, events, tok, timeout_s))
    finally:
        pool.stop_all()
    end = max((res.end for _, res in outcomes), default=first)
    rs = pool.replica_seconds(first, end)
    cold = pool.cold_starts
    e2el = [(res.chunk_times[-1] - due) * 1e3 for due, res in outcomes if res.ok and res.chunk_times]
    measured = {"slo_attainment": _attainment(outcomes, slos), "replica_seconds": rs, "window_s": end - first,
                "e2el_p95_ms": float(np.percentile(e2el, 95)) if e2el else None,  # of the answered requests
                "requests": len(outcomes), "ok": sum(res.ok for _, res in outcomes),
                "errors": failures_by_kind(res for _, res in outcomes),
                # Counted from the pool: a scale-up is one whose spawned servers answered /health.
                "scale_ups": sum(1 for u in pool.ups if u["came_up"]),
                "scale_up_starts": [{"at_s": u["at"] - first, "spawned": u["spawned"], "cold_starts_s": u["came_up"],
                                     "failed": u["failed"]} for u in pool.ups],
                "cold_starts_s": cold,
                "replicas": [{"port": r.server.port, "starts": len(r.spans)} for r in pool.replicas]}
    return {
        "policy": {k: getattr(knobs, k) for k in ("kind", "min_replicas", "max_replicas", "interval_s", "cooldown_s",
                                                  "cold_start_s", "token_budget", "depth_target")},
        "slo": [str(s) for s in slos], "decisions": [{"at_s": round(t - events[0][0], 3), "replicas": n} for t, n in events],
        "simulated": {k: sim[k] for k in ("slo_attainment", "replica_seconds", "window_s", "e2el_p95_ms", "scale_ups", "scale_downs",
                                          "peak_replicas", "requests")},
        "measured": measured,
        "attainment_error": measured["slo_attainment"] - sim["slo_attainment"],
        "replica_seconds_error": (rs / sim["replica_seconds"] - 1.0) if sim["replica_seconds"] else None,
        "routing": "client-side to serving replicas, least busy first (a Service in front of the pods); no proxy",
    }
