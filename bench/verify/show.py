"""verify.json as rich tables on the terminal: predicted against measured, the gateway, money, the drill."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from llmbench.verify.compare import METRICS

_LABEL = {"ttft_p50": "TTFT p50 ms", "ttft_p95": "TTFT p95 ms", "e2el_p50": "E2EL p50 ms", "e2el_p95": "E2EL p95 ms",
          "queue_p50": "queue p50 ms", "queue_p95": "queue p95 ms", "throughput": "throughput req/s"}


def _n(v, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def show(doc: dict, console: Console) -> None:
    """Print the document's figures (the same numbers verify.json holds)."""
    blocks = [("overall", doc["overall"])] + [(k, v) for k, v in doc["deployments"].items() if "e2el_p95" in v]
    for name, block in blocks:
        t = Table(title=f"{name}: predicted vs measured ({block['ok']} of {block['requests']} requests ok)")
        for col in ("metric", "predicted", "measured", "error", "error 95% CI"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for m in METRICS:
            c = block[m]
            ci = c.get("error_ci")
            t.add_row(_LABEL[m], _n(c["predicted"]), _n(c["measured"]), _n(c["error"], "{:+.1%}"),
                      "-" if not ci else f"{ci[0]:+.0%}..{ci[1]:+.0%}")
        console.print(t)
    g = doc["gateway"]
    console.print(f"gateway: TTFT p50 +{_n(g['ttft_p50_added_ms'])} ms, p95 +{_n(g['ttft_p95_added_ms'])} ms "
                  f"(direct {_n(g['direct']['ttft_p50_ms'])}/{_n(g['direct']['ttft_p95_ms'])} ms, "
                  f"through the proxy {_n(g['proxied']['ttft_p50_ms'])}/{_n(g['proxied']['ttft_p95_ms'])} ms)",
                  highlight=False, markup=False)
    m = doc["money"]
    console.print(f"money: LiteLLM reported ${_n(m['reported_usd_per_request'], '{:.3g}')} per request, the plan "
                  f"${_n(m['planned_usd_per_request'], '{:.3g}')} ({_n(m['error'], '{:+.1%}')}); "
                  f"{m['requests_with_cost']} of {m['requests']} responses carried a cost", highlight=False, markup=False)
    b = doc.get("budget") or {"skipped": True, "reason": "not checked"}
    if b.get("skipped"):
        console.print(f"budget check: skipped ({b['reason']})", highlight=False, markup=False)
    else:
        console.print(f"budget check ('{b['alias']}', budgets / {b['divided_by']:.3g}): {b['sent']} requests one at a time, "
                      f"{b['served_by_primary']} served by the primary, {b['served_by_fallback']} by fallbacks, "
                      f"{b['refused_429']} refused with 429; past a budget: {', '.join(b['past_budget']) or 'none'}",
                      highlight=False, markup=False)
    f = doc["fallback"]
    if f.get("skipped"):
        console.print(f"fallback drill: skipped ({f['reason']})", highlight=False, markup=False)
    else:
        after = f["after_kill"]
        console.print(f"fallback drill: {f['succeeded']} of {f['requests']} requests succeeded "
                      f"({_n(after['success_share'], '{:.0%}')} of those after the kill), {f['failed']} failed with their "
                      f"error, {f['hung']} hung, {f['unaccounted']} unaccounted; gap {_n(f['gap_s'])} s",
                      highlight=False, markup=False)
    r = doc.get("refit") or {"skipped": True}
    if not r.get("skipped"):
        e2, th = r["overall"]["e2el_p95"], r["overall"]["throughput"]
        console.print(f"refit (the model fitted on cells measured just before the load): p95 E2EL {_n(e2['predicted'], '{:.1f}')} "
                      f"ms predicted, {_n(e2['error'], '{:+.1%}')}; throughput {_n(th['predicted'])} req/s, "
                      f"{_n(th['error'], '{:+.1%}')}; the plan's own error above adds the machine's drift since the run",
                      highlight=False, markup=False)
    s = doc.get("at_load_speed") or {"skipped": True}
    if not s.get("skipped"):
        e2 = s["overall"]["e2el_p95"]
        slower = ", ".join(f"{o} x{v['slower_than_run']:.2f}" for o, v in s["speed"].items() if "slower_than_run" in v)
        console.print(f"at the load's own speed (decode time during the load over the run's: {slower}): p95 E2EL "
                      f"{_n(e2['predicted'], '{:.1f}')} ms predicted, {_n(e2['error_direct'], '{:+.1%}')} against the "
                      "servers alone (a check of the model with the drift during the load taken out, not a forecast)", highlight=False, markup=False)
    console.print(doc["verdict"], highlight=False, markup=False)


def show_autoscale(doc: dict, console) -> None:
    """verify-autoscale.json in a few lines: the policy, simulated against measured."""
    p, sim, got = doc["policy"], doc["simulated"], doc["measured"]
    say = lambda line: console.print(line, highlight=False, markup=False)  # noqa: E731
    say(f"autoscale replay of {doc['deployment']}: {p['kind']} policy, {p['min_replicas']}-{p['max_replicas']} replicas, "
        f"{len(doc['decisions']) - 1} scaling decision(s) carried out on {got['requests']} requests ({got['ok']} ok)")
    say(f"SLO attainment: simulated {sim['slo_attainment']:.1%}, measured {got['slo_attainment']:.1%} "
        f"({doc['attainment_error']:+.1%}); replica-seconds: simulated {sim['replica_seconds']:.1f}, measured "
        f"{got['replica_seconds']:.1f}" + (f" ({doc['replica_seconds_error']:+.1%})" if doc["replica_seconds_error"] is not None else ""))
    if sim.get("e2el_p95_ms") is not None and got.get("e2el_p95_ms") is not None:
        say(f"p95 E2EL: simulated {sim['e2el_p95_ms']:,.0f} ms, measured {got['e2el_p95_ms']:,.0f} ms (answered requests)")
    if doc.get("attainment_target") is not None:
        word = lambda side: "met" if side["meets_target"] else "missed"  # noqa: E731
        say(f"the {doc['attainment_target']:g} attainment target: {word(sim)} in the simulation, {word(got)} for real")
    if got["cold_starts_s"]:
        say(f"cold starts: assumed {p['cold_start_s']:.2f} s, measured " + ", ".join(f"{c:.2f}" for c in got["cold_starts_s"]) + " s")
    for key in ("note", "timeout_note"):
        if doc.get(key):
            say(doc[key])
