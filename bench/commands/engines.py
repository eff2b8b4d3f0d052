"""`llmbench engines [--json]` lists the serving engines; `llmbench engines build [NAME]` builds them."""
from __future__ import annotations

import json
import sys

import click


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@click.pass_context
def engines(ctx: click.Context, as_json: bool) -> None:
    """The serving engines llmbench manages: version, path, and whether they are built."""
    if ctx.invoked_subcommand is not None:
        return
    from llmbench.engines.registry import list_engines

    rows = list_engines()
    if as_json:
        click.echo(json.dumps({"engines": rows}))
        return
    for row in rows:
        problem = row["problem"]
        state = "built" if row["built"] else "not built" + (f" ({problem})" if problem and problem != "not built" else "")
        version = row["version"] or "-"
        click.echo(f"{row['name']:10} {version:40} {state}")
        click.echo(f"{'':10} source {row['source_version']}, at {row['path']}"
                   + (" ($LLMBENCH_LLAMA_CPP_DIR)" if row["dev_tree"] else ""))


@engines.command("build")
@click.argument("name", required=False)
def build(name: str | None) -> None:
    """Build NAME (default: every engine) when it is not built yet; exit 1 when it cannot be built."""
    from llmbench.engines.llamacpp.info import EngineUnavailable
    from llmbench.engines.registry import ENGINES, build_engine

    failed = False
    for engine in [name] if name else list(ENGINES):
        try:
            info = build_engine(engine, progress=lambda line: click.echo(line, err=True))
        except EngineUnavailable as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
            continue
        click.echo(f"{info.name} {info.version}: {info.bin_dir}")
    if failed:
        sys.exit(1)
