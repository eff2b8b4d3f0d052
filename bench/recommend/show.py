"""A few human lines summarising a recommendation (the command prints them; --json goes to stdout)."""
from __future__ import annotations


def _money(v: float | None, nd: int = 2) -> str:
    return "not known" if v is None else f"${v:,.{nd}f}"


def summary_lines(rec: dict) -> list[str]:
    c = rec["constraints"]
    lines = [
        f"[bold]llmbench recommend[/bold] run {rec['run_id']} on {rec['hardware']}: {len(rec['options'])} options, "
        f"{len(rec['pareto'])} on the Pareto frontier",
        f"constraints: SLO {', '.join(c['slo']) or 'none'} ({c['slo_source']}); quality floor {c['quality_floor'] if c['quality_floor'] is not None else 'none'}; "
        f"budget {_money(c['budget_usd_per_month']) + '/month' if c['budget_usd_per_month'] else 'none'}; load {c['rps']} req/s ({c['rps_source']})",
        ("[green]" if rec["choice"]["meets_all"] else "[yellow]") + rec["choice"]["answer"] + ("[/green]" if rec["choice"]["meets_all"] else "[/yellow]"),
    ]
    r = rec.get("recommended")
    if r and r.get("plan"):
        p = r["plan"]
        lines.append(f"plan: {p.get('replicas')} replica(s), {_money(p.get('cost_per_month'))}/month ({p.get('source')})")
    if r and r.get("quality_status") != "measured":
        lines.append(f"quality of {r['id']}: {r['quality_status']}")
    for e in rec["routing"]["classes"]:
        cls = e["class"]
        lines.append(f"route {cls['name']} ({cls['share']:.0%}): {e.get('option') or 'none'}; fallbacks {', '.join(e.get('fallbacks') or []) or 'none'}")
    s = rec["routing"]["saving"].get("vs_single_best") or {}
    m = rec["routing"]["saving"].get("monthly") or {}
    if s.get("saving_pct") is not None:
        month = f"; {m['saving_pct']:+.1f}% per month with whole replicas" if m else ""
        lines.append(f"routing saves {s['saving_pct']:.1f}% per request against {s['option']} for all traffic{month} (mode: {rec['mode']})")
    return lines
