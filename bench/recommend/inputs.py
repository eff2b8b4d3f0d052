"""Everything the recommender and the report read from one results folder, read defensively.

Other stages (quality gate, cache simulation, compression, plan) add their files or fields when
they ran; when one did not, the matching field here is None or empty and callers say
"not measured" rather than guess.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.recommend.facts import cache_facts, compression_facts
from llmbench.records import RequestRecord
from llmbench.results import RunDir


@dataclass
class RunData:
    """One results folder as the decision stages see it."""

    path: Path
    meta: dict
    summary: dict
    records: list[RequestRecord]
    cache: dict | None = None
    compression: list[dict] = field(default_factory=list)
    plan: dict | None = None
    verify: dict | None = None  # verify.json: what `llmbench verify` measured of an earlier recommendation

    @property
    def rows(self) -> list[dict]:
        return self.summary.get("rows") or []

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.meta.get("run_id") or self.path.name)

    def config_section(self, name: str) -> dict:
        """A block of the resolved run config (empty when absent or null)."""
        return (self.meta.get("config") or {}).get(name) or {}


def _optional_json(path: Path) -> dict | None:
    # A stage's file that is missing or unreadable is "not measured", never a crash: the
    # measurements themselves are still worth a recommendation.
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def load_run(path: str | Path) -> RunData:
    """Read a results folder; BadInput when it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise BadInput(f"{p}: no such results folder")
    rd = RunDir(p)
    summary = rd.read_json("summary.json")
    if not isinstance(summary.get("rows"), list):
        raise BadInput(f"{p / 'summary.json'}: has no 'rows' list (is this a summary of `llmbench run`?)")
    meta = _optional_json(p / "run.json") or {}
    return RunData(
        path=p,
        meta=meta,
        summary=summary,
        records=rd.records(),
        cache=cache_facts(_optional_json(p / "cache.json")),
        compression=compression_facts(_optional_json(p / "compression.json")),
        plan=_optional_json(p / "plan.json"),
        verify=_optional_json(p / "verify.json"),
    )
