"""The figures other stages leave in a results folder (quality, cache, compression), as the
recommender and the report use them.

Each reader reads the exact keys its stage writes: summary rows' `quality` (llmbench.quality,
annotate_rows), cache.json (llmbench.optimizers.cache.stage from simulate.py) and
compression.json (llmbench.optimizers.compress.stage). A figure that is not there is None, so
that every caller can say "not measured" instead of inventing a number.
"""
from __future__ import annotations

from llmbench.optimizers.cache.deploy import resolved as resolved_deploy, rule_text
from llmbench.quality import UNVERIFIED as RANDOM_WEIGHTS

NOT_MEASURED = "not measured: taken as the reference (1.0)"
_AGREEMENTS = ("greedy_agreement", "top1_agreement")
_FIGURES = ("greedy_agreement", "top1_agreement", "kl_mean", "ppl_delta", "exact_match")


# ---- quality -----------------------------------------------------------------------------------
def _agreement(figs: dict) -> float | None:
    # The lower of the gate's own two metrics, so a quality floor means what the gate's share means.
    vals = [figs[k] for k in _AGREEMENTS if figs.get(k) is not None]
    return min(vals) if vals else None


def quality_of(row: dict) -> dict:
    """{value, status, gate, figures}: a variant's quality relative to its reference.

    value is the lower of greedy and top-1 agreement; the reference itself, an unmeasured variant
    and an unverified one (random weights, near-flat logits) count as 1.0, and the status says which.
    """
    q = row.get("quality")
    random_w = bool(row.get("random_weights"))
    if q is None:
        return {"value": 1.0, "status": RANDOM_WEIGHTS if random_w else NOT_MEASURED,
                "gate": "unverified" if random_w else None, "figures": {}}
    gate = q.get("gate")
    figures = {k: q[k] for k in _FIGURES if k in q}
    measured = _agreement(q)
    if random_w or gate == "unverified":
        # Ties on flat logits, not damage (DESIGN.md): the figures are shown but decide nothing.
        return {"value": 1.0, "status": q.get("gate_note") or RANDOM_WEIGHTS, "gate": gate, "figures": figures}
    if gate == "reference":
        value, status = 1.0, "reference variant (1.0 by definition)"
    elif gate == "error":
        value, status = 1.0, f"not measured ({q.get('error')}): taken as the reference (1.0)"
    elif measured is None:
        value, status = 1.0, NOT_MEASURED
    else:  # pass or fail
        value, status = measured, "measured"
    return {"value": value, "status": status, "gate": gate, "figures": figures}


def quality_by_difficulty(row: dict) -> dict[str, float]:
    """Per-difficulty quality where the golden set labels difficulty and the gate measured it (else empty)."""
    q = row.get("quality") or {}
    if row.get("random_weights") or q.get("gate") not in ("pass", "fail"):
        return {}  # as in quality_of: only measured figures decide anything
    out = {}
    for label, figs in (q.get("by_difficulty") or {}).items():
        if (v := _agreement(figs)) is not None:
            out[label] = v
    return out


# ---- semantic cache ----------------------------------------------------------------------------
_RATE_KEYS = ("threshold", "hit_rate", "false_hit_rate", "served_from_cache_rate", "wrong_answer_rate",
              "units", "traffic", "embed_ms_p50", "lookup_ms_p50")


def _rates(d: dict) -> dict:
    return {"threshold": d.get("threshold"), "hit_rate": d.get("hit_rate"), "false_hit_rate": d.get("false_hit_rate")}


def _block(d: dict, doc: dict, threshold=None) -> dict:
    """One setting's figures in the units the recommender needs, with the file's timing and traffic.

    served_from_cache_rate and wrong_answer_rate are per request (load, cost, quality use them);
    hit_rate and false_hit_rate are per labelled lookup (pairs mode). A prompt log's hit_rate is
    per request already; a pairs file that does not give the per-request figures leaves them None.
    """
    out = {k: d.get(k) for k in _RATE_KEYS}
    if threshold is not None and out["threshold"] is None:
        out["threshold"] = threshold
    for k in ("units", "traffic", "embed_ms_p50", "lookup_ms_p50"):
        if out[k] is None:
            out[k] = doc.get(k)
    if out["served_from_cache_rate"] is None and doc.get("kind") == "prompts":
        out["served_from_cache_rate"] = d.get("hit_rate")
    return out


def cache_facts(doc: dict | None) -> dict | None:
    """The cache simulation's figures from cache.json, or None when it did not run.

    {threshold, hit_rate, false_hit_rate, served_from_cache_rate, wrong_answer_rate, units, traffic,
    embed_ms_p50, lookup_ms_p50, rule, sweep{rule: points}, baseline, gateway, deploy}. `gateway` is
    the figures of the rule the gateway config deploys (cache.json's deploy entry, optimizers/cache/
    deploy.py: the fitted verifier or cosine setting in llmbench's proxy plug-in, plain cosine on
    Qdrant), with that rule named (rule, verifier, profile). Everything deployed (the +cache options'
    price, the gateway config) uses `gateway` and `deploy`, so the priced cache is the deployed one.
    """
    if not doc or doc.get("hit_rate") is None:
        return None
    setting = doc.get("setting") or {}
    rule = setting.get("rule")
    sweeps = {name: kept for name, pts in (doc.get("sweep") or {}).items()
              if (kept := [p for p in map(_rates, pts) if p["hit_rate"] is not None and p["false_hit_rate"] is not None])}
    main = _block(doc, doc, setting.get("threshold"))
    main["threshold"] = setting.get("threshold", main["threshold"])
    base = _block(doc["baseline"], doc) if doc.get("baseline") else None
    deploy = resolved_deploy(doc)
    gateway = {**_block(deploy["figures"], doc), **{k: deploy.get(k) for k in ("rule", "verifier", "profile")},
               "rule_text": rule_text(deploy)}
    # setting (what the simulation ran) and deploy (which cache, rule and profile the gateway runs) go to the exporter.
    return {**main, "rule": rule, "sweep": sweeps, "baseline": base, "gateway": gateway,
            "setting": setting or None, "deploy": deploy}


# ---- prompt compression ------------------------------------------------------------------------
def compression_facts(doc: dict | None) -> list[dict]:
    """Per (model, variant, rate) entry of compression.json: ratio, the TTFTs it was measured with,
    the compressor's time, net latency change, agreement, net saving per request."""
    keys = ("model", "variant", "rate", "ratio", "compressor_ms", "ttft_original_ms", "ttft_compressed_ms",
            "agreement", "net_saving_usd_per_request", "pays")
    return [{**{k: e.get(k) for k in keys}, "latency_change_ms": e.get("net_latency_change_ms")}
            for e in (doc or {}).get("entries") or []]
