"""Run-end stage "report": importing this module registers it; import it last, so the report
shows every other stage's files (and the recommendation written just before it)."""
from __future__ import annotations

from llmbench.stages import register_stage


def report_stage(run_dir, meta: dict, summary: dict, console) -> None:
    from llmbench.report.build import build_report

    got = build_report(run_dir.path)
    console.print(f"report: {got['html']} ({len(got['plots'])} plots)", highlight=False)


register_stage("report", report_stage)
