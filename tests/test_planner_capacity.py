"""The replica search, one replica's limits, and plan_option's contract (on synthetic measurements)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from llmbench.errors import BadInput
from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner.capacity import (DEFAULT_MAX_REPLICAS, HOURS_PER_MONTH, check_slos, max_sustainable_rps, plan_option,
                                       saturation_rps)
from llmbench.planner.queue import Requests, poisson_requests, simulate
from llmbench.slo import parse_slo
from test_planner_synth import HARDWARE, TRUE, batch_records, summary_rows

HW = HardwareProfile(**HARDWARE)


@pytest.fixture(scope="module")
def measured():
    recs = batch_records()
    return summary_rows(recs), recs


def test_contract(measured):
    rows, recs = measured
    plan = plan_option(rows, HW, parse_slo("e2el_p95=2s"), rps=20.0, records=recs)
    assert plan["replicas"] >= 1 and plan["max_batch"] in (1, 2, 4, 8)
    # Without a max batch, every measured size is tried and the plan takes the fewest replicas.
    tried = plan["max_batch_search"]
    assert set(tried) == {"1", "2", "4", "8"}
    assert plan["replicas"] == min(t["replicas"] for t in tried.values() if t["meets_slo"])
    assert plan["cost_per_hour"] == pytest.approx(plan["replicas"] * 0.5)
    assert plan["cost_per_month"] == pytest.approx(plan["cost_per_hour"] * HOURS_PER_MONTH)
    for metric in ("ttft_ms", "e2el_ms", "tpot_ms"):
        assert {"p50", "p95", "p99"} <= set(plan["predicted"][metric])
    assert plan["meets_slo"] is True and isinstance(plan["notes"], list)
    assert plan["saturation_rps"] > 0 and 0 < plan["max_sustainable_rps"] <= plan["saturation_rps"]


def test_replicas_grow_with_load_and_are_the_fewest(measured):
    rows, recs = measured
    slos = parse_slo("e2el_p95=400ms,ttft_p99=200ms")
    counts = []
    for rps in (5, 20, 40, 80, 160):
        plan = plan_option(rows, HW, slos, rps=rps, records=recs, max_batch=8)
        assert plan["meets_slo"]
        r = plan["replicas"]
        counts.append(r)
        searched = plan["replica_search"]
        assert searched[str(r)] is True
        if r > 1:
            assert searched[str(r - 1)] is False
            assert plan["binding"] is not None
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_an_slo_no_replica_count_meets(measured):
    rows, recs = measured
    plan = plan_option(rows, HW, parse_slo("e2el_p95=20ms"), rps=10.0, records=recs)
    assert plan["meets_slo"] is False
    assert plan["binding"].startswith("e2el_p95")
    assert any("no replica count meets" in n for n in plan["notes"])
    assert plan["replicas"] >= 1  # the count past which more replicas stop helping


def test_a_replica_cap_too_small_for_the_load(measured):
    rows, recs = measured
    plan = plan_option(rows, HW, parse_slo("e2el_p95=1s"), rps=200.0, records=recs, max_replicas=2)
    assert plan["meets_slo"] is False
    assert any("even 2 replicas" in n for n in plan["notes"])


def _even_trace(service_s: float, per_service: float, n: int = 400, prompt: int = 100, output: int = 16) -> Requests:
    """n identical requests, one every service_s / per_service seconds."""
    gap = service_s / per_service
    return Requests(np.arange(n) * gap, np.full(n, float(prompt)), np.full(n, output))


def test_without_slo_the_fewest_replicas_at_most_80_percent_busy(measured):
    # Issue 11 item 8 and issue 20 item 1: the utilisation rule applies to the utilisation the plan
    # reports (busy share of the window), computed here by hand. One request takes s; a request
    # arrives every s/2.5, so with round robin each of r replicas gets one every r*s/2.5: alone
    # (r >= 3), and busy n*s over a window of (n-1)*s/2.5 + s.
    rows, recs = measured
    n, s = 400, TRUE.batch_duration_s([100.0], [16])
    trace = _even_trace(s, 2.5, n)
    window = (n - 1) * s / 2.5 + s

    def util(r):
        return n * s / (r * window)

    expected = next(r for r in range(3, 10) if util(r) <= 0.8)
    assert expected == 4 and util(3) > 0.8
    plan = plan_option(rows, HW, [], trace=trace, records=recs, max_batch=8, policy="round-robin")
    assert plan["replicas"] == expected
    assert plan["predicted"]["utilization"] == pytest.approx(util(expected), rel=1e-9)
    assert plan["predicted"]["mean_batch_size"] == 1.0
    assert "utilization" in plan["binding"] and plan["meets_slo"] is True


def test_an_unmeetable_tpot_target_is_said_at_once(measured):
    # Issue 11 item 7: a decode step alone takes TRUE.step_ms(1) = 4 ms (plus the KV term), so
    # tpot_p99 = 1 ms is out of reach at any replica count: said at once, not after a search to the cap.
    rows, recs = measured
    alone = TRUE.step_ms(1) + TRUE.step_ms_per_kv_token * 16  # the shortest measured prompt's TPOT floor
    assert alone > 1.0
    plan = plan_option(rows, HW, parse_slo("tpot_p99=1ms"), rps=20.0, records=recs, max_batch=1)
    assert plan["meets_slo"] is False and plan["binding"] == "tpot_p99<=1ms"
    assert any(n.startswith("no replica count meets tpot_p99<=1ms") and "decode step" in n for n in plan["notes"])
    # The count shown is the no-SLO sizing, and the replica cap was never searched.
    assert plan["replicas"] == plan_option(rows, HW, [], rps=20.0, records=recs, max_batch=1)["replicas"]
    assert str(DEFAULT_MAX_REPLICAS) not in plan["replica_search"] and plan["replicas"] < 10
    # With another objective beside it, the count shown meets that one.
    both = plan_option(rows, HW, parse_slo("tpot_p99=1ms,e2el_p95=2s"), rps=20.0, records=recs, max_batch=1)
    assert both["meets_slo"] is False and both["binding"] == "tpot_p99<=1ms"
    e2el = next(c for c in both["slo_check"] if c["metric"] == "e2el_ms")
    assert e2el["ok"] is True and e2el["predicted_ms"] <= 2000


def test_costs_are_kept_at_full_precision(measured):
    # Issue 11 item 15: files keep full precision (costs were rounded to 2 and 4 decimals).
    rows, recs = measured
    hw = HardwareProfile(**{**HARDWARE, "usd_per_hour": 0.123456789})
    plan = plan_option(rows, hw, [], rps=30.0, records=recs)
    assert plan["cost_per_hour"] == plan["replicas"] * 0.123456789
    assert plan["cost_per_month"] == plan["replicas"] * 0.123456789 * HOURS_PER_MONTH


def test_the_routing_policy_is_planned_and_stated(measured):
    # Issue 11 item 10: the gateway picks at random (LiteLLM simple-shuffle) unless told least-busy;
    # random picks queue more than join-shortest-queue, so they never need fewer replicas.
    rows, recs = measured
    slos = parse_slo("e2el_p95=500ms")
    plans = {p: plan_option(rows, HW, slos, rps=60.0, records=recs, max_batch=1, policy=p) for p in ("random", "least-busy")}
    assert plan_option(rows, HW, slos, rps=60.0, records=recs, max_batch=1)["policy"] == "random"  # the default
    assert {p: v["policy"] for p, v in plans.items()} == {"random": "random", "least-busy": "least-busy"}
    assert plans["random"]["replicas"] > plans["least-busy"]["replicas"]
    with pytest.raises(BadInput, match="--policy must be one of random, least-busy, jsq, round-robin"):
        plan_option(rows, HW, slos, rps=60.0, records=recs, policy="shortest")


def test_a_class_plans_on_its_lengths_but_fits_whole_batches(measured):
    # Issue 11 item 12: a routed class's plan must not rebuild batches from that class's rows only
    # (their padded width would be the class's longest prompt, not the batch's).
    rows, recs = measured
    whole = plan_option(rows, HW, [], rps=10.0, records=recs)
    short = plan_option(rows, HW, [], rps=10.0, records=recs, prompt_filter=lambda p: p < 100)
    assert short["service_model"] == whole["service_model"]
    mine = [r.prompt_tokens for r in recs if r.prompt_tokens < 100]
    assert short["load"]["prompt_tokens_mean"] == pytest.approx(np.mean(mine))
    with pytest.raises(BadInput, match="no measured request"):
        plan_option(rows, HW, [], rps=10.0, records=recs, prompt_filter=lambda p: p > 10_000)


def test_a_plan_on_unreliable_rows_says_so(measured):
    rows, recs = measured
    flagged = [{**r, "unreliable": r.get("point") == "batch=4", "unreliable_reason": "E2EL CV 80%"} for r in rows]
    plan = plan_option(flagged, HW, [], rps=10.0, records=recs)
    assert plan["unreliable_inputs"] == [{"scenario": "batch", "point": "batch=4", "reason": "E2EL CV 80%"}]
    assert any("flagged unreliable" in n and "batch=4: E2EL CV 80%" in n for n in plan["notes"])
    assert plan_option(rows, HW, [], rps=10.0, records=recs)["unreliable_inputs"] == []  # old runs: no keys


@pytest.mark.parametrize("kwargs, needle", [
    ({"rps": -3.0}, "--rps must be a rate of requests/s above 0 and at most 1e+07, got -3.0"),
    ({"rps": 0.0}, "above 0"),
    ({"rps": float("inf")}, "got inf"),
    ({"rps": float("nan")}, "got nan"),
    ({"rps": 1.0, "max_batch": 1_000_000}, "--max-batch must be between 1 and 1024, got 1000000"),
    ({"rps": 1.0, "max_batch": 0}, "--max-batch must be between 1 and 1024"),
    ({"rps": 1.0, "max_replicas": 0}, "--max-replicas must be between 1 and 1000000"),
])
def test_loads_and_limits_outside_the_range_are_bad_input(measured, kwargs, needle):
    rows, recs = measured
    with pytest.raises(BadInput, match=re.escape(needle)):
        plan_option(rows, HW, [], records=recs, **kwargs)


def test_saturation_is_full_batches_back_to_back():
    prompts, outputs = np.full(50, 100.0), np.full(50, 20)
    expected = 8 / TRUE.batch_duration_s([100.0] * 8, [20] * 8)
    assert saturation_rps(TRUE, prompts, outputs, 8) == pytest.approx(expected)
    # Overloaded, one replica serves exactly that many requests per second.
    reqs = poisson_requests(expected * 3, 4000, prompts, outputs, seed=1)
    sim = simulate(reqs, TRUE, 1, 8)
    assert len(sim.e2el_ms) / sim.window_s == pytest.approx(expected, rel=0.02)


def test_max_sustainable_rate_meets_the_slo_and_a_higher_one_does_not():
    slos = parse_slo("e2el_p95=300ms")
    prompts, outputs = np.array([40.0, 120.0, 200.0, 80.0]), np.array([16, 16, 24, 8])
    sat = saturation_rps(TRUE, prompts, outputs, 8)
    rate = max_sustainable_rps(TRUE, prompts, outputs, 8, slos, sat)
    assert 0 < rate < sat

    def ok(r):
        return check_slos(simulate(poisson_requests(r, 2000, prompts, outputs, 0), TRUE, 1, 8), slos)["ok"]

    assert ok(rate) and not ok(rate * 1.05)
    assert max_sustainable_rps(TRUE, prompts, outputs, 8, parse_slo("e2el_p95=10ms"), sat) == 0.0
    assert max_sustainable_rps(TRUE, prompts, outputs, 8, [], sat) is None


def test_rows_only_and_a_replayed_trace(measured):
    rows, _ = measured
    rng = np.random.default_rng(4)
    trace = Requests(np.cumsum(rng.exponential(0.05, 600)), rng.integers(100, 3000, 600), rng.integers(5, 60, 600))
    plan = plan_option(rows, HW, parse_slo("e2el_p95=3s"), trace=trace)
    assert plan["load"]["kind"] == "trace" and plan["replicas"] >= 1
    text = " ".join(plan["notes"])
    assert "summary-row means" in text and "longer than the longest measured" in text


def test_the_prediction_error_note_never_denies_measured_rate_points(measured):
    # Issue 13 item 7: plans made without validation said "no concurrency rate points" on runs that had them.
    from test_planner_synth import rate_records

    rows, recs = measured
    bare = plan_option(rows, HW, [], rps=10.0, records=recs)
    assert "prediction error: not checked on this run (no concurrency rate points to compare with)" in bare["notes"]
    with_rates = plan_option(rows, HW, [], rps=10.0, records=recs + rate_records(20.0, n=50))
    assert not any("no concurrency rate points" in n for n in with_rates["notes"])
    assert any(n.startswith("prediction error: not computed in this plan") for n in with_rates["notes"])
