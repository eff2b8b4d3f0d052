"""Capacity: the fewest replicas that meet the SLOs at a load, what they cost, and one replica's limits.

The load is Poisson arrivals at a rate (lengths drawn from what was measured) or a replayed trace.
Requests that do not fit in the model's context are split out of it first (context.py), counted
and reported. The service model is fitted on the option's measured batches, plus a prefill sweep
where the load needs longer prompts than the run measured (sweep.py); the replica search at each
max batch size is in search.py.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from llmbench.config import MAX_BATCH
from llmbench.errors import BadInput
from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner.context import split_over_context
from llmbench.planner.extrapolation import extrapolation
from llmbench.planner.fitting import fit_option, is_served, option_rows
from llmbench.planner.queue import DEFAULT_POLICY, POLICIES, Policy, Requests, poisson_requests
from llmbench.planner.search import (NO_SLO_UTILIZATION, POISSON_MIN, check_slos, max_sustainable_rps, plan_at_batch,
                                     saturation_rps)
from llmbench.planner.served import SERVED_NOTE
from llmbench.planner.service import FIT_SCENARIOS
from llmbench.planner.trace import Trace, load_trace
from llmbench.slo import SLO

__all__ = ["HOURS_PER_MONTH", "NO_SLO_UTILIZATION", "check_slos", "max_sustainable_rps", "plan_option", "replica_budget_rps", "saturation_rps",
           "validate_rps", "validate_limits"]

HOURS_PER_MONTH = 730.0  # the cloud providers' billing convention (8760 h / 12)
DEFAULT_MAX_REPLICAS = 1024
# Limits on what a plan may be asked for: beyond them a simulation takes memory and time out of
# all proportion.
# The same bounds as the run config's plan: section (config.py).
MAX_REPLICAS_LIMIT = 1_000_000
MAX_BATCH_LIMIT = MAX_BATCH
MAX_RPS = 1e7
POISSON_SECONDS = 600.0  # simulated span of a Poisson load, within the request bounds below
POISSON_MAX = 12000


def replica_budget_rps(plan: dict) -> tuple[float | None, str]:
    """The request rate one replica of a plan should carry: the most it sustains at the SLO, or without
    an SLO NO_SLO_UTILIZATION of its saturation rate; (None, why) when the plan has neither."""
    if plan.get("max_sustainable_rps"):
        return float(plan["max_sustainable_rps"]), "the most requests/s one replica sustains at the SLO"
    if plan.get("saturation_rps"):
        why = "no SLO" if plan.get("max_sustainable_rps") is None else "no rate meets the SLO"
        return plan["saturation_rps"] * NO_SLO_UTILIZATION, f"{NO_SLO_UTILIZATION:.0%} of one replica's saturation rate ({why})"
    return None, "no capacity planned"


def validate_rps(rps: float, where: str = "--rps") -> float:
    """A finite, positive target load up to MAX_RPS; BadInput otherwise (one line, the limit in it)."""
    try:
        value = float(rps)
    except (TypeError, ValueError):
        raise BadInput(f"{where} must be a number of requests/s, got {rps!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_RPS:
        raise BadInput(f"{where} must be a rate of requests/s above 0 and at most {MAX_RPS:g}, got {rps}")
    return value


def validate_limits(max_batch: int | None = None, max_replicas: int | None = None, policy: str | None = None) -> None:
    """BadInput for a max batch, replica cap or routing policy outside what the planner accepts."""
    if max_batch is not None and not 1 <= int(max_batch) <= MAX_BATCH_LIMIT:
        raise BadInput(f"--max-batch must be between 1 and {MAX_BATCH_LIMIT}, got {max_batch}")
    if max_replicas is not None and not 1 <= int(max_replicas) <= MAX_REPLICAS_LIMIT:
        raise BadInput(f"--max-replicas must be between 1 and {MAX_REPLICAS_LIMIT}, got {max_replicas}")
    if policy is not None and policy not in POLICIES:
        raise BadInput(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")


def _load(rps: float | None, trace, prompts: np.ndarray, outputs: np.ndarray, seed: int) -> tuple[Requests, dict]:
    if (rps is None) == (trace is None):
        raise BadInput("give exactly one of a target rate (--rps) or a trace (--trace)")
    if trace is not None:
        tr = trace if isinstance(trace, Trace) else (Trace("<requests>", trace) if isinstance(trace, Requests) else load_trace(trace))
        if len(tr.requests) < 2:
            raise BadInput(f"{tr.path}: a trace needs at least two requests")
        return tr.requests, {"kind": "trace", **tr.describe(), "offered_rps": tr.requests.mean_rps}
    rps = validate_rps(rps)
    n = int(min(POISSON_MAX, max(POISSON_MIN, rps * POISSON_SECONDS)))
    reqs = poisson_requests(rps, n, prompts, outputs, seed)
    return reqs, {"kind": "poisson", "offered_rps": rps, "requests": n, "duration_s": reqs.duration_s,
                  "prompt_tokens_mean": float(np.mean(prompts)), "output_tokens_mean": float(np.mean(outputs)),
                  "lengths_from": "the measured requests"}


def _measured_lengths(rows: list[dict], records: list | None) -> tuple[np.ndarray, np.ndarray]:
    if records:
        return (np.array([r.prompt_tokens for r in records], float), np.array([max(1, r.output_tokens) for r in records]))
    p = [r["prompt_tokens_mean"] for r in rows if r.get("prompt_tokens_mean")]
    o = [max(1, round(r.get("output_tokens_mean") or 1)) for r in rows if r.get("prompt_tokens_mean")]
    if not p:
        raise BadInput("the measured rows carry no token lengths to plan with")
    return np.array(p, float), np.array(o)


def _stats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


def prediction(sim, check: dict) -> dict:
    """The predicted figures of one simulation and its SLO check (a plan's `predicted`; verify compares with them)."""
    return {
        "ttft_ms": _stats(sim.stats("ttft_ms")),
        "e2el_ms": _stats(sim.stats("e2el_ms")),
        "tpot_ms": _stats(sim.stats("tpot_ms")),
        "queue_ms": _stats(sim.stats("queue_ms")),
        "goodput_share": check["goodput_share"],
        "goodput_req_s": check["goodput_share"] * len(sim.e2el_ms) / sim.window_s if sim.window_s > 0 else None,
        "utilization": sim.utilization,
        "mean_batch_size": float(sim.batch_size.mean()),
    }


def _unreliable(rows: list[dict]) -> list[dict]:
    return [{"scenario": r.get("scenario"), "point": r.get("point"), "reason": r.get("unreliable_reason")}
            for r in rows if r.get("unreliable")]


def plan_option(rows: list[dict], hardware: HardwareProfile, slos: list[SLO], rps: float | None = None,
                trace: Trace | Requests | str | Path | None = None, max_batch: int | None = None, *,
                records: Iterable | None = None, max_replicas: int = DEFAULT_MAX_REPLICAS, goodput: float | None = None,
                policy: Policy = DEFAULT_POLICY, seed: int = 0, validation: dict | None = None,
                context_tokens: int | None = None, prefill_sweep: dict | None = None,
                prompt_filter: Callable[[float], bool] | None = None, keep: dict | None = None) -> dict:
    """Plan one option (the summary rows of one model x variant) at a rate or for a trace.

    Returns {replicas, max_batch, policy, cost_per_hour, cost_per_month, predicted: {ttft_ms, e2el_ms,
    tpot_ms: {p50, p90, p95, p99, mean}, ...}, saturation_rps, max_sustainable_rps, meets_slo, binding,
    context_tokens, requests_over_context, share_over_context, extrapolation, notes, ...}.
    `records` (that option's request records) give a finer fit than the rows' means; `policy` is how
    the gateway spreads requests (random = LiteLLM's simple-shuffle, least-busy = its least-busy);
    `context_tokens` splits out the requests that do not fit; `prefill_sweep` (sweep.sweep_for) adds
    long-prompt measurements; `prompt_filter` plans on the measured requests whose prompt length it
    accepts (a routed class), while the service is still fitted on whole measured batches;
    `validation` (validate.validate_option's result) is reported as the prediction error; `keep`, when
    given, receives the fitted service, the planned requests and the chosen simulation (autoscale_plan.py).
    """
    validate_limits(max_batch, max_replicas, policy)
    records = [r for r in (records or []) if r.ok]
    served = is_served(rows, records)
    rows = option_rows(rows, records)
    if not rows:
        raise BadInput("no successful summary rows to plan from")
    service, recs, sweep_facts = fit_option(rows, records, prefill_sweep)
    prompts, outputs = _measured_lengths(rows, recs)
    if prompt_filter is not None:
        in_class = np.array([bool(prompt_filter(p)) for p in prompts])
        if not in_class.any():
            raise BadInput("no measured request falls in this class's prompt lengths")
        prompts, outputs = prompts[in_class], outputs[in_class]
    reqs, load = _load(rps, trace, prompts, outputs, seed)
    reqs, ctx = split_over_context(reqs, context_tokens)
    notes = list(service.fit_notes)
    if ctx["requests_over_context"]:
        if len(reqs) < 2:
            raise BadInput(f"{ctx['requests_over_context']} of {len(reqs) + ctx['requests_over_context']} requests need more "
                           f"than the model's {context_tokens:,} positions: none left to plan")
        notes.append(f"{ctx['requests_over_context']} of {len(reqs) + ctx['requests_over_context']} requests "
                     f"({100 * ctx['share_over_context']:.1f}%) need more than the model's context of {context_tokens:,} "
                     "tokens (prompt + output): this model cannot serve them; they are left out of the plan, which "
                     "covers the rest (route them to a model with a longer context, or truncate them)")
        load = {**load, "offered_rps": reqs.mean_rps, "offered_rps_all_requests": load["offered_rps"], "requests_planned": len(reqs)}
    elif context_tokens is None:
        notes.append("the model's context window is unknown: requests were not checked against it")
    how_far, extra = extrapolation(service, reqs.prompt_tokens, reqs.output_tokens, int(max_batch or max(service.step_batches)))
    notes += extra
    if sweep_facts:
        scale = sweep_facts["scale_to_run"]
        notes.append(f"prefill measured up to {max(sweep_facts['prompt_tokens']):,} tokens by a prefill sweep "
                     f"({'reused from' if sweep_facts['reused'] else 'measured now, kept in'} prefill_sweep.json; times "
                     f"scaled x{scale:.3f} to the run's level at its {'/'.join(map(str, sweep_facts['overlap_prompt_tokens']))}-token prompts)"
                     + ("" if 0.8 <= scale <= 1.25 else "; the machine ran at a different speed during the sweep than "
                        "during the run, so the long-prompt figures carry that uncertainty")
                     + (f"; {', '.join(map(str, sweep_facts['not_measured_over_budget']))} tokens not measured (they would "
                        "have taken longer than the sweep's time budget)" if sweep_facts["not_measured_over_budget"] else ""))
    if served:
        notes.append(SERVED_NOTE)
    elif service.idle_penalty is not None:
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
    if not served and not {r.get("scenario") for r in rows} & set(FIT_SCENARIOS):
        notes.append("fitted on concurrency measurements (queueing subtracted), not on queue-free ones")
    shaky = _unreliable(rows)
    if shaky:
        notes.append(f"rests on {len(shaky)} measurement(s) flagged unreliable (" +
                     "; ".join(f"{u['scenario']} {u['point']}: {u['reason'] or 'noisy'}" for u in shaky) +
                     "): re-measure on a quiet machine before acting on this plan")

    # Each measured batch size unless one is given; padding long prompts to the longest can make a smaller one cheaper.
    sizes = [int(max_batch)] if max_batch is not None else list(service.step_batches)
    tried = [plan_at_batch(service, reqs, load, b, slos, goodput, max_replicas, policy, seed) for b in sizes]
    best = min(tried, key=lambda t: (not t["meets"], t["replicas"], t["sim"].percentile("e2el_ms", 95)))
    notes += best["notes"]
    if len(tried) > 1:
        what = "slots per replica (--parallel)" if served else "max batch"
        notes.append(f"{what} chosen among the measured sizes (fewest replicas, then lowest p95 E2EL): " +
                     ", ".join(f"{'parallel' if served else 'b'}={t['batch']}: {t['replicas']} replicas{'' if t['meets'] else ' (misses)'}" for t in tried))
    replicas, sim, check = best["replicas"], best["sim"], best["check"]
    if keep is not None:
        keep.update(service=service, requests=reqs, sim=sim)
    per_replica_usd = hardware.usd_per_hour * hardware.devices
    cost_h = replicas * per_replica_usd
    if validation is None:
        # Only say the run has no rate points when it has none (the recommender plans without validation).
        has_rates = any(r.scenario == "concurrency" and str(r.point).startswith("rate=") for r in records)
        notes.append("prediction error: not computed in this plan (plan.json's prediction_error compares the planner "
                     "with this run's concurrency rate points)" if has_rates else
                     "prediction error: not checked on this run (no concurrency rate points to compare with)")
    return {
        "replicas": int(replicas),
        "max_batch": best["batch"],
        # A served option's slots per replica: the --parallel its deployment starts llama-server with.
        **({"parallel": best["batch"], "server_model": "continuous batching"} if served else {}),
        "policy": policy,
        "hardware": hardware.name,
        "usd_per_hour_per_replica": per_replica_usd,
        "cost_per_hour": cost_h,
        "cost_per_month": cost_h * HOURS_PER_MONTH,
        "load": load,
        **ctx,
        "predicted": prediction(sim, check),
        "slo_check": check["slos"],
        "meets_slo": best["meets"],
        "binding": best["binding"],
        "saturation_rps": best["saturation"],
        "max_sustainable_rps": best["sustainable"],
        "replica_search": best["search"],
        "max_batch_search": {str(t["batch"]): {"replicas": t["replicas"], "meets_slo": t["meets"],
                                               "saturation_rps": t["saturation"]} for t in tried},
        "max_replicas": max_replicas,
        "extrapolation": how_far,
        "prefill_sweep": sweep_facts,
        "unreliable_inputs": shaky,
        "service_model": service.describe(),
        "prediction_error": validation,
        "notes": notes,
    }
