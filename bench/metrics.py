"""Summary rows from request records, with the metric definitions of DESIGN.md."""
from __future__ import annotations

from collections import defaultdict
from itertools import chain
from typing import Iterable

from llmbench.records import RequestRecord
from llmbench.slo import SLO, meets_all
from llmbench.stats import describe


def window_s(records: list[RequestRecord]) -> float:
    """Measured window: first send to last completion (warm-up is never recorded)."""
    starts = [r.timestamp for r in records]
    ends = [r.timestamp + r.e2el_ms / 1e3 for r in records if r.e2el_ms is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


def summarize_cell(records: list[RequestRecord], usd_per_hour: float, slos: list[SLO] | None = None) -> dict:
    """One summary row for the records of one (model, variant, scenario, point) cell."""
    ok = [r for r in records if r.ok]
    first = records[0]
    row: dict = {
        "model": first.model,
        "variant": first.variant,
        "scenario": first.scenario,
        "point": first.point,
        "batch_size": max(r.batch_size for r in records),
        "requests": len(records),
        "failed": len(records) - len(ok),
    }
    if not ok:
        row["error"] = next((r.error for r in records if r.error), "no successful request")
        return row
    window = window_s(ok)
    out_tokens = sum(r.output_tokens for r in ok)
    out_tps = out_tokens / window if window > 0 else None
    req_ps = len(ok) / window if window > 0 else None
    tpot = describe([r.tpot_ms for r in ok])
    row.update(
        prompt_tokens_mean=round(sum(r.prompt_tokens for r in ok) / len(ok), 1),
        output_tokens_mean=round(out_tokens / len(ok), 1),
        ttft_ms=describe([r.ttft_ms for r in ok]),
        tpot_ms=tpot,
        e2el_ms=describe([r.e2el_ms for r in ok]),
        itl_ms=describe(list(chain.from_iterable(r.itl_ms for r in ok))),
        queue_ms=describe([r.queue_ms for r in ok]),
        window_s=round(window, 4),
        output_throughput_tok_s=round(out_tps, 3) if out_tps else None,
        request_throughput_req_s=round(req_ps, 4) if req_ps else None,
        per_user_tok_s=round(1e3 / tpot["p50"], 3) if tpot and tpot["p50"] else None,
        cost_per_1m_output_tokens_usd=round(1e6 * usd_per_hour / (3600 * out_tps), 4) if out_tps else None,
        cost_per_request_usd=round(usd_per_hour / 3600 / req_ps, 8) if req_ps else None,
    )
    if slos:
        good = [r for r in ok if meets_all(r, slos)]
        row["goodput_req_s"] = round(len(good) / window, 4) if window > 0 else None
        row["slo_met_share"] = round(len(good) / len(ok), 4)
    return row


def group_cells(records: Iterable[RequestRecord]) -> dict[tuple, list[RequestRecord]]:
    """Records grouped by cell, in first-seen order."""
    cells: dict[tuple, list[RequestRecord]] = defaultdict(list)
    for r in records:
        cells[r.cell].append(r)
    return cells
