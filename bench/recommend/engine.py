"""The whole recommendation for one results folder, as one JSON-ready document."""
from __future__ import annotations

from llmbench import __version__
from llmbench.export.launch import BASE_PORT
from llmbench.recommend.choose import Constraints, choose
from llmbench.recommend.classes import request_classes
from llmbench.recommend.gateway import gateway_sizing
from llmbench.recommend.inputs import RunData
from llmbench.recommend.options import enumerate_options
from llmbench.recommend.pareto import frontier
from llmbench.recommend.planning import HOURS_PER_MONTH, Planner, default_rps, standby_plan
from llmbench.recommend.routing import pick_fallbacks, route
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
              rps: float | None = None, budget: float | None = None, api: list[str] | None = None,
              include_failed: bool = False, base_port: int | None = None, quality_source: str = "gate",
              routing_rule: str = "auto") -> dict:
    """Options, frontier, choice, routing, and the deployment figures the exporters write.

    `api` names API models to compare (else the run config's plan.api_models; none otherwise);
    `include_failed` keeps rows some of whose requests failed (left out by default); `base_port`
    is the first deployed replica's port (else the run config's plan.base_port, else 8000);
    `quality_source` "feedback" takes each option's quality from RUN_DIR/feedback.json instead of the gate;
    `routing_rule` (ROUTING_RULES) says whether the deployment routes by prompt length.
    """
    slos, slo_source = run_slos(data, slos)
    if quality_floor is None:
        quality_floor = ((data.meta.get("config") or {}).get("quality") or {}).get("min_share")
    options = enumerate_options(data, api, include_failed)
    if quality_source == "feedback":
        _feedback_quality(data, options)
    rps, rps_source = default_rps(data, rps)
    c = Constraints(slos=slos, quality_floor=quality_floor, budget_usd_month=budget, rps=rps)
    planner = Planner(data, slos, include_failed)
    plans = {o.id: planner.plan(o, rps) for o in options}
    by_id = {o.id: o for o in options}
    # Each option's whole deployment: its servers and sidecars, plus one-replica standbys of its
    # fallbacks. The budget, the ranking and the headline all use this total.
    quality_c = Constraints(slos=slos, quality_floor=quality_floor)
    # Only what an engine serves is deployed: as the choice, a routed class, a fallback or a standby.
    servable = [o for o in options if o.servable]
    fallbacks = {o.id: pick_fallbacks(o, servable, quality_c)[0] if o.servable else [] for o in options}
    standbys: dict[str, dict | None] = {}

    def standby(fid: str) -> dict | None:
        if fid not in standbys:
            standbys[fid] = standby_plan(planner, by_id[fid], rps)
        return standbys[fid]

    def total(cost: float | None, fids: list[str]) -> float | None:
        if cost is None:
            return None
        return cost + sum((standby(f) or {}).get("cost_per_month") or 0.0 for f in fids)

    totals = {o.id: total((plans.get(o.id) or {}).get("cost_per_month"), fallbacks[o.id]) for o in options}
    choice = choose(options, plans, c, totals)
    chosen = by_id.get(choice["chosen"]) if choice["chosen"] else None
    classes = request_classes(data)
    routing = route(data, servable, classes, c, chosen)
    # Deployments the routing sends traffic to, planned at the sum of their classes' shares of the
    # load, on the requests of their class (an option serving several classes on all of its requests).
    served: dict[str, list] = {}
    for entry, cls in zip(routing["classes"], classes):
        if entry.get("option"):
            served.setdefault(entry["option"], []).append(cls)
    routed_plans = {oid: planner.plan(by_id[oid], rps * sum(c_.share for c_ in cl) if rps else None, cl[0] if len(cl) == 1 else None)
                    for oid, cl in served.items()}
    routed_month = [p.get("cost_per_month") for p in routed_plans.values() if p]
    routed_fbs = [f for e in routing["classes"] for f in (e.get("fallbacks") or []) if f not in served]
    routing["cost_per_month_usd"] = (total(sum(routed_month), list(dict.fromkeys(routed_fbs)))
                                     if routed_month and None not in routed_month else None)
    routing["plans"] = routed_plans
    single_month = totals.get(chosen.id) if chosen else None
    if single_month and routing["cost_per_month_usd"] is not None:
        routing["saving"]["monthly"] = {"single_cost_per_month_usd": single_month, "routed_cost_per_month_usd": routing["cost_per_month_usd"],
                                        "saving_pct": round(100.0 * (single_month - routing["cost_per_month_usd"]) / single_month, 2),
                                        "note": "whole deployments (servers, sidecars, standbys) at whole replicas; positive = routing is cheaper"}
    for f in routed_fbs:
        standby(f)
    front = frontier(options)
    front_ids = {o.id for o in front}
    rec = {
        "mode": _mode(choice, routing, budget, routing_rule),
        "run_id": data.run_id, "llmbench_version": __version__,
        "hardware": data.summary.get("hardware"), "usd_per_hour": data.summary.get("usd_per_hour"),
        "constraints": {**c.describe(), "slo_source": slo_source, "rps_source": rps_source, "hours_per_month": HOURS_PER_MONTH,
                        "include_failed": include_failed, "routing_rule": routing_rule},
        "planner": "llmbench.planner" if planner.plan_option else "estimate (llmbench.planner not available)",
        "gateway_routing": {"planner_policy": planner.policy, "litellm_strategy": planner.strategy, "source": planner.policy_source},
        "gateway_sizing": gateway_sizing(data.verify, rps),
        "measured": {"quality": any(isinstance(r.get("quality"), dict) for r in data.rows), "cache": data.cache is not None,
                     "compression": bool(data.compression), "api_models": any(o.kind == "api" for o in options),
                     "failed_rows": sum(1 for r in data.rows if r.get("error")), "rows": len(data.rows),
                     "servable_options": len(servable), "not_servable_options": len(options) - len(servable)},
        "options": [{**o.to_dict(), "plan": plans.get(o.id), "pareto": o.id in front_ids, "fallbacks": fallbacks[o.id],
                     "deployment_cost_per_month_usd": totals.get(o.id)} for o in options],
        "pareto": [o.id for o in front],
        "choice": choice,
        "recommended": None if chosen is None else {**chosen.to_dict(), "plan": plans.get(chosen.id), "fallbacks": fallbacks[chosen.id]},
        "routing": routing,
        "standbys": {k: v for k, v in standbys.items() if v is not None},
        "cache": data.cache,
        "deploy": {"base_port": int(base_port or data.config_section("plan").get("base_port") or BASE_PORT)},
    }
    rec["choice"]["answer"] = headline(rec, by_id)
    return rec


def headline(rec: dict, by_id: dict) -> str:
    """The answer line every output repeats: what to deploy and the whole deployment's monthly
    cost, as deployment.yaml totals it, with the caveats the choice rests on."""
    from llmbench.export.servers import deployment_total

    choice, rps = rec["choice"], rec["constraints"].get("rps")
    if not rec["options"]:
        m = rec["measured"]
        why = (f"{m['failed_rows']} of {m['rows']} measured cells failed" if m["failed_rows"] else
               "no cell measured a usable latency and throughput" if m["rows"] else "the run has no measurements")
        return f"nothing was measured successfully ({why}), so nothing is recommended"
    month = deployment_total(rec)
    money = f"${month:,.2f}/month at {rps:g} req/s for the whole deployment" if month is not None and rps else None
    if rec["mode"] == "routing":
        parts = "; ".join(f"{e['class']['name']} -> {e['option']}" for e in rec["routing"]["classes"])
        answer = f"route by prompt length: {parts}" + (f" ({money})" if money else "")
        used = [by_id[e["option"]] for e in rec["routing"]["classes"] if e.get("option") in by_id]
    elif choice["chosen"]:
        money = money or f"${by_id[choice['chosen']].cost_per_1k_usd:.4f} per 1k requests"
        answer = f"{choice['chosen']} is the cheapest option meeting every constraint ({money})"
        used = [by_id[choice["chosen"]]]
    else:
        answer = (f"deployed as the closest option: {money}. " if money else "") + choice["answer"]
        used = [by_id[choice["closest"]]] if choice.get("closest") in by_id else []
    unverified = sorted({o.quality_status for o in used if not o.verified})
    if unverified:
        answer += f" - quality unverified ({'; '.join(unverified)})"
    noisy = [f"{o.id}: {o.unreliable}" for o in used if o.unreliable]
    if noisy:
        answer += f" - rests on an unreliable measurement ({'; '.join(noisy)})"
    return answer


# Routing pays for its extra deployments only past this saving over the single best option.
MIN_ROUTING_SAVING_PCT = 5.0
# auto: route when it saves MIN_ROUTING_SAVING_PCT; always: route whenever every class has an
# option within the budget (to deploy and verify a routed plan that saves less); never: one option.
ROUTING_RULES = ("auto", "always", "never")


def _mode(choice: dict, routing: dict, budget: float | None, rule: str = "auto") -> str:
    """'single' (one option for all traffic), 'routing' (per class), or 'none' (nothing fits)."""
    served = bool(routing["classes"]) and all(e.get("option") for e in routing["classes"])
    within = budget is None or (routing.get("cost_per_month_usd") is not None and routing["cost_per_month_usd"] <= budget)
    if rule == "never":
        return "single" if choice["chosen"] else "none"
    if rule == "always" and served and within and len({e["option"] for e in routing["classes"]}) > 1:
        return "routing"
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


def _feedback_quality(data: RunData, options: list) -> None:
    """Each self-hosted option's quality from human feedback (bench/feedback.py); unverified without any."""
    from llmbench.feedback import read_feedback, variant_quality

    doc = read_feedback(data.path)
    for o in options:
        if o.kind == "api":
            continue
        q = variant_quality(doc, o.model, o.variant)
        if q is None:
            o.quality, o.quality_status = 1.0, "unverified: no human feedback on this variant"
        else:
            o.quality, o.quality_status = q[0], "measured"
            o.notes.append(f"quality from {q[1]}")
