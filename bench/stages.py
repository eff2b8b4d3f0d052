"""Stages that follow measurement (quality, compression, cache, plan, recommendation, report).

Each reads the results folder and writes its own files, so it can be re-run alone. A stage that
fails is recorded and makes the run exit 1; it never loses what was measured.
"""
from __future__ import annotations

from typing import Callable

# (name, function(run_dir, meta, summary, console) -> None), run in order.
Stage = Callable[..., None]
STAGES: list[tuple[str, Stage]] = []


def register_stage(name: str, fn: Stage) -> None:
    """Add a stage to run after measuring (later issues register theirs)."""
    STAGES.append((name, fn))
