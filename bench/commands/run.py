"""`llmbench run [CONFIG] [--out DIR] [--json] [--resume RUN_DIR] [--track mlflow[:URI]] [--ray ADDRESS]`."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click


_STYLE_TAG = re.compile(r"\\\[(/?(?:bold|dim|red|yellow|green|bold red)?)\]")


class _StageConsole:
    """The console the later stages print through: their lines carry user text (model names, errors)
    next to a few style tags of their own. Everything is escaped except those tags, so `tiny [/int4]`
    prints as it is; a line that still is not valid markup is printed plain, never raised."""

    def __init__(self, console):
        self._console = console

    def print(self, *objects, **kwargs) -> None:
        from rich.errors import MarkupError
        from rich.markup import escape

        shown = [_STYLE_TAG.sub(r"[\1]", escape(o)) if isinstance(o, str) else o for o in objects]
        try:
            self._console.print(*shown, **kwargs)
        except MarkupError:
            self._console.print(*objects, **{**kwargs, "markup": False})

    def __getattr__(self, name):
        return getattr(self._console, name)


@click.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="results folder for this run (default results/<run_id>)")
@click.option("--json", "as_json", is_flag=True, help="print the summary as one JSON document on stdout")
@click.option("--resume", type=click.Path(file_okay=False), help="finish an interrupted run: measure only what is missing")
@click.option("--track", metavar="mlflow[:URI]", help="log the finished run to MLflow: a folder (default ./mlruns) or a tracking server URI")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="measure on a Ray cluster: auto, HOST:PORT, or local:N (N nodes started here for the run)")
def run(config: str | None, out: str | None, as_json: bool, resume: str | None, track: str | None,
        ray_address: str | None) -> None:
    """Measure the candidates of CONFIG (default: the embedded default) and write a results folder."""
    from rich.console import Console
    from rich.markup import escape

    from llmbench.config import load_config, parse_config
    from llmbench.errors import BadInput
    from llmbench.runner import Runner, open_for_resume, prepare, start_run
    from llmbench.stages import load_stages
    from llmbench.summary import build_summary, summary_table, write_summary

    track_spec = None
    if track:  # parsed before measuring, so a wrong value costs nothing; MLflow is imported only at the end
        from llmbench.experiments.spec import parse_track

        track_spec = parse_track(track)
    # Piped output gets a wide table instead of rich's 80-column fallback.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    if resume:
        # A resumed run measures what its run.json says, into its own folder: a CONFIG or an --out
        # elsewhere would be silently ignored, so they are refused.
        if config:
            raise BadInput(f"give CONFIG or --resume, not both: --resume {resume} finishes the run with the config "
                           "stored in its run.json")
        if out and Path(out).resolve() != Path(resume).resolve():
            raise BadInput(f"--out {out} with --resume {resume}: a resumed run writes into its own folder; drop --out")
        run_dir, meta = open_for_resume(Path(resume))
        cfg = parse_config(meta["config"], str(run_dir.path / "run.json"))
        prep = prepare(cfg)
    else:
        cfg, text = load_config(config)
        prep = prepare(cfg)
    session = None
    if ray_address:  # connected and checked before a new folder is written: an unplaceable cell costs nothing
        from llmbench.distributed.session import open_session

        session = open_session(ray_address, prep)
    if not resume:
        run_dir, meta = start_run(prep, text, Path(out) if out else None)
    console.print(f"[bold]llmbench run[/bold] {escape(meta['run_id'])} -> {escape(str(run_dir.path))}  "
                  f"(device {prep.device}, hardware {escape(prep.hardware.name)})", soft_wrap=True)
    runner = session.runner(prep, run_dir, meta, console) if session else Runner(prep, run_dir, meta, console)
    interrupted = False
    try:
        runner.measure()
    except KeyboardInterrupt:
        interrupted = True
        console.print(f"[yellow]interrupted: completed records are kept; finish with "
                      f"`llmbench run --resume {escape(str(run_dir.path))}`[/yellow]", soft_wrap=True)  # a command to copy: never wrapped
    summary = build_summary(run_dir, meta)
    write_summary(run_dir, summary)
    stage_errors = {}
    if not interrupted:
        gate_off = not (meta["config"].get("quality") or {}).get("enabled", True)
        for name, stage in load_stages():
            if name == "quality" and gate_off:  # `quality: null` in the config
                console.print("quality gate: off (quality: null in the config)")
                continue
            try:
                stage(run_dir, meta, summary, _StageConsole(console))
            except Exception as exc:  # a later stage failing never loses the measurements
                stage_errors[name] = f"{type(exc).__name__}: {exc}"
                console.print(f"[red]stage {name} failed: {escape(stage_errors[name])}[/red]")
        if stage_errors:
            summary["stage_errors"] = stage_errors
            write_summary(run_dir, summary)
    (console.print if as_json else Console(width=None if sys.stdout.isatty() else 160).print)(summary_table(summary))
    for failure in runner.failed_cells:
        console.print(f"[red]failed cell: {escape(failure)}[/red]")
    tracking_failed = False
    if track_spec is not None and not interrupted:  # the folder is complete: tracking cannot lose a measurement
        from llmbench.experiments.mlflow_track import track_results

        say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731 - user text
        tracking_failed = not track_results(run_dir.path, track_spec, bool(runner.failed_cells or stage_errors), say)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    if interrupted:
        sys.exit(130)
    if runner.failed_cells or stage_errors or tracking_failed:
        sys.exit(1)
