"""The Guard interface and the registry of guard kinds (one module each)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from llmbench.errors import BadInput

# kind -> module under llmbench.optimizers.guard that defines `build(spec) -> Guard`
REGISTRY: dict[str, str] = {"rules": "rules", "embedding": "embedding", "judge": "judge"}


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: flagged (True: block), or None when the guard could not decide."""

    flagged: bool | None
    score: float | None = None
    detail: str | None = None


@runtime_checkable
class Guard(Protocol):
    """A check on one prompt. `stage` is 'pre' (before the model) or 'post' (after it)."""

    name: str
    stage: str

    def check(self, text: str) -> Verdict:
        """Decide on one prompt (one request: never batched, its time is a per-request cost)."""
        ...

    def describe(self) -> dict:
        """What it is, for run.json and reports (no secrets)."""
        ...


def build_guard(spec) -> Guard:
    """The guard a config block (or a bare kind name) describes; an unknown kind is a BadInput."""
    from llmbench.optimizers.guard.spec import EmbeddingSpec, JudgeSpec, RulesSpec

    if isinstance(spec, str):
        known = {"rules": RulesSpec, "embedding": EmbeddingSpec}
        if spec == "judge":
            raise BadInput("--guard judge needs a model: use --judge-model FOLDER or a run config's guardrails block")
        if spec not in known:
            raise BadInput(f"--guard {spec!r}: unknown guard; known: {', '.join(REGISTRY)}")
        spec = known[spec]()
    if not isinstance(spec, (RulesSpec, EmbeddingSpec, JudgeSpec)):
        raise BadInput(f"not a guard spec: {spec!r}")
    module = importlib.import_module(f"llmbench.optimizers.guard.{REGISTRY[spec.kind]}")
    return module.build(spec)
