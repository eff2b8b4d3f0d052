"""The rules guard: regex patterns from a versioned YAML rules file; any match flags the prompt."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.optimizers.guard.base import Verdict


def shipped_rules() -> Path:
    """The rules file that ships with llmbench."""
    return Path(__file__).resolve().parents[2] / "profiles" / "guard" / "rules.yaml"


@dataclass
class RulesGuard:
    """Flags a prompt when any pattern matches (case-insensitive search)."""

    name: str
    version: str
    patterns: list[tuple[str, re.Pattern]]
    stage: str = "pre"

    def check(self, text: str) -> Verdict:
        """The first matching rule's id in `detail`; score 1.0 on a match, 0.0 otherwise."""
        for rid, pat in self.patterns:
            if pat.search(text):
                return Verdict(True, 1.0, rid)
        return Verdict(False, 0.0, None)

    def describe(self) -> dict:
        """Kind, rules name and version, and the rule ids."""
        return {"kind": "rules", "name": self.name, "version": self.version, "rules": [r for r, _ in self.patterns]}


def load_rules(path: Path, stage: str = "pre") -> RulesGuard:
    """Read and compile a rules file: `name`, `version`, `patterns: [{id, regex}]`; BadInput on any fault."""
    from llmbench.yamlsafe import load_yaml

    try:
        data = load_yaml(Path(path).read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the rules file ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: a rules file needs 'patterns: [{{id, regex}}, ...]'")
    compiled = compile_patterns(data.get("patterns"), path)
    return RulesGuard(str(data.get("name", Path(path).stem)), str(data.get("version", "0.0.0")), compiled, stage)


def compile_patterns(items, where) -> list[tuple[str, re.Pattern]]:
    """(id, compiled regex) of each `{id, regex}` item, case-insensitive; BadInput (naming `where`) on any fault."""
    if not isinstance(items, list) or not items:
        raise BadInput(f"{where}: a rules file needs 'patterns: [{{id, regex}}, ...]'")
    compiled = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("regex"), str):
            raise BadInput(f"{where}: patterns[{i}] needs a 'regex' string")
        try:
            compiled.append((str(item.get("id", f"rule{i}")), re.compile(item["regex"], re.IGNORECASE)))
        except re.error as exc:
            raise BadInput(f"{where}: patterns[{i}] is not a valid regex ({exc})") from None
    return compiled


def build(spec) -> RulesGuard:
    """The guard of a `{kind: rules}` block."""
    return load_rules(spec.file or shipped_rules(), spec.stage)
