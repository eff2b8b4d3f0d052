"""`llmbench compare RUN_A RUN_B [--json]`: what changed per matching cell, beyond the noise."""
from __future__ import annotations

import json
import sys

import click


def _table(doc: dict):
    from rich.table import Table

    t = Table(title=f"{doc['run_a']['run_id']} (A) -> {doc['run_b']['run_id']} (B); [bold red]red[/bold red]: larger than the noise")
    for col in ("cell", "metric", "A", "B", "change", "judged by"):
        t.add_column(col)
    for c in doc["cells"]:
        name = "/".join(str(c["cell"][k]) for k in ("model", "variant", "point"))
        for i, m in enumerate(c["metrics"]):
            style = "bold red" if m["significant"] else ""
            ch = "-" if m["change_pct"] is None else f"{m['change_pct']:+.1f}%"
            ci = lambda v: f" [{v[0]:.4g}, {v[1]:.4g}]" if v else ""  # noqa: E731
            t.add_row(name if i == 0 else "", m["metric"], f"{m['a']:.4g}{ci(m.get('a_ci95'))}", f"{m['b']:.4g}{ci(m.get('b_ci95'))}", ch, m["rule"], style=style)
    return t


@click.command()
@click.argument("run_a", type=click.Path(file_okay=False))
@click.argument("run_b", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the comparison as one JSON document on stdout")
def compare(run_a: str, run_b: str, as_json: bool) -> None:
    """Show what changed from RUN_A to RUN_B per matching cell, with confidence intervals."""
    from rich.console import Console

    from llmbench.report.compare import compare_runs

    doc = compare_runs(run_a, run_b)
    console = Console(stderr=as_json)
    console.print(_table(doc))
    for ch in doc["context_changes"][:20]:
        console.print(f"changed: {ch['what']}: {ch['a']!r} -> {ch['b']!r}", highlight=False)
    for side in ("only_in_a", "only_in_b"):
        for c in doc[side]:
            console.print(f"{side.replace('_', ' ')}: {c}", highlight=False)
    console.print(f"{doc['flagged']} change(s) larger than the noise across {len(doc['cells'])} matching cell(s). Percentiles: "
                  "real when the 95% bootstrap CIs do not overlap; throughput and cost: when beyond 1.96 x the runs' combined "
                  "standard error (E2EL CV / sqrt(n)).", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
