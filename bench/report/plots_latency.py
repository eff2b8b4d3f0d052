"""Measured speed: latency against throughput per option, TTFT and TPOT distributions."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from llmbench.report.context import ReportContext
from llmbench.report.figures import NOT_MEASURED, label_of, log_if_spread, new_figure, plot

# One marker and line style per kind of scenario point: a static batch, closed-loop clients and an
# open-loop rate are different experiments and are never joined into one line.
_KINDS = {"single": ("single request", "*", ""), "batch": ("static batch", "o", "-"),
          "clients": ("concurrent clients", "s", "--"), "rate": ("arrival rate, req/s", "^", ":")}


def point_kind(row: dict) -> tuple[str, str, float]:
    """(kind, short tag, order) of a summary row's point: single, batch (bN), clients (cN) or rate (N/s)."""
    point = str(row.get("point") or "")
    if row.get("scenario") == "single-stream" or point == "single":
        return "single", "1", 0.0
    name, _, value = point.partition("=")
    try:
        num = float(value)
    except ValueError:
        num = 0.0
    if name == "batch":
        return "batch", f"b{value}", num
    if name == "clients":
        return "clients", f"c{value}", num
    if name == "rate":
        return "rate", f"{value}/s", num
    return "batch", point, num


def _groups(ctx: ReportContext) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in ctx.data.rows:
        if not r.get("error") and r.get("e2el_ms") and r.get("output_throughput_tok_s"):
            groups[(r["model"], r["variant"])].append(r)
    return groups


@plot("latency_throughput", "Latency against throughput, per option")
def latency_throughput(ctx: ReportContext):
    groups = _groups(ctx)
    if not groups:
        return NOT_MEASURED
    fig, (ax,) = new_figure(8.0, 5.0)
    colours = {}
    xs, ys = [], []
    for (model, variant), rows in groups.items():
        by_kind: dict[str, list] = defaultdict(list)
        for r in rows:
            kind, tag, order = point_kind(r)
            by_kind[kind].append((order, tag, r))
        for kind, pts in by_kind.items():
            pts.sort(key=lambda t: t[0])
            x = [r["output_throughput_tok_s"] for _, _, r in pts]
            y = [r["e2el_ms"]["p95"] for _, _, r in pts]
            xs += x
            ys += y
            _, marker, ls = _KINDS[kind]
            kw = {"color": colours[(model, variant)]} if (model, variant) in colours else {}
            line, = ax.plot(x, y, marker=marker, ls=ls or "none", ms=9 if marker == "*" else 5, **kw)
            colours.setdefault((model, variant), line.get_color())
            for (_, tag, _), xi, yi in zip(pts, x, y):
                if kind != "single":
                    ax.annotate(tag, (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7, color=line.get_color())
    log_if_spread(ax, xs, "x")
    log_if_spread(ax, ys, "y")
    ax.set_xlabel("output throughput, tokens/s (one replica)")
    ax.set_ylabel("E2EL p95, ms")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2, label=label_of(m, v, ctx.models)) for (m, v), c in colours.items()]
    kinds = {point_kind(r)[0] for rows in groups.values() for r in rows}
    handles += [Line2D([], [], color="grey", marker=mk, ls=ls or "none", label=name) for k, (name, mk, ls) in _KINDS.items() if k in kinds]
    ax.legend(handles=handles, fontsize=7, ncols=2 if len(handles) > 8 else 1)
    return fig, ("Each point is a measured scenario point; colour is the option, marker and line the kind of point: star = one "
                 "request at a time, bN = a static batch of N, cN = N concurrent clients, N/s = Poisson arrivals at N req/s "
                 "(points of one kind are joined, kinds never). Up and to the right trades latency for throughput.")


def _single_records(ctx: ReportContext) -> tuple[dict[str, list], list[str]]:
    # Only requests measured alone show the model's own speed: rate points also run at batch size
    # 1 but queue behind each other, so they are left out. Options with no such point fall back
    # to a static batch of 1, and are named when they have neither.
    recs = [r for r in ctx.data.records if r.ok]
    models = ctx.models
    by_opt: dict[str, list] = defaultdict(list)
    fallback: dict[str, list] = defaultdict(list)
    every = set()
    for r in recs:
        label = label_of(r.model, r.variant, models)
        every.add(label)
        if r.scenario == "single-stream":
            by_opt[label].append(r)
        elif r.scenario == "batch" and r.batch_size == 1:
            fallback[label].append(r)
    for label, rs in fallback.items():
        by_opt.setdefault(label, rs)
    return by_opt, sorted(every - set(by_opt))


def _ecdf(ax, values: list[float], label: str) -> None:
    v = np.sort(np.asarray([x for x in values if x is not None], dtype=float))
    if v.size:
        ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", label=f"{label} (n={v.size})")


@plot("ttft_tpot", "TTFT and TPOT distributions (one request at a time)")
def ttft_tpot(ctx: ReportContext):
    by_opt, missing = _single_records(ctx)
    if not by_opt:
        return "no request measured alone (single-stream or batch of 1) in requests.jsonl"
    fig, (a, b) = new_figure(10.0, 4.5, cols=2)
    for label, recs in by_opt.items():
        _ecdf(a, [r.ttft_ms for r in recs], label)
        _ecdf(b, [r.tpot_ms for r in recs], label)
    a.set_xlabel("TTFT, ms"), a.set_ylabel("share of requests")
    b.set_xlabel("TPOT, ms")
    # One legend under both panels: inside a panel it covers the fastest option's curve.
    handles, labels = a.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=7)
    for ax, vals in ((a, [r.ttft_ms for rs in by_opt.values() for r in rs]), (b, [r.tpot_ms for rs in by_opt.values() for r in rs])):
        log_if_spread(ax, vals, "x")
    note = f" Not shown (no request measured alone): {', '.join(missing)}." if missing else ""
    return fig, ("Cumulative distributions from requests.jsonl, requests measured one at a time (single-stream; a static "
                 "batch of 1 where there is none); TPOT = (E2EL - TTFT) / (output tokens - 1)." + note)
