"""Plan every measured option of a results folder (or one): shared by `llmbench plan` and the plan stage.

Two kinds of plan, kept apart so that exploring never changes a decision: the run's own plan,
`plan.json`, written only by the plan stage of `llmbench run` at the run config's load (what
`llmbench recommend` reads), and exploratory plans from `llmbench plan`, written beside it as
`plans/plan-<load>.json`. Each records what produced it (`produced_by`: command, load, time).
"""
from __future__ import annotations

import datetime as dt
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from llmbench.errors import BadInput
from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner.capacity import (DEFAULT_MAX_REPLICAS, HOURS_PER_MONTH, plan_option, validate_limits,
                                       validate_rps)
from llmbench.planner.context import context_tokens
from llmbench.planner.nodes import apply as node_figures
from llmbench.planner.queue import DEFAULT_POLICY
from llmbench.planner.served import served_records
from llmbench.optimizers.guard.hook import guard_share
from llmbench.planner.service import FIT_SCENARIOS
from llmbench.planner.sweep import TOTAL_BUDGET_S, sweep_for, sweep_lengths
from llmbench.planner.trace import Trace, load_trace
from llmbench.planner.validate import rate_max_batch, validate_option
from llmbench.results import RunDir
from llmbench.slo import SLO

CHECKED_IN = "BENCHMARKS.md"
OWN_PLAN = "plan.json"
EXPLORATORY_DIR = "plans"


def _options(rows: list[dict], model: str | None, variant: str | None) -> dict[tuple[str, str], list[dict]]:
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by[(r["model"], r["variant"])].append(r)
    if not by:
        raise BadInput("the results folder's summary has no rows to plan from")
    picked = {k: v for k, v in by.items() if (model is None or model in (k[0], k[0].removeprefix("card:")))
              and (variant is None or variant == k[1])}
    if not picked:
        known = ", ".join(f"{m} {v}" for m, v in by)
        raise BadInput(f"no measured option matches --model {model} --variant {variant} (measured: {known})")
    return picked


def exploratory_path(run_dir: RunDir, rps: float | None, trace: str | Path | Trace | None) -> Path:
    """Where `llmbench plan` writes: RUN_DIR/plans/plan-rps<R>.json or plans/plan-trace-<name>.json."""
    if trace is not None:
        name = Path(str(trace.path if isinstance(trace, Trace) else trace)).stem
        label = "trace-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "trace")
    else:
        label = f"rps{rps:g}".replace("+", "")
    return run_dir.path / EXPLORATORY_DIR / f"plan-{label}.json"


def produced_by(command: str, load: dict) -> dict:
    """What produced a plan: the command, its load and the time (UTC)."""
    what = (f"trace {load.get('path')}" if load.get("kind") == "trace" else f"{load.get('offered_rps')} req/s Poisson")
    return {"command": command, "load": what, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _sweep(run_dir: RunDir, meta: dict, m: str, v: str, recs: list, tr: Trace | None, ctx: int | None,
           measure: bool, budget_s: float) -> tuple[dict | None, str | None]:
    """The option's prefill sweep when the trace needs longer prompts than the run measured; (sweep, note)."""
    if tr is None:
        return None, None  # a rate plan draws its lengths from the measured requests
    if served_records(recs):
        return None, ("prefill sweep not run for a served variant (it would need the server started again): "
                      "longer prompts are extrapolated from the run's measurements")
    fit = [r for r in recs if r.ok and r.scenario in FIT_SCENARIOS] or [r for r in recs if r.ok]
    if not fit:
        return None, None
    widths = np.array([r.prompt_tokens for r in fit], float)
    need = tr.requests.prompt_tokens
    if ctx is not None:
        need = need[tr.requests.prompt_tokens + tr.requests.output_tokens <= ctx]
    if not len(need):
        return None, None
    lengths = sweep_lengths(float(np.median(widths)), float(widths.max()), float(need.max()), ctx)
    if not lengths["long"]:
        return None, None
    if not measure:
        return None, (f"prefill sweep not run (--no-measure): prompts beyond {widths.max():g} tokens are extrapolated "
                      "from the run's measurements")
    try:
        return sweep_for(run_dir, meta, m, v, lengths, budget_s), None
    except BadInput as exc:
        return None, f"prefill sweep failed ({exc}): prompts beyond {widths.max():g} tokens are extrapolated from the run's measurements"


def _cheapest_first(o: dict) -> tuple:
    """The recommender's order (recommend/choose.py cost_key): cost, then the faster at p95, then the name,
    so that equal-cost options are ranked the same way in plan.json and in the decision."""
    p95 = (o.get("predicted") or {}).get("e2el_ms", {}).get("p95")
    return (round(o["cost_per_month"], 6), float("inf") if p95 is None else p95, o["model"], o["variant"])


def plan_run(run_dir: RunDir, slos: list[SLO], rps: float | None = None, trace: str | Path | Trace | None = None,
             model: str | None = None, variant: str | None = None, max_replicas: int = DEFAULT_MAX_REPLICAS,
             max_batch: int | None = None, policy: str = DEFAULT_POLICY, goodput: float | None = None,
             measure: bool = True) -> dict:
    """The plan document for a results folder (the caller writes it: see OWN_PLAN and exploratory_path).

    `measure` lets a trace plan load each variant again for a short prefill sweep when the trace
    needs longer prompts than the run measured (sweep.py); without it they are extrapolated.
    """
    if (rps is None) == (trace is None):
        raise BadInput("give exactly one of --rps or --trace")
    if rps is not None:
        rps = validate_rps(rps)
    validate_limits(max_batch, max_replicas, policy)
    if goodput is not None and not 0 < goodput <= 1:
        raise BadInput(f"--goodput is a share of requests in (0, 1], got {goodput}")
    meta = run_dir.read_json("run.json")
    summary = run_dir.read_json("summary.json")
    hardware = HardwareProfile(**meta["hardware_profile"])
    tr = load_trace(trace) if isinstance(trace, (str, Path)) else trace
    picked = _options(summary.get("rows") or [], model, variant)
    records = run_dir.records()
    batches = rate_max_batch(meta.get("config") or {})
    options = []
    deadline = time.monotonic() + TOTAL_BUDGET_S  # the sweeps' time, shared out over the options still to plan
    for i, ((m, v), rows) in enumerate(picked.items()):
        recs = [r for r in records if r.model == m and r.variant == v]
        entry: dict = {"model": m, "variant": v}
        if all(r.get("error") for r in rows):
            options.append({**entry, "error": "every measurement of this option failed"})
            continue
        ctx, ctx_source = context_tokens(meta, m, v)
        share = max(10.0, (deadline - time.monotonic()) / (len(picked) - i))
        sweep, sweep_note = _sweep(run_dir, meta, m, v, recs, tr, ctx, measure, share)
        validation = validate_option(recs, batches)
        try:
            entry.update(plan_option(rows, hardware, slos, rps=rps, trace=tr, max_batch=max_batch, records=recs,
                                     max_replicas=max_replicas, goodput=goodput, policy=policy, validation=validation,
                                     context_tokens=ctx, prefill_sweep=sweep))
            entry["context_source"] = ctx_source
        except BadInput as exc:
            entry["error"] = str(exc)
        if sweep_note:
            entry["notes"] = entry.get("notes", []) + [sweep_note]
        if served_records(recs) and "error" not in entry:
            entry["served"] = True
        node_figures(entry, rows, meta)  # a Ray run: the node that measured this option, with its own figures
        guard = guard_share(recs)
        if guard is not None and "error" not in entry:
            entry["guardrails"] = guard
        if validation is None:
            entry["notes"] = [n for n in entry.get("notes", []) if not n.startswith("prediction error")] + [
                f"prediction error: this run has no concurrency rate points to check against; the planner's check "
                f"on this machine is recorded in {CHECKED_IN}"]
        options.append(entry)
    planned = [o for o in options if "error" not in o]
    meeting = [o for o in planned if o["meets_slo"]]
    best = min(meeting, key=_cheapest_first) if meeting else None
    over = [o["requests_over_context"] for o in planned if o.get("requests_over_context")]
    return {
        # The headline first: readers (and checks) that take the first figure get the answer.
        "best": None if best is None else {k: best[k] for k in ("model", "variant", "replicas", "max_batch", "cost_per_hour", "cost_per_month")}
                | {"e2el_p95_ms": best["predicted"]["e2el_ms"].get("p95"), "ttft_p95_ms": best["predicted"]["ttft_ms"].get("p95"),
                   "requests_over_context": best.get("requests_over_context")},
        "verdict": _verdict(planned, best, slos),
        "run_id": meta.get("run_id"),
        "hardware": hardware.name,
        "usd_per_hour_per_replica": hardware.usd_per_hour * hardware.devices,
        "load": planned[0]["load"] if planned else ({"kind": "trace", **tr.describe()} if tr else {"kind": "poisson", "offered_rps": rps}),
        "policy": policy,
        "slo": [str(s) for s in slos],
        "goodput": goodput,
        "month_hours": HOURS_PER_MONTH,
        "measured_on": _machine(meta),
        # The most requests any planned option had to leave out for want of context (each option has its own count).
        "requests_over_context_max": max(over) if over else 0,
        "options": options,
        "prediction": "latencies are a queueing model's prediction from service times measured on this machine, "
                      "not measurements; see each option's prediction_error and notes",
    }


def _machine(meta: dict) -> str:
    m = (meta.get("environment") or {}).get("machine") or {}
    gpus = ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in m.get("gpus") or [])
    cpu = f"{m.get('cpu_model', 'unknown CPU')} ({m.get('cpu_cores_logical', '?')} logical cores)"
    return f"{meta.get('device', 'cpu')}: {gpus or cpu}"


def _verdict(planned: list[dict], best: dict | None, slos: list[SLO]) -> str:
    if best is not None:
        left = best.get("requests_over_context")
        return (f"cheapest option meeting {', '.join(map(str, slos)) or 'the load'}: {best['model']} {best['variant']} "
                f"with {best['replicas']} replica(s), ${best['cost_per_month']:,.2f}/month" +
                (f"; {left} requests ({100 * best['share_over_context']:.1f}%) exceed its {best['context_tokens']:,}-token "
                 "context and are not served" if left else ""))
    if not planned:
        return "no option could be planned"
    binding = sorted({str(o["binding"]) for o in planned if o.get("binding")})
    return f"no measured option meets the SLO at this load within the replica cap (binding: {', '.join(binding) or 'unknown'})"
