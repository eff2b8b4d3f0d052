"""Stages that follow measurement: quality, compression, cache, plan, recommendation, report.

Each reads the results folder and writes its own files, so it can be re-run alone. A stage that
fails is recorded and makes the run exit 1; it never loses what was measured. Each stage module
registers itself on import; `load_stages()` imports them in the order their inputs need.
"""
from __future__ import annotations

import importlib
from typing import Callable

# (name, function(run_dir, meta, summary, console) -> None), run in order.
Stage = Callable[..., None]
STAGES: list[tuple[str, Stage]] = []

# Later stages read earlier stages' files: the recommendation reads quality, compression, cache
# and plan; the report reads everything, the recommendation included.
STAGE_MODULES = (
    "llmbench.quality_stage",
    "llmbench.optimizers.compress.stage",
    "llmbench.optimizers.cache.stage",
    "llmbench.planner.stage",
    "llmbench.recommend.stage",
    "llmbench.report.stage",
)


def register_stage(name: str, fn: Stage) -> None:
    """Add a stage to run after measuring (called by each stage module at import)."""
    if name not in {n for n, _ in STAGES}:
        STAGES.append((name, fn))


def load_stages() -> list[tuple[str, Stage]]:
    """Import every stage module in order and return the registered stages."""
    for module in STAGE_MODULES:
        importlib.import_module(module)
    return STAGES
