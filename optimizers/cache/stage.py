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
    from llmbench.optimizers.cache.logs import PairsLog, read_log
    from llmbench.optimizers.cache.profile import load_profile
    from llmbench.optimizers.cache.simulate import SAMPLE_TRAFFIC, simulate_log, sweep_pairs

    log = Path(cfg["log"]) if cfg.get("log") else sample_pairs()
    traffic = str(log) if cfg.get("log") else SAMPLE_TRAFFIC
    target = cfg.get("target_false_hit", 0.05)
    profile = load_profile(str(cfg["verifier"])) if cfg.get("verifier") else None
    parsed = read_log(log)
    if isinstance(parsed, PairsLog):
        doc = sweep_pairs(parsed, target_false_hit=target, profile=profile, traffic=traffic,
                          plot_path=run_dir.path / "plots" / "cache_sweep.png")
    else:
        doc = simulate_log(log, target_false_hit=target, profile=profile, traffic=traffic)
    doc["log"] = str(log) if cfg.get("log") else f"shipped sample pairs ({log.name}): near-duplicate documentation sentences"
    write_json(run_dir.path / "cache.json", doc)
    fh = doc.get("false_hit_rate")
    console.print(f"cache: hit rate {doc['hit_rate']:.1%}, false hits "
                  f"{'not measured (no labels)' if fh is None else f'{fh:.1%}'} on {doc['log']} (cache.json)")


register_stage("cache", cache_stage)
