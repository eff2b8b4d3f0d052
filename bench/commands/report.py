"""`llmbench report RUN_DIR`: plots, report.md and a self-contained report.html in RUN_DIR."""
from __future__ import annotations

import json
import sys

import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print what was written as one JSON document on stdout")
def report(run_dir: str, as_json: bool) -> None:
    """Write RUN_DIR/report.md, RUN_DIR/report.html and RUN_DIR/plots/*.png from the run's files."""
    from rich.console import Console

    from llmbench.report.build import build_report

    got = build_report(run_dir)
    console = Console(stderr=True)
    console.print(f"wrote {got['md']} and {got['html']} with {len(got['plots'])} plots", highlight=False, markup=False, soft_wrap=True)
    for name, why in got["skipped"].items():
        console.print(f"  {name}: {why}", highlight=False, markup=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(got) + "\n")
