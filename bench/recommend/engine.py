"""The whole recommendation for one results folder, as one JSON-ready document."""
from __future__ import annotations

from llmbench import __version__
from llmbench.recommend.choose import Constraints, choose
from llmbench.recommend.classes import request_classes
from llmbench.recommend.inputs import RunData
from llmbench.recommend.options import enumerate_options
from llmbench.recommend.pareto import frontier
from llmbench.recommend.planning import HOURS_PER_MONTH, Planner, default_rps
from llmbench.recommend.routing import route
from llmbench.slo import SLO, parse_slo


def run_slos(data: RunData, given: list[SLO] | None) -> tuple[list[SLO], str]:
    """The SLO to decide on: the command line's, else the plan's or the run config's, else none."""
    if given:
        return given, "given on the command line"
    for where, text in (("plan.slo of the run config", ((data.meta.get("config") or {}).get("plan") or {}).get("slo")),
                        ("slo of the run config", (data.meta.get("config") or {}).get("slo"))):
        if text:
            return parse_slo(text, where), where
    return [], "none given: every option meets it"


def recommend(data: RunData, slos: list[SLO] | None = None, quality_floor: float | None = None,
              rps: float | None = None, budget: float | None = None) -> dict:
    """Options, frontier, choice, routing, and the deployment figures the exporters write."""
    slos, slo_source = run_slos(data, slos)
    if quality_floor is None:
        quality_floor = ((data.meta.get("config") or {}).get("quality") or {}).get("min_share")
    options = enumerate_options(data)
    rps, rps_source = default_rps(data, rps)
    c = Constraints(slos=slos, quality_floor=quality_floor, budget_usd_month=budget, rps=rps)
    planner = Planner(data, slos)
    plans = {o.id: planner.plan(o, rps) for o in options}
    choice = choose(options, plans, c)
    by_id = {o.id: o for o in options}
    chosen = by_id.get(choice["chosen"]) if choice["chosen"] else None
    classes = request_classes(data)
    routing = route(data, options, classes, c, chosen)
    # Deployments the routing sends traffic to, planned at their share of the load, on the
    # requests of their class (an option serving several classes is planned on all of its requests).
    served: dict[str, list] = {}
    for entry, cls in zip(routing["classes"], classes):
        if entry.get("option"):
            served.setdefault(entry["option"], []).append(cls)
    routed_plans = {oid: planner.plan(by_id[oid], rps * sum(c_.share for c_ in cl) if rps else None, cl[0] if len(cl) == 1 else None)
                    for oid, cl in served.items()}
    routed_month = [p.get("cost_per_month") for p in routed_plans.values() if p]
    routing["cost_per_month_usd"] = sum(routed_month) if routed_month and None not in routed_month else None
    routing["plans"] = routed_plans
    single_month = (plans.get(chosen.id) or {}).get("cost_per_month") if chosen else None
    if single_month and routing["cost_per_month_usd"] is not None:
        routing["saving"]["monthly"] = {"single_cost_per_month_usd": single_month, "routed_cost_per_month_usd": routing["cost_per_month_usd"],
                                        "saving_pct": round(100.0 * (single_month - routing["cost_per_month_usd"]) / single_month, 2)}
    front = frontier(options)
    front_ids = {o.id for o in front}
    return {
        "mode": _mode(choice, routing, budget),
        "run_id": data.run_id, "llmbench_version": __version__,
        "hardware": data.summary.get("hardware"), "usd_per_hour": data.summary.get("usd_per_hour"),
        "constraints": {**c.describe(), "slo_source": slo_source, "rps_source": rps_source, "hours_per_month": HOURS_PER_MONTH},
        "planner": "llmbench.planner" if planner.plan_option else "estimate (llmbench.planner not available)",
        "measured": {"quality": any(isinstance(r.get("quality"), dict) for r in data.rows), "cache": data.cache is not None,
                     "compression": bool(data.compression), "api_models": any(o.kind == "api" for o in options)},
        "options": [{**o.to_dict(), "plan": plans.get(o.id), "pareto": o.id in front_ids} for o in options],
        "pareto": [o.id for o in front],
        "choice": choice,
        "recommended": None if chosen is None else {**chosen.to_dict(), "plan": plans.get(chosen.id)},
        "routing": routing,
        "cache": data.cache,
    }


# Routing pays for its extra deployments only past this saving over the single best option.
MIN_ROUTING_SAVING_PCT = 5.0


def _mode(choice: dict, routing: dict, budget: float | None) -> str:
    """'single' (one option for all traffic), 'routing' (per class), or 'none' (nothing fits)."""
    served = bool(routing["classes"]) and all(e.get("option") for e in routing["classes"])
    within = budget is None or (routing.get("cost_per_month_usd") is not None and routing["cost_per_month_usd"] <= budget)
    if choice["chosen"] is None:
        return "routing" if served and within and len({e["option"] for e in routing["classes"]}) > 0 else "none"
    # Monthly costs include replica rounding (two half-used servers cost two servers), so they
    # decide when both are known; the per-request saving at full utilisation otherwise.
    monthly = routing["saving"].get("monthly") or {}
    saving = monthly.get("saving_pct")
    if saving is None:
        saving = routing["saving"]["vs_single_best"].get("saving_pct")
    if served and within and saving is not None and saving >= MIN_ROUTING_SAVING_PCT:
        return "routing"
    return "single"
