"""Autoscaling policies simulated on a trace's arrivals: what a policy costs and what it serves.

A policy keeps between `min_replicas` and `max_replicas` replicas. Every `interval_s` it looks at
the load and sets a desired count:
- `tokens`: the prompt + output tokens per second that arrived over the last `window_s`, over a
  per-replica token budget (the rate one replica sustains at the SLO x the mean tokens of a
  request x a headroom): the "token budget" a gateway or an HPA metric would scale on;
- `queue`: the requests queued or in service on all replicas, over a per-replica target depth
  (its slots x the `headroom` field, here a multiple: 1, 2 or 4 requests per slot);
- `schedule`: a count set ahead of time for each `interval_s` step, from the tokens per second the
  trace brings over the step once a replica started now is ready ([t + cold start, + interval]),
  over the token budget: a cron-style schedule learnt from the trace itself (from yesterday's
  traffic, in production), so an optimistic bound that a repeating daily profile can approach.
  It scales down at its step (no cool-down).
It starts with the count the first window's load asks for (a trace is a slice of a service already
running; a queue-depth policy starts at `min_replicas`). A replica asked for at a tick serves from
tick + `cold_start_s` (billed from the tick: it is starting); scaling down follows the highest desired count over the last `cooldown_s` (Kubernetes'
scale-down stabilisation window), so a load that stays put never flaps, and a replica still
starting is cancelled before a serving one is stopped. The dispatcher routes only to serving
replicas (queue.simulate's `scaler` hook); one taken out of service finishes its queue.

Billing: replica-seconds are the provisioned (starting or serving) replicas integrated from the
first arrival to the last completion; cost per month = their mean count x $/hour x the month's
hours, which for min = max = N is the fixed plan's N x $/hour x hours exactly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from llmbench.planner.queue import Policy, Requests, SimResult, simulate
from llmbench.planner.search import check_slos
from llmbench.slo import SLO

KINDS = ("tokens", "queue", "schedule")
BUDGETED = ("tokens", "schedule")  # the kinds that scale on a token budget


@dataclass(frozen=True)
class Knobs:
    """One policy: what it scales on and its settings (token_budget in tokens/s per replica)."""

    kind: str
    min_replicas: int
    max_replicas: int
    interval_s: float
    cooldown_s: float
    headroom: float
    cold_start_s: float
    window_s: float = 60.0
    token_budget: float = 0.0  # tokens policy: prompt + output tokens/s one replica is given
    depth_target: float = 0.0  # queue policy: requests queued or in service per replica

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown policy kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.interval_s <= 0 or self.cold_start_s < 0 or self.cooldown_s < 0 or self.window_s <= 0:
            raise ValueError("interval and window must be positive, cold start and cool-down not negative")
        if self.min_replicas < self.max_replicas and (self.token_budget if self.kind in BUDGETED else self.depth_target) <= 0:
            raise ValueError(f"a {self.kind} policy needs a positive {'token budget' if self.kind in BUDGETED else 'depth target'}")


class Controller:
    """The policy's decisions, made as the simulation reaches each tick (queue.Scaler)."""

    def __init__(self, knobs: Knobs, reqs: Requests):
        self.k = knobs
        # Times as the simulators give them (queue.Scaler: the requests' own arrival times).
        self.t0 = float(reqs.arrival_s[0])
        self.arr = reqs.arrival_s
        self.cum = np.concatenate([[0.0], np.cumsum(reqs.prompt_tokens + reqs.output_tokens)])
        self.serving_n = self._first_count()  # as if it had been running: the count for the first window's load
        self.starting: list[float] = []  # ready times of replicas still starting
        self.events: list[tuple[float, int]] = [(self.t0, self.serving_n)]  # (time, provisioned from then)
        self.scale_ups: list[dict] = []
        self.desired = [(self.t0, self.serving_n)]  # (tick, desired), the last cooldown_s of them
        self.next_tick = self.t0 + knobs.interval_s
        self.depth_seen = 0
        self.pending_at_arrival = np.zeros(len(reqs), bool)

    @property
    def provisioned(self) -> int:
        return self.serving_n + len(self.starting)

    def _tokens_per_s(self, t: float) -> float:
        lo, hi = np.searchsorted(self.arr, [t - self.k.window_s, t], side="right")
        # Early on the window reaches back before the trace: the rate over what there is of it.
        return float(self.cum[hi] - self.cum[lo]) / min(self.k.window_s, t - self.t0)

    def _tokens_ahead(self, t: float) -> float:
        """Tokens/s arriving over the step a replica asked for at t serves: [t + cold start, + interval]."""
        a = t + self.k.cold_start_s
        span = min(self.k.interval_s, float(self.arr[-1]) - a)
        if span <= 0:
            return 0.0
        lo, hi = np.searchsorted(self.arr, [a, a + span], side="left")
        return float(self.cum[hi] - self.cum[lo]) / span

    def _clamp(self, n: float) -> int:
        return int(min(self.k.max_replicas, max(self.k.min_replicas, math.ceil(n - 1e-9))))

    def _first_count(self) -> int:
        if self.k.kind == "queue" or self.k.min_replicas == self.k.max_replicas:
            return self.k.min_replicas
        if self.k.kind == "schedule":  # the step ahead, as if the replica had been started a cold start earlier
            return self._clamp(self._tokens_ahead(self.t0 - self.k.cold_start_s) / self.k.token_budget)
        return self._clamp(self._tokens_per_s(self.t0 + self.k.window_s) / self.k.token_budget)

    def _want(self, t: float) -> int:
        if self.k.min_replicas == self.k.max_replicas:
            return self.k.min_replicas
        if self.k.kind == "tokens":
            return self._clamp(self._tokens_per_s(t) / self.k.token_budget)
        if self.k.kind == "schedule":
            return self._clamp(self._tokens_ahead(t) / self.k.token_budget)
        return self._clamp(self.depth_seen / self.k.depth_target)

    def _tick(self, t: float) -> None:
        self._ready(t)
        want = self._want(t)
        self.desired = [(s, d) for s, d in self.desired if s > t - self.k.cooldown_s] + [(t, want)]
        target = max(want, max(d for _, d in self.desired))  # scale down only as far as the cool-down allows
        have = self.provisioned
        if target > have:
            for _ in range(target - have):
                self.starting.append(t + self.k.cold_start_s)
            self.scale_ups.append({"at_s": t, "ready_s": t + self.k.cold_start_s, "replicas": target - have})
        elif target < have:
            drop = have - target
            cancel = min(drop, len(self.starting))
            self.starting = sorted(self.starting)[:len(self.starting) - cancel]  # the latest starters go first
            self.serving_n -= drop - cancel
        if target != have:
            self.events.append((t, target))

    def _ready(self, t: float) -> None:
        done = [r for r in self.starting if r <= t]
        if done:
            self.starting = [r for r in self.starting if r > t]
            self.serving_n += len(done)

    def advance(self, t: float) -> None:
        """Make every decision due at or before t."""
        while self.next_tick <= t:
            self._tick(self.next_tick)
            self.next_tick += self.k.interval_s
        self._ready(t)

    def serving(self, i: int, t: float, depth: Callable[[], int]) -> int:
        """queue.Scaler: ticks up to t decide on the depth seen at the last arrival before them (causal)."""
        self.advance(t)
        self.pending_at_arrival[i] = bool(self.starting)
        if self.k.kind == "queue":
            self.depth_seen = depth() + 1  # with this request routed
        return self.serving_n

    def replica_seconds(self, end: float) -> float:
        """Provisioned replicas integrated from the first arrival to `end`."""
        self.advance(end)
        times = [t for t, _ in self.events] + [end]
        return float(sum(n * max(0.0, min(b, end) - a) for (a, n), b in zip(self.events, times[1:])))


def simulate_policy(knobs: Knobs, reqs: Requests, service, max_batch: int, routing: Policy, slos: list[SLO],
                    usd_per_hour: float, month_hours: float, seed: int = 0,
                    controller: Controller | None = None) -> tuple[dict, SimResult]:
    """One policy over the requests: (its figures, the simulation). Pass a `controller` (made on the same
    knobs and requests) to read its decisions afterwards."""
    ctl = controller or Controller(knobs, reqs)
    sim = simulate(reqs, service, knobs.max_replicas, max_batch, routing, seed, scaler=ctl)
    window = sim.window_s
    rs = ctl.replica_seconds(ctl.t0 + window)
    mean = rs / window if window > 0 else float(ctl.provisioned)
    attained = check_slos(sim, slos)["goodput_share"]
    waited = ctl.pending_at_arrival & (sim.queue_ms > 0)
    return {
        **asdict(knobs),
        "replica_seconds": rs, "replica_hours": rs / 3600.0, "mean_replicas": mean, "window_s": window,
        "cost_per_hour": mean * usd_per_hour, "cost_per_month_usd": mean * usd_per_hour * month_hours,
        "slo_attainment": attained, "requests": len(reqs),
        "requests_waited_for_scale_up": int(waited.sum()),
        "scale_ups": len(ctl.scale_ups), "scale_downs": sum(1 for a, b in zip(ctl.events, ctl.events[1:]) if b[1] < a[1]),
        "peak_replicas": max(n for _, n in ctl.events),
        "e2el_p95_ms": sim.percentile("e2el_ms", 95), "ttft_p95_ms": sim.percentile("ttft_ms", 95),
    }, sim


def grid(fixed: int, cold_start_s: float, token_budget_at_full: float, slots: int, cap: int,
         intervals=(15.0, 60.0), cooldowns=(120.0, 600.0), headrooms=(0.6, 0.8, 1.0),
         depths=(1.0, 2.0, 4.0), kinds: tuple[str, ...] = KINDS) -> list[Knobs]:
    """The policies of `kinds` swept: min up to the fixed count, max from it up to twice it (within the
    cap); token budgets at `headrooms` x the full one, depth targets at `depths` x a replica's slots;
    min = max = fixed (the fixed plan) is always first."""
    mins = sorted({1, max(1, fixed // 2), fixed})
    maxs = sorted({fixed, min(cap, max(fixed + 1, 2 * fixed))})
    out = [Knobs("tokens", fixed, fixed, intervals[0], cooldowns[0], 1.0, cold_start_s)]
    for kind in kinds:
        for lo in mins:
            for hi in maxs:
                if lo == hi:
                    continue
                for h in (headrooms if kind in BUDGETED else depths):
                    for iv in intervals:
                        for cd in (cooldowns if kind != "schedule" else (0.0,)):
                            out.append(Knobs(kind, lo, hi, iv, cd, h, cold_start_s,
                                             token_budget=token_budget_at_full * h if kind in BUDGETED else 0.0,
                                             depth_target=slots * h if kind == "queue" else 0.0))
    return out


def choose(results: list[dict], attainment: float) -> dict | None:
    """The cheapest policy meeting the attainment (then the higher attainment, then the fewer replicas at most)."""
    ok = [r for r in results if r["slo_attainment"] >= attainment]
    return min(ok, key=lambda r: (round(r["cost_per_month_usd"], 6), -r["slo_attainment"], r["max_replicas"])) if ok else None
