"""What a report is drawn from: the run's files and its recommendation."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llmbench.recommend.inputs import RunData, load_run


@dataclass
class ReportContext:
    """The run, its recommendation (read from the folder, or computed here) and where it came from."""

    data: RunData
    rec: dict
    rec_source: str

    @property
    def path(self) -> Path:
        return self.data.path

    @property
    def models(self) -> list[str]:
        """Every model of the run, in row order (labels are made unique among these)."""
        return list(dict.fromkeys(r["model"] for r in self.data.rows if r.get("model")))

    def option(self, oid: str | None) -> dict | None:
        return next((o for o in self.rec["options"] if o["id"] == oid), None) if oid else None


def load_context(run_dir: str | Path) -> ReportContext:
    """Use recommendation.json when `recommend` (or the run) wrote one for this run; else compute
    one with the run's own defaults, and say so in the report."""
    data = load_run(run_dir)
    f = data.path / "recommendation.json"
    if f.is_file():
        try:
            rec = json.loads(f.read_text())
            if rec.get("run_id") == data.run_id and "options" in rec:
                return ReportContext(data, rec, "recommendation.json in this folder")
        except (json.JSONDecodeError, OSError):
            pass
    from llmbench.recommend.engine import recommend

    rec = recommend(data)
    return ReportContext(data, rec, "computed for this report with the run's defaults (run `llmbench recommend` to choose the constraints and write the gateway config)")
