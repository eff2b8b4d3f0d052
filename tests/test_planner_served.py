"""Served options: the continuous-batching fit recovers known step times from synthetic closed-loop
cells, and a served option is planned, validated and deployed with its measured slots."""
from __future__ import annotations

import numpy as np
import pytest

from llmbench.planner.continuous import ContinuousModel, saturation_rps, simulate_continuous
from llmbench.planner.queue import Requests
from llmbench.planner.served_fit import fit_continuous
from llmbench.records import RequestRecord

TRUE = ContinuousModel(prefill_fixed_ms=12.0, prefill_ms_per_token=0.8, step_batches=(1, 2, 4),
                       step_base_ms=(4.0, 5.0, 7.0))
VARIANT = "gguf-q4_k_m"
HARDWARE = {"name": "test-box", "kind": "cpu", "devices": 1, "usd_per_hour": 0.5}


def _records(sim, reqs, point, start, scenario="concurrency", first_id=0) -> list[RequestRecord]:
    out = []
    for i in range(len(reqs)):
        m = int(reqs.output_tokens[i])
        ttft, e2el = float(sim.ttft_ms[i]), float(sim.e2el_ms[i])
        out.append(RequestRecord(
            timestamp=start + float(reqs.arrival_s[i]), run_id="served", model="m", variant=VARIANT, scenario=scenario,
            point=point, request_id=first_id + i, prompt_tokens=int(reqs.prompt_tokens[i]), output_tokens=m, ttft_ms=ttft,
            e2el_ms=e2el, itl_ms=[(e2el - ttft) / (m - 1)] * (m - 1), usage_source="server"))
    return out


def closed_loop(model, clients, n, seed=0, gap_s=0.002):
    """n requests from `clients` closed-loop clients (each sends again gap_s after its answer ends)."""
    rng = np.random.default_rng(seed)
    prompts, outputs = rng.integers(16, 300, n).astype(float), rng.integers(12, 40, n)
    arrivals = [0.0] * clients
    while True:
        k = len(arrivals)
        reqs = Requests(np.array(arrivals), prompts[:k], outputs[:k])
        sim = simulate_continuous(reqs, model, 1, clients)
        if k == n:
            return reqs, sim
        # The next send: the earliest answer not yet followed (later arrivals cannot change it).
        ends = np.sort(np.array(arrivals) + sim.e2el_ms / 1e3)
        arrivals.append(float(ends[k - clients]) + gap_s)  # never before the previous send


def served_run(model=TRUE, clients=(1, 2, 4), per_cell=40, seed=0) -> list[RequestRecord]:
    """Closed-loop cells as `llmbench run` measures a gguf variant: single-stream, then clients=N."""
    recs, start = [], 1000.0
    for j, c in enumerate(clients):
        reqs, sim = closed_loop(model, c, per_cell, seed + j)
        scenario, point = ("single-stream", "single") if c == 1 else ("concurrency", f"clients={c}")
        recs += _records(sim, reqs, point, start, scenario, first_id=len(recs))
        start += sim.window_s + 5.0
    return recs


def rate_point(model, rate, n=300, parallel=4, seed=7, start=9000.0) -> list[RequestRecord]:
    rng = np.random.default_rng(seed)
    reqs = Requests(np.cumsum(rng.exponential(1 / rate, n)), rng.integers(16, 300, n).astype(float), rng.integers(12, 40, n))
    return _records(simulate_continuous(reqs, model, 1, parallel), reqs, f"rate={rate:g}", start)


def test_fit_recovers_known_step_times():
    fitted = fit_continuous(served_run())
    assert fitted.step_batches == (1, 2, 4)
    # Prompts processed alone (single-stream): a + k*P exactly.
    assert fitted.prefill_fixed_ms == pytest.approx(12.0, rel=0.02)
    assert fitted.prefill_ms_per_token == pytest.approx(0.8, rel=0.02)
    assert fitted.prefill_ms_per_token2 == pytest.approx(0.0, abs=1e-5)
    # Step times at 1, 2 and 4 busy slots, from decode windows shared with other requests' prompts.
    assert fitted.step_base_ms == pytest.approx((4.0, 5.0, 7.0), rel=0.06)
    # Noise-free measurements: every speed ratio is about 1.
    assert 0.9 < min(fitted.duration_ratios) and max(fitted.duration_ratios) < 1.1
    assert fitted.describe()["step_ms_by_slots"] == {"1": fitted.step_base_ms[0], "2": fitted.step_base_ms[1],
                                                      "4": fitted.step_base_ms[2]}


def test_fit_keeps_steps_monotone_and_notes_noise():
    noisy = served_run(seed=3)
    rng = np.random.default_rng(1)
    for r in noisy:  # +-40% per request: a shared machine
        f = float(rng.uniform(0.6, 1.4))
        r.e2el_ms = r.ttft_ms + (r.e2el_ms - r.ttft_ms) * f
    fitted = fit_continuous(noisy)
    assert all(b2 >= b1 for b1, b2 in zip(fitted.step_base_ms, fitted.step_base_ms[1:]))
    assert np.std(fitted.duration_ratios) > 0.1


def test_served_plan_uses_the_measured_slots():
    from test_planner_synth import summary_rows

    from llmbench.hardware_profiles import HardwareProfile
    from llmbench.planner.capacity import plan_option

    recs = served_run()
    rows = summary_rows(recs)
    hw = HardwareProfile(**HARDWARE)
    sat4 = saturation_rps(TRUE, np.array([r.prompt_tokens for r in recs], float), np.array([r.output_tokens for r in recs]), 4)
    plan = plan_option(rows, hw, [], rps=0.6 * sat4, records=recs)
    assert plan["parallel"] == plan["max_batch"] in (1, 2, 4) and plan["server_model"] == "continuous batching"
    assert set(plan["max_batch_search"]) == {"1", "2", "4"}
    assert any(n.startswith("served engine: planned as continuous batching") for n in plan["notes"])
    four = plan_option(rows, hw, [], rps=0.7 * sat4, records=recs, max_batch=4)
    assert four["parallel"] == 4 and four["replicas"] == 1
    assert four["saturation_rps"] == pytest.approx(sat4, rel=0.08)
    # One slot per replica carries less (these prompts cost far more than a decode step, so slots
    # share little: 4.1 against 5.4 req/s): more replicas for the same load.
    one = plan_option(rows, hw, [], rps=0.7 * sat4, records=recs, max_batch=1)
    assert one["replicas"] > four["replicas"]


def test_served_validation_predicts_its_rate_points():
    from llmbench.planner.validate import validate_option

    recs = served_run()
    sat = saturation_rps(TRUE, np.array([r.prompt_tokens for r in recs], float), np.array([r.output_tokens for r in recs]), 4)
    rate = round(0.75 * sat, 3)
    points = rate_point(TRUE, rate)
    # A stream that carried no content text: ok, counted by usage, but no token times (left out).
    points.append(points[-1].model_copy(update={"ttft_ms": None, "e2el_ms": None, "itl_ms": [], "request_id": 10_000}))
    got = validate_option(recs + points, {f"rate={rate:g}": 4})
    assert got["engine_model"].startswith("continuous")
    level = got["levels"][0]
    assert level["max_batch"] == 4 and 0.6 < level["load_share_of_saturation"] < 0.9
    # The measured arrivals replayed through the fitted model: close to the true model's own run.
    assert abs(level["error_pct"]["e2el_p95"]) < 8 and abs(level["error_pct"]["ttft_p95"]) < 15


def test_recommend_options_and_deployments_take_the_served_slots():
    from test_planner_synth import summary_rows

    from llmbench.export.launch import slots
    from llmbench.recommend.inputs import RunData
    from llmbench.recommend.options import self_hosted_options

    rows = summary_rows(served_run(per_cell=12))
    for r in rows:
        r["server_parallel"] = 1 if r["point"] == "single" else int(r["point"].split("=")[1])
    data = RunData(path=None, meta={}, summary={"rows": rows, "hardware": "test-box"}, records=[])
    opts = self_hosted_options(data)
    assert sorted(o.batch_size for o in opts) == [1, 2, 4]
    assert {o.point for o in opts} == {"single", "clients=2", "clients=4"}
    # deployment.yaml's --parallel: the plan's slots first.
    assert slots({"plan_parallel": 4, "plan_max_batch": 4}, {"batch_size": 1}) == 4
    assert slots({}, {"plan": {"parallel": 2, "max_batch": 2}, "batch_size": 1}) == 2


def test_verify_gets_the_served_model_through_the_planner_entry_points():
    # verify/predict.py fits with fitting.fit_option on the static fit_rows and simulates with queue.simulate.
    from test_planner_synth import batch_records, summary_rows

    from llmbench.planner.fitting import fit_option as _fit
    from llmbench.planner.queue import simulate
    from llmbench.planner.service import ServiceModel, fit_rows

    recs = served_run(per_cell=20)
    model = _fit(fit_rows(summary_rows(recs)), recs, None)[0]
    assert isinstance(model, ContinuousModel) and model.step_batches == (1, 2, 4)
    reqs = Requests([0.0, 0.001, 0.002], [50, 50, 50], [8, 8, 8])
    assert list(simulate(reqs, model, 1, max_batch=4).batch_size) == [1, 2, 3]  # all three in slots at once
    # An in-process option keeps the static-batching model.
    static = batch_records()
    assert type(_fit(fit_rows(summary_rows(static)), static, None)[0]) is ServiceModel


def test_open_loop_only_is_fitted_with_a_note():
    from llmbench.planner.fitting import fit_option

    model, recs, _ = fit_option([{"variant": VARIANT, "point": "rate=3"}], rate_point(TRUE, 3.0, n=120))
    assert isinstance(model, ContinuousModel) and len(recs) == 120
    assert any("no closed-loop cell" in n for n in model.fit_notes)
