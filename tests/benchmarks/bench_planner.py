"""Benchmark: the capacity planner's predicted p95 E2EL against a real concurrency run, at three loads.

    .venv/bin/python tests/benchmarks/bench_planner.py [--model card:llama-5m] [--requests 60] [--rounds 4]
        [--loads 0.3 0.6 0.85] [--max-batch 8] [--threads 1] [--out DIR] [--json OUT]

1. Calibration: a short batch sweep (1, 2, 4, 8) of MODEL; the planner fits its service model and
   computes one replica's saturation rate (full batches back to back) for the workload's lengths.
2. Validation: ROUNDS short `llmbench run`s, each a batch sweep, a concurrency scenario (a real
   static-batching server, Poisson arrivals) at LOADS x saturation, and the sweep again, merged
   into one results folder.
   The planner is fitted on the batch sweeps only and predicts each rate point's latencies;
   `validate.validate_option` compares them with what the server measured (replay: the measured
   arrivals through the model; poisson: the expectation at the rate alone). `llmbench plan` on the
   merged folder reports the same as each option's prediction_error.
Goal (issue 6): predicted p95 E2EL within 15% of the measured one.

    .venv/bin/python tests/benchmarks/bench_planner.py --prefill RUN_DIR [--model card:llama-5m] [--variant onnx-int8]

3. Prefill at long prompts (issue 11): on an existing run, the prefill sweep (as `llmbench plan`
   runs it, up to the model's context) is fitted with the run's batches; held-out prompts between
   the sweep's lengths are then timed on the same variant and compared with that fit and with the
   old linear fit on the run alone (a + k*b*W).

--threads sets OMP_NUM_THREADS for the measuring runs. On a machine shared with other work, torch's
OpenMP threads spin at their barriers when the cores are oversubscribed: one request of llama-5m
took about 3.9 s with 2 threads against about 0.15 s with 1 while other jobs ran (2026-11-28).
The planner is checked on a server setting, whatever it is; one thread keeps that setting stable.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = {"prompt_tokens": {"dist": "lognormal", "mean": 96, "sigma": 0.5, "min": 16, "max": 384}, "output_tokens": 32}


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _run(config: dict, out: Path) -> Path:
    """Measure one config into `out`, without the later stages (plan, report, ...): only the
    measurements matter here, and other stages' work would only add time and noise."""
    from rich.console import Console

    from llmbench.config import parse_config
    from llmbench.runner import Runner, prepare, start_run
    from llmbench.summary import build_summary, write_summary

    prep = prepare(parse_config(config, "<bench_planner>"))
    run_dir, meta = start_run(prep, yaml.safe_dump(config, sort_keys=False), out)
    runner = Runner(prep, run_dir, meta, Console(stderr=True, quiet=True), progress_enabled=False)
    runner.measure()
    if runner.failed_cells:
        sys.exit(f"measurement failed: {runner.failed_cells[0]}")
    write_summary(run_dir, build_summary(run_dir, meta))
    return out


def _config(model: str, requests: int, scenarios: list) -> dict:
    return {"candidates": [{"model": model, "variants": ["torch-fp32"]}], "workload": {**WORKLOAD, "requests": requests},
            "scenarios": scenarios, "hardware": "cpu-2core", "device": "cpu", "warmup": 2, "seed": 0}


def calibrate(model: str, out: Path, max_batch: int, requests: int) -> dict:
    """Saturation rate of one replica from a short batch sweep."""
    from llmbench.hardware_profiles import HardwareProfile
    from llmbench.planner.capacity import plan_option
    from llmbench.results import RunDir

    rd = RunDir(_run(_config(model, requests, [{"kind": "batch", "batch_sizes": [1, 2, 4, 8]}]), out))
    meta, summary = rd.read_json("run.json"), rd.read_json("summary.json")
    plan = plan_option(summary["rows"], HardwareProfile(**meta["hardware_profile"]), [], rps=1.0,
                       max_batch=max_batch, records=rd.records())
    return {"saturation_rps": plan["saturation_rps"], "service_model": plan["service_model"]}


def validate(model: str, out: Path, rates: list[float], max_batch: int, requests: int, rounds: int) -> dict:
    """`rounds` runs of (batch sweep, concurrency at each rate, batch sweep), merged into one results folder.

    Alternating the fit's measurements with the checked ones in short rounds lets both see the
    same background load on a shared machine; one long sweep then one long concurrency phase
    would compare two different machines whenever the other work changes.
    """
    from llmbench.planner.plan_run import plan_run
    from llmbench.planner.validate import rate_max_batch, validate_option
    from llmbench.results import RunDir, write_atomic
    from llmbench.stats import describe
    from llmbench.summary import build_summary, write_summary

    # The sweep runs before and after the rate points, so the fit brackets them in time.
    sweep = {"kind": "batch", "batch_sizes": [1, 2, 4, 8]}
    scenarios = [sweep, {"kind": "concurrency", "rates": rates, "max_batch": max_batch}, sweep]
    parts = []
    for k in range(rounds):
        cfg = _config(model, requests, scenarios)
        cfg["seed"] = k  # other prompts and other arrivals each round
        parts.append(RunDir(_run(cfg, out.parent / f"round{k}")))
        print(f"round {k + 1}/{rounds} done (load average {_load_avg()})", file=sys.stderr)
    merged = RunDir(out)
    merged.path.mkdir(parents=True, exist_ok=True)
    meta = parts[0].read_json("run.json")
    write_atomic(merged.path / "run.json", (parts[0].path / "run.json").read_text())
    write_atomic(merged.requests_path, "".join(p.requests_path.read_text() for p in parts))
    write_summary(merged, build_summary(merged, meta))
    records = merged.records()
    result = validate_option(records, rate_max_batch(meta["config"]))
    for level in result["levels"]:
        measured = describe([r.e2el_ms for r in records if r.point == level["point"]])
        level["measured"]["e2el_p95_ci95"] = measured["p95_ci95"]
    plan = plan_run(merged, [], rps=rates[1])  # writes plan.json with prediction_error beside the run
    result["plan_json_error_pct"] = plan["options"][0]["prediction_error"]["max_abs_e2el_p95_error_pct"]
    return result


def prefill_check(run_path: Path, model: str, variant: str, held_out: list[int]) -> dict:
    """Held-out long-prompt prefill against the quadratic fit (run + sweep) and the linear run-only fit."""
    import numpy as np

    from llmbench.planner.fitting import fit_option as _fit
    from llmbench.planner.context import context_tokens
    from llmbench.planner.service import FIT_SCENARIOS, fit_rows
    from llmbench.planner.sweep import measure, sweep_for, sweep_lengths
    from llmbench.results import RunDir

    rd = RunDir(run_path)
    meta, summary = rd.read_json("run.json"), rd.read_json("summary.json")
    rows = fit_rows([r for r in summary["rows"] if r["model"] == model and r["variant"] == variant])
    recs = [r for r in rd.records() if r.model == model and r.variant == variant and r.ok]
    ctx, _ = context_tokens(meta, model, variant)
    widths = np.array([r.prompt_tokens for r in recs if r.scenario in FIT_SCENARIOS], float)
    lengths = sweep_lengths(float(np.median(widths)), float(widths.max()), float(ctx), ctx)
    sweep = sweep_for(rd, meta, model, variant, lengths)
    quad, fit_recs, facts = _fit(rows, recs, sweep)
    run_only, _, _ = _fit(rows, recs, None)
    # The pre-issue-11 model: prefill = a + k*b*W, least squares on the run's batches alone.
    from llmbench.planner.service import observations_from_records

    obs = observations_from_records(fit_recs)
    x = np.array([o.batch * o.width for o in obs])
    a, k = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), np.array([o.prefill_ms for o in obs]), rcond=None)[0]
    timed = measure(meta, model, variant, {"overlap": [], "long": held_out})
    out = []
    for p in timed["points"]:
        n, got = p["prompt_tokens"], float(np.median(p["prefill_ms"])) * facts["scale_to_run"]
        q, lin = quad.prefill_ms(1, n), a + k * n
        out.append({"prompt_tokens": n, "measured_ms_at_run_level": got, "quadratic_ms": q, "linear_ms": lin,
                    "quadratic_error_pct": 100 * (q - got) / got, "linear_error_pct": 100 * (lin - got) / got})
    return {"model": model, "variant": variant, "context_tokens": ctx, "sweep": facts,
            "run_prompt_tokens": [float(widths.min()), float(widths.max())], "held_out": out,
            "service_model_run_only": run_only.describe(), "load_avg": _load_avg()}


def markdown(result: dict) -> str:
    lines = ["| load (share of saturation) | rate req/s | requests | measured p95 E2EL ms [95% CI] | predicted, replay | error | "
             "predicted, Poisson | error | measured / predicted p50 E2EL ms | service time measured / fitted |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for lv in result["levels"]:
        m, r, p = lv["measured"]["e2el_ms"], lv["predicted_replay"]["e2el_ms"], lv["predicted_poisson"]["e2el_ms"]
        ci = lv["measured"].get("e2el_p95_ci95") or [None, None]
        ci_text = f"[{ci[0]:,.0f}, {ci[1]:,.0f}]" if ci[0] is not None else ""
        lines.append(f"| {lv['load_share_of_saturation']:.2f} | {lv['rate_rps']:g} | {lv['requests']} | {m['p95']:,.0f} {ci_text} | "
                     f"{r['p95']:,.0f} | {lv['error_pct']['e2el_p95']:+.1f}% | {p['p95']:,.0f} | {lv['error_pct_poisson']['e2el_p95']:+.1f}% | "
                     f"{m['p50']:,.0f} / {r['p50']:,.0f} | {lv['service_time_measured_over_fitted']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="card:llama-5m")
    ap.add_argument("--requests", type=int, default=30, help="requests per scenario point of each validation round")
    ap.add_argument("--rounds", type=int, default=8, help="validation rounds (sweep, concurrency, sweep each)")
    ap.add_argument("--calibration-requests", type=int, default=48)
    ap.add_argument("--loads", type=float, nargs=3, default=[0.3, 0.6, 0.85])
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the measuring runs")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_planner"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--prefill", type=Path, metavar="RUN_DIR", help="check long-prompt prefill on this run instead")
    ap.add_argument("--variant", default="onnx-int8")
    ap.add_argument("--held-out", type=int, nargs="+", default=[384, 768, 1400, 1800])
    args = ap.parse_args()
    if args.prefill:
        import llmbench.cli  # noqa: F401  (its OpenMP wait policy for a busy machine, as `llmbench plan` has it)

        doc = prefill_check(args.prefill, args.model, args.variant, args.held_out)
        # Growth from the shortest held-out prompt: the shape, whatever the machine's speed at the time.
        print("| prompt tokens | measured ms (run level) | quadratic fit (run + sweep) | error | linear fit (run only) | error "
              "| growth measured / quadratic / linear |")
        print("|---|---|---|---|---|---|---|")
        first = doc["held_out"][0]
        for h in doc["held_out"]:
            g = [h[k] / first[k] for k in ("measured_ms_at_run_level", "quadratic_ms", "linear_ms")]
            print(f"| {h['prompt_tokens']} | {h['measured_ms_at_run_level']:.1f} | {h['quadratic_ms']:.1f} | "
                  f"{h['quadratic_error_pct']:+.0f}% | {h['linear_ms']:.1f} | {h['linear_error_pct']:+.0f}% | "
                  f"x{g[0]:.1f} / x{g[1]:.1f} / x{g[2]:.1f} |")
        print(f"sweep {doc['sweep']['prompt_tokens']} scaled x{doc['sweep']['scale_to_run']:.3f}; load average {doc['load_avg']}")
        if args.json:
            args.json.write_text(json.dumps(doc, indent=2, default=str))
        return
    # Before torch is imported (by the first run), so that its thread pool takes the setting.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = args.out / stamp
    load_before = _load_avg()
    cal = calibrate(args.model, base / "calibration", args.max_batch, args.calibration_requests)
    rates = [round(s * cal["saturation_rps"], 3) for s in args.loads]
    print(f"saturation of one replica (batch {args.max_batch}): {cal['saturation_rps']:.3f} req/s -> rates {rates}", file=sys.stderr)
    result = validate(args.model, base / "validation", rates, args.max_batch, args.requests, args.rounds)
    doc = {"model": args.model, "threads": args.threads, "rounds": args.rounds, "requests_per_round": args.requests, "date": dt.date.today().isoformat(), "load_avg_before": load_before, "load_avg_after": _load_avg(),
           "calibration": cal, "rates": rates, "loads": args.loads, "validation_run": str(base / "validation"), **result}
    print(markdown(result))
    print(f"max |error| of p95 E2EL: replay {result['max_abs_e2el_p95_error_pct']}%, Poisson "
          f"{result['max_abs_e2el_p95_error_pct_poisson']}%; load average {load_before} -> {doc['load_avg_after']}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
