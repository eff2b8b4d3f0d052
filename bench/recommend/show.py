"""A few plain lines summarising a recommendation (the command prints them; --json goes to stdout).

The routes printed are the gateway's: both come from llmbench.export.servers, so what the command
says and the file it writes cannot disagree.
"""
from __future__ import annotations


def _money(v: float | None, nd: int = 2) -> str:
    return "not known" if v is None else f"${v:,.{nd}f}"


def summary_lines(rec: dict) -> list[str]:
    """Lines for a terminal (no markup: option names and notes are user text)."""
    from llmbench.export.servers import deployment_total, servers

    c = rec["constraints"]
    lines = [
        f"llmbench recommend run {rec['run_id']} on {rec['hardware']}: {len(rec['options'])} options, "
        f"{len(rec['pareto'])} on the Pareto frontier",
        f"constraints: SLO {', '.join(c['slo']) or 'none'} ({c['slo_source']}); quality floor {c['quality_floor'] if c['quality_floor'] is not None else 'none'}; "
        f"budget {_money(c['budget_usd_per_month']) + '/month' if c['budget_usd_per_month'] else 'none'}; load {c['rps']} req/s ({c['rps_source']})",
        rec["choice"]["answer"],
    ]
    if not rec["options"]:
        return lines
    srv, fallbacks = servers(rec)
    for s in srv:
        for alias in s["aliases"]:
            if not alias.startswith("llmbench-fallback-"):
                lines.append(f"gateway {alias}: {s['option']} ({s['replicas'] if s['replicas'] is not None else 'API'} replica(s)); "
                             f"fallbacks {', '.join(fallbacks.get(alias) or []) or 'none'}")
    for s in srv:
        la = s.get("launch") or {}
        if la.get("ports"):
            how = "measured as served" if la.get("measured") else "NOT measured here"
            lines.append(f"serve {s['option']}: {la['engine']} on ports {', '.join(map(str, la['ports']))} ({how}; deploy/ start script)")
    lines.append(f"whole deployment: {_money(deployment_total(rec))}/month (deployment.yaml)")
    g = rec.get("gateway_sizing") or {}
    lines.append(f"gateway: {g['cores_needed']:.2f} cores for the LiteLLM proxy at {g['at_rps']:g} req/s "
                 f"({g['cpu_ms_per_request']:.1f} ms of CPU a request, measured by verify)" if g.get("cores_needed") is not None
                 else f"gateway cores: {g.get('note', 'not measured')}")
    skipped = [o for o in rec["options"] if not o.get("servable", True) and not o.get("base_id")]
    if skipped:
        lines.append(f"measured only, never deployed ({len(skipped)}): "
                     + "; ".join(f"{o['id']}: {o.get('not_servable_reason')}" for o in skipped[:4]) + ("; ..." if len(skipped) > 4 else ""))
    r = rec.get("recommended")
    if r and r.get("quality_status") != "measured":
        lines.append(f"quality of {r['id']}: {r['quality_status']}")
    m = rec["routing"]["saving"].get("monthly") or {}
    if m.get("saving_pct") is not None:
        word = "saves" if m["saving_pct"] >= 0 else "would cost"
        lines.append(f"routing by prompt length {word} {abs(m['saving_pct']):.1f}% per month against one option for all "
                     f"traffic, whole deployments compared (mode: {rec['mode']})")
    return lines
