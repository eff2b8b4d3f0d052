"""Options built on a measured one: with a semantic cache in front, or with compressed prompts.

Each adds its own compute (the cache's embedder and lookup, the compressor) to latency and cost,
and is priced only from figures measured for it: a compression saving applies to the variant it
was measured on, scaled to this workload's prompts by the stated model below, never to another.
"""
from __future__ import annotations

from llmbench.recommend.inputs import RunData
from llmbench.recommend.option import Option


def _copy(base: Option) -> Option:
    return Option(**{**base.__dict__, "notes": list(base.notes), "sidecars": list(base.sidecars),
                     "latency": {k: dict(v) for k, v in base.latency.items()}})


def _shift(o: Option, metrics: tuple[str, ...], fn) -> None:
    for m in metrics:
        if m in o.latency:
            o.latency[m] = {k: (fn(m, k, v) if (k.startswith("p") or k == "mean") and isinstance(v, (int, float)) else v)
                            for k, v in o.latency[m].items()}


def _usd_per_hour(data: RunData) -> float:
    hp = data.meta.get("hardware_profile") or {}
    return float(hp.get("usd_per_hour") or data.summary.get("usd_per_hour") or 0.0) * int(hp.get("devices") or 1)


def with_cache(base: Option, cache: dict, usd_per_hour: float) -> Option:
    """The option behind the gateway's semantic cache, priced on the figures of the rule the gateway
    config deploys (`cache`: cache_facts' `gateway`, from cache.json's deploy entry).

    Load and server cost shrink by the share of requests served from cache; quality by the share
    of requests answered wrongly from cache; every request pays the embedding and the lookup in
    latency, and the embedder's compute in cost (a sidecar sized at planning.SIDECAR_UTILISATION).
    """
    served, wrong = cache["served_from_cache_rate"], cache["wrong_answer_rate"]
    extra_ms = (cache.get("embed_ms_p50") or 0.0) + (cache.get("lookup_ms_p50") or 0.0)
    o = _copy(base)
    o.id, o.base_id = f"{base.id}+cache", base.id
    o.cache = {k: cache.get(k) for k in ("rule", "verifier", "profile", "threshold", "served_from_cache_rate", "wrong_answer_rate",
                                         "hit_rate", "false_hit_rate", "units", "traffic", "embed_ms_p50", "lookup_ms_p50")}
    sidecar_usd = extra_ms / 1e3 * usd_per_hour / 3600.0  # one request's embedder + lookup time on one machine
    if base.cost_per_1k_usd is not None:
        o.cost_per_1k_usd = base.cost_per_1k_usd * (1.0 - served) + 1000.0 * sidecar_usd
    o.quality = base.quality * (1.0 - wrong)
    # Misses keep their measured latency plus the lookup; percentiles stay those of the misses
    # (conservative while hits are under 5% of requests, and the honest tail beyond).
    _shift(o, ("ttft_ms", "e2el_ms"), lambda m, k, v: v + extra_ms)
    o.latency_source = "measured, plus the cache's embedding and lookup time"
    o.sidecars.append({"role": "semantic-cache embedder", "busy_ms_per_request": extra_ms, "share_of_requests": 1.0})
    traffic = cache.get("traffic") or "traffic not stated in cache.json"
    emb = f"embedding {cache['embed_ms_p50']:.1f} ms" if cache.get("embed_ms_p50") is not None else "embedding time not measured (not included)"
    rule = cache.get("rule_text") or "plain cosine"
    o.notes.append(f"semantic cache ({rule}, the rule the gateway config deploys): {served:.1%} of requests served from cache, "
                   f"{wrong:.1%} answered wrongly from cache ({traffic}); {emb} + lookup {cache.get('lookup_ms_p50') or 0:.2f} ms "
                   "added to every request and priced")
    return o


def _entry_matches(base: Option, c: dict) -> bool:
    # A saving belongs to the model and variant it was measured on: never borrowed by another.
    return c.get("model") in (base.model, base.label) and c.get("variant") == base.variant


def with_compression(base: Option, c: dict, usd_per_hour: float) -> Option | None:
    """The option with prompts compressed at c's rate, or None when c was not measured on it.

    Stated model: the measured share of TTFT saved on the compression prompt, capped at the share
    of prompt tokens removed (1 - 1/ratio), is taken off this option's own TTFT (and so E2EL); the
    compressor's measured time per request is added to both and priced as a sidecar. Latency and
    cost never fall below what the uncompressed decode itself takes.
    """
    if not _entry_matches(base, c) or not c.get("ratio") or c.get("ttft_original_ms") in (None, 0):
        return None
    ratio, comp_ms = float(c["ratio"]), float(c.get("compressor_ms") or 0.0)
    share = max(0.0, min(1.0 - (c.get("ttft_compressed_ms") or c["ttft_original_ms"]) / c["ttft_original_ms"], 1.0 - 1.0 / ratio))
    o = _copy(base)
    o.id, o.base_id = f"{base.id}+compress{c['rate']:g}", base.id
    o.compression = {k: c.get(k) for k in ("rate", "ratio", "compressor_ms", "ttft_original_ms", "ttft_compressed_ms", "agreement")}
    o.compression["ttft_share_saved"] = share
    ttft = dict(base.latency.get("ttft_ms") or {})
    _shift(o, ("ttft_ms",), lambda m, k, v: v * (1.0 - share) + comp_ms)
    _shift(o, ("e2el_ms",), lambda m, k, v: v - (ttft.get(k) or 0.0) * share + comp_ms)
    e2el_mean, ttft_mean = (base.latency.get("e2el_ms") or {}).get("mean"), ttft.get("mean")
    if base.cost_per_1k_usd is not None and e2el_mean and ttft_mean is not None:
        server = base.cost_per_1k_usd * (e2el_mean - ttft_mean * share) / e2el_mean  # server time saved in prefill
        o.cost_per_1k_usd = server + 1000.0 * comp_ms / 1e3 * usd_per_hour / 3600.0
    o.sidecars.append({"role": "prompt compressor", "busy_ms_per_request": comp_ms, "share_of_requests": 1.0})
    if c.get("agreement") is not None and not base.random_weights:  # flat logits: agreement is ties, not quality
        o.quality = base.quality * c["agreement"]
    else:
        why = "measured on random weights (unverified)" if c.get("agreement") is not None else "not measured"
        o.notes.append(f"compression agreement {why}: it decides nothing, quality kept as without compression")
    o.latency_source = "measured, prefill scaled by the compression measured on this variant, plus the compressor's time"
    o.notes.append(f"compression rate {c['rate']:g}: {share:.1%} of TTFT saved (measured share on the compression prompt, "
                   f"capped at the {1 - 1 / ratio:.0%} of tokens removed), compressor {comp_ms:.1f} ms per request added and priced")
    return o


def derived_options(base: list[Option], data: RunData) -> list[Option]:
    """Cache and compression settings on top of each self-hosted option, where measured for it."""
    out: list[Option] = []
    usd_h = _usd_per_hour(data)
    rates = [c for c in data.compression if c.get("rate") is not None]
    gw = (data.cache or {}).get("gateway")
    # A log without labels leaves wrong answers unknown, and a file without the per-request
    # served share cannot size the load: no option is priced on a guess.
    cache_ok = bool(gw and gw.get("served_from_cache_rate") is not None and gw.get("wrong_answer_rate") is not None)
    for o in base:
        comp = [x for c in rates if (x := with_compression(o, c, usd_h))]
        out += comp
        if cache_ok:
            out += [with_cache(x, gw, usd_h) for x in [o, *comp]]
    return out
