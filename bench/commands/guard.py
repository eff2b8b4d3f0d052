"""`llmbench guard eval`: a guardrail measured on labelled prompts (catch rate, false positives, latency)."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.group(name="guard")
def guard() -> None:
    """Guardrails: checks before (or after) the model, measured."""


@guard.command("eval")
@click.argument("labelled", type=click.Path(path_type=Path))
@click.option("--guard", "name", default="embedding", show_default=True, help="rules | embedding | judge")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), default=None,
              help="rules guard: a rules YAML instead of the shipped one")
@click.option("--model", "fit", type=click.Path(path_type=Path), default=None,
              help="embedding guard: a fit instead of the shipped one")
@click.option("--judge-model", type=click.Path(path_type=Path), default=None, help="judge guard: a local model folder")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def eval_cmd(labelled: Path, name: str, rules_file: Path | None, fit: Path | None, judge_model: Path | None,
             as_json: bool) -> None:
    """Run a guard on every prompt of LABELLED.jsonl ({text, label: 1 = injection}), one prompt per check."""
    from llmbench.errors import BadInput
    from llmbench.optimizers.guard.base import build_guard
    from llmbench.optimizers.guard.evaluate import evaluate, read_labelled
    from llmbench.optimizers.guard.spec import EmbeddingSpec, JudgeSpec, RulesSpec
    from pydantic import ValidationError

    read_labelled(labelled)  # a bad file is refused before any model loads
    specs = {"rules": lambda: RulesSpec(file=rules_file), "embedding": lambda: EmbeddingSpec(model=fit),
             "judge": lambda: JudgeSpec(candidate=str(judge_model)) if judge_model else None}
    if name not in specs:
        raise BadInput(f"--guard {name!r}: unknown guard; known: {', '.join(specs)}")
    try:
        spec = specs[name]()
    except ValidationError as exc:  # a spec checks its files: say the first fault in one line
        raise BadInput(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    if spec is None:
        raise BadInput("--guard judge needs --judge-model FOLDER (a local model), or a run config's guardrails block")
    report = evaluate(build_guard(spec), labelled)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _show(report)


def _show(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    t = Table(title=f"guard {r['guard_kind']} on {Path(r['file']).name}")
    for col in ("rows", "n", "catch rate", "false positives", "precision", "undecided", "p50 ms", "p95 ms"):
        t.add_column(col, justify="right")
    parts = [("all", r)] + ([("held-out", r["held_out"])] if "held_out" in r else [])
    for label, d in parts:
        lat = d["latency_ms"]
        t.add_row(label, str(d["n"]), pct(d["catch_rate"]), pct(d["false_positive_rate"]), pct(d["precision"]),
                  str(d["undecided"]), f"{lat['p50']:.2f}", f"{lat['p95']:.2f}")
    console = Console()
    console.print(t)
    if r.get("fit_rows"):
        console.print(f"{r['fit_rows']} of {r['n']} rows were fit rows: 'all' includes them; 'held-out' does not.")
