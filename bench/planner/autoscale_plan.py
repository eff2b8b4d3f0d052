"""`llmbench plan --trace FILE --autoscale`: the cheapest scaling policy meeting an SLO attainment.

The run's plan for the trace (plan_run) picks the option and its fixed replica count; that option's
fitted service model and planned requests (capacity.plan_option's `keep`) are then replayed under
each policy of a small grid (autoscale.py), the fixed count included as min = max, with the
option's measured cold start (run.json: the median of its cells' `cold_start_s`, spawn to first
served token, for a llama.cpp server; else the variant's model load time, and said so).
"""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from llmbench.errors import BadInput
from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner import sweep as prefill
from llmbench.planner.autoscale import BUDGETED, Controller, Knobs, choose, grid, simulate_policy
from llmbench.planner.capacity import HOURS_PER_MONTH, plan_option, replica_budget_rps
from llmbench.planner.context import context_tokens
from llmbench.planner.plan_run import plan_run
from llmbench.planner.trace import load_trace
from llmbench.results import RunDir
from llmbench.slo import SLO

MIN_INTERVALS = 4  # a trace must span this many of the longest scaling interval swept
INTERVALS = (15.0, 60.0)
DEFAULT_ATTAINMENT = 0.99


def cold_start(meta: dict, model: str, variant: str) -> tuple[float | None, str, dict]:
    """(seconds, where the figure comes from, its spread) for one option, read from run.json."""
    cells = [c for k, c in (meta.get("cells") or {}).items()
             if k.startswith(f"{model}|{variant}|") and isinstance(c, dict) and c.get("cold_start_s") is not None]
    if cells:
        v = sorted(float(c["cold_start_s"]) for c in cells)
        ready = [float(c["server_ready_s"]) for c in cells if c.get("server_ready_s") is not None]
        return statistics.median(v), (f"measured: median over {len(v)} cell(s) of llama-server spawn -> first token "
                                      "served (run.json cold_start_s)"), \
            {"min": v[0], "max": v[-1], "cells": len(v), "server_ready_s_median": statistics.median(ready) if ready else None}
    load = ((meta.get("variants") or {}).get(f"{model}|{variant}") or {}).get("load_s")
    if load is not None:
        return float(load), ("assumed: the variant's model load time in the run (run.json variants load_s); an "
                             "in-process variant has no server start to measure, and a new replica's process start "
                             "and warm-up are not included"), {}
    return None, ("not measured: this option's run records neither a cold start nor a load time; simulated as "
                  "instant (0 s), an optimistic bound on what scaling up costs"), {}


def _option(doc: dict) -> dict:
    planned = [o for o in doc["options"] if "error" not in o]
    if not planned:
        raise BadInput("no option could be planned for this trace: nothing to autoscale")
    best = doc.get("best")
    if best is not None:
        return next(o for o in planned if (o["model"], o["variant"]) == (best["model"], best["variant"]))
    return min(planned, key=lambda o: o["cost_per_month"])


def plan_autoscale(run: RunDir, slos: list[SLO], trace: str, attainment: float = DEFAULT_ATTAINMENT,
                   model: str | None = None, variant: str | None = None, max_replicas: int = 1024,
                   policy: str = "random", measure: bool = True, kinds: tuple[str, ...] = ("tokens", "queue")) -> dict:
    """The autoscaling document: the chosen policy (`autoscale`), the fixed plan (`fixed`), every policy of
    `kinds` tried."""
    if not 0 < attainment <= 1:
        raise BadInput(f"--attainment is a share of requests in (0, 1], got {attainment}")
    tr = load_trace(trace)
    need = MIN_INTERVALS * max(INTERVALS)
    if tr.requests.duration_s < need:
        raise BadInput(f"{trace}: too short to plan autoscaling: {tr.requests.duration_s:.0f} s, needs at least "
                       f"{need:.0f} s ({MIN_INTERVALS} scaling intervals of {max(INTERVALS):.0f} s)")
    doc = plan_run(run, slos, trace=tr, model=model, variant=variant, max_replicas=max_replicas, policy=policy,
                   measure=measure)
    o = _option(doc)
    m, v = o["model"], o["variant"]
    meta = run.read_json("run.json")
    rows = [r for r in run.read_json("summary.json").get("rows") or [] if (r["model"], r["variant"]) == (m, v)]
    recs = [r for r in run.records() if r.model == m and r.variant == v]
    keep: dict = {}
    ctx, _ = context_tokens(meta, m, v)
    plan_option(rows, HardwareProfile(**meta["hardware_profile"]), slos, trace=tr, max_batch=o["max_batch"],
                records=recs, max_replicas=max_replicas, policy=policy, context_tokens=ctx,
                prefill_sweep=prefill.cached(run, m, v), keep=keep)
    service, reqs, fixed_sim = keep["service"], keep["requests"], keep["sim"]
    notes = [f"autoscaling planned for {m.removeprefix('card:')} {v}, the plan's "
             + ("cheapest option meeting the load" if doc.get("best") else "cheapest option (none meets the SLO at a fixed count)")]
    bar, slo_source = slos, "SLO: the plan's (--slo, else the run config's)"
    if not slos:
        # The lowest simulated E2EL at or above the attainment's quantile: the fixed plan meets it for that share.
        limit = float(np.quantile(fixed_sim.e2el_ms, attainment, method="higher"))
        bar = [SLO("e2el", 100 * attainment, limit)]
        slo_source = (f"no SLO given: requests are judged against the fixed plan's own p{100 * attainment:g} E2EL "
                      f"({limit:,.0f} ms), so a policy meeting {attainment:g} attainment serves as well as the fixed plan")
    cold, cold_source, spread = cold_start(meta, m, v)
    per_replica = o["usd_per_hour_per_replica"]
    rate, rate_source = replica_budget_rps(o)
    tokens_per_request = float(np.mean(reqs.prompt_tokens + reqs.output_tokens))
    full_budget = (rate or 0.0) * tokens_per_request
    knobs = grid(o["replicas"], cold or 0.0, full_budget, o["max_batch"], max_replicas, intervals=INTERVALS, kinds=kinds)
    if full_budget <= 0:
        knobs = [k for k in knobs if k.kind not in BUDGETED or k.min_replicas == k.max_replicas]
        notes.append("one replica meets the SLO at no rate: no token budget, so only queue-depth policies are swept")
    results = [simulate_policy(k, reqs, service, o["max_batch"], policy, bar, per_replica, HOURS_PER_MONTH)[0] for k in knobs]
    fixed = results[0]  # grid() puts min = max = the fixed count first
    best = choose(results, attainment)
    if best is None:
        notes.append(f"no policy swept (the fixed plan included) reaches {attainment:g} attainment")
    elif best["kind"] == "schedule" and best["min_replicas"] < best["max_replicas"]:
        best = {**best, "schedule": _schedule_of(knobs[results.index(best)], reqs)}
    return {
        "autoscale": None if best is None else {**best, "cold_start_s": cold, "cold_start_source": cold_source,
                                                "cold_start_spread": spread},
        "fixed": {**fixed, "replicas": o["replicas"], "plan_cost_per_month": o["cost_per_month"]},
        "saving_pct": None if best is None or not fixed["cost_per_month_usd"] else
        100 * (1 - best["cost_per_month_usd"] / fixed["cost_per_month_usd"]),
        "attainment_target": attainment,
        "slo": [str(s) for s in bar], "slo_source": slo_source,
        "option": {"model": m, "variant": v, "max_batch": o["max_batch"], "hardware": doc["hardware"],
                   "usd_per_hour_per_replica": per_replica},
        "token_budget": {"per_replica_at_full_tokens_per_s": full_budget, "rate_rps": rate, "rate_source": rate_source,
                         "tokens_per_request_mean": tokens_per_request},
        "cold_start_s": cold, "cold_start_source": cold_source,
        "load": doc["load"], "routing": policy, "month_hours": HOURS_PER_MONTH,
        "tried": sorted(results, key=lambda r: (r["slo_attainment"] < attainment, r["cost_per_month_usd"])),
        "notes": notes + [f"{len(results)} policies simulated ({', '.join(kinds)}; a schedule is learnt from this trace: "
                          "an in-sample, optimistic bound); min, max, headroom, interval and cool-down swept; a scale-up "
                          "serves after the cold start"],
        "prediction": "simulated with the planner's fitted service model on this machine's measurements, not measured",
    }


def _schedule_of(knobs: Knobs, reqs) -> list[dict]:
    """A schedule policy's counts over the trace: the steps where it changes (seconds after the first arrival)."""
    ctl = Controller(knobs, reqs)
    ctl.advance(float(reqs.arrival_s[-1]))
    return [{"at_s": round(t - ctl.t0, 3), "replicas": n} for t, n in ctl.events]


def autoscale_path(run: RunDir, trace: str) -> Path:
    """RUN_DIR/plans/autoscale-trace-<name>.json."""
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(trace).stem)[:80] or "trace"
    return run.path / "plans" / f"autoscale-trace-{name}.json"


def knobs_label(r: dict) -> str:
    """A policy's knobs in a few words."""
    if r["min_replicas"] == r["max_replicas"]:
        return f"fixed {r['min_replicas']}"
    what = f"tokens<={r['token_budget']:,.0f}/s" if r["kind"] in BUDGETED else f"depth<={r['depth_target']:g}"
    return f"{r['kind']} {r['min_replicas']}-{r['max_replicas']} {what} every {r['interval_s']:g}s, cool {r['cooldown_s']:g}s"


__all__ = ["Knobs", "autoscale_path", "cold_start", "knobs_label", "plan_autoscale"]
