"""Enumerate every measured option of a run, plus the API models the user named."""
from __future__ import annotations

from llmbench.errors import BadInput
from llmbench.planner.served import row_slots, served_row
from llmbench.recommend.api import api_prices
from llmbench.recommend.derived import derived_options
from llmbench.recommend.facts import quality_of
from llmbench.recommend.inputs import RunData
from llmbench.recommend.naming import model_labels
from llmbench.recommend.option import LATENCY_METRICS, Option
from llmbench.recommend.serving import engine_facts

# For a batch size measured in several scenarios, the cleanest measurement wins: single-stream
# has no co-running requests, a static batch no queueing; concurrency rows include queueing.
_SCENARIO_PREFERENCE = {"single-stream": 0, "batch": 1, "concurrency": 2}


def _usable(row: dict) -> bool:
    return not row.get("error") and bool((row.get("e2el_ms") or {}).get("p95")) and bool(row.get("request_throughput_req_s"))


def partial_failure(row: dict) -> bool:
    """A row some of whose requests failed: its figures describe the survivors only."""
    return bool(row.get("partial_failure")) or bool(row.get("failed"))


def self_hosted_options(data: RunData, include_failed: bool = False) -> list[Option]:
    """One option per model x variant x device x batch size that measured without error.

    Rows with failed requests are left out unless `include_failed` (their latencies and
    throughput are those of the requests that survived, which flatters them).
    """
    hardware = data.summary.get("hardware")
    best: dict[tuple, dict] = {}
    for row in data.rows:
        if not _usable(row) or (partial_failure(row) and not include_failed):
            continue
        device = row.get("device") or data.summary.get("device") or "cpu"
        # A served row's "batch" is the --parallel slots it was measured with (its clients), not the
        # batch_size 1 its requests carry: each measured slot count is its own option.
        bs = row_slots(row) if served_row(row) else int(row.get("batch_size") or 1)
        key = (row["model"], row["variant"], device, bs)
        rank = _SCENARIO_PREFERENCE.get(row.get("scenario"), 9)
        if key not in best or rank < _SCENARIO_PREFERENCE.get(best[key].get("scenario"), 9):
            best[key] = row
    labels = model_labels([k[0] for k in best])
    options = []
    for (model, variant, device, bs), row in best.items():
        q = quality_of(row)
        cpr = row.get("cost_per_request_usd")
        o = Option(
            id=f"{labels[model]}/{variant}/{device}/bs{bs}", label=labels[model],
            kind="self-hosted", model=model, variant=variant, device=device, hardware=hardware,
            batch_size=bs, scenario=row.get("scenario"), point=row.get("point"),
            cost_per_1k_usd=None if cpr is None else 1000.0 * cpr,
            cost_note=f"{hardware} at ${data.summary.get('usd_per_hour', 0):g}/h, fully busy at batch {bs}",
            quality=q["value"], quality_status=q["status"], gate=q["gate"],
            latency={m: row[m] for m in LATENCY_METRICS if row.get(m)},
            throughput_req_s=row.get("request_throughput_req_s"), output_tok_s=row.get("output_throughput_tok_s"),
            prompt_tokens_mean=row.get("prompt_tokens_mean"), output_tokens_mean=row.get("output_tokens_mean"),
            parameters=row.get("parameters"), random_weights=bool(row.get("random_weights")),
        )
        o.engine, o.not_servable_reason = engine_facts(data, model, variant, device)
        o.servable = o.engine is not None
        if not o.servable:
            o.notes.append(f"measured only, not deployable: {o.not_servable_reason}")
        if row.get("unreliable"):
            o.unreliable = str(row.get("unreliable_reason") or "the measurement is flagged unreliable (noisy)")
            o.notes.append(f"unreliable measurement: {o.unreliable}")
        if partial_failure(row):
            o.notes.append(f"{row.get('failed')} of {row.get('requests')} requests failed in this cell (kept by --include-failed)")
        options.append(o)
    return options


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


def api_cost_per_1k(p_in: float, p_out: float, input_usd_per_1m: float, output_usd_per_1m: float) -> float:
    """USD per 1,000 requests of p_in prompt and p_out output tokens at per-1M-token prices."""
    return 1000.0 * (p_in * input_usd_per_1m + p_out * output_usd_per_1m) / 1e6


def api_options(data: RunData, names: list[str]) -> list[Option]:
    """The named API models from the price profiles, priced on this workload's token counts.

    Their quality was not measured on this workload: it is marked so and decides nothing (they
    pass a quality floor only as unverified, like random-weight figures).
    """
    if not names:
        return []
    prices = {m["name"]: m for m in api_prices()}
    unknown = [n for n in names if n not in prices]
    if unknown:
        raise BadInput(f"API model {unknown[0]!r} is not in the price list (known: {', '.join(sorted(prices))})")
    tokens = workload_tokens(data)
    if tokens is None:
        return []  # nothing to price them on; the report says no API model was compared
    p_in, p_out = tokens
    out = []
    for name in dict.fromkeys(names):
        m = prices[name]
        out.append(Option(
            id=f"api/{m['name']}", kind="api", model=m["name"], label=m["name"], device="api",
            cost_per_1k_usd=api_cost_per_1k(p_in, p_out, m["input_usd_per_1m"], m["output_usd_per_1m"]),
            cost_note=f"{p_in:.0f} input + {p_out:.0f} output tokens at list price ({m.get('price_date') or 'undated'})",
            latency={}, latency_source="not measured",
            quality_status="unverified: API model, quality not measured on this workload",
            prompt_tokens_mean=p_in, output_tokens_mean=p_out,
            prices={k: m.get(k) for k in ("litellm_model", "provider", "input_usd_per_1m", "output_usd_per_1m", "price_date", "source", "api_key_env", "tier")},
            notes=["quality not measured on this workload (unverified)"],
        ))
    return out


def named_api_models(data: RunData, given: list[str] | None) -> list[str]:
    """API models to compare: the command line's, else the run config's `plan.api_models`; none otherwise."""
    if given:
        return list(given)
    return list(data.config_section("plan").get("api_models") or [])


def enumerate_options(data: RunData, api: list[str] | None = None, include_failed: bool = False) -> list[Option]:
    """Every option: measured self-hosted ones, their cache/compression settings, named API models."""
    base = self_hosted_options(data, include_failed)
    return base + derived_options(base, data) + api_options(data, named_api_models(data, api))
