"""Decisions a user can act on (issue 11, and the decision side of issues 12, 13 and 20): the
headline is the whole deployment's cost, the gateway carries exactly the chosen parts, options
built on cache or compression are priced on their own measurements, and names stay distinct."""
from __future__ import annotations

import json
import math
import re

import pytest
import yaml
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.export.servers import servers
from llmbench.export.writer import write_exports
from llmbench.recommend.engine import recommend
from llmbench.recommend.inputs import load_run
from llmbench.slo import parse_slo
from test_recommend_runs import SERVED, cache_doc, compression_doc, compression_entry, make_run, served

PARAMS = {"small": 5_000_000, "big": 50_000_000}
TWO = [served("small", ttft_ms=50, tpot_ms=5), served("big", ttft_ms=200, tpot_ms=20)]


def _run(tmp_path, cells=TWO, **kw):
    return make_run(tmp_path / "run", cells, params=kw.pop("params", PARAMS), **kw)


def _rec(tmp_path, slo="e2el_p95=2s", cells=TWO, rps=1.0, make=None, **kw):
    return recommend(load_run(_run(tmp_path, cells, **(make or {}))), parse_slo(slo) or None, rps=rps, **kw)


def _opt(rec, oid):
    return next(o for o in rec["options"] if o["id"] == oid)


def _month(answer: str) -> float:
    return float(re.search(r"\$([0-9][0-9,]*\.?[0-9]*)\s*/\s*month", answer).group(1).replace(",", ""))


def test_headline_budget_and_deployment_count_the_standbys(tmp_path):
    rec = _rec(tmp_path)
    chosen = rec["choice"]["chosen"]
    assert chosen == "small/gguf-f16/cpu/bs1" and rec["recommended"]["fallbacks"] == ["big/gguf-f16/cpu/bs1"]
    write_exports(rec, tmp_path / "out")
    dep = yaml.safe_load((tmp_path / "out" / "deployment.yaml").read_text())
    primary = rec["recommended"]["plan"]["replicas"]
    # Hardware at $1/h: the primary's replicas plus one standby, 730 hours each.
    assert dep["total_cost_per_month_usd"] == pytest.approx((primary + 1) * 730.0)
    assert _month(rec["choice"]["answer"]) == pytest.approx(dep["total_cost_per_month_usd"], abs=0.01)
    standby = next(d for d in dep["deployments"] if d["role"] == "fallback")
    assert standby["replicas"] == 1 and standby["cost_per_month_usd"] == 730.0
    # The standby's prediction is for the load one replica takes, not the full-load plan.
    assert standby["load_rps"] <= 1.0 and standby["predicted"] == rec["standbys"]["big/gguf-f16/cpu/bs1"]["predicted"]
    # A budget between the primary alone and the whole deployment rejects it.
    tight = _rec(tmp_path / "b", budget=primary * 730.0 + 100.0)
    assert tight["choice"]["chosen"] != chosen
    v = next(v for v in tight["choice"]["verdicts"] if v["id"] == chosen)
    assert any("whole deployment" in r for r in v["reasons"])


def test_cache_option_is_priced_per_request_served_with_its_embedder(tmp_path):
    # 104 pairs (208 requests): at 0.87 the duplicate and 3 hard negatives are served: 4 of 208
    # requests served from cache, 3 of them wrongly; per labelled lookup that would read 0.25 / 0.03.
    doc = cache_doc([0.9] + [0.5] * 3 + [0.88] * 3 + [0.4] * 97, [1] * 4 + [0] * 100, threshold=0.87,
                    baseline_threshold=0.92, embed_ms=36.0)
    rec = _rec(tmp_path, make={"extra_files": {"cache.json": doc}})
    base, cached = _opt(rec, "small/gguf-f16/cpu/bs1"), _opt(rec, "small/gguf-f16/cpu/bs1+cache")
    served, wrong, extra_ms = 4 / 208, 3 / 208, 36.0 + 0.1
    assert cached["cost_per_1k_usd"] == pytest.approx(base["cost_per_1k_usd"] * (1 - served) + 1000 * extra_ms / 1e3 / 3600)
    assert cached["quality"] == pytest.approx(1 - wrong)
    assert cached["latency"]["ttft_ms"]["p50"] == pytest.approx(base["latency"]["ttft_ms"]["p50"] + extra_ms)
    assert cached["plan"]["load_rps"] == pytest.approx(1.0 * (1 - served))
    side = cached["plan"]["sidecars"][0]
    assert side["replicas"] == math.ceil(1.0 * extra_ms / 1e3 / 0.8) and side["cost_per_month"] == 730.0
    assert "shipped sample pairs" in " ".join(cached["notes"])


def test_the_gateway_caches_only_when_the_chosen_option_does(tmp_path):
    # Many wrong answers: every +cache option is under the floor, so the gateway must not cache.
    doc = cache_doc([0.9] * 4 + [0.88] * 20 + [0.4] * 80, [1] * 4 + [0] * 100, threshold=0.87, baseline_threshold=0.92)
    rec = _rec(tmp_path, quality_floor=0.99, make={"extra_files": {"cache.json": doc}})
    assert not rec["recommended"]["cache"]
    write_exports(rec, tmp_path / "out")
    gw = yaml.safe_load((tmp_path / "out" / "gateway" / "litellm.yaml").read_text())
    assert gw["litellm_settings"]["cache"] is False
    assert "OFF: the chosen option does not include it" in (tmp_path / "out" / "gateway" / "litellm.yaml").read_text()


def test_compression_applies_to_its_own_variant_and_never_goes_below_zero(tmp_path):
    # Measured on small/gguf-f16 only: TTFT 100 -> 10 ms on a 1000-token prompt (ratio 10),
    # compressor 2 ms. A saving that big would have made a borrowed figure negative.
    cells = TWO + [served("small", "gguf-q8_0", ttft_ms=20, tpot_ms=2)]
    entry = compression_entry("small", 0.1, 10.0, 0.97, -80.0, 1e-4, variant=SERVED, compressor_ms=2.0, ttft_original_ms=100.0,
                              ttft_compressed_ms=10.0)
    rec = _rec(tmp_path, cells=cells, make={"extra_files": {"compression.json": compression_doc(entry)}})
    ids = {o["id"] for o in rec["options"]}
    assert "small/gguf-f16/cpu/bs1+compress0.1" in ids
    assert not any("compress" in i and ("gguf-q8_0" in i or i.startswith("big")) for i in ids)
    base, comp = _opt(rec, "small/gguf-f16/cpu/bs1"), _opt(rec, "small/gguf-f16/cpu/bs1+compress0.1")
    share = 0.9  # min(1 - 10/100, 1 - 1/10)
    for q in ("p50", "p95", "p99", "mean"):
        assert comp["latency"]["ttft_ms"][q] == pytest.approx(base["latency"]["ttft_ms"][q] * (1 - share) + 2.0)
        assert comp["latency"]["ttft_ms"][q] > 0 and comp["latency"]["e2el_ms"][q] > 0
    e2el, ttft = base["latency"]["e2el_ms"]["mean"], base["latency"]["ttft_ms"]["mean"]
    want = base["cost_per_1k_usd"] * (e2el - share * ttft) / e2el + 1000 * 2.0 / 1e3 / 3600
    assert comp["cost_per_1k_usd"] == pytest.approx(want) and 0 < comp["cost_per_1k_usd"] < base["cost_per_1k_usd"]
    assert comp["quality"] == pytest.approx(0.97)  # trained weights: the agreement counts
    assert comp["plan"]["sidecars"][0]["role"] == "prompt compressor"


def test_random_weight_quality_is_one_rule_and_the_answer_says_unverified(tmp_path):
    # Compression agreement 0.0 on random weights decides nothing, as the variants' own figures.
    entry = compression_entry("small", 0.5, 2.0, 0.0, -1.0, 1e-7, variant=SERVED)
    rec = _rec(tmp_path, quality_floor=0.99, make={"random_weights": True, "extra_files": {"compression.json": compression_doc(entry)}})
    assert _opt(rec, "small/gguf-f16/cpu/bs1+compress0.5")["quality"] == 1.0
    assert "quality unverified" in rec["choice"]["answer"]
    write_exports(rec, tmp_path / "out")
    for f in ("deployment.yaml", "gateway/litellm.yaml"):
        assert "quality unverified" in (tmp_path / "out" / f).read_text(), f


def test_an_unverified_low_precision_variant_is_no_stronger_fallback():
    from llmbench.recommend.option import Option

    int4 = Option(id="a", kind="self-hosted", model="m", variant="onnx-int4", quality=1.0, quality_status="unverified: random weights")
    int8 = Option(id="b", kind="self-hosted", model="m", variant="onnx-int8", quality=0.98, quality_status="unverified: random weights")
    fp32 = Option(id="c", kind="self-hosted", model="m", variant="torch-fp32", quality=1.0, quality_status="unverified: random weights")
    assert int4.strength() < int8.strength() < fp32.strength()


def test_closest_option_is_the_one_missing_by_least(tmp_path):
    # ttft_p95 <= 1 ms: every option misses; batch 1 (~50-80 ms) misses by far less than batch 4.
    cells = TWO + [served("small", batch=4, ttft_ms=600, tpot_ms=6)]
    rec = _rec(tmp_path, "ttft_p95=1ms", cells=cells)
    assert rec["choice"]["chosen"] is None and rec["choice"]["closest"] == "small/gguf-f16/cpu/bs1"


def test_a_server_taking_several_classes_takes_the_sum_of_their_shares():
    def opt(i):
        return {"id": i, "kind": "self-hosted", "model": i, "variant": "v", "label": i, "latency": {}, "plan": None}

    cls = [("short", 0.3, "x"), ("mid", 0.5, "y"), ("long", 0.2, "x")]
    rec = {"options": [opt("x"), opt("y")], "constraints": {"rps": 10.0}, "mode": "routing", "choice": {"chosen": "x"},
           "routing": {"classes": [{"class": {"name": n, "share": s}, "option": o, "fallbacks": []} for n, s, o in cls],
                       "plans": {"x": {"replicas": 2, "cost_per_hour": 2.0}, "y": {"replicas": 1, "cost_per_hour": 1.0}}}}
    srv = {s["option"]: s for s in servers(rec)[0]}
    assert srv["x"]["load_rps"] == pytest.approx(5.0) and srv["y"]["load_rps"] == pytest.approx(5.0)
    assert srv["x"]["cost_per_request_usd"] == pytest.approx(2.0 / (5.0 * 3600))


def test_api_models_only_when_named_and_priced_input_times_input(tmp_path):
    assert not any(o["kind"] == "api" for o in _rec(tmp_path / "a")["options"])
    from llmbench.prices import api_price

    p = api_price("gpt-4o")
    rec = _rec(tmp_path / "b", api=["gpt-4o"])
    o = _opt(rec, "api/gpt-4o")
    # make_run's prompts are 40 and 160 tokens (mean 100), 32 output tokens each.
    assert o["cost_per_1k_usd"] == pytest.approx(1000 * (100 * p.input_usd_per_1m + 32 * p.output_usd_per_1m) / 1e6)
    assert o["quality_status"].startswith("unverified")
    named = _rec(tmp_path / "c", make={"config": {"plan": {"api_models": ["gpt-4o-mini"]}}})
    assert [o["id"] for o in named["options"] if o["kind"] == "api"] == ["api/gpt-4o-mini"]
    res = CliRunner().invoke(main, ["recommend", str(tmp_path / "b" / "run"), "--api", "no-such-model"])
    assert res.exit_code == 2 and "no-such-model" in res.stderr


def test_nothing_measured_recommends_nothing_and_exits_1(tmp_path):
    run = _run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    for r in summary["rows"]:
        r.update(error="RuntimeError: boom", e2el_ms=None, request_throughput_req_s=None)
    (run / "summary.json").write_text(json.dumps(summary))
    res = CliRunner().invoke(main, ["recommend", str(run)])
    assert res.exit_code == 1, res.output
    rec = json.loads((run / "recommendation.json").read_text())
    assert rec["options"] == [] and "nothing was measured successfully (2 of 2 measured cells failed)" in rec["choice"]["answer"]
    assert not (run / "deployment.yaml").exists() and not (run / "gateway" / "litellm.yaml").exists()


def test_two_folders_with_one_last_name_get_distinct_ids_and_servers(tmp_path):
    cells = [served("./a/tiny", ttft_ms=50, tpot_ms=5), served("./b/tiny", ttft_ms=200, tpot_ms=20)]
    rec = _rec(tmp_path, cells=cells, make={"params": {}})
    ids = [o["id"] for o in rec["options"]]
    assert ids == ["a-tiny/gguf-f16/cpu/bs1", "b-tiny/gguf-f16/cpu/bs1"]
    srv = servers(rec)[0]
    assert {s["model"] for s in srv} == {"./a/tiny", "./b/tiny"} and len({s["served_name"] for s in srv}) == 2


def test_partial_failure_rows_are_left_out_unless_asked_and_unreliable_rows_are_named(tmp_path):
    run = _run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    for r in summary["rows"]:
        if r["model"] == "small":
            r.update(failed=3, partial_failure=True)
        else:
            r.update(unreliable=True, unreliable_reason="E2EL CV 80%")
    (run / "summary.json").write_text(json.dumps(summary))
    rec = recommend(load_run(run), parse_slo("e2el_p95=2s"), rps=1.0)
    assert [o["id"] for o in rec["options"]] == ["big/gguf-f16/cpu/bs1"]
    assert "rests on an unreliable measurement (big/gguf-f16/cpu/bs1: E2EL CV 80%)" in rec["choice"]["answer"]
    kept = recommend(load_run(run), parse_slo("e2el_p95=2s"), rps=1.0, include_failed=True)
    assert kept["choice"]["chosen"] == "small/gguf-f16/cpu/bs1"


def test_printed_routes_are_the_gateway_files(tmp_path):
    run = _run(tmp_path)
    res = CliRunner().invoke(main, ["recommend", str(run), "--budget", "10", "--rps", "1", "--slo", "e2el_p95=2s"])
    assert res.exit_code == 0, res.output
    gw = yaml.safe_load((run / "gateway" / "litellm.yaml").read_text())
    target = next(m["model_info"]["llmbench_option"] for m in gw["model_list"] if m["model_name"] == "llmbench")
    line = next(x for x in res.output.splitlines() if x.startswith("gateway llmbench:"))
    assert line.split(": ", 1)[1].startswith(target)


def test_gateway_strategy_follows_the_plan_policy(tmp_path):
    rec = _rec(tmp_path, make={"config": {"plan": {"policy": "jsq"}}})
    write_exports(rec, tmp_path / "out")
    gw = yaml.safe_load((tmp_path / "out" / "gateway" / "litellm.yaml").read_text())
    dep = yaml.safe_load((tmp_path / "out" / "deployment.yaml").read_text())
    assert rec["recommended"]["plan"]["policy"] == "jsq"
    assert gw["router_settings"]["routing_strategy"] == "least-busy" == dep["load_balancing"]["gateway_strategy"]


def test_shipped_prices_of_one_family_are_one_rate_per_vcpu():
    # cpu-2core is AWS m7i.large: 2 of m7i.2xlarge's 8 vCPUs, so a quarter of its price.
    from llmbench.hardware_profiles import load_hardware

    small, big = load_hardware("cpu-2core"), load_hardware("aws-m7i-2xlarge")
    assert small.usd_per_hour == pytest.approx(big.usd_per_hour / 4)
