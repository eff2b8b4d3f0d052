"""Enumerate every measured option of a run, plus API models priced in the profiles."""
from __future__ import annotations

from llmbench.recommend.api import api_prices
from llmbench.recommend.facts import quality_of
from llmbench.recommend.inputs import RunData
from llmbench.recommend.naming import short_model
from llmbench.recommend.option import LATENCY_METRICS, Option

# For a batch size measured in several scenarios, the cleanest measurement wins: single-stream
# has no co-running requests, a static batch no queueing; concurrency rows include queueing.
_SCENARIO_PREFERENCE = {"single-stream": 0, "batch": 1, "concurrency": 2}


def _usable(row: dict) -> bool:
    return not row.get("error") and bool((row.get("e2el_ms") or {}).get("p95")) and bool(row.get("request_throughput_req_s"))


def self_hosted_options(data: RunData) -> list[Option]:
    """One option per model x variant x device x batch size that measured without error."""
    hardware = data.summary.get("hardware")
    best: dict[tuple, dict] = {}
    for row in data.rows:
        if not _usable(row):
            continue
        device = row.get("device") or data.summary.get("device") or "cpu"
        key = (row["model"], row["variant"], device, int(row.get("batch_size") or 1))
        rank = _SCENARIO_PREFERENCE.get(row.get("scenario"), 9)
        if key not in best or rank < _SCENARIO_PREFERENCE.get(best[key].get("scenario"), 9):
            best[key] = row
    options = []
    for (model, variant, device, bs), row in best.items():
        q = quality_of(row)
        cpr = row.get("cost_per_request_usd")
        options.append(Option(
            id=f"{short_model(model)}/{variant}/{device}/bs{bs}",
            kind="self-hosted", model=model, variant=variant, device=device, hardware=hardware,
            batch_size=bs, scenario=row.get("scenario"), point=row.get("point"),
            cost_per_1k_usd=None if cpr is None else 1000.0 * cpr,
            cost_note=f"{hardware} at ${data.summary.get('usd_per_hour', 0):g}/h, fully busy at batch {bs}",
            quality=q["value"], quality_status=q["status"], gate=q["gate"],
            latency={m: row[m] for m in LATENCY_METRICS if row.get(m)},
            throughput_req_s=row.get("request_throughput_req_s"), output_tok_s=row.get("output_throughput_tok_s"),
            prompt_tokens_mean=row.get("prompt_tokens_mean"), output_tokens_mean=row.get("output_tokens_mean"),
            parameters=row.get("parameters"), random_weights=bool(row.get("random_weights")),
        ))
    return options


def _with_cache(base: Option, cache: dict) -> Option:
    # The gateway's figures (plain cosine): what the deployed config will actually do.
    hit, false_hit = cache["hit_rate"], cache["false_hit_rate"]
    o = Option(**{**base.__dict__, "notes": list(base.notes), "latency": dict(base.latency)})
    o.id, o.base_id = f"{base.id}+cache", base.id
    o.cache = {"threshold": cache.get("threshold"), "hit_rate": hit, "false_hit_rate": false_hit}
    # A hit costs (almost) nothing; a false hit serves another prompt's answer, so it counts
    # against quality. p95 stays the misses' p95: conservative unless hits exceed 5%.
    o.cost_per_1k_usd = None if base.cost_per_1k_usd is None else base.cost_per_1k_usd * (1.0 - hit)
    o.quality = base.quality * (1.0 - false_hit)
    o.notes.append(f"semantic cache: hit rate {hit:.1%}, false hits {false_hit:.1%}; lookup cost not included; p95 latency of misses kept")
    return o


def _with_compression(base: Option, c: dict) -> Option | None:
    if c.get("model") not in (None, base.model, short_model(base.model)):
        return None
    o = Option(**{**base.__dict__, "notes": list(base.notes), "latency": {k: dict(v) for k, v in base.latency.items()}})
    o.id, o.base_id = f"{base.id}+compress{c['rate']:g}", base.id
    o.compression = {k: c.get(k) for k in ("rate", "ratio", "latency_change_ms", "agreement", "net_saving_usd_per_request")}
    if c.get("net_saving_usd_per_request") is not None and base.cost_per_1k_usd is not None:
        o.cost_per_1k_usd = max(0.0, base.cost_per_1k_usd - 1000.0 * c["net_saving_usd_per_request"])
    else:
        o.notes.append("compression saving not measured: cost kept as without compression")
    if c.get("agreement") is not None:
        o.quality = base.quality * c["agreement"]
    else:
        o.notes.append("compression quality not measured: quality kept as without compression")
    shift = c.get("latency_change_ms")
    if shift is not None:
        # The measured net change (compressor time minus prefill saved) shifts TTFT and E2EL alike.
        for m in ("ttft_ms", "e2el_ms"):
            if m in o.latency:
                o.latency[m] = {k: (v + shift if k.startswith("p") and isinstance(v, (int, float)) else v)
                                for k, v in o.latency[m].items()}
        o.latency_source = "measured, shifted by the measured net compression latency change"
    return o


def derived_options(base: list[Option], data: RunData) -> list[Option]:
    """Cache and compression settings on top of each self-hosted option, where measured."""
    out: list[Option] = []
    rates = [c for c in data.compression if c.get("rate") is not None]
    for o in base:
        comp = [x for c in rates if (x := _with_compression(o, c))]
        out += comp
        # A log without labels leaves false hits unknown: no quality to weigh a cache option by.
        gw = (data.cache or {}).get("gateway")
        if gw and gw["false_hit_rate"] is not None:
            out += [_with_cache(x, gw) for x in [o, *comp]]
    return out


def _config_length(spec) -> float | None:
    if isinstance(spec, (int, float)):
        return float(spec)
    if isinstance(spec, dict):
        return spec.get("value") or spec.get("mean") or (((spec.get("low") or 0) + (spec.get("high") or 0)) / 2 or None)
    return None


def workload_tokens(data: RunData) -> tuple[float, float] | None:
    """Mean prompt and output tokens of the measured workload (API options are priced on it);
    the run config's lengths when nothing was recorded; None when neither says."""
    ok = [r for r in data.records if r.ok]
    if ok:
        return sum(r.prompt_tokens for r in ok) / len(ok), sum(r.output_tokens for r in ok) / len(ok)
    rows = [r for r in data.rows if r.get("prompt_tokens_mean")]
    if rows:
        return rows[0]["prompt_tokens_mean"], rows[0].get("output_tokens_mean") or 0.0
    wl = data.config_section("workload")
    p_in, p_out = _config_length(wl.get("prompt_tokens")), _config_length(wl.get("output_tokens"))
    return (float(p_in), float(p_out)) if p_in and p_out else None


def api_options(data: RunData) -> list[Option]:
    """API models from the price profiles, priced on this workload's token counts."""
    tokens = workload_tokens(data)
    if tokens is None:
        return []  # nothing to price them on; the report says no API model was compared
    p_in, p_out = tokens
    out = []
    for m in api_prices():
        cost = 1000.0 * (p_in * m["input_usd_per_1m"] + p_out * m["output_usd_per_1m"]) / 1e6
        out.append(Option(
            id=f"api/{m['name']}", kind="api", model=m["name"], device="api",
            cost_per_1k_usd=cost, cost_note=f"{p_in:.0f} input + {p_out:.0f} output tokens at list price ({m.get('price_date') or 'undated'})",
            latency={}, latency_source="not measured",
            prompt_tokens_mean=p_in, output_tokens_mean=p_out,
            prices={k: m.get(k) for k in ("litellm_model", "provider", "input_usd_per_1m", "output_usd_per_1m", "price_date", "source", "api_key_env", "tier")},
            notes=["quality not measured: taken as the reference (1.0)"],
        ))
    return out


def enumerate_options(data: RunData, include_api: bool = True) -> list[Option]:
    """Every option: measured self-hosted ones, their cache/compression settings, API models."""
    base = self_hosted_options(data)
    return base + derived_options(base, data) + (api_options(data) if include_api else [])
