"""`llmbench compare RUN_A RUN_B [--json] [--tracking-uri URI]`: what changed per matching cell, beyond the noise.

A run is a results folder, or `mlflow:RUN` for a run tracked with `llmbench run --track` (RUN: the
MLflow run id, or the llmbench run id it was tracked under).
"""
from __future__ import annotations

import json
import sys

import click

# Display names with units; the JSON keeps the metric keys of llmbench.report.compare.
_UNITS = {"ttft": ("TTFT", "ms"), "tpot": ("TPOT", "ms"), "e2el": ("E2EL", "ms")}
_SCALARS = {"output_throughput_tok_s": "output throughput, tok/s", "request_throughput_req_s": "request throughput, req/s",
            "cost_per_request_usd": "cost per request, $", "peak_rss_mb": "peak RSS, MB"}
FEW_SAMPLES = 5


def metric_label(metric: str) -> str:
    """'ttft_p95' -> 'TTFT p95, ms'; 'cost_per_request_usd' -> 'cost per request, $'."""
    if metric in _SCALARS:
        return _SCALARS[metric]
    head, _, q = metric.partition("_")
    name, unit = _UNITS.get(head, (head, ""))
    return f"{name} {q}, {unit}" if unit else metric


def _num(v) -> str:
    return "-" if v is None else f"{v:,.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"


def cell_name(c: dict) -> str:
    """model / variant / scenario point, in full."""
    return f"{c['model']} / {c['variant']} / {c['scenario']} {c['point']}"


def _table(doc: dict, cell: dict):
    from rich.table import Table

    t = Table()
    t.add_column("metric", no_wrap=True)  # short, with its unit: never folded
    for col in ("A", "B", "change", "judged by"):
        t.add_column(col, overflow="fold")
    ci = lambda v: f" [{_num(v[0])}, {_num(v[1])}]" if v else ""  # noqa: E731
    for m in cell["metrics"]:
        ch = "-" if m["change_pct"] is None else f"{m['change_pct']:+.1f}%"
        t.add_row(metric_label(m["metric"]), _num(m["a"]) + ci(m.get("a_ci95")), _num(m["b"]) + ci(m.get("b_ci95")), ch, m["rule"],
                  style="bold red" if m["significant"] else "")
    return t


def _compare(run_a: str, run_b: str, tracking_uri: str | None) -> dict:
    import tempfile
    from pathlib import Path

    from llmbench.report.compare import compare_runs

    tracked = [r for r in (run_a, run_b) if r.startswith("mlflow:")]
    if not tracked:
        return compare_runs(run_a, run_b)
    from llmbench.experiments.mlflow_read import fetch_run  # MLflow only when a run asks for it

    with tempfile.TemporaryDirectory() as tmp:
        paths = [fetch_run(r, tracking_uri, Path(tmp) / side) if r in tracked else r for r, side in ((run_a, "a"), (run_b, "b"))]
        doc = compare_runs(*paths)
    for side, ref in (("run_a", run_a), ("run_b", run_b)):
        if ref in tracked:  # the scratch copy is gone: name the run as it was given
            doc[side]["path"] = ref
    return doc


@click.command()
@click.argument("run_a", type=click.Path(file_okay=False))
@click.argument("run_b", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the comparison as one JSON document on stdout")
@click.option("--tracking-uri", metavar="URI", help="where mlflow:RUN arguments are read (default $MLFLOW_TRACKING_URI, else ./mlruns)")
def compare(run_a: str, run_b: str, as_json: bool, tracking_uri: str | None) -> None:
    """Show what changed from RUN_A to RUN_B per matching cell, with confidence intervals.

    RUN_A and RUN_B: results folders, or mlflow:RUN_ID for runs tracked with `llmbench run --track`.
    """
    from rich.console import Console

    doc = _compare(run_a, run_b, tracking_uri)
    console = Console(stderr=as_json)
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731 - user text, never markup
    say(f"A: {doc['run_a']['run_id']} ({doc['run_a']['path']})  ->  B: {doc['run_b']['run_id']} ({doc['run_b']['path']}); "
        "bold red rows changed by more than the noise")
    for c in doc["cells"]:
        say(cell_name(c["cell"]))  # on its own line: a table title would wrap a long name
        console.print(_table(doc, c))
        few = [n for n in c.get("n") or [] if n is not None and n < FEW_SAMPLES]
        if few:
            say(f"  caution: {min(few)} requests in a run: percentiles and 95% intervals from so few samples are rough")
    for ch in doc["context_changes"][:20]:
        say(f"changed: {ch['what']}: {ch['a']!r} -> {ch['b']!r}")
    if len(doc["context_changes"]) > 20:
        say(f"changed: {len(doc['context_changes']) - 20} more setting(s) (see --json)")
    for side, run in (("only_in_a", "A"), ("only_in_b", "B")):
        for c in doc[side]:
            say(f"only in {run}: {cell_name(c)}")
    say(f"{doc['flagged']} change(s) larger than the noise across {len(doc['cells'])} matching cell(s). Percentiles: "
        "real when the 95% bootstrap CIs do not overlap; throughput and cost: when beyond 1.96 x the runs' combined "
        "standard error (E2EL CV / sqrt(n)).")
    if as_json:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
