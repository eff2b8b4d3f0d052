"""verify's cache check: labelled query pairs sent through the proxy's semantic cache (llmbench's
plug-in), the gateway's hit and false-hit rates against the simulation's for the same rule.

Protocol, as the simulation's (optimizers/cache/simulate.py, simulate_pairs): every distinct text_a
is sent first (misses: the proxy stores the answers), then every text_b. A text_b whose normalised
text equals a cached text_a counts as label 1 (the identical entry is its right answer). A request
was a hit when the proxy answered from its cache: LiteLLM sets `x-litellm-cache-key` on those only.
Requests go one at a time, streamed `/v1/completions`, so each lookup sees the entries before it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np

from llmbench.export.servers import MAIN_ALIAS
from llmbench.optimizers.cache.cache import normalise_text
from llmbench.optimizers.cache.gateway_names import OPT_OUT_HEADER as OPT_OUT
from llmbench.optimizers.cache.logs import PairsLog, read_log

HIT_HEADER = "x-litellm-cache-key"
DEFAULT_PAIRS = 24
MAX_TOKENS = 8


def plugin_on(cfg: dict) -> dict | None:
    """The plug-in's settings when the gateway config carries llmbench's cache, else None (no cache,
    or LiteLLM's Qdrant store). Carried but left off (the chosen option has no cache) counts: verify
    switches it on in its own copy of the config to measure it (gateway.py), and the plan check's load
    bypasses it either way."""
    from llmbench.optimizers.cache.gateway_names import PLUGIN, SETTINGS_KEY as PLUGIN_SETTINGS_KEY

    ls = cfg.get("litellm_settings") or {}
    if PLUGIN in (ls.get("callbacks") or []) and (ls.get("cache_params") or {}).get("type", "local") == "local":
        return (cfg.get("callback_settings") or {}).get(PLUGIN_SETTINGS_KEY)
    return None


def left_off(cfg: dict) -> bool:
    """Whether the gateway config carries llmbench's cache switched off (verify turns it on to measure it)."""
    return plugin_on(cfg) is not None and not (cfg.get("litellm_settings") or {}).get("cache")


def sample_pairs(log: Path, n: int = DEFAULT_PAIRS) -> PairsLog | None:
    """n pairs spread evenly over a labelled pairs log (None for a prompt log: no labels to judge by)."""
    parsed = read_log(log)
    if not isinstance(parsed, PairsLog):
        return None
    idx = np.unique(np.linspace(0, len(parsed.labels) - 1, min(n, len(parsed.labels))).astype(int))
    return PairsLog(str(log), [parsed.texts_a[i] for i in idx], [parsed.texts_b[i] for i in idx],
                    [parsed.labels[i] for i in idx])


def send(url: str, alias: str, headers: dict, prompt: str, timeout_s: float) -> dict:
    """One streamed completion: whether it was a cache hit, its latency, its text, whether it ended well."""
    body = {"model": alias, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    text, ok = "", False
    try:
        with httpx.stream("POST", f"{url}/completions", json=body, headers=headers, timeout=timeout_s) as r:
            hit = bool(r.headers.get(HIT_HEADER))
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    ok = r.status_code == 200
                elif line.startswith("data: ") and '"text"' in line:
                    text += "".join(c.get("text") or "" for c in json.loads(line[6:]).get("choices", []))
    except httpx.HTTPError:
        hit = False
    return {"hit": hit, "ms": (time.perf_counter() - t0) * 1e3, "ok": ok, "text": text}


def gateway_rates(pairs: PairsLog, seeded: list[dict], lookups: list[dict]) -> dict:
    """Hit and false-hit rates of the text_b lookups, labels as the simulation relabels repeats."""
    cached = {normalise_text(a) for a in pairs.texts_a}
    labels = [1 if normalise_text(b) in cached else y for b, y in zip(pairs.texts_b, pairs.labels)]
    pos = [o["hit"] for o, y in zip(lookups, labels) if y == 1]
    neg = [o["hit"] for o, y in zip(lookups, labels) if y == 0]
    hits = [o["ms"] for o in lookups if o["hit"]]
    misses = [o["ms"] for o in lookups + seeded if not o["hit"]]
    return {"lookups": len(lookups), "label1": len(pos), "label0": len(neg), "hits": int(sum(pos) + sum(neg)),
            "false_hits": int(sum(neg)), "hit_rate": sum(pos) / len(pos) if pos else None,
            "false_hit_rate": sum(neg) / len(neg) if neg else None,
            "seed_requests": len(seeded), "seed_hits": int(sum(o["hit"] for o in seeded)),
            "failed": sum(not o["ok"] for o in seeded + lookups),
            "hit_ms_p50": float(np.median(hits)) if hits else None,
            "miss_ms_p50": float(np.median(misses)) if misses else None}


def simulated(pairs: PairsLog, settings: dict) -> dict:
    """The simulation's figures for the plug-in's own rule on the same pairs."""
    from llmbench.optimizers.cache.profile import PLAIN_COSINE, load_profile
    from llmbench.optimizers.cache.simulate import simulate_pairs

    profile = load_profile(settings.get("profile") or "default")
    if settings["verifier"] == PLAIN_COSINE:
        res = simulate_pairs(pairs, threshold=float(settings["threshold"]), profile=profile)
    else:
        match = [s for s in profile.settings if s.verifier == settings["verifier"]
                 and abs(s.threshold - float(settings["threshold"])) < 1e-9]
        if not match:
            return {"skipped": True, "reason": "the gateway's verifier and threshold are not a setting of the cache profile"}
        res = simulate_pairs(pairs, target_false_hit=match[0].target, profile=profile)
    return {k: res.get(k) for k in ("lookups", "hits", "false_hits", "hit_rate", "false_hit_rate")}


def check(url: str, alias: str, headers: dict, settings: dict, log: Path, timeout_s: float, n: int = DEFAULT_PAIRS) -> dict:
    """Send the pairs through the proxy and compare with the simulation; the verify.json `cache` block."""
    pairs = sample_pairs(log, n)
    if pairs is None:
        return {"skipped": True, "reason": f"{log} is a prompt log without labels: no false hits to count"}
    seeded = [send(url, alias, headers, a, timeout_s) for a in dict.fromkeys(pairs.texts_a)]
    lookups = [send(url, alias, headers, b, timeout_s) for b in pairs.texts_b]
    gw = gateway_rates(pairs, seeded, lookups)
    sim = simulated(pairs, settings)
    diff = {k: (gw[k] - sim[k]) if gw.get(k) is not None and sim.get(k) is not None else None
            for k in ("hit_rate", "false_hit_rate")}
    return {"skipped": False, "store": "llmbench (in the proxy)", "rule": settings, "log": str(log),
            "pairs": len(pairs.labels), "gateway": gw, "simulation": sim, "difference": diff,
            "hit_saves_ms": (gw["miss_ms_p50"] - gw["hit_ms_p50"]) if gw["hit_ms_p50"] and gw["miss_ms_p50"] else None,
            "outcomes": [{"text": "a", "hit": o["hit"], "ms": round(o["ms"], 2)} for o in seeded]
            + [{"text": "b", "label": y, "hit": o["hit"], "ms": round(o["ms"], 2)} for o, y in zip(lookups, pairs.labels)],
            "units": {"hit_rate": "per label-1 lookup", "false_hit_rate": "per label-0 lookup", "ms": "request, streamed"}}


def priced(cache_json: Path) -> dict | None:
    """The figures the recommendation priced the +cache option on (cache.json's deploy entry: the same
    rule, on the whole log), to read beside the gateway's on the sampled pairs; None without one."""
    from llmbench.optimizers.cache.deploy import resolved, rule_text

    try:
        entry = resolved(json.loads(cache_json.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    if not entry:
        return None
    figs = entry.get("figures") or {}
    return {"rule": rule_text(entry), **{k: figs.get(k) for k in ("hit_rate", "false_hit_rate", "served_from_cache_rate",
                                                                  "wrong_answer_rate")}}


def for_verify(spec, url: str, headers: dict, timeout_s: float) -> dict:
    """The `cache` block of verify.json: the check when the gateway runs llmbench's cache, else why not."""
    from llmbench.optimizers.cache.stage import sample_pairs as shipped_pairs

    settings = plugin_on(spec.gateway_cfg)
    if settings is None:
        return {"skipped": True, "reason": "the gateway runs no llmbench semantic cache (off, or LiteLLM's qdrant store)"}
    log = (spec.meta.get("config") or {}).get("cache") or {}
    path = Path(log["log"]) if log.get("log") else shipped_pairs()
    auth = {k: v for k, v in headers.items() if k.lower() != OPT_OUT}  # the check goes through the cache
    doc = check(url, MAIN_ALIAS, auth, settings, path, timeout_s)
    if not doc.get("skipped"):
        doc["priced"] = priced(Path(spec.run_dir) / "cache.json")
        off = left_off(spec.gateway_cfg)
        doc["deployed_on"] = not off
        if off:
            doc["note"] = ("the chosen option leaves the cache off (gateway/litellm.yaml cache: false); verify switched it "
                           "on in its copy of the config to measure what `cache: true` would run")
    return doc
