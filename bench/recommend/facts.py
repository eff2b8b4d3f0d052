"""Normalise the figures other stages leave in a results folder (quality, cache, compression).

Those stages are written by other hands and may name a field slightly differently; each reader
here looks for the few plausible names, and returns None when the figure is not there, so that
every caller can say "not measured" instead of inventing a number.
"""
from __future__ import annotations

from typing import Any, Iterator

RANDOM_WEIGHTS = "unverified: random weights"


def num(value: Any) -> float | None:
    """A float from a number or a string like '2.1x' / '45%'; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().rstrip("x%")
        try:
            return float(text) / (100.0 if value.strip().endswith("%") else 1.0)
        except ValueError:
            return None
    return None


def first(doc: dict, *names: str) -> float | None:
    """The first of `names` (dotted paths allowed) that holds a number."""
    for name in names:
        cur: Any = doc
        for part in name.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if (v := num(cur)) is not None:
            return v
    return None


# ---- quality -----------------------------------------------------------------------------------
def quality_of(row: dict) -> dict:
    """{value, status, gate, figures}: a variant's quality relative to its reference.

    value is the lower of greedy and top-1 agreement (the gate's own metrics, so the floor means
    the same as the gate); unmeasured, or measured on random weights, means the reference itself,
    1.0, and the status says so.
    """
    q = row.get("quality") if isinstance(row.get("quality"), dict) else None
    random_w = bool(row.get("random_weights")) or bool(q and q.get("random_weights"))
    gate = (q or {}).get("gate")
    gate = gate.get("status") if isinstance(gate, dict) else gate
    if q is None:
        status = RANDOM_WEIGHTS if random_w else "not measured: taken as the reference (1.0)"
        return {"value": 1.0, "status": status, "gate": "unverified" if random_w else None, "figures": {}}
    agreements = [v for v in (first(q, "greedy_agreement"), first(q, "top1_agreement")) if v is not None]
    value = min(agreements) if agreements else 1.0
    if random_w:
        # Random weights: the figures are ties on flat logits, not damage (DESIGN.md). They are shown
        # (figures) but decide nothing: the variant counts as its reference, flagged as unverified.
        value = 1.0
    if random_w or gate == "unverified":
        status = RANDOM_WEIGHTS if random_w or "random" in str(q.get("gate_note", "random")) else (str(q.get("gate_note")) if str(q.get("gate_note")).startswith("unverified") else f"unverified: {q.get('gate_note')}")
    elif gate == "reference":
        status = "reference variant (1.0 by definition)"
    elif agreements:
        status = "measured"
    else:
        status = "not measured: taken as the reference (1.0)"
    figures = {k: q[k] for k in ("greedy_agreement", "top1_agreement", "kl_mean", "ppl_delta", "exact_match") if k in q}
    return {"value": value, "status": status, "gate": gate, "figures": figures}


def quality_by_difficulty(row: dict) -> dict[str, float]:
    """Per-difficulty quality where the golden set labels difficulty (else empty)."""
    q = row.get("quality") if isinstance(row.get("quality"), dict) else {}
    groups = q.get("by_difficulty") or {}
    out = {}
    if isinstance(groups, dict):
        for name, figs in groups.items():
            if isinstance(figs, dict):
                vals = [v for v in (first(figs, "greedy_agreement"), first(figs, "top1_agreement")) if v is not None]
                if vals:
                    out[str(name)] = min(vals)
    return out


# ---- semantic cache ----------------------------------------------------------------------------
def _dict_lists(doc: Any) -> Iterator[tuple[str, list]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                yield k, v
            yield from _dict_lists(v)


def cache_facts(doc: dict | None) -> dict | None:
    """{threshold, hit_rate, false_hit_rate, lookup_ms_p50, sweep[], baseline} or None."""
    if not doc:
        return None
    hit = first(doc, "hit_rate", "chosen.hit_rate", "result.hit_rate", "verifier.hit_rate")
    if hit is None:
        return None
    sweep = []
    for key, items in _dict_lists(doc):
        if "baseline" in key:
            continue
        pts = [{"threshold": first(p, "threshold"), "hit_rate": first(p, "hit_rate"), "false_hit_rate": first(p, "false_hit_rate")}
               for p in items]
        pts = [p for p in pts if p["hit_rate"] is not None and p["false_hit_rate"] is not None]
        if len(pts) >= 2:
            sweep = pts
            break
    base = doc.get("baseline") if isinstance(doc.get("baseline"), dict) else None
    return {
        "threshold": first(doc, "threshold", "similarity_threshold", "chosen.threshold", "setting.threshold", "cosine_threshold"),
        "hit_rate": hit,
        "false_hit_rate": first(doc, "false_hit_rate", "chosen.false_hit_rate", "result.false_hit_rate") or 0.0,
        "false_hit_measured": first(doc, "false_hit_rate", "chosen.false_hit_rate", "result.false_hit_rate") is not None,
        "lookup_ms_p50": first(doc, "lookup_ms.p50", "lookup_latency_ms.p50", "lookup_ms_p50", "lookup_p50_ms"),
        "sweep": sweep,
        "baseline": {"hit_rate": first(base, "hit_rate"), "false_hit_rate": first(base, "false_hit_rate"),
                     "threshold": first(base, "threshold")} if base else None,
    }


# ---- prompt compression ------------------------------------------------------------------------
# Keys that hold entries without naming a model (any other key holding entries is taken as one).
_CONTAINERS = {"rates", "results", "entries", "per_rate", "by_rate", "points", "candidates", "per_candidate", "models",
               "compression", "items", "data", "summary", "quality", "net", "tokens"}


def _rate_entries(doc: Any, model: str | None = None) -> Iterator[dict]:
    # Entries are dicts with a numeric `rate`; the model is their own field or the key of the
    # mapping that holds them ({"card:llama-5m": [{rate: 0.5, ...}]}).
    if isinstance(doc, dict):
        if num(doc.get("rate")) is not None and len(doc) > 1:
            yield {**doc, "model": doc.get("model") or doc.get("candidate") or model}
            return
        named = doc.get("model") or doc.get("candidate")
        model = named if isinstance(named, str) else model
        for k, v in doc.items():
            yield from _rate_entries(v, model if k in _CONTAINERS or num(k) is not None else k)
    elif isinstance(doc, list):
        for v in doc:
            yield from _rate_entries(v, model)


def compression_facts(doc: dict | None) -> list[dict]:
    """Per (model, rate): ratio, net latency change, agreement, net saving per request."""
    if not doc:
        return []
    out = []
    for e in _rate_entries(doc):
        out.append({
            "model": e.get("model"),
            "rate": num(e.get("rate")),
            "ratio": first(e, "ratio", "compression_ratio", "tokens.ratio"),
            "latency_change_ms": first(e, "net_latency_change_ms", "latency_change_ms", "e2el_change_ms", "net_latency_ms",
                                       "net.latency_change_ms"),
            "agreement": first(e, "agreement", "greedy_agreement", "quality.agreement", "quality.greedy_agreement", "output_agreement"),
            "net_saving_usd_per_request": first(e, "net_saving_usd_per_request", "net_saving_usd", "net_saving_per_request_usd",
                                                "saving_usd_per_request", "net.saving_usd_per_request", "cost_saved_per_request_usd"),
            "pays": e.get("pays") if isinstance(e.get("pays"), bool) else None,
        })
    return out
