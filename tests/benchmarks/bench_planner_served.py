"""Benchmark: the planner's continuous-batching model against a real llama-server, at three loads.

    .venv/bin/python tests/benchmarks/bench_planner_served.py [--model card:llama-50m] [--variant gguf-q4_k_m]
        [--parallel 4] [--shares 0.5 0.75 0.9] [--fit-requests 60] [--rate-requests 80] [--rounds 3]
        [--out DIR] [--json OUT]

1. Calibration: one `llmbench run` of the variant served by llama-server, single-stream and closed-loop
   clients 1, 2 and PARALLEL; the planner fits its continuous-batching model (served_fit.py) and
   computes one replica's capacity at PARALLEL slots (every slot kept busy).
2. Validation: ROUNDS runs, each the same closed-loop cells and then open-loop Poisson rate points at
   SHARES x that capacity against a llama-server of PARALLEL slots (the concurrency scenario's
   `rates` with `max_batch: PARALLEL`). Rounds interleave fitting and measuring in time, so that a
   shared machine's drift reaches both alike.
Predicted against measured, pooled over the rounds, at each load:
   - plan: the calibration's model, Poisson runs of the measured size from an empty server (the
     planner's figure made before the measurement), mean of 20 draws;
   - poisson / replay: validate.validate_option (each round fitted on its own closed-loop cells;
     replay = the measured arrivals through the model);
   - throughput: requests over the time from the first arrival to the last answer.
Goal (issue 15 point 4): predicted p95 E2EL and throughput within 10% of the measured ones.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
REPEATS = 20


def _run(config: dict, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = out.with_suffix(".yaml")
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run([str(ROOT / ".venv/bin/llmbench"), "run", str(cfg), "--out", str(out)], stdout=log,
                              stderr=subprocess.STDOUT, cwd=ROOT)
    # Exit 1 also says a later stage (recommend, report) failed: the measurements still stand.
    if done.returncode and not (out / "summary.json").is_file():
        raise SystemExit(f"{out}: llmbench run failed ({done.returncode}); see {out.with_suffix('.log')}")
    if done.returncode:
        print(f"{out.name}: llmbench run exited {done.returncode} after measuring (see its log)", flush=True)
    return out


def _config(model: str, variant: str, requests: int, seed: int, scenarios: list) -> dict:
    cand = {"card": model.removeprefix("card:")} if model.startswith("card:") else {"model": model}
    return {"candidates": [{**cand, "variants": [variant]}],
            "workload": {"prompt_tokens": {"dist": "lognormal", "mean": 96, "sigma": 0.5, "min": 16, "max": 384},
                         "output_tokens": 32, "requests": requests},
            "scenarios": scenarios, "hardware": "cpu-2core", "device": "cpu", "warmup": 2, "seed": seed,
            "precision_pct": None, "quality": None}


def _closed(parallel: int) -> list:
    return ["single-stream", {"kind": "concurrency", "clients": sorted({1, 2, parallel})}]


def _fit(run: Path):
    from llmbench.planner.served import fit_records
    from llmbench.planner.served_fit import fit_continuous
    from llmbench.results import RunDir

    recs = fit_records([r for r in RunDir(run).records() if r.ok])
    return fit_continuous(recs), np.array([r.prompt_tokens for r in recs], float), np.array([r.output_tokens for r in recs])


def _plan_figures(model, prompts, outputs, rate: float, sizes: list[int], parallel: int) -> dict:
    """p95/p50 E2EL and throughput of Poisson runs of the measured sizes, pooled per draw, mean over draws."""
    from llmbench.planner.queue import poisson_requests, simulate

    p95, p50, thr = [], [], []
    for d in range(REPEATS):
        e2el, n, span = [], 0, 0.0
        for j, size in enumerate(sizes):
            sim = simulate(poisson_requests(rate, size, prompts, outputs, seed=1000 * d + j), model, 1, parallel, seed=d)
            e2el += sim.e2el_ms.tolist()
            n, span = n + size, span + sim.window_s
        p95.append(np.percentile(e2el, 95))
        p50.append(np.percentile(e2el, 50))
        thr.append(n / span)
    return {"e2el_p95": float(np.mean(p95)), "e2el_p50": float(np.mean(p50)), "throughput": float(np.mean(thr))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="card:llama-50m")
    ap.add_argument("--variant", default="gguf-q4_k_m")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--shares", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    ap.add_argument("--fit-requests", type=int, default=60)
    ap.add_argument("--rate-requests", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_planner_served"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from llmbench.planner.continuous import saturation_rps
    from llmbench.planner.validate import validate_option
    from llmbench.results import RunDir

    calib = a.out / "calibration"
    if not calib.exists():
        _run(_config(a.model, a.variant, a.fit_requests, 0, _closed(a.parallel)), calib)
    model, prompts, outputs = _fit(calib)
    capacity = saturation_rps(model, prompts, outputs, a.parallel)
    rates = [round(s * capacity, 3) for s in a.shares]
    print(f"calibration: step ms by slots {dict(zip(model.step_batches, np.round(model.step_base_ms, 2)))}, "
          f"capacity at {a.parallel} slots {capacity:.3f} req/s -> rates {rates}", flush=True)
    records, loads = [], {f"rate={r:g}": [] for r in rates}
    for i in range(a.rounds):
        run = a.out / f"round{i + 1}"
        if not run.exists():
            _run(_config(a.model, a.variant, a.rate_requests, i + 1, _closed(a.parallel) +
                         [{"kind": "concurrency", "rates": rates, "max_batch": a.parallel}]), run)
        records += [r for r in RunDir(run).records() if r.ok]
        for row in RunDir(run).read_json("summary.json")["rows"]:
            if row["point"] in loads:
                loads[row["point"]].append(row.get("loadavg_1min"))
        print(f"round {i + 1} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    val = validate_option(records, {p: a.parallel for p in loads})
    levels = []
    for share, rate, lv in zip(a.shares, rates, val["levels"]):
        runs = dict.fromkeys(r.run_id for r in records)
        sizes = [sum(1 for r in records if r.point == lv["point"] and r.run_id == rid) for rid in runs]
        plan = _plan_figures(model, prompts, outputs, rate, [s for s in sizes if s], a.parallel)
        meas = {"e2el_p95": lv["measured"]["e2el_ms"]["p95"], "e2el_p50": lv["measured"]["e2el_ms"]["p50"],
                "throughput": lv["throughput_req_s"]["measured"]}
        levels.append({"share": share, "rate_rps": rate, "requests": lv["requests"], "load_average": loads[lv["point"]],
                       "measured": meas, "plan": plan,
                       "error_pct": {k: 100 * (plan[k] - meas[k]) / meas[k] for k in meas},
                       "poisson_own_fit_e2el_p95_error_pct": lv["error_pct_poisson"]["e2el_p95"],
                       "replay_e2el_p95_error_pct": lv["error_pct"]["e2el_p95"],
                       "replay_throughput_error_pct": lv["throughput_req_s"]["error_pct"]})
    result = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "model": a.model, "variant": a.variant,
              "parallel": a.parallel, "capacity_rps": capacity, "calibration_model": model.describe(), "levels": levels}
    print("| load | rate req/s | load avg | E2EL p95 measured | plan | err | own-fit poisson err | replay err | "
          "throughput measured | plan | err |")
    for lv in levels:
        e, m, p = lv["error_pct"], lv["measured"], lv["plan"]
        print(f"| {lv['share']:.0%} | {lv['rate_rps']:.2f} | {np.mean([x for x in lv['load_average'] if x] or [0]):.1f} | "
              f"{m['e2el_p95']:.0f} | {p['e2el_p95']:.0f} | {e['e2el_p95']:+.0f}% | "
              f"{lv['poisson_own_fit_e2el_p95_error_pct']:+.0f}% | {lv['replay_e2el_p95_error_pct']:+.0f}% | "
              f"{m['throughput']:.2f} | {p['throughput']:.2f} | {e['throughput']:+.1f}% |")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
