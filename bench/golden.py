"""Golden sets: versioned JSONL files of prompts, some with reference answers, for the quality gate.

Format: the first line is a header `{"golden": {"name": ..., "version": "X.Y.Z", "about": ...}}`;
every later line is an item `{"id": ..., "prompt": ..., "reference": ..., "difficulty": ..., "stop": ...}`
(`reference`, `difficulty` and `stop` optional; `stop`, a string or a list, cuts answers before
scoring; a difficulty label groups the figures, so that a router can send each class of request
to the cheapest variant that keeps its quality).
Like datasets, a golden set is versioned as code: its name, version and the sha256 of the file go
into quality.json, so two runs' quality figures are comparable only when those match.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.workload import read_jsonl, sha256_of

_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class GoldenItem:
    """One prompt; teacher-forced metrics read `prompt + " " + reference` when it has a reference."""

    id: str
    prompt: str
    reference: str | None = None
    difficulty: str | None = None
    stop: tuple[str, ...] = ()  # answers are cut at the first of these before scoring

    @property
    def text(self) -> str:
        return f"{self.prompt} {self.reference}" if self.reference else self.prompt


@dataclass
class GoldenSet:
    name: str
    version: str
    sha256: str
    path: str
    items: list[GoldenItem] = field(default_factory=list)

    def identity(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "path": self.path, "items": len(self.items)}


def default_golden_path() -> Path:
    """The golden set shipped in profiles/golden/."""
    return Path(str(resources.files("llmbench.profiles") / "golden" / "default.jsonl"))


def load_golden(path: Path | str | None = None) -> GoldenSet:
    """Read and check a golden set (None: the shipped default); BadInput naming file and line on faults."""
    p = Path(path) if path is not None else default_golden_path()
    what = "golden set"
    rows = read_jsonl(p, what)
    header = rows[0].get("golden") if isinstance(rows[0].get("golden"), dict) else None
    if header is None:
        raise BadInput(f"{what} {p}:1: the first line must be a header {{\"golden\": {{\"name\": ..., \"version\": \"X.Y.Z\"}}}}")
    name, version = header.get("name"), str(header.get("version", ""))
    if not isinstance(name, str) or not name or not _SEMVER.match(version):
        raise BadInput(f"{what} {p}:1: the header needs a name and a version like 1.0.0")
    items, seen = [], set()
    for n, row in enumerate(rows[1:], 2):
        prompt, ref = row.get("prompt"), row.get("reference")
        if not isinstance(prompt, str) or not prompt.strip():
            raise BadInput(f"{what} {p}: item {n - 1}: 'prompt' must be a non-empty string")
        if ref is not None and (not isinstance(ref, str) or not ref.strip()):
            raise BadInput(f"{what} {p}: item {n - 1}: 'reference' must be a non-empty string when given")
        difficulty = row.get("difficulty")
        if difficulty is not None and (not isinstance(difficulty, str) or not difficulty.strip()):
            raise BadInput(f"{what} {p}: item {n - 1}: 'difficulty' must be a non-empty string when given")
        stop = row.get("stop", [])
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(x, str) and x for x in stop):
            raise BadInput(f"{what} {p}: item {n - 1}: 'stop' must be a non-empty string or a list of them")
        item_id = str(row.get("id", n - 1))
        if item_id in seen:
            raise BadInput(f"{what} {p}: item {n - 1}: duplicate id {item_id!r}")
        seen.add(item_id)
        items.append(GoldenItem(item_id, prompt, ref.strip() if ref else None, difficulty, tuple(stop)))
    if not items:
        raise BadInput(f"{what} {p} has a header but no items")
    return GoldenSet(name, version, sha256_of(p), str(p), items)
