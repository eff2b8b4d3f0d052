"""Measured against predicted: latency percentiles, throughput, queueing, the gateway's cost, money.

Definitions (verify.json; times in ms, throughput in requests/s):
- TTFT and E2EL count from the request's scheduled arrival to its first / last streamed token.
- throughput: successful requests / the load's window (its duration, or until the last response
  when responses went on after it: a backlog lowers the rate); predicted, the plan's load, or on
  another load the requests sent over the same window, stretched to the last simulated answer.
- queueing: TTFT minus the server's own prompt time (llama.cpp `timings.prompt_ms`); measured on the
  requests sent straight to the servers (the proxy drops `timings`).
- error = (measured - predicted) / predicted; null where either is missing or the prediction is 0.
- `measured_ci` / `error_ci`: the percentile-bootstrap 95% interval of a measured percentile (stats.py),
  and the errors at its ends: a p95 of 50 requests rests on its slowest three, so an error is
  told apart from ±10% only where its interval is narrower than that. The requests are drawn as if
  independent; those queued behind one another are not, so the true interval is, if anything, wider.
The verdict's rule (VERDICT_RULE) is written into verify.json beside it.
"""
from __future__ import annotations

import numpy as np

from typing import Iterable

from llmbench.served.client import StreamResult
from llmbench.stats import bootstrap_cis
from llmbench.verify.load import Outcome

E2EL_TOLERANCE = 0.10  # measured p95 E2EL may be at most this much above the prediction
THROUGHPUT_TOLERANCE = 0.15  # measured throughput may be at most this much below the planned load
MAX_FAILED_SHARE = 0.01
VERDICT_RULE = (f"the plan held when, through the gateway, measured p95 E2EL <= predicted x {1 + E2EL_TOLERANCE:g}, "
                f"measured throughput >= planned x {1 - THROUGHPUT_TOLERANCE:g} and at most {MAX_FAILED_SHARE:.0%} of "
                f"requests failed; the prediction was accurate when both errors are within "
                f"±{E2EL_TOLERANCE:.0%} / ±{THROUGHPUT_TOLERANCE:.0%}")
METRICS = ("ttft_p50", "ttft_p95", "e2el_p50", "e2el_p95", "queue_p50", "queue_p95", "throughput")


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def rel_error(predicted: float | None, measured: float | None) -> float | None:
    if predicted is None or measured is None or predicted <= 0:
        return None
    return (measured - predicted) / predicted


def _error_ci(predicted: float | None, ci: list[float] | None) -> list[float] | None:
    ends = [rel_error(predicted, v) for v in ci or ()]
    return ends if ends and None not in ends else None


def latencies(outs: list[Outcome]) -> dict[str, list[float]]:
    """Per successful request: ttft, e2el and (where the server sent timings) queue, in ms."""
    ttft, e2el, queue = [], [], []
    for o in outs:
        r = o.res
        if not r.ok or not r.chunk_times:
            continue
        t = (r.chunk_times[0] - o.arrived) * 1e3
        ttft.append(t)
        e2el.append((r.chunk_times[-1] - o.arrived) * 1e3)
        prompt_ms = (r.server_timings or {}).get("prompt_ms")
        if isinstance(prompt_ms, (int, float)):
            queue.append(max(0.0, t - float(prompt_ms)))
    return {"ttft": ttft, "e2el": e2el, "queue": queue}


def failures_by_kind(results: Iterable[StreamResult]) -> dict[str, dict]:
    """The failed results counted by error kind, each kind with its first error message as an example."""
    out: dict[str, dict] = {}
    for r in results:
        if not r.ok:
            e = out.setdefault(r.error_kind or "unknown", {"count": 0, "example": r.error})
            e["count"] += 1
    return out


def measured(outs: list[Outcome], start: float, window_s: float) -> dict:
    """The measured figures of a group of requests, and what failed (kinds counted)."""
    lat = latencies(outs)
    ok = [o for o in outs if o.ok]
    last = max((o.res.end for o in ok), default=start)
    span = max(window_s, last - start, 1e-9)
    errors = {k: e["count"] for k, e in failures_by_kind(o.res for o in outs).items()}
    out = {f"{m}_p{q}": _pct(lat[m], q) for m in ("ttft", "e2el", "queue") for q in (50, 95)}
    for m in ("ttft", "e2el", "queue"):
        cis = bootstrap_cis(lat[m], (50, 95)) if len(lat[m]) > 1 else [None, None]
        out.update({f"{m}_p{q}_ci": None if ci is None else list(ci) for q, ci in zip((50, 95), cis)})
    out.update(throughput=len(ok) / span if outs else None, requests=len(outs), ok=len(ok), failed=len(outs) - len(ok),
               errors_by_kind=errors)
    return out


def simulated_throughput(requests: int, duration_s: float, spans_s: Iterable[float | None]) -> float:
    """The predicted throughput of a simulated load, counted as `measured` counts it: every request over
    the load's window, stretched to the last simulated answer of any of its deployments. Adding up
    the deployments' own rates would divide each by its own window: on a routed trace whose long class
    answers up to 40 s after the load while the short class keeps to it, the measurement read 10-16%
    below that sum."""
    return requests / max([duration_s, 1e-9, *(s for s in spans_s if s)])


def predicted_figures(pred: dict | None, load_rps: float | None) -> dict:
    """The plan's figures under the same names as `measured`."""
    pred = pred or {}
    out = {f"{m}_p{q}": (pred.get(f"{m}_ms") or {}).get(f"p{q}") for m in ("ttft", "e2el", "queue") for q in (50, 95)}
    out["throughput"] = load_rps
    return out


_KNOWN_QS = (50, 90, 95, 99)


def mixture_percentile(parts: list[tuple[float, dict]], q: float) -> float | None:
    """The q-th percentile of a mixture: each part (weight, {p50, p90, p95, p99}) a distribution whose
    CDF runs linearly between its known percentiles, from 0 at 0 ms to 1 where the p95-p99 slope
    reaches it (exact for a uniform distribution). A percentile is not a mean: 30% of requests at
    3 s put a mix's p95 near 3 s, not at 30% of it."""
    curves = []
    for w, st in parts:
        if w > 0 and all(st.get(f"p{k}") is not None for k in _KNOWN_QS):
            xs = [0.0] + [float(st[f"p{k}"]) for k in _KNOWN_QS]
            curves.append((w, xs + [xs[-1] + (xs[-1] - xs[-2]) / 4], [0.0] + [k / 100 for k in _KNOWN_QS] + [1.0]))
    if not curves:
        return None
    total = sum(w for w, _, _ in curves)
    cdf = lambda x: sum(w * float(np.interp(x, xs, ys)) for w, xs, ys in curves) / total  # noqa: E731
    lo, hi = 0.0, max(xs[-1] for _, xs, _ in curves)
    for _ in range(60):  # bisection: the CDF is monotone
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q / 100 else (lo, mid)
    return hi


def pooled(parts: list[tuple[float, dict]]) -> bool:
    """Whether every deployment's prediction carries its simulated requests, so that `blend` pools them."""
    return all("samples_ms" in pred for _, pred in parts)


def blend(parts: list[tuple[float, dict]]) -> dict:
    """Several deployments' latency predictions as one: (requests, the planner's figures
    {ttft_ms: {p50, ...}}) each; percentiles of the mixture of their distributions. Where every part
    carries its simulated requests (`samples_ms`: each deployment simulated on the very requests sent
    to it), the percentiles are those of all of them pooled: exact, where the mixture rebuilt from
    p50/p90/p95/p99 runs its CDF straight between them and, for a long-tailed class that holds a
    routed plan's slowest twentieth, puts the overall p95 too high (a plan's own figures have only
    those percentiles)."""
    if pooled(parts):
        samples = {m: np.concatenate([np.asarray(pred["samples_ms"][m], float) for _, pred in parts])
                   for m in ("ttft", "e2el", "queue")}
        return {f"{m}_p{q}": _pct(samples[m].tolist(), q) for m in samples for q in (50, 95)}
    return {f"{m}_p{q}": mixture_percentile([(n, pred.get(f"{m}_ms") or {}) for n, pred in parts], q)
            for m in ("ttft", "e2el", "queue") for q in (50, 95)}


def compare(pred: dict, meas: dict, direct: dict | None = None) -> dict:
    """{metric: {predicted, measured, error, measured_direct, error_direct}} plus the request counts.

    `measured` is through the gateway, `measured_direct` the same schedule sent straight to the
    servers (what the plan models); queueing is measured only there, so its `measured` is that one.
    """
    direct = direct or {}
    out = {}
    for m in METRICS:
        got, ci = (direct.get(m), direct.get(f"{m}_ci")) if m.startswith("queue") else (meas.get(m), meas.get(f"{m}_ci"))
        out[m] = {"predicted": pred.get(m), "measured": got, "error": rel_error(pred.get(m), got),
                  "measured_direct": direct.get(m), "error_direct": rel_error(pred.get(m), direct.get(m)),
                  "measured_ci": ci, "error_ci": _error_ci(pred.get(m), ci),
                  "measured_direct_ci": direct.get(f"{m}_ci"), "error_direct_ci": _error_ci(pred.get(m), direct.get(f"{m}_ci"))}
    out.update({k: meas[k] for k in ("requests", "ok", "failed", "errors_by_kind")})
    return out


def gateway(direct: dict, proxied: dict) -> dict:
    """What the proxy adds: proxied minus direct, TTFT (and E2EL) p50/p95, on the same schedule."""
    keys = ("ttft_p50", "ttft_p95", "e2el_p50", "e2el_p95")
    fig = lambda m: {**{f"{k}_ms": m.get(k) for k in keys}, **{k: m.get(k) for k in ("requests", "ok", "failed", "throughput")}}
    added = {f"{k}_added_ms": (proxied[k] - direct[k]) if proxied.get(k) is not None and direct.get(k) is not None else None
             for k in keys}
    return {"ttft_p50_added_ms": added["ttft_p50_added_ms"], "ttft_p95_added_ms": added["ttft_p95_added_ms"],
            "e2el_p50_added_ms": added["e2el_p50_added_ms"], "e2el_p95_added_ms": added["e2el_p95_added_ms"],
            "direct": fig(direct), "proxied": fig(proxied)}


def money(outs: list[Outcome], planned_usd: float | None, prices_of) -> dict:
    """LiteLLM's reported cost per request (usage.cost) against the plan's, and against the gateway's
    own per-token prices applied to the reported token counts (`prices_of(alias)` -> prices)."""
    ok = [o for o in outs if o.ok]
    costs = [o.cost for o in ok if o.cost is not None]
    expected, worst = [], 0.0
    for o in ok:
        p = prices_of(o.alias) or {}
        if o.res.prompt_tokens is None or o.cost is None or not p:
            continue
        e = o.res.prompt_tokens * p.get("input_cost_per_token", 0.0) + o.res.output_tokens * p.get("output_cost_per_token", 0.0)
        expected.append(e)
        worst = max(worst, abs(o.cost - e) / e if e else abs(o.cost))
    reported = float(np.mean(costs)) if costs else None
    return {"planned_usd_per_request": planned_usd, "reported_usd_per_request": reported,
            "error": rel_error(planned_usd, reported), "requests": len(ok), "requests_with_cost": len(costs),
            "expected_from_gateway_prices_usd_per_request": float(np.mean(expected)) if expected else None,
            "max_rel_diff_from_gateway_prices": worst if expected else None,
            "source": "LiteLLM proxy: usage.cost of each stream's last chunk"}


def verdict(overall: dict) -> tuple[str, dict]:
    """One line (the plan held or not, by how much) and its parts."""
    e2, th = overall["e2el_p95"], overall["throughput"]
    failed_share = overall["failed"] / overall["requests"] if overall["requests"] else 1.0
    e2_ok = e2["error"] is not None and e2["error"] <= E2EL_TOLERANCE
    th_ok = th["error"] is not None and th["error"] >= -THROUGHPUT_TOLERANCE
    held = bool(e2_ok and th_ok and failed_share <= MAX_FAILED_SHARE)
    accurate = bool(e2["error"] is not None and abs(e2["error"]) <= E2EL_TOLERANCE
                    and th["error"] is not None and abs(th["error"]) <= THROUGHPUT_TOLERANCE)
    f = lambda v, unit: "n/a" if v is None else f"{v:.1f}{unit}"
    g = lambda v: "n/a" if v is None else f"{v:+.1%}"
    band = lambda ci: "" if not ci else f" [95% CI {ci[0]:+.0%}..{ci[1]:+.0%}]"
    line = (f"the plan {'held' if held else 'did not hold'}: p95 E2EL {f(e2['measured'], ' ms')} measured against "
            f"{f(e2['predicted'], ' ms')} predicted ({g(e2['error'])}{band(e2.get('error_ci'))}), throughput {f(th['measured'], '')} against "
            f"{f(th['predicted'], '')} req/s ({g(th['error'])}), {overall['failed']} of {overall['requests']} requests "
            f"failed; the prediction was {'within' if accurate else 'outside'} ±{E2EL_TOLERANCE:.0%}/±{THROUGHPUT_TOLERANCE:.0%}"
            f" (the servers alone, without the gateway: p95 E2EL {f(e2['measured_direct'], ' ms')}, "
            f"{g(e2['error_direct'])}{band(e2.get('error_direct_ci'))})")
    return line, {"held": held, "prediction_accurate": accurate, "failed_share": failed_share, "rule": VERDICT_RULE}
