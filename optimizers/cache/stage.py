"""The `cache` stage at the end of `llmbench run`: a semantic-cache simulation (cache.json)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from llmbench.results import write_json
from llmbench.stages import register_stage


def sample_pairs() -> Path:
    """The labelled pairs shipped for runs whose workload has no real text (profiles/cache/README.md)."""
    return Path(str(resources.files("llmbench.profiles") / "cache" / "sample_pairs.jsonl"))


def cache_stage(run_dir, meta: dict, summary: dict, console) -> None:
    """Replay the configured log (or the shipped sample pairs) through the cache; write cache.json."""
    cfg = (meta.get("config") or {}).get("cache")
    if cfg is None:
        return
    from llmbench.optimizers.cache.deploy import deploy_entry
    from llmbench.optimizers.cache.logs import PairsLog, read_log
    from llmbench.optimizers.cache.profile import load_profile
    from llmbench.optimizers.cache.simulate import SAMPLE_TRAFFIC, simulate_log, sweep_pairs

    log = Path(cfg["log"]) if cfg.get("log") else sample_pairs()
    traffic = str(log) if cfg.get("log") else SAMPLE_TRAFFIC
    target = cfg.get("target_false_hit", 0.05)
    profile = load_profile(str(cfg["verifier"])) if cfg.get("verifier") else None
    parsed = read_log(log)
    if isinstance(parsed, PairsLog):
        # No plot here: the report draws this sweep (plots/cache.png); one curve, drawn once.
        doc = sweep_pairs(parsed, target_false_hit=target, profile=profile, traffic=traffic)
    else:
        doc = simulate_log(log, target_false_hit=target, profile=profile, traffic=traffic)
    doc["log"] = str(log) if cfg.get("log") else f"shipped sample pairs ({log.name}): near-duplicate documentation sentences"
    # What the gateway config deploys (llmbench's cache in the proxy, or Qdrant's), its rule, threshold,
    # profile and figures: the recommender prices exactly this and the exporter writes exactly this.
    doc["deploy"] = deploy_entry(doc, cfg)
    write_json(run_dir.path / "cache.json", doc)
    fh, wrong = doc.get("false_hit_rate"), doc.get("wrong_answer_rate")
    console.print(f"cache: {doc['served_from_cache_rate']:.1%} of requests served from cache, wrong answers "
                  f"{'not measured (no labels)' if wrong is None else f'{wrong:.1%} of requests'} "
                  f"(false hits {'-' if fh is None else f'{fh:.1%}'} of label-0 lookups) on {doc['traffic']} "
                  "(cache.json)", highlight=False, markup=False)


register_stage("cache", cache_stage)
