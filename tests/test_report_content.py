"""What the report says and draws, checked against figures worked out here from the inputs: the
Decision and the capacity table agree, the routing text never says "-100% saved", plots label
what was measured (static batch, clients, rate) and in the tables' units, flags reach the table."""
from __future__ import annotations

import math

import pytest

from llmbench.report import content
from llmbench.report.build import build_report
from llmbench.report.context import load_context
from llmbench.report.plots_decision import TOP_BARS, capacity_plan, cost_per_1k
from llmbench.report.plots_latency import latency_throughput, point_kind, ttft_tpot
from llmbench.report.tables import roofline_table, row_flags, summary_table
from llmbench.results import write_json
from test_recommend_runs import cell, compression_doc, compression_entry, make_run, served


def _point(model: str, scenario: str, point: str, ttft_ms: float, **kw) -> dict:
    c = cell(model, ttft_ms=ttft_ms, **kw)
    return {**c, "scenario": scenario, "point": point}


def test_point_kinds_are_named_by_what_was_measured():
    assert point_kind({"scenario": "single-stream", "point": "single"})[:2] == ("single", "1")
    assert point_kind({"scenario": "batch", "point": "batch=2"})[:2] == ("batch", "b2")
    assert point_kind({"scenario": "concurrency", "point": "clients=4", "batch_size": 4})[:2] == ("clients", "c4")
    # A rate point runs at batch size 1 or 2, but it is a load, not a static batch.
    assert point_kind({"scenario": "concurrency", "point": "rate=20", "batch_size": 2})[:2] == ("rate", "20/s")


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    cells = [cell("m", ttft_ms=50), cell("m", batch=2, ttft_ms=60), cell("m", batch=4, ttft_ms=80),
             _point("m", "concurrency", "clients=4", 90), _point("m", "concurrency", "rate=20", 5000),
             _point("m", "concurrency", "rate=5", 400)]
    return make_run(tmp_path_factory.mktemp("mixed") / "run", cells, config={"plan": {"rps": 3.0, "trace": None, "slo": None}})


def test_latency_plot_keeps_kinds_apart_in_ms(mixed_run):
    ctx = load_context(mixed_run)
    fig, _ = latency_throughput(ctx)
    ax = fig.axes[0]
    rows = [r for r in ctx.data.rows if r["model"] == "m"]
    # One line per kind of point: single, static batches, clients, rates; never one zigzag.
    drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    assert sorted(len(ln.get_xdata()) for ln in drawn) == [1, 1, 2, 2]
    ys = sorted(float(y) for ln in drawn for y in ln.get_ydata())
    assert ys == pytest.approx(sorted(r["e2el_ms"]["p95"] for r in rows))  # ms, as in the tables
    tags = {t.get_text() for t in ax.texts}
    assert {"b2", "b4", "c4", "20/s", "5/s"} <= tags and not any(t.startswith("b") and t not in ("b2", "b4") for t in tags)
    assert "ms" in ax.get_ylabel()


def test_one_request_at_a_time_leaves_out_queued_rate_points(mixed_run):
    ctx = load_context(mixed_run)
    fig, _ = ttft_tpot(ctx)
    ttft_ax = fig.axes[0]
    (line,) = [ln for ln in ttft_ax.get_lines() if len(ln.get_xdata())]
    single = sorted(r.ttft_ms for r in ctx.data.records if r.scenario == "single-stream" and r.ok)
    assert sorted(set(float(x) for x in line.get_xdata())) == pytest.approx(sorted(set(single)))
    assert f"(n={len(single)})" in line.get_label()


def test_capacity_plot_counts_whole_replicas_from_zero(mixed_run):
    ctx = load_context(mixed_run)
    fig, _ = capacity_plan(ctx)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
    assert lo == 0 and all(float(t).is_integer() for t in ticks) and len(ticks) >= 2
    reps = [float(y) for y in ax.get_lines()[0].get_ydata()]
    assert hi == max(reps) + 1


def test_cost_chart_holds_the_cheapest_and_the_pick(mixed_run):
    ctx = load_context(mixed_run)
    opts = [{"id": f"o{i:02d}", "kind": "self-hosted", "cost_per_1k_usd": 1.0 + i} for i in range(40)]
    ctx.rec = {**ctx.rec, "options": opts, "choice": {**ctx.rec["choice"], "chosen": "o39"}}
    fig, caption = cost_per_1k(ctx)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [f"o{i:02d}" for i in range(TOP_BARS)] + ["o39"]
    assert f"The {TOP_BARS} cheapest of 40 options are shown and the recommended one" in caption


def test_decision_takes_the_prediction_check_plan_json_holds(tmp_path):
    run = make_run(tmp_path / "run", [served("m"), served("m", batch=4)], config={"plan": {"rps": 2.0, "trace": None, "slo": None}})
    ctx = load_context(run)
    rec = ctx.rec["recommended"]
    assert rec and rec.get("plan") and not isinstance(rec["plan"].get("prediction_error"), dict)
    write_json(run / "plan.json", {"options": [{"model": rec["model"], "variant": rec["variant"], "replicas": 1,
                                                "prediction_error": {"max_abs_e2el_p95_error_pct": 48.125}}]})
    build_report(run)
    md = (run / "report.md").read_text()
    decision = md.split("## Decision")[1].split("## ")[0]
    capacity = md.split("## Capacity plan")[1].split("## ")[0]
    assert "E2EL p95 off by at most 48.1% (plan.json)" in decision and "prediction error: not checked" not in decision
    assert "E2EL p95 off by at most 48.1%" in capacity


class _Ctx:
    def __init__(self, rec):
        self.rec = rec


@pytest.mark.parametrize("single,routed,says,never", [
    (70.08, 140.16, "routing costs more, not less: $140.16/month against $70.08/month for the single option (100.0% more)", "-100"),
    (140.16, 70.08, "routing $70.08/month against $140.16/month for the single option, 50.0% saved", "more, not less"),
])
def test_routing_monthly_text_has_one_sign(single, routed, says, never):
    pct = round(100.0 * (single - routed) / single, 2)
    rt = {"classes": [], "saving": {"vs_single_best": {"option": "a", "saving_pct": 1.8, "routed_cost_per_1k_usd": 0.98,
                                                       "cost_per_1k_usd": 1.0},
                                    "monthly": {"single_cost_per_month_usd": single, "routed_cost_per_month_usd": routed, "saving_pct": pct}}}
    text = " ".join(b[1] for b in content._routing(_Ctx({"routing": rt})).blocks if b[0] == "p")
    assert says in text and never not in text
    assert "routing saves **1.8%**" in text


def test_flags_reach_the_table_and_old_rows_read():
    base = {"model": "m", "variant": "v", "scenario": "single-stream", "point": "single", "requests": 10, "failed": 0,
            "ttft_ms": {"p50": 1.0, "n": 10}, "tpot_ms": {"p50": 2.0}, "e2el_ms": {"p95": 3.0}}
    assert row_flags(base) == []  # a row written before any flag existed
    # Today's rows: `requests` counts successes, `failed` the rest. Older rows counted both in `requests`.
    assert row_flags({**base, "requests": 8, "failed": 2, "partial_failure": True}) == ["partial failure: 2 of 10 requests failed"]
    assert row_flags({**base, "failed": 2}) == ["partial failure: 2 of 10 requests failed"]
    assert row_flags({**base, "unreliable": True, "unreliable_reason": "other work used 86% of the CPUs"}) == \
        ["unreliable: other work used 86% of the CPUs"]
    assert row_flags({**base, "precision_pct": 13.42, "precision_reached": False}) == ["noisy: ±13.4%"]
    assert row_flags({**base, "requests": 3, "ttft_ms": {"p50": 1.0, "n": 3}}) == ["only 3 samples: percentiles and intervals are rough"]
    assert row_flags({**base, "ttft_ms": {"p50": 1.0, "n": 16, "n_units": 2}}) == ["only 2 independent batches: the intervals are rough"]
    headers, rows = summary_table([base, {**base, "failed": 2}, {**base, "requests": 8, "failed": 2, "partial_failure": True}])
    assert headers[-1] == "flags" and rows[0][-1] == "-" and rows[1][2] == 8 and rows[1][-1].startswith("partial failure")
    assert rows[2][2] == 8 and rows[2][-1] == "partial failure: 2 of 10 requests failed"
    assert roofline_table([base]) is None


def test_roofline_table_per_variant():
    row = {"model": "card:m", "variant": "onnx-int4", "scenario": "single-stream", "point": "single", "tpot_ms": {"p50": 5.0},
           "roofline_tok_s": 800.0, "roofline_share": 0.25}
    _, rows = roofline_table([row, {**row, "point": "batch=2"}])
    assert rows == [["m/onnx-int4", "200.0", "800.0", "25%"]]  # 1000 / 5 ms = 200 tok/s


def test_compression_table_rounds_for_display_only(tmp_path):
    run = make_run(tmp_path / "run", [cell("small")], extra_files={
        "compression.json": compression_doc(compression_entry("small", 0.5, 1.9, 0.9, 4.0, -1.6537315538224975e-05))})
    build_report(run)
    md = (run / "report.md").read_text()
    assert "-1.6537315538224975e-05" not in md and "-\\$1.65e-05" in md


def test_models_sharing_a_folder_name_keep_distinct_labels(tmp_path):
    run = make_run(tmp_path / "run", [cell("/x/a/tiny", ttft_ms=50), cell("/x/b/tiny", ttft_ms=90)])
    build_report(run)
    md = (run / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| a-tiny/torch-fp32 | single |") or line.startswith("| b-tiny/torch-fp32 | single |")]
    assert len(rows) == 2
    ctx = load_context(run)
    fig, _ = latency_throughput(ctx)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:2] == ["a-tiny/torch-fp32", "b-tiny/torch-fp32"]


def test_cache_plot_says_what_its_star_is(tmp_path):
    from llmbench.report.plots_savings import cache
    from test_report import LOOKUPS
    from test_recommend_runs import cache_doc

    run = make_run(tmp_path / "run", [cell("m")], extra_files={"cache.json": cache_doc(LOOKUPS, [1] * 10 + [0] * 20, threshold=0.88,
                                                                                        baseline_threshold=0.9)})
    fig, _ = cache(load_context(run))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    # The profile's rule here is plain cosine: its setting is the red star, as in `cache simulate --sweep`,
    # and it is the gateway's.
    assert "red star: plain cosine >= 0.880, the gateway config's setting" in labels


def test_pareto_says_when_no_quality_is_verified(tmp_path):
    from llmbench.report.plots_decision import pareto

    run = make_run(tmp_path / "run", [cell("m"), cell("m", batch=4)], random_weights=True)
    ctx = load_context(run)
    assert all(o["quality_status"] != "measured" for o in ctx.rec["options"])
    fig, caption = pareto(ctx)
    assert "No option's quality is verified here" in caption
    assert fig.axes[1].get_ylabel() == "quality (share of reference), unverified"


def test_decision_explains_the_headline_total(tmp_path):
    import re

    run = make_run(tmp_path / "run", [served("a", ttft_ms=50), served("b", ttft_ms=80), served("c", ttft_ms=120)],
                   config={"plan": {"rps": 2.0, "trace": None, "slo": None}})
    build_report(run)
    ctx = load_context(run)
    r = ctx.rec["recommended"]
    assert r["fallbacks"], "the case needs standbys to explain"
    expected = r["plan"]["cost_per_month"] + sum(ctx.rec["standbys"][f]["cost_per_month"] for f in r["fallbacks"])
    decision = (run / "report.md").read_text().split("## Decision")[1].split("## ")[0]
    stated = re.search(r"Whole deployment: \*\*\\\$([\d,.]+)/month\*\*", decision)
    assert stated and float(stated.group(1).replace(",", "")) == pytest.approx(expected, abs=0.01)
    headline = re.search(r"\\\$([\d,.]+)/month at", decision)
    assert headline and headline.group(1) == stated.group(1)  # the headline's figure is the total explained


def test_decision_sizes_the_gateway_from_an_earlier_verify(tmp_path):
    cells = [served("a", ttft_ms=50), served("b", ttft_ms=80)]
    plan = {"plan": {"rps": 2.0, "trace": None, "slo": None}}
    bare = make_run(tmp_path / "bare", cells, config=plan)
    build_report(bare)
    # (markdown escapes backticks and underscores: compared without the escapes)
    assert "Gateway cores: not measured: `llmbench verify RUN_DIR`" in (bare / "report.md").read_text().replace("\\", "")
    verified = make_run(tmp_path / "verified", cells, config=plan, extra_files={"verify.json": {
        "verified_at": "2026-12-02T03:00:00+00:00", "load": {"requests": 300, "offered_rps": 5.0},
        "gateway": {"proxy_cpu_ms_per_request": 80.0}}})
    build_report(verified)
    decision = (verified / "report.md").read_text().replace("\\", "").split("## Decision")[1].split("## ")[0]
    assert "the LiteLLM proxy needs **0.16 cores** of its own at 2 req/s (80.0 ms of CPU a request" in decision  # 0.080 s x 2/s
