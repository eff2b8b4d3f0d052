"""Tables of the report as (headers, rows) of plain values; the renderers format them."""
from __future__ import annotations

from llmbench.report.figures import label_of


def _f(v, nd: int = 1):
    return "-" if v is None else (f"{v:,.{nd}f}" if isinstance(v, (int, float)) else str(v))


def summary_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    headers = ["option", "point", "n", "TTFT p50 ms [95% CI]", "TTFT p95 ms", "TPOT p50 ms", "E2EL p95 ms", "tok/s", "req/s", "$/1M out tok", "peak RSS MB"]
    out = []
    for r in rows:
        if r.get("error"):
            out.append([label_of(r["model"], r["variant"]), r["point"], 0, f"failed: {r['error'][:60]}"] + ["-"] * 7)
            continue
        tt, tp, e2 = r.get("ttft_ms") or {}, r.get("tpot_ms") or {}, r.get("e2el_ms") or {}
        ci = tt.get("p50_ci95") or [None, None]
        out.append([label_of(r["model"], r["variant"]), r["point"], r["requests"] - r["failed"],
                    f"{_f(tt.get('p50'))} [{_f(ci[0])}, {_f(ci[1])}]", _f(tt.get("p95")), _f(tp.get("p50"), 2), _f(e2.get("p95")),
                    _f(r.get("output_throughput_tok_s")), _f(r.get("request_throughput_req_s"), 3),
                    _f(r.get("cost_per_1m_output_tokens_usd"), 3), _f(r.get("peak_rss_mb"), 0)])
    return headers, out


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
