"""Build the report of a results folder: plots/*.png, report.md and report.html."""
from __future__ import annotations

from pathlib import Path

from llmbench.report.content import build_sections
from llmbench.report.context import ReportContext, load_context
from llmbench.report.figures import draw_all
from llmbench.report.html import render_html
from llmbench.report.markdown import render_markdown
from llmbench.results import write_atomic


def build_report(run_dir: str | Path | None = None, ctx: ReportContext | None = None) -> dict:
    """Write the report into the run folder; {md, html, plots: [names drawn], skipped: {name: why}}."""
    ctx = ctx or load_context(run_dir)  # type: ignore[arg-type]
    plots = draw_all(ctx, ctx.path / "plots")
    sections = build_sections(ctx, plots)
    md, page = ctx.path / "report.md", ctx.path / "report.html"
    write_atomic(md, render_markdown(sections, ctx.path))
    write_atomic(page, render_html(sections))
    return {"md": str(md), "html": str(page), "plots": [p.name for p in plots if p.path],
            "skipped": {p.name: p.skipped for p in plots if not p.path}}
