"""Metric definitions against hand-computed examples (DESIGN.md)."""
import math

import pytest

from llmbench.backends.base import Generation
from llmbench.metrics import group_cells, summarize_cell, window_s
from llmbench.records import RequestRecord
from llmbench.scenarios.base import CellContext, Point, to_records
from llmbench.slo import parse_slo
from llmbench.stats import describe, half_width_pct
from llmbench.workload import Prompt


def rec(ts, ttft, e2el, out, **kw):
    kw.setdefault("request_id", 0)
    return RequestRecord(timestamp=ts, run_id="r", model="m", variant="v", scenario="s", point="p",
                         prompt_tokens=10, output_tokens=out, ttft_ms=ttft, e2el_ms=e2el, **kw)


def test_tpot_is_decode_time_over_tokens_after_the_first():
    assert rec(0, 100.0, 400.0, 4).tpot_ms == pytest.approx(100.0)


def test_tpot_undefined_for_one_output_token():
    assert rec(0, 50.0, 50.0, 1).tpot_ms is None


def test_batch_rows_end_at_their_own_last_token():
    gen = Generation(start=10.0, token_times=[10.1, 10.2, 10.3, 10.4], prompt_tokens=[5, 5])
    prompts = [Prompt(ids=[1] * 5, output_tokens=2), Prompt(ids=[1] * 5, output_tokens=4)]
    ids = iter(range(10))
    ctx = CellContext("r", "m", "v", "batch", Point("batch=2", 2), usd_per_second=1.0, next_id=lambda: next(ids))
    a, b = to_records(gen, prompts, [9.9, 10.0], ctx)
    assert a.ttft_ms == pytest.approx(200.0) and a.e2el_ms == pytest.approx(300.0)
    assert a.queue_ms == pytest.approx(100.0)
    assert a.tpot_ms == pytest.approx(100.0) and a.itl_ms == pytest.approx([100.0])
    assert b.ttft_ms == pytest.approx(100.0) and b.e2el_ms == pytest.approx(400.0)
    assert b.tpot_ms == pytest.approx(100.0) and len(b.itl_ms) == 3
    # The batch's busy time (0.4 s at $1/s) is shared by its two rows.
    assert a.cost == pytest.approx(0.2) and b.cost == pytest.approx(0.2)


def test_throughput_cost_and_window():
    # Two requests: sent at t=0 and t=1, each 4 tokens, finishing at 2 s and 3 s.
    rows = [rec(0.0, 500.0, 2000.0, 4), rec(1.0, 500.0, 2000.0, 4)]
    assert window_s(rows) == pytest.approx(3.0)
    s = summarize_cell(rows, usd_per_hour=3.6)
    assert s["output_throughput_tok_s"] == pytest.approx(8 / 3, rel=1e-3)
    assert s["request_throughput_req_s"] == pytest.approx(2 / 3, rel=1e-3)
    # 1e6 * $3.6/h / (3600 * 8/3 tok/s) = $375 per 1M tokens; $0.001/s / (2/3 req/s) = $0.0015.
    assert s["cost_per_1m_output_tokens_usd"] == pytest.approx(375.0, rel=1e-3)
    assert s["cost_per_request_usd"] == pytest.approx(0.0015, rel=1e-3)
    assert s["tpot_ms"]["p50"] == pytest.approx(500.0)
    assert s["per_user_tok_s"] == pytest.approx(2.0)


def test_failed_requests_are_counted_not_averaged():
    rows = [rec(0.0, 10.0, 40.0, 4), rec(0.0, None, None, 0, status="error", error="boom")]
    s = summarize_cell(rows, usd_per_hour=1.0)
    assert s["failed"] == 1 and s["ttft_ms"]["n"] == 1


def test_requests_counts_successes_and_a_cell_failed_partway_is_flagged():
    # requests + failed == the cell's records; some of each means the cell failed partway.
    rows = [rec(0.0, 10.0, 40.0, 4), rec(0.1, 10.0, 40.0, 4), rec(0.2, None, None, 0, status="error", error="OOM")]
    s = summarize_cell(rows, usd_per_hour=1.0)
    assert (s["requests"], s["failed"]) == (2, 1) and s["partial_failure"] is True and s["partial_error"] == "OOM"
    from llmbench.summary import reliability

    unreliable, why = reliability(s)
    assert unreliable and "failed partway (1 of 3 requests failed)" in why
    whole = summarize_cell(rows[:2], usd_per_hour=1.0)
    assert (whole["requests"], whole["failed"], whole["partial_failure"]) == (2, 0, False)
    failed = summarize_cell(rows[2:], usd_per_hour=1.0)
    assert (failed["requests"], failed["failed"], failed["partial_failure"]) == (0, 1, False) and failed["error"] == "OOM"


def test_costs_keep_full_precision():
    # 3 tokens in 7 s at $1/h: $648.148148.../1M tokens and $0.000648148.../request, not rounded.
    rows = [rec(0.0, 1000.0, 7000.0, 3)]
    s = summarize_cell(rows, usd_per_hour=1.0)
    assert s["cost_per_1m_output_tokens_usd"] == pytest.approx(1e6 / (3600 * 3 / 7), rel=1e-12)
    assert s["cost_per_request_usd"] == pytest.approx(7 / 3600, rel=1e-12)
    assert s["output_throughput_tok_s"] == pytest.approx(3 / 7, rel=1e-12)


def test_static_batch_rows_resample_as_one_unit():
    # Two batches of four rows: TTFT has 8 samples but 2 independent units.
    rows = [rec(0.0, 10.0, 40.0, 4, batch_id=0, request_id=i, itl_ms=[10.0] * 3) for i in range(4)]
    rows += [rec(1.0, 20.0, 60.0, 4, batch_id=4, request_id=4 + i, itl_ms=[13.0] * 3) for i in range(4)]
    s = summarize_cell(rows, usd_per_hour=1.0)
    assert s["ttft_ms"]["n"] == 8 and s["ttft_ms"]["n_units"] == 2
    assert s["itl_ms"]["n"] == 24 and s["itl_ms"]["n_units"] == 2
    # Resampling the two batches: p50 is 10, 15 or 20 (p = 1/4, 1/2, 1/4), so the 95% interval is [10, 20].
    assert s["ttft_ms"]["p50_ci95"] == pytest.approx([10.0, 20.0])


def test_describe_percentiles_spread_and_ci():
    d = describe(list(range(1, 101)))
    assert d["p50"] == pytest.approx(50.5) and d["p99"] == pytest.approx(99.01)
    assert d["n"] == 100 and d["mean"] == pytest.approx(50.5)
    assert d["std"] == pytest.approx(29.0115, rel=1e-4)
    assert d["cv_pct"] == pytest.approx(100 * 29.0115 / 50.5, rel=1e-3)
    lo, hi = d["p50_ci95"]
    assert lo < 50.5 < hi and hi - lo < 25
    assert describe([]) is None
    assert describe([None, 3.0])["n"] == 1


def test_goodput_counts_requests_meeting_every_slo():
    from llmbench.slo import parse_slo

    rows = [rec(0.0, 100.0, 400.0, 4), rec(1.0, 900.0, 1200.0, 4)]
    s = summarize_cell(rows, usd_per_hour=1.0, slos=parse_slo("ttft_p95=500ms"))
    assert s["slo_met_share"] == 0.5
    assert math.isclose(s["goodput_req_s"], 1 / window_s(rows), rel_tol=1e-3)


def test_table_flags_noisy_and_unreliable_cells():
    from rich.console import Console

    from llmbench.summary import reliability, summary_table

    row = summarize_cell([rec(i, 10.0, 40.0 + i, 4, request_id=i) for i in range(8)], usd_per_hour=1.0)
    row.update(model="tiny [/int4]", precision_target_pct=2.0, precision_reached=False, hit_cap=True,
               cpu_steal_pct=12.0, cpu_others_pct=3.0)
    row["unreliable"], row["unreliable_reason"] = reliability(row)
    assert row["unreliable"] and row["unreliable_reason"].startswith("CPU steal 12%")
    console = Console(width=400, record=True)
    console.print(summary_table({"run_id": "r", "hardware": "h", "rows": [row]}))
    text = console.export_text()
    assert f"noisy: ±{row['precision_pct']:.0f}%" in text and "tiny [/int4]" in text and "unreliable (steal 12%)" in text


def _r(i, ts, prompt, out, ttft=None, e2el=None, **kw):
    return RequestRecord(timestamp=ts, run_id="r", model="m", variant="v", scenario="s", point="p", request_id=i,
                         prompt_tokens=prompt, output_tokens=out, ttft_ms=ttft, e2el_ms=e2el, **kw)


def test_a_cell_with_failures_counts_and_averages_by_hand():
    rows = [_r(0, 0.0, 10, 4, 100.0, 400.0, ended_early=True), _r(1, 1.0, 13, 5, 200.0, 800.0), _r(2, 2.0, 20, 7, 100.0, 1000.0),
            _r(3, 0.5, 10, 0, status="error", error="t/o", error_kind="timeout"), _r(4, 0.6, 10, 0, status="error", error="boom")]
    s = summarize_cell(rows, usd_per_hour=1.0)
    assert (s["requests"], s["failed"], s["error_rate"], s["ended_early"]) == (3, 2, 0.4, 1)  # 2 of 5 failed
    assert s["errors_by_kind"] == {"exception": 1, "timeout": 1}  # a failure without a kind is an exception
    assert s["prompt_tokens_mean"] == pytest.approx(43 / 3, rel=1e-12) and s["output_tokens_mean"] == pytest.approx(16 / 3, rel=1e-12)
    # Window: first send 0.0 s to last completion 2.0 + 1.0 = 3.0 s: 16 tokens and 3 requests in it.
    assert s["window_s"] == pytest.approx(3.0) and s["output_throughput_tok_s"] == pytest.approx(16 / 3)
    assert s["request_throughput_req_s"] == pytest.approx(1.0)


def test_no_rate_without_a_positive_window_and_no_precision_from_one_unit():
    instant = summarize_cell([_r(0, 5.0, 10, 1, 0.0, 0.0)], usd_per_hour=1.0, slos=parse_slo("e2el_p95=1s"))
    assert instant["window_s"] == 0.0 and instant["tpot_ms"] is None  # done as sent, one token: no TPOT
    assert instant["goodput_req_s"] is None and instant["slo_met_share"] == 1.0
    assert (instant["output_throughput_tok_s"], instant["request_throughput_req_s"], instant["per_user_tok_s"]) == (None, None, None)
    skewed = summarize_cell([_r(0, 5.0, 10, 1, 0.0, -1000.0)], usd_per_hour=1.0, slos=parse_slo("e2el_p95=1s"))
    assert skewed["window_s"] == -1.0  # a clock that stepped back: no rate from it
    assert (skewed["request_throughput_req_s"], skewed["output_throughput_tok_s"], skewed["goodput_req_s"]) == (None, None, None)
    one = summarize_cell([_r(0, 0.0, 10, 4, 100.0, 400.0)], usd_per_hour=1.0)
    assert one["tpot_ms"]["n_units"] == 1 and one["precision_pct"] is None  # one request: nothing to resample


def test_window_fractions_cells_and_a_large_clean_cell():
    assert window_s([_r(0, 1.0, 10, 2, 100.0, 1500.0)]) == pytest.approx(1.5)  # to the millisecond, not whole seconds
    assert window_s([_r(0, 1.0, 10, 0, status="error")]) == 0.0  # nothing completed: no window
    a, b = _r(0, 0.0, 10, 2, 1.0, 2.0), _r(1, 0.0, 10, 2, 1.0, 2.0).model_copy(update={"point": "q"})
    assert [(k, len(v)) for k, v in group_cells([a, b, a]).items()] == [(a.cell, 2), (b.cell, 1)]
    # 300 requests, none failed: not a partial failure (a count compared as a count, past small integers).
    many = summarize_cell([_r(i, i * 0.01, 10, 2, 1.0, 2.0) for i in range(300)], usd_per_hour=1.0)
    assert many["requests"] == 300 and many["partial_failure"] is False


def test_a_window_under_a_second_still_gives_rates():
    # Sent at 0.0 and 0.1 s, done at 0.4 s: 8 tokens and 2 requests in 0.4 s.
    rows = [_r(0, 0.0, 10, 4, 100.0, 400.0), _r(1, 0.1, 10, 4, 100.0, 300.0)]
    s = summarize_cell(rows, usd_per_hour=1.0, slos=parse_slo("e2el_p95=1s"))
    assert s["window_s"] == pytest.approx(0.4) and s["output_throughput_tok_s"] == pytest.approx(20.0)
    assert s["request_throughput_req_s"] == pytest.approx(5.0) and s["goodput_req_s"] == pytest.approx(5.0)
    slow = summarize_cell([_r(0, 0.0, 10, 4, 100.0, 1000.0)], usd_per_hour=1.0)  # TPOT (1000 - 100) / 3 = 300 ms
    assert slow["per_user_tok_s"] == pytest.approx(1000 / 300)  # tokens a user sees per second
    two = s["tpot_ms"]
    assert two["n_units"] == 2 and s["precision_pct"] == pytest.approx(half_width_pct(two["p50"], two["p50_ci95"]))
