"""Tables of the report as (headers, rows) of plain values; the renderers format them.

Values in the files keep full precision; these functions round for display only.
"""
from __future__ import annotations

from llmbench.report.figures import label_of

# Below this many samples a percentile or a bootstrap interval is little more than the extremes.
FEW_SAMPLES = 5


def _f(v, nd: int = 1):
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if v != 0 and abs(v) < 10 ** -nd:  # keep tiny figures readable instead of "0.0" or "-0.0"
        return f"{v:.2g}"
    return f"{v:,.{nd}f}"


def _n(row: dict) -> int:
    """Successful requests: `requests` counts only those since rows carry `partial_failure`; in
    older summaries it counted every record, failed ones included."""
    if "partial_failure" in row:
        return row.get("requests") or 0
    return (row.get("requests") or 0) - (row.get("failed") or 0)


def _total(row: dict) -> int:
    return _n(row) + (row.get("failed") or 0)


def row_flags(row: dict) -> list[str]:
    """What a reader must know before trusting a summary row (each flag is read only if present)."""
    flags = []
    if row.get("failed") and not row.get("error"):
        flags.append(f"partial failure: {row['failed']} of {_total(row)} requests failed")
    elif row.get("partial_failure") and not row.get("error"):
        flags.append("partial failure")
    if row.get("unreliable"):
        flags.append("unreliable" + (f": {row['unreliable_reason']}" if row.get("unreliable_reason") else ""))
    prec = row.get("precision_pct")
    missed = row.get("precision_reached") is False or bool(row.get("hit_cap") and row.get("precision_reached") is not True)
    if isinstance(prec, (int, float)) and not isinstance(prec, bool) and missed and "±" not in str(row.get("unreliable_reason") or ""):
        flags.append(f"noisy: ±{prec:.1f}%")
    dist = row.get("ttft_ms") or {}
    n, units = dist.get("n") or _n(row), dist.get("n_units")
    if not row.get("error") and 0 < n < FEW_SAMPLES:
        flags.append(f"only {n} samples: percentiles and intervals are rough")
    elif not row.get("error") and isinstance(units, int) and 0 < units < FEW_SAMPLES:
        # Requests of one static batch share their timings: the intervals resample whole batches.
        flags.append(f"only {units} independent batches: the intervals are rough")
    return flags


def summary_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    headers = ["option", "point", "n", "TTFT p50 ms [95% CI]", "TTFT p95 ms", "TPOT p50 ms", "E2EL p95 ms", "tok/s", "req/s",
               "$/1M out tok", "peak RSS MB", "flags"]
    out = []
    models = [r["model"] for r in rows]
    for r in rows:
        if r.get("error"):
            out.append([label_of(r["model"], r["variant"], models), r["point"], 0, f"failed: {r['error'][:60]}"] + ["-"] * 7 + ["failed"])
            continue
        tt, tp, e2 = r.get("ttft_ms") or {}, r.get("tpot_ms") or {}, r.get("e2el_ms") or {}
        ci = tt.get("p50_ci95") or [None, None]
        out.append([label_of(r["model"], r["variant"], models), r["point"], _n(r),
                    f"{_f(tt.get('p50'))} [{_f(ci[0])}, {_f(ci[1])}]", _f(tt.get("p95")), _f(tp.get("p50"), 2), _f(e2.get("p95")),
                    _f(r.get("output_throughput_tok_s")), _f(r.get("request_throughput_req_s"), 3),
                    _f(r.get("cost_per_1m_output_tokens_usd"), 3), _f(r.get("peak_rss_mb"), 0), "; ".join(row_flags(r)) or "-"])
    return headers, out


def roofline_table(rows: list[dict]) -> tuple[list[str], list[list]] | None:
    """Per variant: decode speed at batch 1 against the memory roofline (None when no row has it,
    e.g. a run written before the summary carried these figures)."""
    seen: dict[str, list] = {}
    for r in rows:
        if r.get("roofline_tok_s") is None and r.get("roofline_share") is None:
            continue
        label = label_of(r["model"], r["variant"], [x["model"] for x in rows])
        tp = (r.get("tpot_ms") or {}).get("p50")
        share = r.get("roofline_share")
        text = "-" if share is None else f"{share:.0%}"
        if share is not None and share > 1:  # faster than reading the weights allows: a figure is off
            text += " (above the roofline: the bandwidth or bytes-per-token figure is off, or the cell was noisy)"
        seen.setdefault(label, [label, _f(1e3 / tp if tp else None), _f(r.get("roofline_tok_s")), text])
    if not seen:
        return None
    return ["option", "decode tok/s at batch 1 (1 / TPOT p50)", "roofline tok/s (bandwidth / weight bytes per token)",
            "share of roofline"], list(seen.values())


def options_table(rec: dict) -> tuple[list[str], list[list]]:
    verdicts = {v["id"]: v for v in rec["choice"]["verdicts"]}
    headers = ["option", "$/1k req", "quality", "quality status", "E2EL p95 ms", "replicas", "$/month", "Pareto", "verdict"]
    out = []
    for o in sorted(rec["options"], key=lambda o: (o.get("cost_per_1k_usd") is None, o.get("cost_per_1k_usd") or 0)):
        v = verdicts.get(o["id"], {})
        plan = o.get("plan") or {}
        out.append([o["id"], _f(o.get("cost_per_1k_usd"), 4), _f(o.get("quality"), 3), o.get("quality_status"), _f(o.get("p95_ms")),
                    _f(plan.get("replicas"), 0), _f(plan.get("cost_per_month"), 2), "yes" if o.get("pareto") else "",
                    f"{v.get('status', '')}: {'; '.join(v.get('reasons') or [])}"])
    return headers, out


def routing_table(routing: dict) -> tuple[list[str], list[list]]:
    headers = ["class", "share", "option", "$/1k req", "E2EL p95 ms", "fallbacks", "why"]
    out = []
    for e in routing["classes"]:
        c = e["class"]
        out.append([c["name"], f"{c['share']:.0%}", e.get("option") or "none", _f(e.get("cost_per_1k_usd"), 4), _f(e.get("p95_ms")),
                    ", ".join(e.get("fallbacks") or []) or "none", e.get("why", "") + (f" ({e['fallback_note']})" if e.get("fallback_note") else "")])
    return headers, out
