"""The machine's speed during the load, and the plan's model at that speed (verify.json `at_load_speed`).

A plan misses for two reasons: its model is wrong, or the machine is not the one the run measured (a
shared VM's decode moved 1.1-4x between a run and its check, BENCHMARKS.md). `--refit` measures the
machine just before the load; this measures it during the load itself, at no cost. Each request of
the direct phase decodes through a window of steps whose time the plan's step model gives, from the
clients' token times and llama.cpp's own decode time (served_steps.windows, as the run's fit reads
its cells). Measured over modelled, per request, is the machine's speed while the load ran. The
plan's model with those ratios in place of the run's, simulated on the requests sent, is what the
model says of this load with the machine's drift taken out.

It is not a prediction a plan could make in advance: one number per request is taken from the load
itself. It checks the model's structure (slots, batching, prefill, queueing), which a single speed
per request cannot fit: the queueing that dominates p95 near capacity is not measured into it.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Callable

import numpy as np

from llmbench.planner.served_steps import speed_ratios, timelines, windows
from llmbench.verify import compare as cmp
from llmbench.verify.load import Arrival, LoadResult, Outcome
from llmbench.verify.spec import VerifySpec

MIN_WINDOWS = 10  # fewer decode windows than this say too little about the machine's speed
SOURCE = ("the plan's model with the machine's speed measured during the load (the direct phase's decode windows "
          "against the model) in place of the run's, simulated on the requests sent; compare it with the direct "
          "measurement (error_direct), where that speed was measured")


def _records(outs: list[Outcome]) -> list[SimpleNamespace]:
    """The successful requests as the step fit reads a run's records; one cell per server (its URL)."""
    return [SimpleNamespace(timestamp=o.arrived, ttft_ms=(o.res.chunk_times[0] - o.arrived) * 1e3,
                            e2el_ms=(o.res.chunk_times[-1] - o.arrived) * 1e3, prompt_tokens=o.prompt_tokens,
                            output_tokens=o.res.output_tokens or len(o.res.chunk_times),
                            server_timings=o.res.server_timings, run_id=o.target, scenario="verify", point="direct")
            for o in outs if o.ok and o.res.chunk_times]


def load_speed(model, outs: list[Outcome], parallel: int) -> tuple[tuple[float, ...], int]:
    """(measured / modelled decode time of each request's window, how many were left out) of the
    requests `outs` sent straight to servers of `parallel` slots, against the continuous `model`."""
    cells = timelines(_records(outs))
    wins = windows(cells, {c: parallel for c in cells}, lambda p: model.prefill_ms(1, p))
    if not wins:
        return (), 0
    return speed_ratios(wins, tuple(model.step_batches), model.step_base_ms, model.step_ms_per_kv_token)


def at_load_speed(spec: VerifySpec, arrivals: list[Arrival], proxied: LoadResult, straight: LoadResult,
                  duration_s: float, share: Callable[[str], float]) -> dict:
    """verify.json's `at_load_speed`: each primary's speed during the direct phase against the run's,
    and the plan's model at that speed against what was measured."""
    from llmbench.verify.figures import per_deployment
    from llmbench.verify.predict import fitted_service

    models, speeds = {}, {}
    for d in spec.primaries:
        plan = fitted_service(spec.run_dir, d)
        if plan is None or not getattr(plan, "continuous", False):
            speeds[d.option] = {"skipped": "no continuous-batching model of it in the run"}
            continue
        outs = [o for o in straight.outcomes if spec.by_alias(o.alias).option == d.option]
        ratios, dropped = load_speed(plan, outs, d.parallel)
        if len(ratios) < MIN_WINDOWS:
            speeds[d.option] = {"skipped": f"{len(ratios)} decode window(s) measured, fewer than {MIN_WINDOWS}"}
            continue
        models[d.option] = dataclasses.replace(plan, duration_ratios=ratios)
        mean = float(np.mean(ratios))
        speeds[d.option] = {"windows": len(ratios), "left_out": dropped, "load_ratio_mean": mean,
                            "run_ratio_mean": plan.mean_ratio, "slower_than_run": mean / plan.mean_ratio}
    if not models:
        return {"skipped": True, "reason": "no deployment's speed could be measured", "speed": speeds}
    deps, overall, notes, _, _ = per_deployment(spec, arrivals, proxied, straight, duration_s, share, planned=False,
                                                services=models)
    e2, th = overall["e2el_p95"], overall["throughput"]
    within = lambda f, tol: f["error_direct"] is not None and abs(f["error_direct"]) <= tol  # noqa: E731
    return {"skipped": False, "speed": speeds, "overall": overall, "deployments": deps, "notes": notes,
            "accurate_direct": bool(within(e2, cmp.E2EL_TOLERANCE) and within(th, cmp.THROUGHPUT_TOLERANCE)),
            "source": SOURCE}
