"""What a cold start costs an autoscaling policy (not a timed test): `plan --autoscale`'s chosen policy
re-simulated with longer cold starts, everything else equal.

    .venv/bin/python tests/benchmarks/bench_autoscale_cold.py RUN_DIR MODEL VARIANT SLO [TRACE] [--cold 30 120 600]

e.g. RUN_DIR card:llama-50m gguf-q4_k_m e2el_p95=60s (the trace defaults to the Azure code trace).
"""
from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner import sweep as prefill
from llmbench.planner.autoscale import Knobs, simulate_policy
from llmbench.planner.autoscale_plan import knobs_label, plan_autoscale
from llmbench.planner.capacity import HOURS_PER_MONTH, plan_option
from llmbench.planner.context import context_tokens
from llmbench.results import RunDir
from llmbench.slo import parse_slo

AZURE_CODE = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces" / "azure_llm_code_2023.csv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run"), ap.add_argument("model"), ap.add_argument("variant"), ap.add_argument("slo")
    ap.add_argument("trace", nargs="?", default=str(AZURE_CODE))
    ap.add_argument("--cold", type=float, nargs="+", default=[30.0, 120.0, 600.0])
    a = ap.parse_args()
    run, slos = RunDir(Path(a.run)), parse_slo(a.slo)
    doc = plan_autoscale(run, slos, a.trace, model=a.model, variant=a.variant)
    chosen, opt = doc["autoscale"], doc["option"]
    meta = run.read_json("run.json")
    rows = [r for r in run.read_json("summary.json")["rows"] if (r["model"], r["variant"]) == (a.model, a.variant)]
    recs = [r for r in run.records() if (r.model, r.variant) == (a.model, a.variant)]
    keep: dict = {}
    plan_option(rows, HardwareProfile(**meta["hardware_profile"]), slos, trace=a.trace, max_batch=opt["max_batch"],
                records=recs, context_tokens=context_tokens(meta, a.model, a.variant)[0],
                prefill_sweep=prefill.cached(run, a.model, a.variant), keep=keep)
    knobs = Knobs(**{f.name: chosen[f.name] for f in fields(Knobs)})
    print(f"chosen: {knobs_label(chosen)}; fixed {doc['fixed']['replicas']}: ${doc['fixed']['cost_per_month_usd']:.2f}/month, "
          f"{100 * doc['fixed']['slo_attainment']:.2f}%")
    for cold in [chosen["cold_start_s"] or 0.0] + a.cold:
        fig, _ = simulate_policy(replace(knobs, cold_start_s=cold), keep["requests"], keep["service"], opt["max_batch"],
                                 doc["routing"], slos, opt["usd_per_hour_per_replica"], HOURS_PER_MONTH)
        print(f"| {cold:.2f} s | {fig['cost_per_month_usd']:.2f} | {100 * fig['slo_attainment']:.2f}% | "
              f"{fig['requests_waited_for_scale_up']:,} |")


if __name__ == "__main__":
    main()
