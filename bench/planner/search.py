"""The replica search at one max batch size: SLO checks, one replica's limits, the floors no count beats.

Replica counts are searched (doubling, then bisection) on simulations with the same arrivals and
the same service-time draws throughout (common random numbers), so that counts are compared on
the same luck. Utilisation has one meaning everywhere: the share of the window the replicas spend
serving batches, as simulated (`SimResult.utilization`); without an SLO, the plan is the fewest
replicas whose simulated utilisation is at most NO_SLO_UTILIZATION.
"""
from __future__ import annotations

import math

import numpy as np

from llmbench.planner.queue import Policy, Requests, SimResult, poisson_requests, simulate
from llmbench.planner.service import ServiceModel
from llmbench.slo import SLO

NO_SLO_UTILIZATION = 0.8  # without an SLO: the largest simulated utilisation a plan may run at
POISSON_MIN = 2000
_METRIC = {"ttft": "ttft_ms", "e2el": "e2el_ms", "tpot": "tpot_ms", "itl": "tpot_ms"}
_DECODE = ("tpot", "itl")


def check_slos(sim: SimResult, slos: list[SLO], goodput: float | None = None) -> dict:
    """Each SLO against the simulated percentile, the share of requests meeting all, and the binding one."""
    items = []
    good = np.ones(len(sim.e2el_ms), bool)
    for s in slos:
        metric = _METRIC[s.metric]
        values = getattr(sim, metric)
        value = sim.percentile(metric, s.percentile)
        good &= ~(values > s.limit_ms)  # NaN (undefined TPOT) never fails a request
        items.append({"slo": str(s), "metric": metric, "percentile": s.percentile, "predicted_ms": value,
                      "limit_ms": s.limit_ms, "ok": bool(value <= s.limit_ms), "ratio": value / s.limit_ms})
    share = float(good.mean()) if len(good) else 1.0
    missed = [i for i in items if not i["ok"]]
    ok = not missed and (goodput is None or share >= goodput)
    binding = None
    if missed:
        binding = max(missed, key=lambda i: i["ratio"])["slo"]
    elif goodput is not None and share < goodput:
        binding = f"goodput>={goodput:g}"
    return {"ok": ok, "slos": items, "goodput_share": share, "binding": binding}


def saturation_rps(service: ServiceModel, prompts: np.ndarray, outputs: np.ndarray, max_batch: int,
                   samples: int = 256, seed: int = 0) -> float:
    """Requests/s one replica serves when every batch is full: max_batch / mean full-batch duration.

    Beyond this rate the queue grows without bound; a static batcher never does better, since it
    takes full batches whenever the queue is long.
    """
    if getattr(service, "continuous", False):  # every slot kept busy, simulated (continuous.py)
        from llmbench.planner.continuous import saturation_rps as continuous_saturation

        return continuous_saturation(service, prompts, outputs, max_batch, seed=seed)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(prompts), size=(samples, max_batch))
    p, o = np.asarray(prompts, float), np.asarray(outputs, int)
    durations = [service.batch_duration_s(p[row].tolist(), o[row].tolist()) for row in pick]
    return max_batch / (float(np.mean(durations)) * service.mean_ratio)


def max_sustainable_rps(service: ServiceModel, prompts: np.ndarray, outputs: np.ndarray, max_batch: int,
                        slos: list[SLO], saturation: float, goodput: float | None = None, seed: int = 0) -> float | None:
    """Highest Poisson rate at which one replica still meets every SLO (None without SLOs; 0 if none does)."""
    if not slos:
        return None

    def meets(rate: float) -> bool:
        reqs = poisson_requests(rate, POISSON_MIN, prompts, outputs, seed)
        return check_slos(simulate(reqs, service, 1, max_batch, seed=seed), slos, goodput)["ok"]

    lo, hi = saturation * 1e-3, saturation * 0.999
    if not meets(lo):
        return 0.0
    if meets(hi):
        return hi
    for _ in range(14):  # bisection on a log scale: about 0.1% resolution over three decades
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


class Search:
    """Simulations of one load at different replica counts, each run once."""

    def __init__(self, reqs: Requests, service: ServiceModel, max_batch: int, policy: Policy, slos: list[SLO],
                 goodput: float | None, min_stable: float | None, seed: int = 0):
        self.reqs, self.service, self.max_batch, self.policy, self.seed = reqs, service, max_batch, policy, seed
        self.slos, self.goodput, self.min_stable = slos, goodput, min_stable
        self.runs: dict[int, tuple[SimResult, dict]] = {}

    def _judge(self, sim: SimResult, replicas: int) -> dict:
        check = check_slos(sim, self.slos, self.goodput)
        # A Poisson load above a replica's capacity is unstable however short the simulation.
        if self.min_stable is not None and self.min_stable >= replicas:
            check = {**check, "ok": False, "binding": check["binding"] or "queue stability (offered load >= capacity)"}
        return check

    def at(self, replicas: int) -> tuple[SimResult, dict]:
        if replicas not in self.runs:
            sim = simulate(self.reqs, self.service, replicas, self.max_batch, self.policy, self.seed)
            self.runs[replicas] = (sim, self._judge(sim, replicas))
        return self.runs[replicas]

    def rechecked(self, slos: list[SLO], goodput: float | None) -> "Search":
        """The same simulations judged against other objectives."""
        new = Search(self.reqs, self.service, self.max_batch, self.policy, slos, goodput, self.min_stable, self.seed)
        new.runs = {r: (sim, new._judge(sim, r)) for r, (sim, _) in self.runs.items()}
        return new

    def fewest(self, lo: int, hi: int, ok) -> int | None:
        """Smallest count in [lo, hi] for which ok(count) holds (None if not even at hi).

        Doubling from lo first, since the answer is usually near the stability bound and a
        simulation of many replicas costs more than one of few.
        """
        step = lo
        while not ok(step):
            if step >= hi:
                return None
            lo, step = step + 1, min(hi, 2 * step)
        hi = step
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo


def floors(service: ServiceModel, reqs: Requests, slos: list[SLO], seed: int) -> list[tuple[SLO, float]]:
    """Each objective missed even if every request were served alone, at once: (SLO, that percentile, ms).

    TTFT and E2EL with no queueing; TPOT/ITL decoded at batch 1 (batching only lengthens a step),
    so no replica count, however large, meets any of them.
    """
    ttft, e2el = service.alone_ms(reqs.prompt_tokens, reqs.output_tokens)
    tpot = service.alone_tpot_ms(reqs.prompt_tokens, reqs.output_tokens)
    # With the measured variability, as the simulation has it; served alone means after an idle gap.
    factors = service.idle_penalty.ratios if service.idle_penalty is not None else service.duration_ratios
    if factors:
        scale = np.random.default_rng(seed).choice(np.asarray(factors), size=len(ttft))
        ttft, e2el, tpot = ttft * scale, e2el * scale, tpot * scale
    values = {"ttft": ttft, "e2el": e2el, "tpot": tpot, "itl": tpot}
    out = []
    for s in slos:
        v = values[s.metric]
        v = v[~np.isnan(v)]
        if v.size and float(np.percentile(v, s.percentile)) > s.limit_ms:
            out.append((s, float(np.percentile(v, s.percentile))))
    return out


def _headroom(search: Search, offered: float, sat: float, max_replicas: int) -> tuple[int, bool]:
    """Fewest replicas whose simulated utilisation is at most NO_SLO_UTILIZATION (and stable); capped."""
    lo = max(1, min(max_replicas, math.floor(offered / (NO_SLO_UTILIZATION * sat))))  # full batches: a lower bound

    def ok(r: int) -> bool:
        sim, check = search.at(r)
        stable = search.min_stable is None or search.min_stable < r
        return stable and sim.utilization <= NO_SLO_UTILIZATION

    got = search.fewest(lo, max_replicas, ok)
    return (max_replicas, False) if got is None else (got, True)


def plan_at_batch(service: ServiceModel, reqs: Requests, load: dict, batch: int, slos: list[SLO], goodput: float | None,
                  max_replicas: int, policy: Policy, seed: int) -> dict:
    """The fewest replicas at one max batch size, and what they give."""
    notes: list[str] = []
    sat = saturation_rps(service, reqs.prompt_tokens, reqs.output_tokens, batch, seed=seed)
    sustainable = max_sustainable_rps(service, reqs.prompt_tokens, reqs.output_tokens, batch, slos, sat, goodput, seed)
    offered = load["offered_rps"]
    # Replicas at or below offered/capacity cannot keep up with a Poisson load (a finite trace is judged by replay).
    min_stable = offered / sat if load["kind"] == "poisson" else None
    search = Search(reqs, service, batch, policy, slos, goodput, min_stable, seed)
    meets, binding = True, None
    missed = floors(service, reqs, slos, seed)
    queue_floor = [(s, v) for s, v in missed if s.metric not in _DECODE]
    decode_floor = [(s, v) for s, v in missed if s.metric in _DECODE]
    for s, alone in missed:
        how = ("even served alone with no queueing" if s.metric not in _DECODE else
               "even decoded alone (batch 1, where a decode step is shortest)")
        notes.append(f"no replica count meets {s}: {how}, its p{s.percentile:g} {s.metric.upper()} would be {alone:,.4g} ms"
                     + ("; more replicas do not shorten a decode step" if s.metric in _DECODE else ""))
    if not slos and goodput is None:
        replicas, meets = _headroom(search, offered, sat, max_replicas)
        binding = f"utilization<={NO_SLO_UTILIZATION:.0%} (no SLO given)"
        notes.append(f"no SLO given: the fewest replicas whose simulated utilisation (busy share of the window) is at "
                     f"most {NO_SLO_UTILIZATION:.0%}" + ("" if meets else f"; not reached within {max_replicas} replicas"))
    elif queue_floor:
        # Report the count past which more replicas stop helping (within 5% of the no-queueing figure).
        s, alone = queue_floor[0]
        meets, binding = False, str(s)
        at = slos.index(s)
        replicas = search.fewest(1, max_replicas, lambda r: search.at(r)[1]["slos"][at]["predicted_ms"] <= 1.05 * alone) or max_replicas
        notes.append(f"{replicas} replicas come within 5% of that; more do not help")
    elif decode_floor:
        # Said at once: no search to the replica cap. The count shown serves the other objectives.
        others = [s for s in slos if s.metric not in _DECODE]
        sub = plan_at_batch(service, reqs, load, batch, others, None, max_replicas, policy, seed)
        replicas, meets, binding = sub["replicas"], False, str(decode_floor[0][0])
        notes.append(f"{replicas} replicas shown: the fewest that meet " +
                     (", ".join(map(str, others)) if others else f"the {NO_SLO_UTILIZATION:.0%} utilisation rule") + " alone")
        search = sub["search_obj"].rechecked(slos, goodput)
    else:
        lo = max(1, min(max_replicas, math.floor(min_stable or 1)))
        replicas = search.fewest(lo, max_replicas, lambda r: search.at(r)[1]["ok"])
        if replicas is None:
            meets, replicas = False, max_replicas
            binding = search.at(max_replicas)[1]["binding"]
            what = "1 replica does" if max_replicas == 1 else f"{max_replicas} replicas do"
            notes.append(f"even {what} not meet the SLO ({binding}); raise --max-replicas or relax the SLO")
        elif replicas > 1:
            binding = search.at(replicas - 1)[1]["binding"]
    sim, check = search.at(replicas)
    return {"batch": batch, "replicas": int(replicas), "meets": bool(meets and check["ok"]) if (slos or goodput is not None) else bool(meets),
            "binding": binding, "sim": sim, "check": check, "saturation": sat, "sustainable": sustainable,
            "search": {str(k): v[1]["ok"] for k, v in sorted(search.runs.items())}, "search_obj": search, "notes": notes}
