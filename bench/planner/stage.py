"""The `plan` stage at the end of `llmbench run`: plan.json at the config's load (importing this registers it)."""
from __future__ import annotations

from llmbench.planner.plan_run import OWN_PLAN, plan_run, produced_by
from llmbench.planner.queue import DEFAULT_POLICY
from llmbench.results import write_json
from llmbench.slo import parse_slo
from llmbench.stages import register_stage

DEFAULT_LOAD_SHARE = 0.5  # without plan.rps: half the best measured single-replica throughput (as the recommender)


def default_rps(summary: dict) -> tuple[float | None, str]:
    """A load to plan for when the config names none, and a line saying where it came from."""
    rates = [r.get("request_throughput_req_s") for r in summary.get("rows") or [] if not r.get("error")]
    rates = [r for r in rates if r]
    if not rates:
        return None, "no measured throughput"
    best = max(rates)
    return round(DEFAULT_LOAD_SHARE * best, 4), f"{DEFAULT_LOAD_SHARE:.0%} of the best measured throughput ({best:.4g} req/s)"


def plan_stage(run_dir, meta: dict, summary: dict, console) -> None:
    """Plan every measured option at plan.rps / plan.trace (or a default load) and write plan.json, the run's own plan."""
    cfg = meta.get("config") or {}
    pc = cfg.get("plan") or {}
    slos = parse_slo(pc.get("slo") or cfg.get("slo"), "plan.slo" if pc.get("slo") else "slo")
    trace = pc.get("trace")
    rps, source = (None, f"trace {trace}") if trace else ((pc["rps"], "plan.rps of the run config") if pc.get("rps") else default_rps(summary))
    if rps is None and trace is None:
        console.print(f"[yellow]plan: skipped ({source})[/yellow]")
        return
    doc = plan_run(run_dir, slos, rps=rps, trace=trace, max_replicas=pc.get("max_replicas") or 1024,
                   max_batch=pc.get("max_batch"), policy=pc.get("policy") or DEFAULT_POLICY, goodput=pc.get("goodput"))
    doc["load_source"] = source
    doc["produced_by"] = produced_by("llmbench run (plan stage, the run's own plan)", doc["load"])
    write_json(run_dir.path / OWN_PLAN, doc)
    console.print(f"plan: {doc['verdict']} (load: {source}; plan.json)")


register_stage("plan", plan_stage)
