"""`llmbench run [CONFIG] [--out DIR] [--json] [--resume RUN_DIR]`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="results folder for this run (default results/<run_id>)")
@click.option("--json", "as_json", is_flag=True, help="print the summary as one JSON document on stdout")
@click.option("--resume", type=click.Path(file_okay=False), help="finish an interrupted run: measure only what is missing")
def run(config: str | None, out: str | None, as_json: bool, resume: str | None) -> None:
    """Measure the candidates of CONFIG (default: the embedded default) and write a results folder."""
    from rich.console import Console

    from llmbench.config import load_config, parse_config
    from llmbench.results import RunDir
    from llmbench.runner import Runner, prepare, start_run
    from llmbench.stages import load_stages
    from llmbench.summary import build_summary, summary_table, write_summary

    # Piped output gets a wide table instead of rich's 80-column fallback.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    if resume:
        run_dir = RunDir(Path(resume))
        meta = run_dir.read_json("run.json")
        cfg = parse_config(meta["config"], str(run_dir.path / "run.json"))
        prep = prepare(cfg)
    else:
        cfg, text = load_config(config)
        prep = prepare(cfg)
        run_dir, meta = start_run(prep, text, Path(out) if out else None)
    console.print(f"[bold]llmbench run[/bold] {meta['run_id']} -> {run_dir.path}  (device {prep.device}, hardware {prep.hardware.name})")
    runner = Runner(prep, run_dir, meta, console)
    interrupted = False
    try:
        runner.measure()
    except KeyboardInterrupt:
        interrupted = True
        console.print(f"[yellow]interrupted: completed records are kept; finish with `llmbench run --resume {run_dir.path}`[/yellow]")
    summary = build_summary(run_dir, meta)
    write_summary(run_dir, summary)
    stage_errors = {}
    if not interrupted:
        for name, stage in load_stages():
            try:
                stage(run_dir, meta, summary, console)
            except Exception as exc:  # a later stage failing never loses the measurements
                stage_errors[name] = f"{type(exc).__name__}: {exc}"
                console.print(f"[red]stage {name} failed: {stage_errors[name]}[/red]")
        if stage_errors:
            summary["stage_errors"] = stage_errors
            write_summary(run_dir, summary)
    (console.print if as_json else Console(width=None if sys.stdout.isatty() else 160).print)(summary_table(summary))
    for failure in runner.failed_cells:
        console.print(f"[red]failed cell: {failure}[/red]")
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    if interrupted:
        sys.exit(130)
    if runner.failed_cells or stage_errors:
        sys.exit(1)
