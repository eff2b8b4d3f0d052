"""Predicted against measured per deployment and overall, from the two loads' outcomes.

Latency and throughput are measured through the gateway (what users get); queueing on the same
schedule sent straight to the servers (only there does llama.cpp's `timings` come back). With the
planned load, the predictions are the plan's (deployment.yaml `predicted`, at its `load_rps`); with
another load, the planner's model simulated on exactly the requests sent (predict.py).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from llmbench.verify import compare as cmp
from llmbench.verify.load import Arrival, LoadResult
from llmbench.verify.predict import predict_schedule
from llmbench.verify.spec import VerifySpec

PLAN_SOURCE = "the plan: deployment.yaml `predicted` at the deployment's planned load_rps"


class Figures(NamedTuple):
    """per_deployment's answer; `measured`/`direct` are the overall measurements, for the gateway block."""
    deployments: dict
    overall: dict
    notes: list[str]
    measured: dict
    direct: dict


def per_deployment(spec: VerifySpec, arrivals: list[Arrival], proxied: LoadResult, straight: LoadResult,
                   duration_s: float, share: Callable[[str], float], planned: bool,
                   services: dict | None = None) -> Figures:
    """({option: block}, the overall block, notes, the overall measurements). `share(option)`: the part
    of its planned load sent here (scale.py); the planned throughput is scaled by it, the latency
    predictions are not.
    `services`: {option: model} to simulate on the requests sent instead (refit.py); only those
    deployments are compared."""
    opt = lambda alias: spec.by_alias(alias).option
    notes: list[str] = []
    deps: dict[str, dict] = {}
    parts, spans = [], []
    for d in spec.primaries:
        if services is not None and d.option not in services:
            continue
        mine = [a for a in arrivals if opt(a.alias) == d.option]
        if not mine:
            deps[d.option] = {"role": d.role, "requests": 0, "note": "no request of this load was routed to it"}
            continue
        meas = cmp.measured([o for o in proxied.outcomes if opt(o.alias) == d.option], proxied.start, duration_s)
        direct = cmp.measured([o for o in straight.outcomes if opt(o.alias) == d.option], straight.start, duration_s)
        span = None
        if planned and services is None:
            raw, source = d.predicted, PLAN_SOURCE
            pred = cmp.predicted_figures(raw, (d.load_rps or 0.0) * share(d.option) or None)
        else:
            raw, source = predict_schedule(spec.run_dir, d, mine, spec.strategy, (services or {}).get(d.option))
            # An overloaded server answers past the load's end: its throughput is what the simulation completes.
            span = (raw or {}).get("span_s")
            pred = cmp.predicted_figures(raw, cmp.simulated_throughput(len(mine), duration_s, [span]))
            if raw is None:
                notes.append(f"{d.option}: {source}")
        parts.append((len(mine), raw or {}))
        spans.append(span)
        deps[d.option] = {"role": d.role, "replicas": len(d.replicas), "parallel": d.parallel,
                          "planned_load_rps": d.load_rps, "load_share_here": share(d.option), "sent_rps": len(mine) / duration_s, "predicted_source": source,
                          "predicted_span_s": span,
                          **cmp.compare(pred, meas, direct)}
    for d in spec.deployments:
        if d.role == "fallback" and d.option not in deps and services is None:
            deps[d.option] = {"role": "fallback", "replicas": len(d.replicas), "started": d.startable,
                              "predicted_standby": cmp.predicted_figures(d.predicted, d.load_rps),
                              "note": "a standby: it takes requests only when its primary fails (see `fallback`)"}
    keep = lambda outs: [o for o in outs if services is None or opt(o.alias) in services]  # noqa: E731
    meas = cmp.measured(keep(proxied.outcomes), proxied.start, duration_s)
    direct = cmp.measured(keep(straight.outcomes), straight.start, duration_s)
    if len(parts) > 1:
        notes.append("overall predictions of a routed deployment: " + (
            "percentiles of every request simulated, the deployments' simulations pooled" if cmp.pooled(parts) else
            "percentiles of the mixture of its deployments' predicted distributions, weighted by their requests (each "
            "interpolated between its p50/p90/p95/p99)") + "; throughput: " + (
            "their planned loads added up" if planned and services is None else
            "every request sent, over the load's window stretched to the last answer any of them simulates"))
    if planned and services is None:  # the sum of the deployments' planned loads, each at its share here
        rate = sum((d.load_rps or 0.0) * share(d.option) for d in spec.primaries) or None
    else:
        rate = cmp.simulated_throughput(sum(n for n, _ in parts), duration_s, spans)
    pred = cmp.predicted_figures(parts[0][1], rate) if len(parts) == 1 else {**cmp.blend(parts), "throughput": rate}
    overall = cmp.compare(pred, meas, direct)
    overall["queue_source"] = "TTFT - llama.cpp timings.prompt_ms, on the same schedule sent straight to the servers"
    return Figures(deps, overall, notes, meas, direct)
