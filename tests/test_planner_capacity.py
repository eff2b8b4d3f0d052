"""The replica search, one replica's limits, and plan_option's contract (on synthetic measurements)."""
from __future__ import annotations

import numpy as np
import pytest

from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner.capacity import HOURS_PER_MONTH, check_slos, max_sustainable_rps, plan_option, saturation_rps
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


def test_without_slo_sized_for_utilisation(measured):
    rows, recs = measured
    plan = plan_option(rows, HW, [], rps=30.0, records=recs)
    assert plan["replicas"] == int(np.ceil(30.0 / (0.8 * plan["saturation_rps"])))
    assert "utilization" in plan["binding"]


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
