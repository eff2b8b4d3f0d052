"""`llmbench plan RUN_DIR (--rps R | --trace FILE [--autoscale [--attainment A]]) [--slo ...] [--model M --variant V]
[--max-replicas N] [--json]`."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

_POLICIES = ["random", "least-busy", "jsq", "round-robin"]


@click.command(epilog="""\b
Where the plan goes: this command writes an exploratory plan beside the run's own,
RUN_DIR/plans/plan-<load>.json (plan-rps30.json, plan-trace-<file>.json), and never
changes RUN_DIR/plan.json, the plan `llmbench run` made at the run config's load, which
`llmbench recommend` decides on. Each plan records what produced it (produced_by: the
command, the load and the time).
\b
Context: requests whose prompt + output exceed the model's context window
(max_position_embeddings) cannot be served by it: they are counted
(requests_over_context, share_over_context) and left out of the plan, never planned.
\b
Long prompts: when a trace needs longer prompts than the run measured, each variant is
loaded again for a short prefill sweep up to the longest the trace needs (about 150 s
at most in all; kept in RUN_DIR/prefill_sweep.json and reused); --no-measure extrapolates. The plan's
`extrapolation` block says how far each figure still goes beyond what was measured.""")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--rps", type=float, help="target load, requests/s (Poisson arrivals, lengths as measured); above 0, at most 1e7")
@click.option("--trace", type=click.Path(dir_okay=False), help="replay a trace in the Azure format (header TIMESTAMP,ContextTokens,GeneratedTokens) "
                                                              "or an interaction log (JSONL request records, e.g. the gateway's)")
@click.option("--slo", help="e.g. ttft_p95=500ms,tpot_p99=80ms,e2el_p95=60s (default: the run config's)")
@click.option("--goodput", type=float, help="also require this share of requests to meet every SLO, e.g. 0.99")
@click.option("--model", help="plan this measured model only (default: every one)")
@click.option("--variant", help="plan this variant only (default: every one)")
@click.option("--max-replicas", type=int, default=1024, show_default=True, help="largest replica count searched (at most 1,000,000)")
@click.option("--max-batch", type=int, help="max batch per replica, 1-1024 (default: each measured batch size is tried and the one "
                                             "needing the fewest replicas is taken)")
@click.option("--policy", type=click.Choice(_POLICIES), default="random", show_default=True,
              help="how the gateway spreads requests over replicas: random = LiteLLM's simple-shuffle (its default), "
                   "least-busy = LiteLLM's least-busy (join the shortest queue; jsq is the same), round-robin")
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="load variants again for a prefill sweep when a trace needs longer prompts than the run measured")
@click.option("--autoscale", is_flag=True, help="with --trace: simulate scaling policies (tokens in flight, queue depth) "
              "on the trace and pick the cheapest meeting --attainment; writes RUN_DIR/plans/autoscale-trace-<file>.json and, "
              "where the run has a deployment.yaml, its autoscaling block and deploy/hpa-<name>.yaml")
@click.option("--attainment", type=float, default=0.99, show_default=True,
              help="with --autoscale: the share of requests that must meet every SLO")
@click.option("--scale-on", "scale_on", default="tokens,queue", show_default=True,
              help="with --autoscale: the policy kinds swept, of tokens, queue and schedule (a schedule learnt from the "
                   "trace itself: an in-sample, optimistic bound, so not swept unless asked)")
@click.option("--json", "as_json", is_flag=True, help="print the plan as one JSON document on stdout")
def plan(run_dir: str, rps: float | None, trace: str | None, slo: str | None, goodput: float | None, model: str | None,
         variant: str | None, max_replicas: int, max_batch: int | None, policy: str, measure: bool, autoscale: bool,
         attainment: float, scale_on: str, as_json: bool) -> None:
    """Replicas, cost and predicted latency per measured option at a load; writes RUN_DIR/plans/plan-<load>.json."""
    from llmbench.errors import BadInput
    from llmbench.planner.capacity import validate_limits, validate_rps
    from llmbench.planner.plan_run import exploratory_path, plan_run, produced_by
    from llmbench.results import RunDir
    from llmbench.slo import parse_slo

    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise BadInput(f"RUN_DIR {run_dir!r} is not a folder")
    # Loads and limits first: bad input never costs a model load.
    if rps is not None:
        validate_rps(rps)
    validate_limits(max_batch, max_replicas, policy)
    if slo is None:
        cfg = run.read_json("run.json").get("config") or {}
        slo = (cfg.get("plan") or {}).get("slo") or cfg.get("slo")
    slos = parse_slo(slo, "--slo")
    if autoscale:
        _autoscale(run, slos, trace, attainment, model, variant, max_replicas, max_batch, goodput, policy, measure, scale_on,
                   as_json)
        return
    doc = plan_run(run, slos, rps=rps, trace=trace, model=model, variant=variant, max_replicas=max_replicas,
                   max_batch=max_batch, policy=policy, goodput=goodput, measure=measure)
    doc["produced_by"] = produced_by(_command_line(click.get_current_context().params), doc["load"])
    path = exploratory_path(run, rps, trace)
    console = _save_and_show(path, doc, as_json)
    if console is None:
        return
    console.print(plan_table(doc))
    for o in doc["options"]:
        for note in o.get("notes", []) + ([o["error"]] if o.get("error") else []):
            console.print(f"  {o['model']} {o['variant']}: {note}", markup=False)
    console.print(doc["verdict"], markup=False, style="bold")
    console.print(f"(exploratory plan written to {path}; the run's own plan.json is unchanged)", markup=False)


def _save_and_show(path, doc: dict, as_json: bool):
    """Write the plan document to `path`; print it as JSON (None returned), else return the console
    the table goes to (piped output at a fixed, readable width instead of rich's 80 columns)."""
    from rich.console import Console

    from llmbench.results import write_json

    path.parent.mkdir(exist_ok=True)
    write_json(path, doc)
    if as_json:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        return None
    return Console(highlight=False) if sys.stdout.isatty() else Console(width=140, highlight=False)


def _autoscale(run, slos, trace, attainment, model, variant, max_replicas, max_batch, goodput, policy, measure, scale_on,
               as_json) -> None:
    """`plan --trace FILE --autoscale`: the autoscaling document, written beside the run's plans and shown."""
    from llmbench.errors import BadInput
    from llmbench.export.autoscaling import emit
    from llmbench.planner.autoscale import KINDS
    from llmbench.planner.autoscale_plan import autoscale_path, plan_autoscale
    from llmbench.planner.plan_run import produced_by

    if trace is None or max_batch is not None or goodput is not None:
        raise BadInput("--autoscale plans a trace: give --trace FILE (and neither --max-batch nor --goodput; "
                       "--attainment is the share of requests to meet the SLO)")
    kinds = tuple(k.strip() for k in scale_on.split(",") if k.strip())
    if not kinds or any(k not in KINDS for k in kinds):
        raise BadInput(f"--scale-on {scale_on!r}: a comma-separated list of {', '.join(KINDS)}")
    doc = plan_autoscale(run, slos, trace, attainment, model=model, variant=variant, max_replicas=max_replicas,
                         policy=policy, measure=measure, kinds=kinds)
    doc["produced_by"] = produced_by(_command_line(click.get_current_context().params), doc["load"])
    path = autoscale_path(run, trace)
    # Where a user deploys from: deployment.yaml's autoscaling block and deploy/hpa-<name>.yaml.
    doc["emitted"] = emit(run.path, {**doc, "plan_file": str(path.relative_to(run.path))})
    console = _save_and_show(path, doc, as_json)
    if console is None:
        return
    console.print(autoscale_table(doc))
    for note in [doc["slo_source"], f"cold start {doc['cold_start_s']} s: {doc['cold_start_source']}"] + doc["notes"]:
        console.print(f"  {note}", markup=False)
    a, f = doc["autoscale"], doc["fixed"]
    console.print("no policy reaches the attainment" if a is None else
                  f"chosen: ${a['cost_per_month_usd']:,.2f}/month at {100 * a['slo_attainment']:.2f}% attainment, against the "
                  f"fixed {f['replicas']} replica(s) at ${f['cost_per_month_usd']:,.2f}/month and {100 * f['slo_attainment']:.2f}%",
                  markup=False, style="bold")
    e = doc["emitted"]
    for what in ("deployment_yaml", "hpa"):
        if e.get(what):
            console.print(f"({'autoscaling block' if what == 'deployment_yaml' else 'HorizontalPodAutoscaler'} written to {e[what]})",
                          markup=False)
    if e.get("note"):
        console.print(f"  {e['note']}", markup=False)
    console.print(f"(autoscaling plan written to {path})", markup=False)


def autoscale_table(doc: dict, rows: int = 10):
    """A rich table of the fixed plan, the chosen policy and the cheapest others tried."""
    from rich.table import Table
    from rich.text import Text

    from llmbench.planner.autoscale_plan import knobs_label

    o = doc["option"]
    t = Table(title=Text(f"autoscaling {o['model'].removeprefix('card:')} {o['variant']} on trace "
                         f"{Path(str(doc['load'].get('path'))).name}; SLO {', '.join(doc['slo'])}; "
                         f"attainment >= {doc['attainment_target']:g}"))
    for col in ("policy", "$/month", "replica-h", "mean/peak replicas", "attainment %", "scale-ups", "waited for one"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    chosen = doc["autoscale"]
    seen = {knobs_label(doc["fixed"])} | ({knobs_label(chosen)} if chosen else set())
    shown = [("fixed", doc["fixed"])] + ([("chosen", chosen)] if chosen else []) + \
        [("", r) for r in doc["tried"] if knobs_label(r) not in seen][:rows]
    for tag, r in shown:
        t.add_row(Text(f"{tag + ': ' if tag else ''}{knobs_label(r)}"), f"{r['cost_per_month_usd']:,.2f}",
                  f"{r['replica_hours']:,.2f}", f"{r['mean_replicas']:.2f} / {r['peak_replicas']}",
                  f"{100 * r['slo_attainment']:.2f}", str(r["scale_ups"]), str(r["requests_waited_for_scale_up"]),
                  style="bold" if tag == "chosen" else None)
    return t


def _command_line(params: dict) -> str:
    """The command as given, rebuilt from its parsed parameters (defaults shown too)."""
    words = ["llmbench", "plan", str(params["run_dir"])]
    for key, value in params.items():
        if key == "run_dir" or value is None:
            continue
        flag = "--" + ("json" if key == "as_json" else key.replace("_", "-"))
        if isinstance(value, bool):
            words += [flag] if value else ([] if key == "as_json" else ["--no-" + key.replace("_", "-")])
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def plan_table(doc: dict):
    """A rich table of each option's plan (user text as plain text, never markup)."""
    from rich.table import Table
    from rich.text import Text

    def f(v, nd=1):
        return "-" if v is None else f"{v:,.{nd}f}"

    load = doc["load"]
    what = (f"trace {Path(str(load.get('path'))).name}, {load.get('mean_rps') or 0:.3g} req/s" if load.get("kind") == "trace"
            else f"{load.get('offered_rps')} req/s Poisson")
    t = Table(title=Text(f"capacity plan: {what}; SLO {', '.join(doc['slo']) or 'none'}; {doc.get('policy')} routing "
                         f"({doc['hardware']})"))
    for col in ("option", "replicas", "$/month", "E2EL p50/p95 ms", "TTFT p95 ms", "TPOT p95 ms", "sat. req/s",
                "over context", "meets", "err %"):
        t.add_column(col, justify="left" if col == "option" else "right")
    for o in doc["options"]:
        name = Text(f"{o['model'].removeprefix('card:')} {o['variant']}")
        if o.get("error"):
            t.add_row(name, Text(o["error"][:60], style="red"), *[""] * 8)
            continue
        p = o["predicted"]
        e2 = p["e2el_ms"]
        err = (o.get("prediction_error") or {}).get("max_abs_e2el_p95_error_pct")
        over = o.get("requests_over_context")
        meets = Text("yes", style="green") if o["meets_slo"] else Text(f"no: {o['binding']}", style="red")
        t.add_row(name, f"{o['replicas']} x b{o['max_batch']}", f(o["cost_per_month"], 2), f"{f(e2.get('p50'), 0)} / {f(e2.get('p95'), 0)}",
                  f(p["ttft_ms"].get("p95"), 0), f(p["tpot_ms"].get("p95"), 1), f(o["saturation_rps"], 3),
                  "-" if over is None else f"{over:,} ({100 * o['share_over_context']:.1f}%)", meets, f(err, 1))
    return t
