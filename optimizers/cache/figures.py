"""Figures every cache simulation reports, in named units: per-request rates, the embedding time
of one request, and the gateway's (plain cosine) block.

Units: `hit_rate` is per label-1 lookup in a labelled pairs file and per request in a prompt log;
`false_hit_rate` per label-0 lookup; `wrong_entry_rate` per label-1 lookup; `served_from_cache_rate`
and `wrong_answer_rate` per request (lookup), whatever the log. The recommender prices load, cost and
quality on the per-request figures.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from llmbench.optimizers.cache.embedder import Embedder

SAMPLE_TRAFFIC = "shipped sample pairs (not your traffic)"
UNITS_PAIRS = {"hit_rate": "per_label1_lookup", "false_hit_rate": "per_label0_lookup",
               "wrong_entry_rate": "per_label1_lookup", "served_from_cache_rate": "per_request",
               "wrong_answer_rate": "per_request"}
UNITS_PROMPTS = {"hit_rate": "per_request", "false_hit_rate": "per_label0_lookup",
                 "wrong_entry_rate": "per_label1_lookup", "served_from_cache_rate": "per_request",
                 "wrong_answer_rate": "per_request"}


def per_request(r: dict) -> dict:
    """`served_from_cache_rate` and `wrong_answer_rate` (None without labels) of a `rates`-like dict, per lookup."""
    n = r.get("lookups") or 0
    served = r.get("served", r.get("hits"))
    wrong = (None if r.get("false_hits") is None or r.get("wrong_entries") is None
             else r["false_hits"] + r["wrong_entries"])
    return {"served_from_cache_rate": served / n if n and served is not None else None,
            "wrong_answer_rate": wrong / n if n and wrong is not None else None}


def embed_latency_ms(embedder: Embedder, texts: Sequence[str], tokens: bool, samples: int = 16) -> float | None:
    """Median time to embed one request on its own (as a gateway embeds each prompt), in ms.

    Measured with the model itself, bypassing the on-disk vector store (a store hit is not what a
    new request costs); the first call (model load, first-batch setup) is not counted.
    """
    inner = getattr(embedder, "inner", embedder)
    picks = [texts[int(i)] for i in np.linspace(0, len(texts) - 1, min(samples, len(texts)))] if texts else []
    if not picks:
        return None

    def one(t: str) -> None:
        if tokens and hasattr(inner, "embed_with_tokens"):
            inner.embed_with_tokens([t])
        else:
            inner.embed([t])

    one(picks[0])
    times = []
    for t in picks:
        t0 = time.perf_counter()
        one(t)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def gateway_block(result: dict, lookup_ms_p50: float | None) -> dict:
    """The plain-cosine side of a result (the rule itself when it is cosine, else the baseline)."""
    src = result if result["setting"]["rule"] == "cosine" else result["baseline"]
    keys = ("threshold", "lookups", "served", "hits", "false_hits", "wrong_entries", "hit_rate", "false_hit_rate",
            "wrong_entry_rate", "precision", "served_from_cache_rate", "wrong_answer_rate", "api_calls_saved",
            "tokens_saved", "cost_saved")
    out = {k: src.get(k) for k in keys if k in src}
    out.update({"rule": "cosine", "threshold": src.get("threshold", result["setting"]["threshold"]),
                "units": result["units"], "traffic": result["traffic"], "embed_ms_p50": result["embed_ms_p50"],
                "lookup_ms_p50": lookup_ms_p50})
    return out
