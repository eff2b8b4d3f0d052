"""The planner against a measured concurrency run: predicted vs measured latency at each load level.

A concurrency scenario with `rates` runs the same static-batching server the planner simulates,
with Poisson arrivals; for a served option (llama-server) its rate points run against a server of
`max_batch` slots, which the planner simulates as continuous batching (continuous.py) fitted on the
option's closed-loop cells (single-stream, clients=N) instead of its queue-free batches. For each run (run_id) in the records, the service model is fitted on that
run's queue-free measurements (single-stream, batch) only, and each of its rate points predicted:

- replay: the measured arrival times and lengths through the simulator (tests the service and
  queue model on exactly the load that was measured);
- poisson: simulated runs of the same size at the same rate (what the planner predicts from the
  rate alone, so it also carries the measured run's sampling luck).

`service_time_measured_over_fitted` says how far the batches served at a rate point took longer
(> 1) or shorter than the fit predicts for the same batches: the part of the error that comes from
the service times moving (e.g. other work on a shared machine), not from the queue model.

The after-idle slowdown (idle.py) is fitted out of sample: for a run's rate point, on the other
runs' rate points (several runs) or on the same run's other rate points (one run). The error
without it is reported too.

Each prediction is the mean over REPEATS simulations (different draws of the measured service-time
variability). Several runs of the same rate points (e.g. short rounds on a shared machine) pool
into one level: each round is predicted from its own fit, then the percentiles are taken over all
requests. Errors are (predicted - measured) / measured in percent.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from llmbench.planner.capacity import saturation_rps
from llmbench.planner.idle import fit_idle_penalty
from llmbench.planner.queue import Requests, poisson_requests, simulate
from llmbench.planner.served import closed_loop, served_records
from llmbench.planner.served_fit import fit_continuous
from llmbench.planner.service import FIT_SCENARIOS, fit_service, observations_from_records

REPEATS = 20
METRICS = ("e2el_ms", "ttft_ms")


def rate_max_batch(config: dict) -> dict[str, int]:
    """Each concurrency rate point's label ('rate=0.5') and the max batch its server used."""
    out = {}
    for sc in config.get("scenarios") or []:
        if isinstance(sc, dict) and sc.get("kind") == "concurrency":
            for r in sc.get("rates") or []:
                out[f"rate={r:g}"] = int(sc.get("max_batch") or 8)
    return out


def _pcts(values: np.ndarray) -> dict:
    p = np.percentile(values, [50, 95, 99])
    return {"p50": float(p[0]), "p95": float(p[1]), "p99": float(p[2])}


def _mean_pcts(draws: list[dict[str, np.ndarray]]) -> dict:
    """Percentiles of each metric averaged over repeated simulations."""
    return {m: {q: float(np.mean([np.percentile(d[m], int(q[1:])) for d in draws])) for q in ("p50", "p95", "p99")}
            for m in METRICS}


def _err(pred: float, meas: float) -> float | None:
    return 100.0 * (pred - meas) / meas if meas > 0 else None


def _by_run(records: list, served: bool = False) -> dict[str, tuple[list, dict[str, list]]]:
    runs: dict[str, tuple[list, dict[str, list]]] = defaultdict(lambda: ([], defaultdict(list)))
    for r in records:
        if not (r.ok and r.e2el_ms is not None and r.ttft_ms is not None):
            continue
        fit, cells = runs[r.run_id]
        if r.scenario in FIT_SCENARIOS or (served and closed_loop(r)):
            fit.append(r)
        elif r.scenario == "concurrency" and r.point.startswith("rate="):
            cells[r.point].append(r)
    return {k: v for k, v in runs.items() if v[0] and v[1]}


def validate_option(records: list, max_batches: dict[str, int] | None = None, seed: int = 0) -> dict | None:
    """Prediction error of one option (its request records) at each measured rate point; None if none."""
    served = served_records(records)
    runs = _by_run(records, served)
    if not runs:
        return None
    # Per point: measured values, replay draws and Poisson draws, pooled over runs.
    measured: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    replay: dict[str, list[dict]] = defaultdict(lambda: [defaultdict(list) for _ in range(REPEATS)])
    plain: dict[str, list[dict]] = defaultdict(lambda: [defaultdict(list) for _ in range(REPEATS)])  # no idle penalty
    penalties: dict[str, list[float]] = defaultdict(list)
    poisson: dict[str, list[dict]] = defaultdict(lambda: [defaultdict(list) for _ in range(REPEATS)])
    shares: dict[str, list[float]] = defaultdict(list)
    spans: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # requests, measured s, replayed s (mean)
    service_sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # measured, modelled batch ms
    batch_of: dict[str, int] = {}
    services = []
    for run_id, (fit, cells) in runs.items():
        # A served option: continuous batching fitted on its closed-loop cells (served_fit.py).
        base = fit_continuous(fit) if served else fit_service(observations_from_records(fit), "request log")
        services.append(base.describe())
        for point, recs in cells.items():
            # The after-idle penalty never comes from the cell it predicts: from the other runs'
            # rate points when there are several runs, else from this run's other rate points.
            others = [r for rid, (_, cs) in runs.items() if rid != run_id for rs in cs.values() for r in rs] if len(runs) > 1 \
                else [r for p, rs in cells.items() if p != point for r in rs]
            service = base if served else replace(base, idle_penalty=fit_idle_penalty(base, others))
            penalties[point].append(service.idle_penalty.mean - 1 if service.idle_penalty is not None else 0.0)
            recs = sorted(recs, key=lambda r: r.timestamp)
            rate = float(point.split("=", 1)[1])
            batch = batch_of.setdefault(point, (max_batches or {}).get(point) or max(r.batch_size for r in recs))
            arrivals = np.array([r.timestamp for r in recs])
            prompts = np.array([r.prompt_tokens for r in recs], float)
            outputs = np.array([r.output_tokens for r in recs])
            for m in METRICS:
                measured[point][m] += [getattr(r, m) for r in recs]
            reqs = Requests(arrivals - arrivals[0], prompts, outputs)
            for i in range(REPEATS):
                sim = simulate(reqs, service, 1, batch, seed=seed + i)
                spans[point][2] += sim.window_s / REPEATS
                bare = simulate(reqs, base, 1, batch, seed=seed + i)
                psim = simulate(poisson_requests(rate, len(recs), prompts, outputs, seed + i), service, 1, batch, seed=seed + i)
                for m in METRICS:
                    replay[point][i][m] += getattr(sim, m).tolist()
                    plain[point][i][m] += getattr(bare, m).tolist()
                    poisson[point][i][m] += getattr(psim, m).tolist()
            shares[point].append(rate / saturation_rps(service, prompts, outputs, batch, seed=seed))
            spans[point][0] += len(recs)
            spans[point][1] += max(r.timestamp + r.e2el_ms / 1e3 for r in recs) - arrivals[0]
            # How well the fitted service times carried over to this point's batches (queueing aside).
            for o in ([] if served else observations_from_records(recs)):
                got, model = base.observed_ms(o)
                service_sums[point][0] += got
                service_sums[point][1] += model
    levels = []
    for point in sorted(measured, key=lambda p: float(p.split("=", 1)[1])):
        meas = {m: _pcts(np.array(v)) for m, v in measured[point].items()}
        pred = _mean_pcts([{m: np.array(v) for m, v in d.items()} for d in replay[point]])
        pois = _mean_pcts([{m: np.array(v) for m, v in d.items()} for d in poisson[point]])
        bare = _mean_pcts([{m: np.array(v) for m, v in d.items()} for d in plain[point]])
        levels.append({
            "point": point,
            "rate_rps": float(point.split("=", 1)[1]),
            "requests": len(measured[point]["e2el_ms"]),
            "runs": len(shares[point]),
            "max_batch": batch_of[point],
            "load_share_of_saturation": float(np.mean(shares[point])),
            # Requests completed per second, from the first arrival to the last answer.
            "throughput_req_s": {"measured": spans[point][0] / spans[point][1], "predicted": spans[point][0] / spans[point][2],
                                 "error_pct": _err(spans[point][1], spans[point][2])},
            "service_time_measured_over_fitted": service_sums[point][0] / service_sums[point][1] if service_sums[point][1] else None,
            "idle_penalty_extra_pct": 100 * float(np.mean(penalties[point])),
            "measured": meas,
            "predicted_replay": pred,
            "predicted_poisson": pois,
            "error_pct": {
                "e2el_p50": _err(pred["e2el_ms"]["p50"], meas["e2el_ms"]["p50"]),
                "e2el_p95": _err(pred["e2el_ms"]["p95"], meas["e2el_ms"]["p95"]),
                "ttft_p95": _err(pred["ttft_ms"]["p95"], meas["ttft_ms"]["p95"]),
            },
            "error_pct_without_idle_penalty": {
                "e2el_p95": _err(bare["e2el_ms"]["p95"], meas["e2el_ms"]["p95"]),
            },
            "error_pct_poisson": {
                "e2el_p50": _err(pois["e2el_ms"]["p50"], meas["e2el_ms"]["p50"]),
                "e2el_p95": _err(pois["e2el_ms"]["p95"], meas["e2el_ms"]["p95"]),
            },
        })
    e95 = [abs(lv["error_pct"]["e2el_p95"]) for lv in levels if lv["error_pct"]["e2el_p95"] is not None]
    p95 = [abs(lv["error_pct_poisson"]["e2el_p95"]) for lv in levels if lv["error_pct_poisson"]["e2el_p95"] is not None]
    return {
        "engine_model": "continuous batching (served)" if served else "static batching (in-process)",
        "method": "per run: service model fitted on its single-stream/batch measurements (served: its closed-loop cells); replay = measured arrivals "
                  f"through the simulator; poisson = simulated runs of the same size at the rate; mean of {REPEATS} draws",
        "levels": levels,
        "max_abs_e2el_p95_error_pct": max(e95) if e95 else None,
        "max_abs_e2el_p95_error_pct_poisson": max(p95) if p95 else None,
        "service_models": services,
    }
