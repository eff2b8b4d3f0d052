"""The config the proxy is started with: gateway/litellm.yaml as emitted, unless a part of it needs a
service nothing here provides, or points at replicas this machine does not run (scale.py).

A semantic cache on LiteLLM's Qdrant store needs that store's URL (QDRANT_API_BASE, or
cache_params.qdrant_api_base); without one the proxy does not start at all. verify then runs the
proxy with the cache off, from a copy written beside the original (gateway/litellm.verify.yaml, so
that any path in it resolves the same; keys stay `os.environ/NAME` references), and says so; the
load it sends leaves out the share the plan has the cache serve (run.py), so the servers get the
misses they were sized for. llmbench's own cache (the default, in the proxy) needs no service: it
stays on (and is switched on in the copy when the chosen option leaves it off, so that it is measured
all the same), the plan check's requests bypass it, and cache_check.py measures it on labelled pairs.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from llmbench.export.yamlio import dump
from llmbench.optimizers.cache.gateway_names import OPT_OUT_HEADER
from llmbench.verify.cache_check import left_off, plugin_on

VERIFY_CONFIG = "litellm.verify.yaml"


def _unreachable_cache(cfg: dict) -> str | None:
    settings = cfg.get("litellm_settings") or {}
    params = settings.get("cache_params") or {}
    if not settings.get("cache"):
        return None
    if params.get("type") == "qdrant-semantic" and not (params.get("qdrant_api_base") or os.environ.get("QDRANT_API_BASE")):
        return "its semantic cache needs a Qdrant vector store and none is configured (QDRANT_API_BASE is not set)"
    return None


def _port(entry: dict) -> int | None:
    info = entry.get("model_info") or {}
    if isinstance(info.get("port"), int):
        return info["port"]
    hit = re.match(r"^https?://(?:127\.0\.0\.1|localhost):(\d+)(/|$)", str((entry.get("litellm_params") or {}).get("api_base") or ""))
    return int(hit.group(1)) if hit else None


def proxy_config(gateway: Path, cfg: dict, dropped_ports: set[int] = frozenset()) -> tuple[Path, list[str], bool]:
    """(the config file to start the proxy with, notes on what verify changed in it, whether the
    cache was turned off). `dropped_ports`: replicas not started here (the plan scaled to this
    machine), whose entries are left out."""
    why = _unreachable_cache(cfg)
    drop = [m for m in cfg.get("model_list") or [] if _port(m) in dropped_ports]
    # llmbench's cache runs in the proxy and stays on; the plan check's load bypasses it (OPT_OUT_HEADER,
    # run.py) and is thinned to the misses as when the cache is off; cache_check.py measures the cache.
    bypass = [f"gateway: llmbench's semantic cache runs in the proxy; the plan check's load bypasses it "
              f"({OPT_OUT_HEADER}: off) and leaves out the share the plan has the cache serve; the cache is measured "
              "on labelled pairs (the `cache` block)"] if plugin_on(cfg) is not None else []
    switch_on = left_off(cfg)
    if why is None and not drop and not switch_on:
        return gateway, bypass, bool(bypass)
    doc = copy.deepcopy(cfg)
    notes, lines = [], []
    if switch_on:  # measured as `cache: true` would run it; the plan check's load bypasses it regardless
        doc["litellm_settings"]["cache"] = True
        lines.append("llmbench's semantic cache is on (the chosen option leaves it off): verify measures it on labelled pairs; "
                     "the plan check's load bypasses it.")
        notes.append("gateway: llmbench's semantic cache switched on in verify's copy of the config to measure it (the chosen "
                     "option leaves it off); the plan check's load bypassed it")
    if why is not None:
        doc["litellm_settings"]["cache"] = False
        lines.append(f"the semantic cache is off: {why}; every request reaches the servers.")
        notes.append(f"gateway: semantic cache turned off for verify ({why}); the requests the plan has the cache "
                     "serve were not sent, so the servers got the misses the plan sized them for")
    if drop:
        doc["model_list"] = [m for m in doc["model_list"] if _port(m) not in dropped_ports]
        lines.append(f"{len(drop)} replica entries left out (ports {', '.join(str(_port(m)) for m in drop)}): this machine runs "
                     "only part of the plan's replicas.")
        notes.append(f"gateway: {len(drop)} replica entries left out of the proxy's config (replicas not started here)")
    path = gateway.with_name(VERIFY_CONFIG)
    path.write_text(dump(doc, f"Written by `llmbench verify` from {gateway.name}, the same gateway except:\n" + "\n".join(lines)))
    return path, bypass + notes + [f"the proxy ran gateway/{path.name}"], why is not None or bool(bypass)
