"""plan_option's limits, load size, prediction figures and notes, each checked against a value
recomputed here (synthetic measurements, no model). Also run by the mutation script on capacity.py."""
from __future__ import annotations

import pytest

from llmbench.errors import BadInput
from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner.capacity import MAX_REPLICAS_LIMIT, MAX_RPS, POISSON_MAX, plan_option, validate_limits, validate_rps
from llmbench.planner.queue import Requests
from llmbench.planner.search import POISSON_MIN
from llmbench.planner.served import SERVED_NOTE
from llmbench.slo import parse_slo
from test_planner_synth import HARDWARE, batch_records, summary_rows

HW = HardwareProfile(**HARDWARE)


@pytest.fixture(scope="module")
def measured():
    recs = batch_records()
    return summary_rows(recs), recs


@pytest.fixture(scope="module")
def plain(measured):
    rows, recs = measured
    keep: dict = {}
    return plan_option(rows, HW, [], rps=5.0, records=recs, keep=keep), keep


def test_limits_are_inclusive():
    assert validate_rps(MAX_RPS) == MAX_RPS and validate_rps(0.5) == 0.5  # below one request a second is a load too
    with pytest.raises(BadInput, match="at most 1e\\+07, got 20000000.0"):
        validate_rps(2 * MAX_RPS)
    validate_limits(max_batch=1024, max_replicas=MAX_REPLICAS_LIMIT)  # the largest allowed: no error
    validate_limits(max_batch=1, max_replicas=1)


def test_a_poisson_load_is_ten_minutes_of_requests_within_bounds(plain):
    plan, _ = plain
    assert plan["load"]["requests"] == int(min(POISSON_MAX, max(POISSON_MIN, 5.0 * 600)))  # 3000
    assert plan["load"]["kind"] == "poisson" and plan["load"]["offered_rps"] == 5.0


def test_goodput_is_the_share_of_requests_over_the_window(plain):
    plan, keep = plain
    sim, pred = keep["sim"], plan["predicted"]
    assert pred["goodput_req_s"] == pytest.approx(pred["goodput_share"] * len(sim.e2el_ms) / sim.window_s, rel=1e-12)
    assert pred["mean_batch_size"] == pytest.approx(float(sim.batch_size.mean()), rel=1e-12)


def test_the_default_seed_is_zero(measured, plain):
    rows, recs = measured
    assert plan_option(rows, HW, [], rps=5.0, records=recs, seed=0)["predicted"] == plain[0]["predicted"]


def test_an_in_process_batch_plan_says_what_it_rests_on(plain):
    notes = plain[0]["notes"]
    assert SERVED_NOTE not in notes
    assert "the model's context window is unknown: requests were not checked against it" in notes
    assert any(n.startswith("after-idle slowdown not measured (no concurrency rate points)") for n in notes)
    assert not any(n.startswith("no after-idle slowdown found") or n.startswith("fitted on concurrency") for n in notes)
    chosen = [n for n in notes if "chosen among the measured sizes" in n]
    assert len(chosen) == 1 and chosen[0].startswith("max batch chosen among the measured sizes") and "b=1: " in chosen[0]


def test_a_known_context_that_fits_adds_no_note(measured):
    rows, recs = measured
    notes = plan_option(rows, HW, [], rps=5.0, records=recs, context_tokens=100_000)["notes"]
    assert not any("context" in n for n in notes)


def test_too_few_requests_within_the_context_name_how_many_of_how_many(measured):
    rows, recs = measured
    # 4 requests, 3 of them longer than a 100-position context: 1 left, too few to plan.
    trace = Requests([0.0, 1.0, 2.0, 3.0], [10, 500, 500, 500], [8, 8, 8, 8])
    with pytest.raises(BadInput, match="^3 of 4 requests need more than the model's 100 positions: none left to plan$"):
        plan_option(rows, HW, [], trace=trace, records=recs, context_tokens=100)


def test_a_sweep_note_says_how_far_where_from_and_what_was_left_out():
    import numpy as np

    from test_planner_synth import TRUE_Q, sweep_doc

    recs = batch_records(service=TRUE_Q)
    trace = Requests(np.arange(20) * 2.0, np.full(20, 1600.0), np.full(20, 2))
    doc = {**sweep_doc(TRUE_Q), "reused": True, "not_measured_over_budget": [3200, 6400]}
    plan = plan_option(summary_rows(recs), HW, [], trace=trace, records=recs, max_batch=1, prefill_sweep=doc)
    (note,) = [n for n in plan["notes"] if "prefill sweep" in n]
    assert plan["prefill_sweep"]["scale_to_run"] == pytest.approx(1.0, rel=1e-6)  # same speed as the run
    assert note == ("prefill measured up to 1,600 tokens by a prefill sweep (reused from prefill_sweep.json; times scaled "
                    "x1.000 to the run's level at its 100/199-token prompts); 3200, 6400 tokens not measured (they would "
                    "have taken longer than the sweep's time budget)")


def test_a_replica_costs_every_device_and_itl_objectives_are_said_to_be_tpot(measured, plain):
    rows, recs = measured
    two = HardwareProfile(**{**HARDWARE, "devices": 2})  # $0.5/h a device
    plan = plan_option(rows, two, [], rps=5.0, records=recs)
    assert plan["usd_per_hour_per_replica"] == 1.0 and plan["cost_per_hour"] == plan["replicas"] * 1.0
    itl = "ITL objectives are checked against TPOT: the model's decode steps within a batch are uniform"
    assert itl not in plain[0]["notes"]
    assert itl in plan_option(rows, HW, parse_slo("itl_p99=500ms"), rps=5.0, records=recs)["notes"]


def test_caps_and_bounds_of_the_load(measured, plain):
    rows, recs = measured
    assert plain[0]["max_replicas"] == 1024  # the default replica cap
    assert plan_option(rows, HW, [], rps=30.0, records=recs, max_batch=8)["load"]["requests"] == 12000  # 30/s x 600 s, capped
    one, two = Requests([0.0], [10], [8]), Requests([0.0, 1.0], [10, 10], [8, 8])
    with pytest.raises(BadInput, match="a trace needs at least two requests"):
        plan_option(rows, HW, [], trace=one, records=recs)
    assert plan_option(rows, HW, [], trace=two, records=recs)["load"]["requests"] == 2


def test_requests_over_the_context_are_counted_in_a_note(measured):
    rows, recs = measured
    trace = Requests([0.0, 1.0, 2.0, 3.0, 4.0], [10, 10, 500, 500, 500], [8, 8, 8, 8, 8])  # 3 of 5 over 100 positions
    plan = plan_option(rows, HW, [], trace=trace, records=recs, context_tokens=100)
    assert plan["load"]["requests_planned"] == 2
    three = Requests([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [10, 10, 10, 500, 500, 500], [8] * 6)
    assert plan_option(rows, HW, [], trace=three, records=recs, context_tokens=100)["load"]["requests_planned"] == 3
    assert any(n.startswith("3 of 5 requests (60.0%) need more than the model's context of 100 tokens") for n in plan["notes"])


def test_a_plan_fitted_on_rate_points_says_so_and_knows_it_has_them():
    from test_planner_synth import rate_records

    recs = [r.model_copy(update={"scenario": "".join(list(r.scenario))}) for r in rate_records(20.0, n=60)]  # as parsed
    notes = plan_option(summary_rows(recs), HW, [], rps=5.0, records=recs)["notes"]
    assert "fitted on concurrency measurements (queueing subtracted), not on queue-free ones" in notes
    assert any(n.startswith("prediction error: not computed in this plan") for n in notes)
    assert "no after-idle slowdown found in this run's concurrency points" in notes
    # Closed-loop concurrency points (clients=N) are no rate points to check the plan against.
    batch = batch_records()
    closed = [r.model_copy(update={"point": "clients=4"}) for r in rate_records(20.0, n=60)]
    notes = plan_option(summary_rows(batch), HW, [], rps=5.0, records=batch + closed)["notes"]
    assert "prediction error: not checked on this run (no concurrency rate points to compare with)" in notes


def test_a_sweep_at_another_speed_is_flagged_and_only_itl_objectives_get_the_itl_note(measured):
    import numpy as np

    from test_planner_synth import TRUE_Q, sweep_doc

    recs = batch_records(service=TRUE_Q)
    trace = Requests(np.arange(20) * 2.0, np.full(20, 1600.0), np.full(20, 2))
    for speed in (2.0, 0.5):  # the sweep ran twice as fast, or half as fast, as the run
        plan = plan_option(summary_rows(recs), HW, [], trace=trace, records=recs, max_batch=1, prefill_sweep=sweep_doc(TRUE_Q, speed=speed))
        assert any("; the machine ran at a different speed during the sweep than during the run" in n for n in plan["notes"]), speed
    rows, recs = measured
    for other in ("tpot_p99=500ms", "e2el_p95=5s"):
        assert not any(n.startswith("ITL objectives") for n in plan_option(rows, HW, parse_slo(other), rps=5.0, records=recs)["notes"])


def test_a_month_is_730_hours_and_a_rate_must_be_a_number(plain):
    assert plain[0]["cost_per_month"] == pytest.approx(plain[0]["cost_per_hour"] * 730.0, rel=1e-12)  # 8760 h / 12
    for bad in ("fast", None):
        with pytest.raises(BadInput, match="--rps must be a number of requests/s"):
            validate_rps(bad)


def test_every_request_plans_at_least_one_output_token():
    recs = batch_records()
    mixed = [r.model_copy(update={"output_tokens": 0}) if i % 2 else r for i, r in enumerate(recs)]  # 16 and 0 tokens
    plan = plan_option(summary_rows(recs), HW, [], rps=5.0, records=mixed, max_batch=8)
    assert plan["load"]["output_tokens_mean"] == pytest.approx((16 + 1) / 2)
    ones = batch_records(output=1)
    rows = summary_rows(ones)  # rows only: their means, rounded, at least 1
    assert plan_option(rows, HW, [], rps=5.0, max_batch=8)["load"]["output_tokens_mean"] == 1.0
    unknown = [{**r, "output_tokens_mean": None} for r in rows]
    assert plan_option(unknown, HW, [], rps=5.0, max_batch=8)["load"]["output_tokens_mean"] == 1.0


def test_the_batch_choice_note_needs_two_sizes_and_a_short_trace_still_has_goodput(plain):
    assert "parallel" not in plain[0] and "server_model" not in plain[0]  # in-process batching: no llama-server slots
    recs = batch_records(sizes=(1, 2))
    rows = summary_rows(recs)
    two = plan_option(rows, HW, [], rps=5.0, records=recs)["notes"]
    assert sum(n.startswith("max batch chosen among the measured sizes") for n in two) == 1
    one = plan_option(rows, HW, [], rps=5.0, records=recs, max_batch=2)["notes"]
    assert not any("chosen among the measured sizes" in n for n in one)
    keep: dict = {}
    quick = plan_option(rows, HW, [], trace=Requests([0.0, 0.1], [10, 10], [2, 2]), records=recs, keep=keep)
    sim = keep["sim"]
    assert sim.window_s < 1.0 and quick["predicted"]["goodput_req_s"] == pytest.approx(
        quick["predicted"]["goodput_share"] * 2 / sim.window_s)


def test_a_size_that_meets_the_slo_beats_one_that_misses_with_as_few_replicas(measured):
    # 40 req/s, E2EL p95 under 600 ms, at most 2 replicas: batches of 1 and 2 miss with 2 replicas, 4 and 8 meet.
    rows, recs = measured
    plan = plan_option(rows, HW, parse_slo("e2el_p95=600ms"), rps=40.0, records=recs, max_replicas=2)
    found = {k: (v["replicas"], v["meets_slo"]) for k, v in plan["max_batch_search"].items()}
    assert found["1"] == (2, False) and found["4"] == (2, True)
    assert plan["meets_slo"] is True and found[str(plan["max_batch"])][1] is True
    (note,) = [n for n in plan["notes"] if "chosen among the measured sizes" in n]
    assert "b=1: 2 replicas (misses)" in note and "b=4: 2 replicas," in note
