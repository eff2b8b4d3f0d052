"""The decision: cost per 1k requests, the Pareto frontier with the pick, and the capacity plan."""
from __future__ import annotations

from llmbench.report.context import ReportContext
from llmbench.report.figures import NOT_MEASURED, log_if_spread, new_figure, plot

_KIND_COLOURS = {"self-hosted": "tab:blue", "api": "tab:orange"}
TOP_BARS = 20  # more bars than this are unreadable at the report's width; the table lists them all


def _picked(ctx: ReportContext) -> str | None:
    return ctx.rec["choice"].get("chosen")


@plot("cost_per_1k", "Cost per 1k requests, per option")
def cost_per_1k(ctx: ReportContext):
    every = sorted((o for o in ctx.rec["options"] if o.get("cost_per_1k_usd") is not None), key=lambda o: o["cost_per_1k_usd"])
    if not every:
        return NOT_MEASURED
    # The cheapest TOP_BARS, plus the recommended option wherever it ranks.
    opts = every[:TOP_BARS] + [o for o in every[TOP_BARS:] if o["id"] == _picked(ctx)]
    fig, (ax,) = new_figure(7.5, max(2.5, 0.28 * len(opts) + 1.2))
    ys = range(len(opts))
    colours = ["tab:green" if o["id"] == _picked(ctx) else _KIND_COLOURS.get(o["kind"], "grey") for o in opts]
    ax.barh(list(ys), [o["cost_per_1k_usd"] for o in opts], color=colours)
    ax.set_yticks(list(ys), [o["id"] for o in opts], fontsize=7)
    ax.invert_yaxis()
    log_if_spread(ax, [o["cost_per_1k_usd"] for o in opts], "x", ratio=100)
    ax.set_xlabel("USD per 1k requests")
    from matplotlib.patches import Patch

    kinds = {o["kind"] for o in opts}
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _KIND_COLOURS.items() if k in kinds]
              + [Patch(color="tab:green", label="recommended")], fontsize=7)
    shown = min(TOP_BARS, len(every))
    extra = " and the recommended one" if len(opts) > shown else ""
    note = (f" The {shown} cheapest of {len(every)} options are shown{extra}; the Options table lists all {len(every)}."
            if len(every) > TOP_BARS else "")
    return fig, ("Self-hosted: the hardware's $/hour over the measured request throughput (machine fully busy); "
                 "API: this workload's tokens at list price. Green: the recommended option." + note)


@plot("pareto", "Pareto frontier: cost, quality and p95 latency")
def pareto(ctx: ReportContext):
    opts = [o for o in ctx.rec["options"] if o.get("cost_per_1k_usd") is not None and o.get("p95_ms") is not None]
    if not opts:
        return NOT_MEASURED
    fig, (ax,) = new_figure()
    sc = ax.scatter([o["cost_per_1k_usd"] for o in opts], [o["p95_ms"] for o in opts], c=[o["quality"] for o in opts],
                    cmap="viridis", vmin=min(0.8, min(o["quality"] for o in opts)), vmax=1.0, s=40, zorder=3)
    # Random weights or no gate: the colour is the figure the recommender used, not a verified one.
    unverified = all(o.get("quality_status") != "measured" for o in opts)
    fig.colorbar(sc, ax=ax, label="quality (share of reference)" + (", unverified" if unverified else ""))
    # A frontier in three objectives is not a line in two: ring its points and number them.
    front = sorted((o for o in opts if o.get("pareto")), key=lambda o: o["cost_per_1k_usd"])
    ax.scatter([o["cost_per_1k_usd"] for o in front], [o["p95_ms"] for o in front], s=140, facecolors="none",
               edgecolors="black", zorder=4, label="on the Pareto frontier")
    for i, o in enumerate(front, 1):
        ax.annotate(str(i), (o["cost_per_1k_usd"], o["p95_ms"]), fontsize=8, xytext=(6, 4), textcoords="offset points")
    pick = ctx.option(_picked(ctx))
    if pick and pick.get("p95_ms") is not None and pick.get("cost_per_1k_usd") is not None:
        ax.scatter([pick["cost_per_1k_usd"]], [pick["p95_ms"]], marker="*", s=320, color="red", zorder=5, label=f"recommended: {pick['id']}")
    elif pick:
        ax.plot([], [], marker="*", ls="", ms=12, color="red", label=f"recommended: {pick['id']} (latency not measured: not placed)")
    log_if_spread(ax, [o["cost_per_1k_usd"] for o in opts], "x", ratio=30)
    log_if_spread(ax, [o["p95_ms"] for o in opts], "y")
    ax.set_xlabel("USD per 1k requests")
    ax.set_ylabel("E2EL p95, ms")
    ax.legend(fontsize=7)
    key = "; ".join(f"{i}: {o['id']}" for i, o in enumerate(front, 1))
    note = "" if pick else f" No option meets every constraint: {ctx.rec['choice']['answer']}"
    caution = (" No option's quality is verified here (random weights or no quality gate): the colours are the figures "
               "the recommender used, not evidence of quality.") if unverified else ""
    return fig, (f"Lower left is better; colour is quality. Frontier: {key}. Options without a measured latency (API models) "
                 "are not placed." + caution + note)


@plot("capacity_plan", "Capacity plan")
def capacity_plan(ctx: ReportContext):
    from llmbench.recommend.option import Option
    from llmbench.recommend.planning import Planner
    from llmbench.slo import parse_slo

    rec = ctx.rec
    rps = rec["constraints"].get("rps")
    # The recommended option if it runs on replicas; else (an API model) the cheapest self-hosted
    # option that meets the constraints, else the cheapest one at all.
    order = [ctx.option(v["id"]) for v in rec["choice"]["verdicts"]]
    hosted = [o for o in order if o and o["kind"] == "self-hosted"]
    chosen = ctx.option(rec["choice"].get("chosen") or rec["choice"].get("closest"))
    pick = chosen if chosen and chosen["kind"] == "self-hosted" else next(
        (o for o in hosted if next(v for v in rec["choice"]["verdicts"] if v["id"] == o["id"])["status"] != "rejected"), hosted[0] if hosted else None)
    if not pick or not rps:
        return "no self-hosted option to plan" if rps else NOT_MEASURED
    fields = {k: v for k, v in pick.items() if k in Option.__dataclass_fields__}
    option = Option(**fields)
    planner = Planner(ctx.data, parse_slo(rec["constraints"].get("slo_spec")))
    loads = [rps * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    plans = [planner.plan(option, x) or {} for x in loads]
    pts = [(x, p) for x, p in zip(loads, plans) if p.get("replicas") is not None]
    if not pts:
        return "the planner returned no replica count"
    fig, (ax,) = new_figure()
    ax.step([x for x, _ in pts], [p["replicas"] for _, p in pts], where="post", marker="o", label="replicas")
    ax.axvline(rps, color="red", ls=":", label=f"target {rps:.3g} req/s")
    ax.set_xlabel("load, requests/s")
    ax.set_ylabel("replicas")
    from matplotlib.ticker import MaxNLocator

    # Replicas are whole: integer ticks from 0, never 0.96-1.04 around a flat line of ones.
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(p["replicas"] for _, p in pts) + 1)
    ax2 = ax.twinx()
    p95 = [((p.get("predicted") or {}).get("e2el_ms") or {}).get("p95") for _, p in pts]
    if any(v is not None for v in p95):
        ax2.plot([x for x, _ in pts], [v if v is not None else float("nan") for v in p95], "s--", color="tab:purple", label="E2EL p95 (predicted)")
        ax2.set_ylabel("E2EL p95, ms (predicted)")
        ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper left")
    src = plans[2].get("source") or rec.get("planner")
    which = "the recommended option" if pick is chosen else "the cheapest self-hosted option (the recommendation is an API model)"
    return fig, f"{pick['id']}, {which}: replicas and predicted E2EL p95 at a quarter to four times the target load ({src}); target from {rec['constraints'].get('rps_source')}."
