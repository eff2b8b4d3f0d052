"""The cheapest option meeting the SLO, the quality floor and the budget, with every reason.

When nothing meets every constraint this is an answer too (exit 0): it names the constraint that
binds, the option that comes closest and how far it misses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from llmbench.recommend.option import Option
from llmbench.slo import SLO, row_meets


@dataclass
class Constraints:
    """What the user asked for; None means "no limit"."""

    slos: list[SLO] = field(default_factory=list)
    quality_floor: float | None = None
    budget_usd_month: float | None = None
    rps: float | None = None

    def describe(self) -> dict:
        return {"slo": [str(s) for s in self.slos], "slo_spec": ",".join(f"{s.metric}_p{s.percentile:g}={s.limit_ms:g}ms" for s in self.slos),
                "quality_floor": self.quality_floor,
                "budget_usd_per_month": self.budget_usd_month, "rps": self.rps}


def _slo_failures(o: Option, plan: dict | None, slos: list[SLO]) -> list[tuple[str, str]]:
    fails = []
    for s in slos:
        stats = o.latency.get(f"{s.metric}_ms") or {}
        if stats.get(f"p{s.percentile:g}") is None:
            fails.append((str(s), f"{s.metric} p{s.percentile:g} not measured for this option"))
            continue
        for miss in row_meets(o.latency, [s]):
            fails.append((str(s), miss))
    if not fails and slos and plan and plan.get("meets_slo") is False:
        # Measured latencies pass, but queueing at the target load does not (per the planner).
        binding = plan.get("binding") or "slo under load"
        fails.append((str(binding), f"the planner predicts a miss under load ({'; '.join(map(str, plan.get('notes') or [])) or 'no replica count meets it'})"))
    return fails


def failures(o: Option, plan: dict | None, c: Constraints, total: float | None = None) -> list[tuple[str, str]]:
    """(constraint, why) for every constraint this option misses; `total` is the monthly cost of
    the whole deployment it needs (servers, sidecars and standbys), which the budget is checked on."""
    fails = _slo_failures(o, plan, c.slos)
    if o.gate == "fail":
        fails.append(("quality gate", f"the variant failed the quality gate ({o.quality:.3f} of its reference)"))
    elif o.gate == "error":
        fails.append(("quality gate", "the quality gate could not measure this variant (error)"))
    if c.quality_floor is not None and o.quality < c.quality_floor:
        fails.append(("quality floor", f"quality {o.quality:.3f} < floor {c.quality_floor:g}"))
    if c.budget_usd_month is not None:
        cpm = total if total is not None else (plan or {}).get("cost_per_month")
        if cpm is None:
            fails.append(("budget", "monthly cost not known (no plan)"))
        elif cpm > c.budget_usd_month:
            fails.append(("budget", f"${cpm:,.2f}/month for the whole deployment > budget ${c.budget_usd_month:,.2f}"))
    if o.cost_per_1k_usd is None:
        fails.append(("cost", "cost per request not measured"))
    return fails


def cost_key(o: Option, plan: dict | None, total: float | None = None) -> tuple:
    """Cheapest first: the whole deployment's monthly cost at the target load (replica rounding,
    sidecars and standbys included), then the cost per 1k requests, then the faster, then the
    better option, then the id (so equal options are ordered the same way in every run)."""
    cpm = total if total is not None else (plan or {}).get("cost_per_month")
    inf = float("inf")
    return (inf if cpm is None else round(cpm, 6), inf if o.cost_per_1k_usd is None else o.cost_per_1k_usd,
            inf if o.p95_ms is None else o.p95_ms, -o.quality, o.id)


def miss_distance(o: Option, plan: dict | None, c: Constraints, total: float | None = None) -> float:
    """How far an option misses, summed over the constraints as relative excess: an SLO missed
    by 2x counts 1.0, a quality 1% under the floor 0.01. An unmeasured figure counts as far."""
    far, d = 10.0, 0.0
    predicted = (plan or {}).get("predicted") or {}
    for s in c.slos:
        q = f"p{s.percentile:g}"
        v = (o.latency.get(f"{s.metric}_ms") or {}).get(q)
        if v is None:
            d += far
            continue
        under_load = ((predicted.get(f"{s.metric}_ms") or {}).get(q) if (plan or {}).get("meets_slo") is False else None)
        worst = max(v, under_load or v)
        d += max(0.0, worst - s.limit_ms) / s.limit_ms
    if o.gate in ("fail", "error"):
        d += 1.0 if o.gate == "fail" else far
    if c.quality_floor is not None and o.quality < c.quality_floor:
        d += (c.quality_floor - o.quality) / c.quality_floor
    cpm = total if total is not None else (plan or {}).get("cost_per_month")
    if c.budget_usd_month is not None:
        d += far if cpm is None else max(0.0, cpm - c.budget_usd_month) / c.budget_usd_month
    if o.cost_per_1k_usd is None:
        d += far
    return d


def _binding(fails: dict[str, list[tuple[str, str]]], distance: dict[str, float]) -> tuple[list[str], str | None]:
    """(binding constraints, closest option); `fails` is in cheapest-first order, so among options
    missing by the same distance the cheapest is the closest."""
    # A constraint binds when dropping it alone would make some option feasible; if no single
    # one does, the closest option's whole set of misses binds jointly.
    names = {n for f in fails.values() for n, _ in f}
    single = sorted(n for n in names if any({m for m, _ in f} <= {n} for f in fails.values()))
    closest = min(fails, key=lambda k: distance[k], default=None)
    if single:
        return single, closest
    return sorted({n for n, _ in fails[closest]}) if closest else [], closest


def not_servable_answer(options: list[Option]) -> str:
    """Why nothing measured is deployable, one line: each reason with the options it holds for."""
    reasons: dict[str, list[str]] = {}
    for o in options:
        reasons.setdefault(o.not_servable_reason or "no engine", []).append(o.id)
    why = "; ".join(f"{r} ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})" for r, ids in reasons.items())
    return (f"nothing measured can be deployed as a self-hosted server ({why}): the measurements stay in the report; "
            "measure a gguf-* variant (llama.cpp) or an endpoint: candidate, or name an API model, to get a deployment")


def choose(options: list[Option], plans: dict[str, dict | None], c: Constraints,
           totals: dict[str, float | None] | None = None) -> dict:
    """{chosen, meets_all, answer, binding, closest, verdicts[]} over every option; `totals` are the
    whole deployments' monthly costs (standbys included) the budget and the ranking use."""
    totals = totals or {}
    fails = {o.id: failures(o, plans.get(o.id), c, totals.get(o.id)) for o in options}
    key = {o.id: cost_key(o, plans.get(o.id), totals.get(o.id)) for o in options}
    everything, options = options, [o for o in options if o.servable]  # what no engine serves is never deployed
    feasible = sorted((o for o in options if not fails[o.id]), key=lambda o: key[o.id])
    # An unverified quality figure (random weights, not measured) passes the floor only by
    # definition: while some option's quality is verified and meets every constraint, the choice is
    # among those, however cheap the unverified ones are.
    verified = [o for o in feasible if o.verified]
    chosen = (verified or feasible or [None])[0]
    verdicts = []
    for o in sorted(everything, key=lambda o: key[o.id]):
        plan = plans.get(o.id) or {}
        if not o.servable:
            status, reasons = "not servable", [f"measured only: {o.not_servable_reason}"] + [why for _, why in fails[o.id]]
        elif chosen is not None and o.id == chosen.id:
            status, reasons = "chosen", ["cheapest option meeting every constraint"
                                         + (" with verified quality" if verified and len(verified) < len(feasible) else "")]
            if not o.verified:
                reasons.append(f"quality unverified ({o.quality_status}): the floor was checked against an unverified figure")
            if o.unreliable:
                reasons.append(f"rests on an unreliable measurement: {o.unreliable}")
        elif not fails[o.id] and verified and not o.verified:
            status, reasons = "feasible", [f"meets every constraint, but its quality is unverified ({o.quality_status}) "
                                           f"and {chosen.id}'s is verified"]  # type: ignore[union-attr]
        elif not fails[o.id]:
            status, reasons = "feasible", [f"meets every constraint but costs more than {chosen.id}"]  # type: ignore[union-attr]
        else:
            status, reasons = "rejected", [why for _, why in fails[o.id]]
        verdicts.append({"id": o.id, "status": status, "reasons": reasons, "cost_per_1k_usd": o.cost_per_1k_usd,
                         "cost_per_month_usd": plan.get("cost_per_month"), "deployment_cost_per_month_usd": totals.get(o.id),
                         "replicas": plan.get("replicas"),
                         "quality": o.quality, "p95_ms": o.p95_ms})
    if chosen is not None:
        cpm = totals.get(chosen.id, (plans.get(chosen.id) or {}).get("cost_per_month"))
        money = f"${cpm:,.2f}/month at {c.rps:g} req/s" if cpm is not None and c.rps else f"${chosen.cost_per_1k_usd:.4f} per 1k requests"
        answer = f"{chosen.id} is the cheapest option meeting every constraint ({money})"
        if verified and len(verified) < len(feasible) and key[feasible[0].id] < key[chosen.id]:
            answer = f"{chosen.id} is the cheapest option with verified quality meeting every constraint ({money})"
        return {"chosen": chosen.id, "meets_all": True, "answer": answer, "binding": [], "closest": None, "verdicts": verdicts}
    order = sorted(options, key=lambda o: key[o.id])
    dist = {o.id: miss_distance(o, plans.get(o.id), c, totals.get(o.id)) for o in options}
    binding, closest = _binding({o.id: fails[o.id] for o in order}, dist)
    if not everything:
        answer = "no option was measured successfully, so nothing can be recommended"
    elif not options:
        answer = not_servable_answer(everything)
    else:
        misses = "; ".join(why for _, why in fails[closest]) if closest else ""
        misses += f"; misses by {dist[closest]:.0%} in all" if closest else ""
        answer = (f"no option meets every constraint; binding: {', '.join(binding)}. "
                  f"Closest: {closest} ({misses})")
    return {"chosen": None, "meets_all": False, "answer": answer, "binding": binding, "closest": closest, "verdicts": verdicts}
