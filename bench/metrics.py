"""Summary rows from request records, with the metric definitions of DESIGN.md.

Full precision throughout: rounding is for display (tables, report) only.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from llmbench.records import RequestRecord
from llmbench.slo import SLO, meets_all
from llmbench.stats import describe, half_width_pct


def window_s(records: list[RequestRecord]) -> float:
    """Measured window: first send to last completion (warm-up is never recorded)."""
    starts = [r.timestamp for r in records]
    ends = [r.timestamp + r.e2el_ms / 1e3 for r in records if r.e2el_ms is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


def _unit(r: RequestRecord) -> int:
    # The independent unit of a request: the static batch it ran in (rows of one batch share
    # their timings), or the request itself in logs written before batches were recorded.
    return r.batch_id if r.batch_id is not None else r.request_id


def _errors_by_kind(records: list[RequestRecord]) -> dict[str, int]:
    """{error kind: count} of the failed records (a failure without a kind counts as 'exception')."""
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        if not r.ok:
            counts[r.error_kind or "exception"] += 1
    return dict(sorted(counts.items()))


def summarize_cell(records: list[RequestRecord], usd_per_hour: float, slos: list[SLO] | None = None) -> dict:
    """One summary row for the records of one (model, variant, scenario, point) cell.

    `requests` counts successful requests and `failed` failed ones, so requests + failed is the
    cell's number of records; `error_rate` is failed / (requests + failed), `errors_by_kind` splits
    the failures by kind, `ended_early` counts successes the server stopped short of their length. A cell with some of each failed partway: `partial_failure` is set.
    Distributions carry `n` (samples) and `n_units` (independent batches their CIs resample).
    """
    ok = [r for r in records if r.ok]
    first = records[0]
    row: dict = {
        "model": first.model,
        "variant": first.variant,
        "scenario": first.scenario,
        "point": first.point,
        "batch_size": max(r.batch_size for r in records),
        "requests": len(ok),
        "failed": len(records) - len(ok),
        "partial_failure": bool(ok) and len(ok) < len(records),
        # Failed requests over all requests of the cell (a served cell can lose some to the server).
        "error_rate": (len(records) - len(ok)) / len(records),
        "ended_early": sum(1 for r in ok if r.ended_early),
        "errors_by_kind": _errors_by_kind(records),
    }
    if not ok:
        row["error"] = next((r.error for r in records if r.error), "no successful request")
        return row
    if row["partial_failure"]:
        row["partial_error"] = next((r.error for r in records if r.error), None)
    window = window_s(ok)
    out_tokens = sum(r.output_tokens for r in ok)
    out_tps = out_tokens / window if window > 0 else None
    req_ps = len(ok) / window if window > 0 else None
    units = [_unit(r) for r in ok]
    tpot = describe([r.tpot_ms for r in ok], units=units)
    itl_values, itl_units = [], []
    for r, u in zip(ok, units):
        itl_values += r.itl_ms
        itl_units += [u] * len(r.itl_ms)
    row.update(
        prompt_tokens_mean=sum(r.prompt_tokens for r in ok) / len(ok),
        output_tokens_mean=out_tokens / len(ok),
        ttft_ms=describe([r.ttft_ms for r in ok], units=units),
        tpot_ms=tpot,
        e2el_ms=describe([r.e2el_ms for r in ok], units=units),
        itl_ms=describe(itl_values, units=itl_units),
        queue_ms=describe([r.queue_ms for r in ok], units=units),
        window_s=window,
        output_throughput_tok_s=out_tps,
        request_throughput_req_s=req_ps,
        per_user_tok_s=1e3 / tpot["p50"] if tpot and tpot["p50"] else None,
        cost_per_1m_output_tokens_usd=1e6 * usd_per_hour / (3600 * out_tps) if out_tps else None,
        cost_per_request_usd=usd_per_hour / 3600 / req_ps if req_ps else None,
        # ± half-width of the p50 TPOT's 95% interval, in % of the median: how well the cell is known.
        precision_pct=half_width_pct(tpot["p50"], tpot["p50_ci95"]) if tpot and tpot["n_units"] > 1 else None,
    )
    if slos:
        good = [r for r in ok if meets_all(r, slos)]
        row["goodput_req_s"] = len(good) / window if window > 0 else None
        row["slo_met_share"] = len(good) / len(ok)
    return row


def group_cells(records: Iterable[RequestRecord]) -> dict[tuple, list[RequestRecord]]:
    """Records grouped by cell, in first-seen order."""
    cells: dict[tuple, list[RequestRecord]] = defaultdict(list)
    for r in records:
        cells[r.cell].append(r)
    return cells
