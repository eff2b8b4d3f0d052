"""`llmbench recommend RUN_DIR [--slo ...] [--quality-floor Q] [--rps R] [--budget USD] [--api MODEL]
[--include-failed] [--base-port P] [--routing auto|always|never] [--out DIR] [--json]`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--slo", help="e.g. ttft_p95=500ms,e2el_p95=5s (default: the run config's)")
@click.option("--quality-floor", type=float, help="lowest quality kept, as a share of the reference (e.g. 0.99)")
@click.option("--rps", type=float, help="target load in requests/s (default: plan.rps of the config, else half the best measured throughput)")
@click.option("--budget", type=float, help="most USD per month to spend on the whole deployment (standbys included)")
@click.option("--api", "api", multiple=True, metavar="MODEL",
              help="also compare this API model from the price list (repeatable; default: the config's plan.api_models, else none)")
@click.option("--include-failed", is_flag=True, help="also consider cells some of whose requests failed (left out by default)")
@click.option("--base-port", type=click.IntRange(1, 65535), help="port of the first deployed replica; the others follow (default 8000)")
@click.option("--quality-source", type=click.Choice(["gate", "feedback"]), default="gate", show_default=True,
              help="where each option's quality comes from: the quality gate, or human feedback (feedback.json, "
                   "from `llmbench feedback import`: win rate, else mean rating over the best variant's)")
@click.option("--routing", "routing_rule", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="route by prompt length: when it saves at least 5% a month (auto), whenever each length class has "
                   "its own option within the budget (always), or never")
@click.option("--out", type=click.Path(file_okay=False), help="folder for the outputs (default RUN_DIR)")
@click.option("--json", "as_json", is_flag=True, help="print the recommendation as one JSON document on stdout")
def recommend(run_dir: str, slo: str | None, quality_floor: float | None, rps: float | None, budget: float | None,
              api: tuple[str, ...], include_failed: bool, base_port: int | None, quality_source: str, routing_rule: str,
              out: str | None, as_json: bool) -> None:
    """Recommend a deployment from RUN_DIR's measurements; write recommendation.json,
    deployment.yaml, gateway/litellm.yaml and the start scripts deploy/serve-<name>.sh."""
    from rich.console import Console

    from llmbench.errors import BadInput
    from llmbench.export.writer import write_exports
    from llmbench.recommend.engine import recommend as build
    from llmbench.recommend.inputs import load_run
    from llmbench.recommend.show import summary_lines
    from llmbench.slo import parse_slo

    if quality_floor is not None and not 0 < quality_floor <= 1:
        raise BadInput(f"--quality-floor {quality_floor:g}: must be in (0, 1], a share of the reference quality")
    if rps is not None and not 0 < rps < float("inf"):
        raise BadInput(f"--rps {rps:g}: must be a finite number > 0")
    if budget is not None and not 0 < budget < float("inf"):
        raise BadInput(f"--budget {budget:g}: must be a finite number > 0 (USD per month)")
    slos = parse_slo(slo)
    data = load_run(run_dir)
    rec = build(data, slos or None, quality_floor, rps, budget, api=list(api) or None, include_failed=include_failed, base_port=base_port,
                quality_source=quality_source, routing_rule=routing_rule)
    paths = write_exports(rec, Path(out) if out else data.path)
    console = Console(stderr=as_json)
    for line in summary_lines(rec):
        console.print(line, highlight=False, markup=False)  # option names and notes are user text
    console.print("wrote " + ", ".join(str(p) for p in paths), highlight=False, markup=False)
    if as_json:
        sys.stdout.write(json.dumps(rec, default=str) + "\n")
    if not rec["options"] and rec["measured"]["failed_rows"]:
        sys.exit(1)  # the run measured, and every cell failed: nothing to decide on
