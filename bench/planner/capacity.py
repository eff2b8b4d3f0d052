"""Capacity: the fewest replicas that meet the SLOs at a load, what they cost, and one replica's limits.

The load is Poisson arrivals at a rate (lengths drawn from what was measured) or a replayed trace.
Replica counts are searched (doubling, then bisection) on simulations with the same arrivals and
the same service-time draws throughout (common random numbers), so that counts are compared on
the same luck.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np

from llmbench.errors import BadInput
from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner.idle import fit_idle_penalty
from llmbench.planner.queue import Policy, Requests, SimResult, poisson_requests, simulate
from llmbench.planner.service import (FIT_SCENARIOS, ServiceModel, fit_rows, fit_service, observations_from_records,
                                      observations_from_rows)
from llmbench.planner.trace import Trace, load_trace
from llmbench.slo import SLO

HOURS_PER_MONTH = 730.0  # the cloud providers' billing convention (8760 h / 12)
DEFAULT_MAX_REPLICAS = 1024
NO_SLO_UTILIZATION = 0.8  # without an SLO, size for this utilisation of one replica's capacity
POISSON_SECONDS = 600.0  # simulated span of a Poisson load, within the request bounds below
POISSON_MIN, POISSON_MAX = 2000, 12000
_METRIC = {"ttft": "ttft_ms", "e2el": "e2el_ms", "tpot": "tpot_ms", "itl": "tpot_ms"}


# ---- SLO checks --------------------------------------------------------------------------------
def check_slos(sim: SimResult, slos: list[SLO], goodput: float | None = None) -> dict:
    """Each SLO against the simulated percentile, the share of requests meeting all, and the binding one."""
    items = []
    good = np.ones(len(sim.e2el_ms), bool)
    for s in slos:
        metric = _METRIC[s.metric]
        values = getattr(sim, metric)
        value = sim.percentile(metric, s.percentile)
        good &= ~(values > s.limit_ms)  # NaN (undefined TPOT) never fails a request
        items.append({"slo": str(s), "metric": metric, "percentile": s.percentile, "predicted_ms": round(value, 3),
                      "limit_ms": s.limit_ms, "ok": bool(value <= s.limit_ms), "ratio": value / s.limit_ms})
    share = float(good.mean()) if len(good) else 1.0
    missed = [i for i in items if not i["ok"]]
    ok = not missed and (goodput is None or share >= goodput)
    binding = None
    if missed:
        binding = max(missed, key=lambda i: i["ratio"])["slo"]
    elif goodput is not None and share < goodput:
        binding = f"goodput>={goodput:g}"
    for i in items:
        i["ratio"] = round(i["ratio"], 4)
    return {"ok": ok, "slos": items, "goodput_share": round(share, 5), "binding": binding}


# ---- one replica's limits ------------------------------------------------------------------------
def saturation_rps(service: ServiceModel, prompts: np.ndarray, outputs: np.ndarray, max_batch: int,
                   samples: int = 256, seed: int = 0) -> float:
    """Requests/s one replica serves when every batch is full: max_batch / mean full-batch duration.

    Beyond this rate the queue grows without bound; a static batcher never does better, since it
    takes full batches whenever the queue is long.
    """
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


# ---- the replica search --------------------------------------------------------------------------
class _Search:
    """Simulations of one load at different replica counts, each run once."""

    def __init__(self, reqs: Requests, service: ServiceModel, max_batch: int, policy: Policy, slos: list[SLO],
                 goodput: float | None, min_stable: float | None, seed: int = 0):
        self.reqs, self.service, self.max_batch, self.policy, self.seed = reqs, service, max_batch, policy, seed
        self.slos, self.goodput, self.min_stable = slos, goodput, min_stable
        self.runs: dict[int, tuple[SimResult, dict]] = {}

    def at(self, replicas: int) -> tuple[SimResult, dict]:
        if replicas not in self.runs:
            sim = simulate(self.reqs, self.service, replicas, self.max_batch, self.policy, self.seed)
            check = check_slos(sim, self.slos, self.goodput)
            # A Poisson load above a replica's capacity is unstable however short the simulation.
            if self.min_stable is not None and self.min_stable >= replicas:
                check = {**check, "ok": False, "binding": check["binding"] or "queue stability (offered load >= capacity)"}
            self.runs[replicas] = (sim, check)
        return self.runs[replicas]

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


def _load(rps: float | None, trace, prompts: np.ndarray, outputs: np.ndarray, seed: int) -> tuple[Requests, dict]:
    if (rps is None) == (trace is None):
        raise BadInput("give exactly one of a target rate (--rps) or a trace (--trace)")
    if trace is not None:
        tr = trace if isinstance(trace, Trace) else (Trace("<requests>", trace) if isinstance(trace, Requests) else load_trace(trace))
        if len(tr.requests) < 2:
            raise BadInput(f"{tr.path}: a trace needs at least two requests")
        return tr.requests, {"kind": "trace", **tr.describe(), "offered_rps": round(tr.requests.mean_rps, 4)}
    if not rps > 0:
        raise BadInput(f"--rps must be a positive rate, got {rps}")
    n = int(min(POISSON_MAX, max(POISSON_MIN, rps * POISSON_SECONDS)))
    reqs = poisson_requests(rps, n, prompts, outputs, seed)
    return reqs, {"kind": "poisson", "offered_rps": rps, "requests": n, "duration_s": round(reqs.duration_s, 2),
                  "prompt_tokens_mean": round(float(np.mean(prompts)), 2), "output_tokens_mean": round(float(np.mean(outputs)), 2),
                  "lengths_from": "the measured requests"}


def _measured_lengths(rows: list[dict], records: list | None) -> tuple[np.ndarray, np.ndarray]:
    if records:
        return (np.array([r.prompt_tokens for r in records], float), np.array([max(1, r.output_tokens) for r in records]))
    p = [r["prompt_tokens_mean"] for r in rows if r.get("prompt_tokens_mean")]
    o = [max(1, round(r.get("output_tokens_mean") or 1)) for r in rows if r.get("prompt_tokens_mean")]
    if not p:
        raise BadInput("the measured rows carry no token lengths to plan with")
    return np.array(p, float), np.array(o)


def _floor(service: ServiceModel, reqs: Requests, slos: list[SLO], seed: int) -> tuple[SLO, float] | None:
    """The first TTFT/E2EL objective missed even if every request were served alone at once."""
    ttft, e2el = service.alone_ms(reqs.prompt_tokens, reqs.output_tokens)
    # With the measured variability, as the simulation has it; served alone means after an idle gap.
    factors = service.idle_penalty.ratios if service.idle_penalty is not None else service.duration_ratios
    if factors:
        scale = np.random.default_rng(seed).choice(np.asarray(factors), size=len(ttft))
        ttft, e2el = ttft * scale, e2el * scale
    for s in slos:
        if s.metric in ("ttft", "e2el"):
            alone = float(np.percentile(ttft if s.metric == "ttft" else e2el, s.percentile))
            if alone > s.limit_ms:
                return s, alone
    return None


def _round(d: dict, nd: int = 3) -> dict:
    return {k: (round(v, nd) if isinstance(v, float) else v) for k, v in d.items()}


def _prediction(sim: SimResult, check: dict) -> dict:
    return {
        "ttft_ms": _round(sim.stats("ttft_ms")),
        "e2el_ms": _round(sim.stats("e2el_ms")),
        "tpot_ms": _round(sim.stats("tpot_ms")),
        "queue_ms": _round(sim.stats("queue_ms")),
        "goodput_share": check["goodput_share"],
        "goodput_req_s": round(check["goodput_share"] * len(sim.e2el_ms) / sim.window_s, 4) if sim.window_s > 0 else None,
        "utilization": round(sim.utilization, 4),
        "mean_batch_size": round(float(sim.batch_size.mean()), 3),
    }


def _plan_at_batch(service: ServiceModel, reqs: Requests, load: dict, batch: int, slos: list[SLO], goodput: float | None,
                   max_replicas: int, policy: Policy, seed: int) -> dict:
    """The fewest replicas at one max batch size, and what they give."""
    notes: list[str] = []
    sat = saturation_rps(service, reqs.prompt_tokens, reqs.output_tokens, batch, seed=seed)
    sustainable = max_sustainable_rps(service, reqs.prompt_tokens, reqs.output_tokens, batch, slos, sat, goodput, seed)
    offered = load["offered_rps"]
    # Replicas at or below offered/capacity cannot keep up with a Poisson load (a finite trace is judged by replay).
    min_stable = offered / sat if load["kind"] == "poisson" else None
    search = _Search(reqs, service, batch, policy, slos, goodput, min_stable, seed)

    meets, binding = True, None
    floor = _floor(service, reqs, slos, seed)
    if not slos and goodput is None:
        replicas = min(max_replicas, max(1, math.ceil(offered / (NO_SLO_UTILIZATION * sat))))
        binding = f"utilization<={NO_SLO_UTILIZATION:.0%} (no SLO given)"
        notes.append(f"no SLO given: sized for {NO_SLO_UTILIZATION:.0%} utilisation of one replica's capacity ({sat:.4g} req/s)")
        meets = replicas * NO_SLO_UTILIZATION * sat >= offered
    elif floor:
        # Even a replica per request misses it: report the count past which more replicas stop
        # helping (within 5% of the no-queueing figure), at its cost, and say so.
        s, alone = floor
        meets, binding = False, str(s)
        notes.append(f"no replica count meets {s}: even served alone with no queueing, its p{s.percentile:g} "
                     f"{s.metric.upper()} would be {alone:,.0f} ms")
        at = slos.index(s)
        replicas = search.fewest(1, max_replicas, lambda r: search.at(r)[1]["slos"][at]["predicted_ms"] <= 1.05 * alone) or max_replicas
        notes.append(f"{replicas} replicas come within 5% of that; more do not help")
    else:
        lo = max(1, min(max_replicas, math.floor(min_stable or 1)))
        replicas = search.fewest(lo, max_replicas, lambda r: search.at(r)[1]["ok"])
        if replicas is None:
            meets, replicas = False, max_replicas
            binding = search.at(max_replicas)[1]["binding"]
            notes.append(f"even {max_replicas} replicas do not meet the SLO ({binding}); raise --max-replicas or relax the SLO")
        elif replicas > 1:
            binding = search.at(replicas - 1)[1]["binding"]
    sim, check = search.at(replicas)
    return {"batch": batch, "replicas": int(replicas), "meets": bool(meets and check["ok"]) if (slos or goodput is not None) else bool(meets),
            "binding": binding, "sim": sim, "check": check, "saturation": sat, "sustainable": sustainable,
            "search": {str(k): v[1]["ok"] for k, v in sorted(search.runs.items())}, "notes": notes}


def plan_option(rows: list[dict], hardware: HardwareProfile, slos: list[SLO], rps: float | None = None,
                trace: Trace | Requests | str | Path | None = None, max_batch: int | None = None, *,
                records: Iterable | None = None, max_replicas: int = DEFAULT_MAX_REPLICAS, goodput: float | None = None,
                policy: Policy = "jsq", seed: int = 0, validation: dict | None = None) -> dict:
    """Plan one option (the summary rows of one model x variant) at a rate or for a trace.

    Returns {replicas, max_batch, cost_per_hour, cost_per_month, predicted: {ttft_ms, e2el_ms, tpot_ms:
    {p50, p90, p95, p99, mean}, ...}, saturation_rps, max_sustainable_rps, meets_slo, binding, notes, ...}.
    `records` (that option's request records) give a finer fit than the rows' means; `validation`
    (validate.validate_option's result) is reported as the prediction error.
    """
    rows = fit_rows(rows)
    if not rows:
        raise BadInput("no successful summary rows to plan from")
    scenarios = {r.get("scenario") for r in rows}
    records = [r for r in (records or []) if r.ok]
    recs = [r for r in records if r.scenario in scenarios and r.point in {x.get("point") for x in rows}]
    if recs:
        service = fit_service(observations_from_records(recs), "request log")
        service.idle_penalty = fit_idle_penalty(service, records)
    else:
        service = fit_service(observations_from_rows(rows), "summary rows")
    prompts, outputs = _measured_lengths(rows, recs)
    reqs, load = _load(rps, trace, prompts, outputs, seed)
    per_replica_usd = hardware.usd_per_hour * hardware.devices
    notes = list(service.fit_notes) + service.extrapolation_notes(reqs.prompt_tokens, reqs.output_tokens, int(max_batch or 1))
    if service.idle_penalty is not None:
        pen = service.idle_penalty.describe()
        notes.append(f"after-idle slowdown measured on this run's concurrency points: batches that start after an idle "
                     f"gap took {pen['mean_extra_pct']:.0f}% longer on average (p90 x{pen['ratio_p90']:.2f}); modelled")
    elif any(r.scenario == "concurrency" for r in records):
        notes.append("no after-idle slowdown found in this run's concurrency points")
    else:
        notes.append("after-idle slowdown not measured (no concurrency rate points): on a shared CPU a batch after "
                     "an idle gap can run much slower than back-to-back, so low and moderate loads may be optimistic")
    if any(s.metric == "itl" for s in slos):
        notes.append("ITL objectives are checked against TPOT: the model's decode steps within a batch are uniform")
    if not {r.get("scenario") for r in rows} & set(FIT_SCENARIOS):
        notes.append("fitted on concurrency measurements (queueing subtracted), not on queue-free ones")

    if max_batch is not None:
        if int(max_batch) < 1:
            raise BadInput(f"max batch must be at least 1, got {max_batch}")
        sizes = [int(max_batch)]
    else:  # each measured batch size; padding long prompts to the longest can make a smaller one cheaper
        sizes = list(service.step_batches)
    tried = [_plan_at_batch(service, reqs, load, b, slos, goodput, max_replicas, policy, seed) for b in sizes]
    best = min(tried, key=lambda t: (not t["meets"], t["replicas"], t["sim"].percentile("e2el_ms", 95)))
    notes += best["notes"]
    if len(tried) > 1:
        notes.append("max batch chosen among the measured sizes (fewest replicas, then lowest p95 E2EL): " +
                     ", ".join(f"b={t['batch']}: {t['replicas']} replicas{'' if t['meets'] else ' (misses)'}" for t in tried))
    replicas, sim, check = best["replicas"], best["sim"], best["check"]
    cost_h = replicas * per_replica_usd
    if validation is None:
        notes.append("prediction error: not checked on this run (no concurrency rate points to compare with)")
    return {
        "replicas": int(replicas),
        "max_batch": best["batch"],
        "policy": policy,
        "hardware": hardware.name,
        "usd_per_hour_per_replica": per_replica_usd,
        "cost_per_hour": round(cost_h, 4),
        "cost_per_month": round(cost_h * HOURS_PER_MONTH, 2),
        "load": load,
        "predicted": _prediction(sim, check),
        "slo_check": check["slos"],
        "meets_slo": best["meets"],
        "binding": best["binding"],
        "saturation_rps": round(best["saturation"], 4),
        "max_sustainable_rps": None if best["sustainable"] is None else round(best["sustainable"], 4),
        "replica_search": best["search"],
        "max_batch_search": {str(t["batch"]): {"replicas": t["replicas"], "meets_slo": t["meets"],
                                               "saturation_rps": round(t["saturation"], 4)} for t in tried},
        "max_replicas": max_replicas,
        "service_model": service.describe(),
        "prediction_error": validation,
        "notes": notes,
    }
