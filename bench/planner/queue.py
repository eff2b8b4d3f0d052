"""Discrete-event simulation of replicas as static-batching servers (the concurrency scenario's server).

Each replica is FIFO: when idle and its queue is not empty it takes up to `max_batch` waiting
requests, runs them as one static batch to completion (every row is held until the longest is
done), then takes the next. A dispatcher puts each arrival on a replica as the gateway would:
`random` (a uniform pick per request: LiteLLM's default `simple-shuffle` with equal weights),
`least-busy` (fewest requests queued or in service: LiteLLM's `least-busy`; `jsq`, join the
shortest queue, is the same rule) or `round-robin`. Every request's TTFT and E2EL include its
time in the queue; TPOT does not (DESIGN.md's definition).
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal, Protocol, Sequence

import numpy as np

Policy = Literal["random", "least-busy", "jsq", "round-robin"]
POLICIES: tuple[str, ...] = ("random", "least-busy", "jsq", "round-robin")
DEFAULT_POLICY: Policy = "random"  # what LiteLLM does unless told otherwise (simple-shuffle)
# The LiteLLM router `routing_strategy` each policy stands for, and back.
GATEWAY_STRATEGY = {"random": "simple-shuffle", "least-busy": "least-busy", "jsq": "least-busy", "round-robin": None}
_FROM_GATEWAY = {"simple-shuffle": "random", "least-busy": "least-busy"}


def policy_for_strategy(strategy: str | None) -> Policy:
    """The simulated policy for a LiteLLM `routing_strategy` (None: LiteLLM's default, simple-shuffle)."""
    got = _FROM_GATEWAY.get(strategy or "simple-shuffle")
    if got is None:
        raise ValueError(f"no simulated policy for the gateway routing strategy {strategy!r} "
                         f"(known: {', '.join(_FROM_GATEWAY)})")
    return got  # type: ignore[return-value]


class Service(Protocol):
    def serve(self, prompts: Sequence[float], outputs: Sequence[int]) -> tuple[float, list[float], float, float]:
        """(TTFT offset s, per-row last-token offsets s, batch duration s, first decode step ms)."""


class Scaler(Protocol):
    """A scaling policy the simulators consult at every arrival (autoscale.py): replicas 0..k-1 serve."""

    def serving(self, i: int, t: float, depth: Callable[[], int]) -> int:
        """How many replicas serve when request i arrives at t (1..replicas); `depth()` is the requests
        queued or in service on all replicas just before it is routed."""


@dataclass
class Requests:
    """Arrival times (seconds from the start) and token lengths of the requests to simulate."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __post_init__(self) -> None:
        self.arrival_s = np.asarray(self.arrival_s, float)
        self.prompt_tokens = np.asarray(self.prompt_tokens, float)
        self.output_tokens = np.asarray(self.output_tokens, np.int64)

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0

    @property
    def mean_rps(self) -> float:
        return (len(self) - 1) / self.duration_s if self.duration_s > 0 else float("inf")


def poisson_requests(rate: float, n: int, prompts: np.ndarray, outputs: np.ndarray, seed: int = 0) -> Requests:
    """n Poisson arrivals at `rate` req/s, with (prompt, output) pairs drawn from the given lengths."""
    if len(prompts) != len(outputs) or not len(prompts):
        raise ValueError("prompt and output lengths must be paired and not empty")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=n))
    pick = rng.integers(0, len(prompts), size=n)
    return Requests(arrivals, np.asarray(prompts)[pick], np.asarray(outputs)[pick])


@dataclass
class SimResult:
    """Per-request latencies (ms) and per-replica busy time of one simulation."""

    ttft_ms: np.ndarray
    e2el_ms: np.ndarray
    tpot_ms: np.ndarray  # NaN for single-token outputs (undefined)
    queue_ms: np.ndarray
    batch_size: np.ndarray
    replica: np.ndarray
    busy_s: np.ndarray
    window_s: float
    replicas: int

    def stats(self, metric: str) -> dict:
        """p50/p90/p95/p99/mean of one metric over the requests where it is defined."""
        values = getattr(self, metric)
        values = values[~np.isnan(values)]
        if values.size == 0:
            return {}
        p = np.percentile(values, [50, 90, 95, 99])
        return {"p50": float(p[0]), "p90": float(p[1]), "p95": float(p[2]), "p99": float(p[3]), "mean": float(values.mean())}

    def percentile(self, metric: str, q: float) -> float:
        values = getattr(self, metric)
        values = values[~np.isnan(values)]
        return float(np.percentile(values, q)) if values.size else 0.0

    @property
    def utilization(self) -> float:
        """Mean share of the window the replicas spent serving batches."""
        return float(self.busy_s.sum() / (self.replicas * self.window_s)) if self.window_s > 0 else 0.0


def simulate(reqs: Requests, service: Service, replicas: int = 1, max_batch: int = 8, policy: Policy = "jsq",
             seed: int = 0, scaler: Scaler | None = None) -> SimResult:
    """Run the requests (sorted by arrival) through `replicas` static-batching servers (a served
    engine's ContinuousModel: continuous-batching servers of `max_batch` slots, continuous.py).

    When the service carries `duration_ratios` (measured / modelled batch durations), each batch's
    timing is scaled by one drawn at random (seeded: the same draws for every replica count); with
    an `idle_penalty`, a batch that starts after the replica sat idle draws from its factors instead.
    With a `scaler`, `replicas` is the most there can be and the dispatcher routes each arrival only
    to the first `scaler.serving(...)` of them; a replica taken out of service finishes its queue.
    """
    if getattr(service, "continuous", False):  # a served engine: max_batch is its --parallel slots
        from llmbench.planner.continuous import simulate_continuous

        return simulate_continuous(reqs, service, replicas, max_batch, policy, seed, scaler)  # type: ignore[arg-type]
    if replicas < 1 or max_batch < 1:
        raise ValueError("replicas and max_batch must be at least 1")
    if policy not in POLICIES:
        raise ValueError(f"unknown routing policy {policy!r} (known: {', '.join(POLICIES)})")
    arr = reqs.arrival_s.tolist()
    prompt = reqs.prompt_tokens.tolist()
    out = reqs.output_tokens.tolist()
    n = len(arr)
    ttft = [0.0] * n
    e2el = [0.0] * n
    qdel = [0.0] * n
    bsize = [0] * n
    where = [0] * n
    queues = [deque() for _ in range(replicas)]
    busy = [False] * replicas
    inflight = [0] * replicas
    busy_s = [0.0] * replicas
    # Join-shortest-queue key: (queued + in service) * replicas + rotating tie-break, so one argmin
    # picks the least-loaded replica and spreads ties round the replicas as a gateway would.
    load = np.zeros(replicas, np.int64)
    ids = np.arange(replicas, dtype=np.int64)
    key = np.empty(replicas, np.int64)
    ends: list[tuple[float, int]] = []  # (batch end, replica)
    serve = service.serve
    rng = np.random.default_rng(seed)
    ratios = getattr(service, "duration_ratios", ())
    scale = rng.choice(np.asarray(ratios), size=n).tolist() if len(ratios) and n else None
    penalty = getattr(service, "idle_penalty", None)
    after_idle = rng.random(n).tolist() if penalty is not None and n else None  # uniform picks into a gap bin
    batches = [0]
    last_end = [-math.inf] * replicas  # the first batch of a replica also follows an idle spell

    def start(r: int, t: float) -> None:
        q = queues[r]
        take = [q.popleft() for _ in range(min(max_batch, len(q)))]
        first, offsets, duration, _ = serve([prompt[i] for i in take], [out[i] for i in take])
        k = batches[0]
        batches[0] += 1
        if after_idle is not None and t - last_end[r] > penalty.idle_s:
            factors = penalty.bin_of(t - last_end[r])
            f = factors[int(after_idle[k] * len(factors))]
        else:
            f = scale[k] if scale is not None else 1.0
        if f != 1.0:
            first, duration, offsets = first * f, duration * f, [x * f for x in offsets]
        last_end[r] = t + duration
        b = len(take)
        for i, off in zip(take, offsets):
            a = arr[i]
            qdel[i] = t - a
            ttft[i] = t + first - a
            e2el[i] = t + off - a
            bsize[i] = b
            where[i] = r
        inflight[r] = b
        busy[r] = True
        busy_s[r] += duration
        heapq.heappush(ends, (t + duration, r))

    def finish_until(t: float) -> None:
        while ends and ends[0][0] <= t:
            end, r = heapq.heappop(ends)
            load[r] -= inflight[r] * replicas
            inflight[r] = 0
            busy[r] = False
            if queues[r]:
                start(r, end)

    jsq = policy in ("jsq", "least-busy")
    # Random picks from their own stream, one uniform per request whatever the replica count, so
    # that counts are compared on the same picks (common random numbers).
    picks = np.random.default_rng([seed, 1]).random(n).tolist() if policy == "random" else None
    depth = lambda: int(load.sum()) // replicas  # noqa: E731 (asked only by a queue-depth policy)
    for i in range(n):
        t = arr[i]
        finish_until(t)
        k = replicas if scaler is None else scaler.serving(i, t, depth)
        if jsq and k > 1:
            kk = key[:k]
            np.subtract(ids[:k], i, out=kk)
            np.remainder(kk, k, out=kk)
            kk += load[:k]
            r = int(kk.argmin())
        elif picks is not None:
            r = int(picks[i] * k)
        else:
            r = i % k
        queues[r].append(i)
        load[r] += replicas
        if not busy[r]:
            start(r, t)
    finish_until(float("inf"))

    e2 = np.array(e2el) * 1e3
    tt = np.array(ttft) * 1e3
    outs = np.asarray(out, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(outs > 1, (e2 - tt) / (outs - 1), np.nan)
    # A batch ends with its longest row's last token, so the last E2EL closes the window.
    window = float((np.asarray(arr) + np.asarray(e2el)).max() - arr[0]) if n else 0.0
    return SimResult(tt, e2, tpot, np.array(qdel) * 1e3, np.array(bsize), np.array(where), np.array(busy_s), window, replicas)
