"""`llmbench plan RUN_DIR (--rps R | --trace FILE) [--slo ...] [--model M --variant V] [--max-replicas N] [--json]`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--rps", type=float, help="target load, requests/s (Poisson arrivals, lengths as measured)")
@click.option("--trace", type=click.Path(dir_okay=False), help="replay a trace: TIMESTAMP,ContextTokens,GeneratedTokens (Azure format)")
@click.option("--slo", help="e.g. ttft_p95=500ms,tpot_p99=80ms,e2el_p95=60s (default: the run config's)")
@click.option("--goodput", type=float, help="also require this share of requests to meet every SLO, e.g. 0.99")
@click.option("--model", help="plan this measured model only (default: every one)")
@click.option("--variant", help="plan this variant only (default: every one)")
@click.option("--max-replicas", type=int, default=1024, show_default=True, help="largest replica count searched")
@click.option("--max-batch", type=int, help="max batch per replica (default: the largest batch measured)")
@click.option("--policy", type=click.Choice(["jsq", "round-robin"]), default="jsq", show_default=True,
              help="how requests are spread over replicas (jsq: join the shortest queue)")
@click.option("--json", "as_json", is_flag=True, help="print the plan as one JSON document on stdout")
def plan(run_dir: str, rps: float | None, trace: str | None, slo: str | None, goodput: float | None, model: str | None,
         variant: str | None, max_replicas: int, max_batch: int | None, policy: str, as_json: bool) -> None:
    """Replicas, cost and predicted latency per measured option at a load; writes RUN_DIR/plan.json."""
    from rich.console import Console

    from llmbench.errors import BadInput
    from llmbench.planner.plan_run import plan_run
    from llmbench.results import RunDir
    from llmbench.slo import parse_slo

    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise BadInput(f"RUN_DIR {run_dir!r} is not a folder")
    if slo is None:
        cfg = run.read_json("run.json").get("config") or {}
        slo = (cfg.get("plan") or {}).get("slo") or cfg.get("slo")
    slos = parse_slo(slo, "--slo")
    doc = plan_run(run, slos, rps=rps, trace=trace, model=model, variant=variant, max_replicas=max_replicas,
                   max_batch=max_batch, policy=policy, goodput=goodput)
    if as_json:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        return
    # Piped output gets a fixed, readable width instead of rich's 80-column fallback.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    console.print(plan_table(doc))
    for o in doc["options"]:
        for note in o.get("notes", []) + ([o["error"]] if o.get("error") else []):
            console.print(f"  [dim]{o['model']} {o['variant']}:[/dim] {note}")
    console.print(f"[bold]{doc['verdict']}[/bold]  (plan.json written to {run.path})")


def plan_table(doc: dict):
    """A rich table of each option's plan."""
    from rich.table import Table

    def f(v, nd=1):
        return "-" if v is None else f"{v:,.{nd}f}"

    load = doc["load"]
    what = f"trace {Path(str(load.get('path'))).name}, {load.get('mean_rps', 0):.3g} req/s" if load.get("kind") == "trace" else f"{load.get('offered_rps')} req/s Poisson"
    t = Table(title=f"capacity plan: {what}; SLO {', '.join(doc['slo']) or 'none'} ({doc['hardware']})")
    for col in ("option", "replicas", "$/month", "E2EL p50/p95 ms", "TTFT p95 ms", "TPOT p95 ms", "sat. req/s", "meets", "err %"):
        t.add_column(col, justify="left" if col == "option" else "right")
    for o in doc["options"]:
        name = f"{o['model'].removeprefix('card:')} {o['variant']}"
        if o.get("error"):
            t.add_row(name, f"[red]{o['error'][:60]}[/red]", *[""] * 7)
            continue
        p = o["predicted"]
        e2 = p["e2el_ms"]
        err = (o.get("prediction_error") or {}).get("max_abs_e2el_p95_error_pct")
        meets = "[green]yes[/green]" if o["meets_slo"] else f"[red]no: {o['binding']}[/red]"
        t.add_row(name, f"{o['replicas']} x b{o['max_batch']}", f(o["cost_per_month"], 2), f"{f(e2.get('p50'), 0)} / {f(e2.get('p95'), 0)}",
                  f(p["ttft_ms"].get("p95"), 0), f(p["tpot_ms"].get("p95"), 1), f(o["saturation_rps"], 3), meets, f(err, 1))
    return t
