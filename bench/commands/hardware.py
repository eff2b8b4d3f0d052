"""`llmbench hardware [--json]`: what this machine is, with a measured read bandwidth."""
from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def hardware(as_json: bool) -> None:
    """Detect CPU, cores, memory, GPUs, and measure memory read bandwidth."""
    from llmbench.hardware import detect

    info = detect(measure_bandwidth=True)
    if as_json:
        click.echo(json.dumps(info))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(title="this machine", show_header=False)
    for k, v in info.items():
        if k == "gpus":
            v = ", ".join(f"{g['name']} ({g['memory_gb']} GB)" for g in v) or "none"
        t.add_row(k, Text(str(v)))  # GPU and CPU names are printed as they are, never as markup
    Console().print(t)
