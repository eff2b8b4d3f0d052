"""Measured speed: latency against throughput per option, TTFT and TPOT distributions."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from llmbench.report.context import ReportContext
from llmbench.report.figures import NOT_MEASURED, label_of, new_figure, plot


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
    fig, (ax,) = new_figure()
    for (model, variant), rows in groups.items():
        rows = sorted(rows, key=lambda r: (r.get("batch_size") or 1, r.get("scenario") != "single-stream"))
        x = [r["output_throughput_tok_s"] for r in rows]
        y = [r["e2el_ms"]["p95"] / 1e3 for r in rows]
        line, = ax.plot(x, y, marker="o", label=label_of(model, variant))
        for r, xi, yi in zip(rows, x, y):
            tag = "single" if r.get("scenario") == "single-stream" else f"b{r.get('batch_size') or 1}"
            ax.annotate(tag, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7, color=line.get_color())
    ax.set_xlabel("output throughput, tokens/s (one replica)")
    ax.set_ylabel("E2EL p95, s")
    ax.legend(fontsize=8)
    return fig, "Each point is a measured scenario point (single = one request at a time, bN = static batches of N); up and to the right trades latency for throughput."


def _per_option_records(ctx: ReportContext) -> dict[str, list]:
    # The single-request point shows the model's own speed; other points add batching/queueing.
    by_opt: dict[str, list] = defaultdict(list)
    recs = [r for r in ctx.data.records if r.ok]
    single = [r for r in recs if r.batch_size == 1] or recs
    for r in single:
        by_opt[label_of(r.model, r.variant)].append(r)
    return by_opt


def _ecdf(ax, values: list[float], label: str) -> None:
    v = np.sort(np.asarray([x for x in values if x is not None], dtype=float))
    if v.size:
        ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", label=f"{label} (n={v.size})")


@plot("ttft_tpot", "TTFT and TPOT distributions (one request at a time)")
def ttft_tpot(ctx: ReportContext):
    by_opt = _per_option_records(ctx)
    if not by_opt:
        return "no request records (requests.jsonl) in this run"
    fig, (a, b) = new_figure(9.0, 4.0, cols=2)
    for label, recs in by_opt.items():
        _ecdf(a, [r.ttft_ms for r in recs], label)
        _ecdf(b, [r.tpot_ms for r in recs], label)
    a.set_xlabel("TTFT, ms"), a.set_ylabel("share of requests")
    b.set_xlabel("TPOT, ms")
    a.legend(fontsize=7)
    from matplotlib.ticker import FuncFormatter

    for ax in (a, b):
        lo, hi = ax.get_xlim()
        if lo > 0 and hi / lo > 20:  # log only where the spread needs it
            ax.set_xscale("log")
            for axis in (ax.xaxis,):
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    return fig, "Cumulative distributions from requests.jsonl at batch size 1; TPOT = (E2EL - TTFT) / (output tokens - 1)."
