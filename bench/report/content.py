"""The report's content, once, as sections of paragraphs, tables and plots; markdown.py and
html.py only render it, so the two reports cannot say different things."""
from __future__ import annotations

from dataclasses import dataclass, field

from llmbench.judge.report import judge_table
from llmbench.report.context import ReportContext
from llmbench.report.figures import NOT_MEASURED, Plot, label_of
from llmbench.report.tables import _f, options_table, roofline_table, routing_table, row_flags, summary_table


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # ("p", text) | ("table", headers, rows) | ("plot", Plot)

    def p(self, text: str) -> "Section":
        self.blocks.append(("p", text))
        return self

    def table(self, headers: list[str], rows: list[list]) -> "Section":
        self.blocks.append(("table", headers, rows))
        return self

    def plot(self, pl: Plot | None) -> "Section":
        if pl is not None:
            self.blocks.append(("plot", pl))
        return self


def _money(v, nd=2) -> str:
    return "not known" if v is None else f"${v:,.{nd}f}"


def _rate(v: float) -> str:
    # 5.8461 -> "5.85", 1.5 -> "1.5", 1e6 -> "1,000,000": two decimals at most, for display.
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def _sentence(note) -> str:
    text = str(note).strip()
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def _money_small(v) -> str:
    # Per-request savings are fractions of a cent: three significant figures, never float noise.
    return "-" if v is None else f"{'-' if v < 0 else ''}${abs(v):.3g}"


def _decision(ctx: ReportContext) -> Section:
    rec, c = ctx.rec, ctx.rec["constraints"]
    s = Section("Decision")
    s.p(f"**{rec['choice']['answer']}**")
    s.p(f"Constraints: SLO {', '.join(c['slo']) or 'none'} ({c.get('slo_source')}); quality floor "
        f"{c['quality_floor'] if c.get('quality_floor') is not None else 'none'}; budget "
        f"{_money(c['budget_usd_per_month']) + ' per month' if c.get('budget_usd_per_month') else 'none'}. "
        f"Target load **{_rate(c['rps']) + ' req/s' if c.get('rps') else 'not set'}**: {c.get('rps_source')}.")
    r = rec.get("recommended")
    if r and r["kind"] == "api" and r.get("plan"):
        s.p(f"{r['id']} is an API model: pay per token ({r.get('cost_note')}), {_money(r['plan'].get('cost_per_month'))}/month at the "
            f"target load, no replicas to run. Its latency is {r.get('latency_source')}.")
    elif r and r.get("plan"):
        p = r["plan"]
        s.p(f"Plan for {r['id']}: {p.get('replicas')} replica(s) of {r.get('hardware')} at max batch {p.get('max_batch') or r.get('batch_size')}, "
            f"{_money(p.get('cost_per_hour'), 3)}/hour, {_money(p.get('cost_per_month'))}/month ({p.get('source')}). "
            + f"Predicted, not measured; {_prediction_error(p, _plan_option(ctx, r))}. "
            + " ".join(_sentence(n) for n in p.get("notes") or [] if not str(n).startswith("prediction error")))
    if r and r.get("plan") and r.get("kind") != "api":
        s.p(_deployment_total(ctx.rec, r))
        s.p(_gateway_cores(ctx.rec.get("gateway_sizing") or {}))
    if r and r.get("quality_status") != "measured":
        s.p(f"Quality of the recommended option: {r.get('quality_status')}.")
    if rec["choice"].get("binding"):
        s.p(f"Binding constraint(s): {', '.join(rec['choice']['binding'])}; closest option: {rec['choice'].get('closest')}.")
    s.p(f"Deployment mode: **{rec['mode']}**. Recommendation source: {ctx.rec_source}. Planner: {rec.get('planner')}.")
    return s


def _deployment_total(rec: dict, r: dict) -> str:
    """The whole deployment the headline prices: the option's servers plus a one-replica standby of
    each fallback, so the plan's own $/month and the headline's total are both explained."""
    own = (r.get("plan") or {}).get("cost_per_month")
    parts = [(f, (rec.get("standbys") or {}).get(f) or {}) for f in r.get("fallbacks") or []]
    parts = [(f, sb) for f, sb in parts if sb.get("cost_per_month") is not None]
    if own is None or not parts:
        return f"Whole deployment: {_money(own)}/month, the servers above (no standby fallbacks)."
    total = own + sum(sb["cost_per_month"] for _, sb in parts)
    standbys = ", ".join(f"{f} {sb.get('replicas', 1)} replica(s) {_money(sb['cost_per_month'])}" for f, sb in parts)
    return (f"Whole deployment: **{_money(total)}/month**, the servers above ({_money(own)}) plus standby fallbacks "
            f"kept ready in the gateway ({standbys}).")


def _gateway_cores(g: dict) -> str:
    """The LiteLLM proxy's own cores at the target load (recommend/gateway.py), or how to measure them."""
    if g.get("cores_needed") is None:
        return f"Gateway cores: {g.get('note', 'not measured')}."
    return (f"Gateway: the LiteLLM proxy needs **{g['cores_needed']:.2f} cores** of its own at {_rate(g['at_rps'])} req/s "
            f"({g['cpu_ms_per_request']:.1f} ms of CPU a request; {g['source']}), {g['whole_cores']} whole; not in the monthly total.")


def _routing(ctx: ReportContext) -> Section:
    rt = ctx.rec["routing"]
    s = Section("Routing policy").table(*routing_table(rt))
    for label, text in (("vs_single_best", "the single recommended option"), ("vs_strongest", "the strongest option")):
        v = rt["saving"].get(label) or {}
        if v.get("saving_pct") is not None:
            s.p(f"Per request, against serving everything with {text} ({v['option']}): routing saves **{v['saving_pct']:.1f}%** "
                f"({_money(v['routed_cost_per_1k_usd'], 4)} vs {_money(v['cost_per_1k_usd'], 4)} per 1k requests, at full utilisation).")
        else:
            s.p(f"Saving against {text}: {v.get('note', 'not computed')}.")
    m = rt["saving"].get("monthly")
    if m:
        routed, single, pct = m["routed_cost_per_month_usd"], m["single_cost_per_month_usd"], m["saving_pct"]
        if pct >= 0:
            s.p(f"At the target load, with whole replicas: routing {_money(routed)}/month against {_money(single)}/month for "
                f"the single option, {pct:.1f}% saved; the deployment mode follows this figure.")
        else:
            # The per-request figure above assumes every replica fully busy; at this load each routed
            # option still needs whole replicas of its own, which can cost more than one option for all.
            s.p(f"At the target load, with whole replicas, routing costs more, not less: {_money(routed)}/month against "
                f"{_money(single)}/month for the single option ({-pct:.1f}% more), because each routed option needs whole "
                f"replicas of its own; the deployment mode follows this figure.")
    return s


def _rates_text(c: dict) -> str:
    fh = "not measured (the log has no labels)" if c["false_hit_rate"] is None else f"{c['false_hit_rate']:.1%}"
    return f"hit rate {c['hit_rate']:.1%}, false hits {fh}"


def _cache_note(c: dict) -> str:
    gw = c.get("gateway")
    rule = (gw or {}).get("rule_text") or "plain cosine"
    text = (f"Semantic cache in the gateway ({rule}, the rule the gateway config deploys and the +cache options are priced on): "
            + (f"threshold {gw['threshold']:.3f}, {_rates_text(gw)}." if gw else "no setting measured."))
    if c.get("rule") == "verifier" and (gw or {}).get("rule") != "verifier":
        text += (f" With llmbench's verifier (a check in your application, not in the gateway): "
                 f"{_rates_text(c)} at probability {c['threshold']:.3f}.")
    return text


def _stage_notes(ctx: ReportContext) -> Section:
    m, d = ctx.rec.get("measured") or {}, ctx.data
    s = Section("What was measured")
    s.p("Quality gate: " + ("measured (see the quality plot)" if m.get("quality") else f"{NOT_MEASURED}; quality is taken as the reference (1.0)"
                            + ("; the models carry random weights, so quality is unverified" if any(r.get("random_weights") for r in d.rows) else "")) + ".")
    if d.cache:
        s.p(_cache_note(d.cache))
    else:
        s.p(f"Semantic cache: {NOT_MEASURED}.")
    if d.compression:
        s.table(["model", "rate", "ratio", "net latency change ms", "agreement", "net saving $/request"],
                [[c.get("model") or "all", _f(c.get("rate"), 2), _f(c.get("ratio"), 2), _f(c.get("latency_change_ms"), 1),
                  _f(c.get("agreement"), 3), _money_small(c.get("net_saving_usd_per_request"))] for c in d.compression])
    else:
        s.p(f"Prompt compression: {NOT_MEASURED}.")
    return s


def _checked(err) -> str | None:
    if isinstance(err, dict) and err.get("max_abs_e2el_p95_error_pct") is not None:
        return f"checked against this run's concurrency points: E2EL p95 off by at most {err['max_abs_e2el_p95_error_pct']:.1f}%"
    return None


def _prediction_error(plan: dict, planned: dict | None = None) -> str:
    """The check of the queueing model against this run's measurements: the plan's own, else the
    one plan.json holds for the same option (the check depends on the option's measurements, not
    on the load), so the Decision and the capacity table never say different things."""
    own = _checked(plan.get("prediction_error"))
    if own:
        return own
    other = _checked((planned or {}).get("prediction_error"))
    if other:
        return other + " (plan.json)"
    return next((n for n in plan.get("notes") or [] if str(n).startswith("prediction error")), "prediction not checked in this run")


def _plan_option(ctx: ReportContext, opt: dict) -> dict | None:
    """plan.json's entry for the recommended option (same model and variant), if the plan stage ran."""
    for o in (ctx.data.plan or {}).get("options") or []:
        if o.get("model") == opt.get("model") and o.get("variant") == opt.get("variant") and not o.get("error"):
            return o
    return None


def _capacity(ctx: ReportContext, pl: Plot | None) -> Section:
    s = Section("Capacity plan")
    s.p("Latencies here are a queueing model's predictions from service times measured on this machine, not measurements.")
    s.plot(pl)
    plan = ctx.data.plan
    if not plan:
        return s.p("plan.json: " + NOT_MEASURED + " (the plan stage did not run; the figures above come from the recommender's own planning).")
    load = plan.get("load") or {}
    where = (f"Poisson at {load.get('offered_rps')} req/s" if load.get("kind") == "poisson" else
             f"{load.get('kind', 'load')} {load.get('name') or load.get('path') or ''}".strip()) if isinstance(load, dict) else str(load)
    s.p(f"plan.json: {plan.get('verdict', '')} (load: {where}" + (f"; {plan['load_source']}" if plan.get("load_source") else "") + ").")
    rows = []
    for o in plan.get("options") or []:
        if o.get("error"):
            rows.append([label_of(o.get("model", "?"), o.get("variant"), ctx.models), "-", "-", "-", "-", o["error"]])
            continue
        e2 = ((o.get("predicted") or {}).get("e2el_ms") or {}).get("p95")
        rows.append([label_of(o["model"], o.get("variant"), ctx.models), o.get("replicas"), _money(o.get("cost_per_month")),
                     "-" if e2 is None else f"{e2:,.0f}", "yes" if o.get("meets_slo") else "no", _prediction_error(o)])
    return s.table(["option", "replicas", "$/month", "E2EL p95 ms (predicted)", "meets SLO", "prediction error"], rows)


def _measured(ctx: ReportContext, by_name: dict) -> Section:
    rows = ctx.data.rows
    s = Section("Measured results").table(*summary_table(rows))
    flagged = [r for r in rows if row_flags(r)]
    if flagged:
        s.p(f"{len(flagged)} of {len(rows)} cells carry a flag (last column): read their figures with it. A partial failure's "
            "figures come from its successful requests only; an unreliable or noisy cell's spread or the machine's load "
            "during it says the figure may not repeat.")
    roof = roofline_table(rows)
    if roof:
        s.p("Decode speed against the memory roofline (the measured read bandwidth over the bytes of weights read per "
            "decoded token): a low share means time goes to something other than reading weights.")
        s.table(*roof)
    else:
        s.p("Roofline share: not in this run's summary (a run written before llmbench computed it).")
    return s.plot(by_name.get("latency_throughput")).plot(by_name.get("ttft_tpot"))


def build_sections(ctx: ReportContext, plots: list[Plot]) -> list[Section]:
    by_name = {p.name: p for p in plots}
    summary = ctx.data.summary
    head = Section(f"llmbench report: run {ctx.data.run_id}")
    env = ctx.data.meta.get("environment") or {}
    head.p(f"Hardware {summary.get('hardware')} ({_money(summary.get('usd_per_hour'), 3)}/hour), device {summary.get('device')}; "
           f"started {ctx.data.meta.get('started_at', 'unknown')}; " + ", ".join(f"{k} {v}" for k, v in env.items() if isinstance(v, (str, int, float)))[:400])
    sections = [head, _decision(ctx)]
    sections.append(_measured(ctx, by_name))
    sections.append(Section("Options").table(*options_table(ctx.rec)).plot(by_name.get("cost_per_1k")).plot(by_name.get("pareto")))
    sections.append(_routing(ctx))
    sections.append(_capacity(ctx, by_name.get("capacity_plan")))
    judged = judge_table(ctx.path)
    if judged:
        sections.append(Section("LLM judge").p(judged[0]).table(judged[1], judged[2]))
    notes = _stage_notes(ctx)
    for name in ("quality", "cache", "compression"):
        notes.plot(by_name.get(name))
    sections.append(notes)
    return sections
