"""Run-end stage "recommend": importing this module registers it (after plan, quality,
compression and cache, whose files it reads). It writes recommendation.json, deployment.yaml and
gateway/litellm.yaml into the results folder, with the run config's SLO, quality floor and load."""
from __future__ import annotations

from llmbench.stages import register_stage


def recommend_stage(run_dir, meta: dict, summary: dict, console) -> None:
    """Decide from what the run measured; the target load is config.plan.rps, else half the best
    single-replica throughput (stated in recommendation.json and the report)."""
    from llmbench.export.writer import write_exports
    from llmbench.recommend.engine import recommend
    from llmbench.recommend.inputs import load_run

    rec = recommend(load_run(run_dir.path))
    write_exports(rec, run_dir.path)
    console.print(f"recommend: {rec['choice']['answer']} (load {rec['constraints']['rps']} req/s: {rec['constraints']['rps_source']})", highlight=False, markup=False)


register_stage("recommend", recommend_stage)
