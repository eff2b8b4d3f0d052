"""cache.json's `deploy` entry: the one statement of which cache, rule and threshold the gateway runs.

The cache stage writes it; the recommender prices the +cache options on its `figures` and the
exporter writes the proxy plug-in's settings (callback_settings.llmbench_cache) from its rule, so
the option that is priced is the cache that is deployed. llmbench's cache in the proxy runs the
run's fitted setting (the profile's verifier, or plain cosine where that is the setting); LiteLLM's
Qdrant cache compares cosines only, so it runs the plain-cosine setting chosen for the same target.
"""
from __future__ import annotations

from pathlib import Path

from llmbench.optimizers.cache.profile import PLAIN_COSINE

DEFAULT_PROFILE = "default"
# Per rule: what the option is priced on (rates per request and per lookup, and the lookup's cost).
FIGURE_KEYS = ("threshold", "hit_rate", "false_hit_rate", "served_from_cache_rate", "wrong_answer_rate",
               "units", "traffic", "embed_ms_p50", "lookup_ms_p50")
_DOC_KEYS = ("units", "traffic", "embed_ms_p50", "lookup_ms_p50")  # the file's, where a block lacks them


def profile_ref(verifier: str | Path | None) -> str:
    """The cache profile as the proxy must find it: a file's absolute path (the proxy runs in gateway/,
    not where the run was configured), else a shipped profile's name."""
    if not verifier:
        return DEFAULT_PROFILE
    path = Path(str(verifier)).expanduser()
    if path.suffix == ".json" or path.is_file():
        return str(path.resolve())
    return str(verifier)


def _cosine_block(doc: dict) -> dict:
    setting = doc.get("setting") or {}
    if isinstance(doc.get("gateway"), dict):
        return doc["gateway"]
    return doc if setting.get("rule") == PLAIN_COSINE else (doc.get("baseline") or {})


def deploy_entry(doc: dict, cfg: dict | None = None) -> dict:
    """The deploy entry for a cache.json document `doc` and the run's `cache` config `cfg`.

    {gateway, qdrant_url, qdrant_api_key_env, rule, verifier, threshold, candidates, profile, figures}:
    `verifier` is the profile's verifier name or 'cosine'; `figures` are the simulation's for exactly
    that rule and threshold (FIGURE_KEYS).
    """
    cfg = cfg or {}
    store = cfg.get("gateway") or "llmbench"
    setting = doc.get("setting") or {}
    fitted = setting.get("threshold") is not None
    if store == "llmbench" and fitted and setting.get("rule") == "verifier" and setting.get("verifier"):
        rule, verifier, src = "verifier", str(setting["verifier"]), doc
    elif store == "llmbench" and fitted and setting.get("rule") == PLAIN_COSINE:
        rule, verifier, src = PLAIN_COSINE, PLAIN_COSINE, doc
    else:  # Qdrant, or a verifier whose name is lost: plain cosine at the same target
        rule, verifier, src = PLAIN_COSINE, PLAIN_COSINE, _cosine_block(doc)
    figures = {k: src.get(k) if src.get(k) is not None or k not in _DOC_KEYS else doc.get(k) for k in FIGURE_KEYS}
    if src is doc:
        figures["threshold"] = setting["threshold"]
    if figures["served_from_cache_rate"] is None and doc.get("kind") == "prompts":
        figures["served_from_cache_rate"] = src.get("hit_rate")  # a prompt log's hit rate is per request
    out = {"gateway": store, "qdrant_url": cfg.get("qdrant_url"),
           "qdrant_api_key_env": cfg.get("qdrant_api_key_env") or "QDRANT_API_KEY",
           "rule": rule, "verifier": verifier, "threshold": figures["threshold"],
           "candidates": setting.get("candidates"), "profile": profile_ref(cfg.get("verifier")), "figures": figures}
    return out


def resolved(doc: dict | None) -> dict | None:
    """cache.json's deploy entry, complete: as written, or (a file from before the entry named its rule)
    rebuilt from the document and whatever the entry says (which store, Qdrant's URL)."""
    if not doc:
        return None
    entry = doc.get("deploy") or {}
    if isinstance(entry.get("figures"), dict) and entry.get("rule"):
        return entry
    return deploy_entry(doc, {k: entry.get(k) for k in ("gateway", "qdrant_url", "qdrant_api_key_env")})


def rule_text(entry: dict) -> str:
    """The rule in words: 'verifier floor0.90 (probability) >= 0.725' or 'plain cosine >= 0.92'."""
    t = entry.get("threshold")
    at = f" >= {t:.4g}" if isinstance(t, (int, float)) else ""
    if entry.get("rule") == "verifier":
        prof = entry.get("profile") or DEFAULT_PROFILE
        return f"verifier {entry['verifier']} (cache profile {prof}) probability{at}"
    return f"plain cosine{at}"
