"""`llmbench feedback import RATINGS.jsonl RUN_DIR [--json]`: human ratings joined to a run."""
from __future__ import annotations

import json
import sys

import click


@click.group()
def feedback() -> None:
    """Human feedback on a run's answers (ratings, preferences)."""


def _n(v, fmt: str = "{:.3g}") -> str:
    return "-" if v is None else fmt.format(v)


@feedback.command(name="import")
@click.argument("ratings", type=click.Path(dir_okay=False))
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print feedback.json on stdout")
def import_(ratings: str, run_dir: str, as_json: bool) -> None:
    """Join RATINGS (one JSON object a line: request_id or prompt_sha256, rating or preferred/other,
    rater, timestamp) to RUN_DIR's requests and write RUN_DIR/feedback.json: per variant the mean
    rating and the win rate with 95% intervals, and the raters' agreement where they overlap.
    `llmbench recommend RUN_DIR --quality-source feedback` then uses it as the quality."""
    from rich.console import Console
    from rich.table import Table

    from llmbench.feedback import import_feedback

    doc = import_feedback(ratings, run_dir)
    if as_json:
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
        return
    t = Table(title=f"{doc['ratings']} ratings by {len(doc['raters'])} rater(s)")
    for col in ("model", "variant", "ratings", "mean rating (95% CI)", "comparisons", "win rate (95% CI)"):
        t.add_column(col)
    for v in doc["variants"].values():
        ci = v["mean_rating_ci95"]
        wci = v["win_rate_ci95"]
        t.add_row(v["model"], v["variant"], str(v["ratings"]),
                  _n(v["mean_rating"]) + (f" ({ci[0]:.3g}-{ci[1]:.3g})" if ci else ""), str(v["comparisons"]),
                  _n(v["win_rate"], "{:.1%}") + (f" ({wci[0]:.1%}-{wci[1]:.1%})" if wci else ""))
    console = Console()
    console.print(t)
    for a in doc["rater_agreement"]:
        console.print(f"raters {a['raters'][0]} and {a['raters'][1]}: {a['items']} items in common, "
                      f"{a['agreement']:.0%} identical, Cohen's kappa {a['cohen_kappa']:.2f}", markup=False, highlight=False)
