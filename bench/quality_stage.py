"""The `quality` stage at the end of `llmbench run` (importing this registers it)."""
from __future__ import annotations

from llmbench.stages import register_stage


def _quality(run_dir, meta, summary, console) -> None:
    # Imported on use: the quality gate pulls in torch and onnxruntime.
    from llmbench.judge.stage import judge_stage
    from llmbench.quality import quality_stage

    quality_stage(run_dir, meta, summary, console)
    judge_stage(run_dir, meta, summary, console)  # nothing without `quality.judge`


register_stage("quality", _quality)
