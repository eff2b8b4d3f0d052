"""Autoscaling policies simulated on arrivals (planner/autoscale.py) and `plan --trace --autoscale`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.planner.autoscale import Controller, Knobs, choose, grid, simulate_policy
from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner.capacity import HOURS_PER_MONTH, plan_option
from llmbench.planner.continuous import ContinuousModel
from llmbench.planner.queue import Requests, simulate
from llmbench.slo import SLO
from test_planner_synth import HARDWARE, TRUE, batch_records, summary_rows, write_run

USD = 0.5  # $/hour per replica in these tests
TOKENS = 100  # prompt + output tokens of every request here (90 + 10)


class Fixed:
    """Every batch takes exactly `d` seconds, its first token at d/2: queueing by hand."""

    def __init__(self, d: float):
        self.d = d

    def serve(self, prompts, outputs):
        return self.d / 2, [self.d] * len(prompts), self.d, self.d * 1e3


def _reqs(times) -> Requests:
    t = np.asarray(times, float)
    return Requests(t, np.full(len(t), 90.0), np.full(len(t), 10))


def _phases(*spans) -> Requests:
    """Arrivals at a constant rate per phase: (start s, end s, req/s), the first at its start."""
    return _reqs(np.concatenate([np.arange(a, b, 1 / r) for a, b, r in spans]))


def _knobs(lo=1, hi=3, interval=10.0, cooldown=100.0, cold=5.0, budget=400.0, window=1.0, kind="tokens", depth=0.0):
    return Knobs(kind, lo, hi, interval, cooldown, 1.0, cold, window_s=window, token_budget=budget, depth_target=depth)


def test_a_constant_load_settles_and_never_flaps():
    reqs = _phases((0, 600, 10))  # 1,000 tokens/s over a 300-token budget: 4 replicas
    ctl = Controller(_knobs(hi=8, budget=300.0, window=10.0, interval=5.0), reqs)
    sim = simulate(reqs, Fixed(0.05), 8, 1, "random", scaler=ctl)
    assert ctl.events == [(0.0, 4)] and ctl.scale_ups == []
    assert ctl.replica_seconds(sim.window_s) == pytest.approx(4 * sim.window_s, rel=1e-12)
    assert set(sim.replica.tolist()) == {0, 1, 2, 3}  # routed to the serving four only


@pytest.mark.parametrize("cold", [0.0, 7.3, 42.0])
def test_a_step_is_served_after_the_cold_start_plus_at_most_one_interval(cold):
    step = 303.0  # between two ticks
    reqs = _phases((0, step, 1), (step, 900, 10))  # 1 then 10 req/s: 100 -> 1,000 tokens/s, 1 -> 3 replicas
    ctl = Controller(_knobs(cold=cold, cooldown=1e9), reqs)
    sim = simulate(reqs, Fixed(0.05), 3, 1, "round-robin", scaler=ctl)
    up = ctl.scale_ups[0]
    assert up["at_s"] == 310.0 and up["replicas"] == 2  # the first tick after the step
    assert up["ready_s"] == up["at_s"] + cold and up["ready_s"] - step <= cold + 10.0
    assert len(ctl.scale_ups) == 1
    arrivals = reqs.arrival_s
    new = arrivals[sim.replica >= 1]
    assert new.min() >= up["ready_s"] and new.min() < up["ready_s"] + 0.1  # serving from then, not before
    assert ctl.pending_at_arrival.sum() == ((arrivals >= 310.0) & (arrivals < 310.0 + cold)).sum()


def test_cost_recomputed_by_hand_from_replica_seconds():
    reqs = _phases((0, 300, 1), (300, 600, 10), (600, 1200, 1))
    knobs = _knobs(cold=5.0, cooldown=100.0)
    fig, sim = simulate_policy(knobs, reqs, Fixed(0.05), 1, "round-robin", [], USD, HOURS_PER_MONTH)
    # 1 replica to the tick at 310, 3 to the tick at 700 (the last high desire at 600, + the 100 s cool-down), then 1.
    end = sim.window_s
    assert end == pytest.approx(1199 + 0.05)
    rs = 1 * 310 + 3 * (700 - 310) + 1 * (end - 700)
    assert fig["replica_seconds"] == pytest.approx(rs, rel=1e-12)
    assert fig["replica_hours"] == pytest.approx(rs / 3600, rel=1e-12)
    assert fig["cost_per_month_usd"] == pytest.approx(rs / end * USD * HOURS_PER_MONTH, rel=1e-12)
    assert (fig["scale_ups"], fig["scale_downs"], fig["peak_replicas"]) == (1, 1, 3)


def test_a_slow_cold_start_misses_the_attainment_a_fast_one_meets():
    # 0.25 s per request on one slot: one replica serves 4 req/s; 6 req/s for five minutes needs two.
    reqs = _phases((0, 300, 1), (300, 600, 6), (600, 900, 1))
    slo = [SLO("e2el", 99.0, 1000.0)]
    figs = {}
    for cold in (1.0, 600.0):
        knobs = _knobs(cold=cold, budget=300.0, hi=3)
        figs[cold] = simulate_policy(knobs, reqs, Fixed(0.25), 1, "round-robin", slo, USD, HOURS_PER_MONTH)[0]
    assert figs[1.0]["slo_attainment"] >= 0.9  # the burst's first 11 s queue on one replica
    assert figs[600.0]["slo_attainment"] < 0.6  # one replica all through the burst: its queue only grows
    assert figs[600.0]["requests_waited_for_scale_up"] > figs[1.0]["requests_waited_for_scale_up"] > 0
    best = choose(list(figs.values()), 0.9)
    assert best is figs[1.0]


@pytest.mark.parametrize("routing", ["random", "jsq", "round-robin"])
def test_min_equal_max_reproduces_the_fixed_plan(routing):
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(1 / 40.0, 3000))
    reqs = Requests(t, rng.integers(20, 200, len(t)).astype(float), rng.integers(1, 40, len(t)))
    plain = simulate(reqs, TRUE, 3, 4, routing, seed=5)
    knobs = Knobs("tokens", 3, 3, 15.0, 120.0, 1.0, 9.0)
    fig, sim = simulate_policy(knobs, reqs, TRUE, 4, routing, [SLO("e2el", 95.0, 400.0)], USD, HOURS_PER_MONTH, seed=5)
    for m in ("e2el_ms", "ttft_ms", "queue_ms", "replica"):
        np.testing.assert_array_equal(getattr(sim, m), getattr(plain, m))
    assert fig["cost_per_month_usd"] == pytest.approx(3 * USD * HOURS_PER_MONTH, rel=1e-12)
    assert fig["replica_seconds"] == pytest.approx(3 * plain.window_s, rel=1e-12)
    assert fig["slo_attainment"] == pytest.approx(float((plain.e2el_ms <= 400.0).mean()))
    assert fig["scale_ups"] == 0 and fig["requests_waited_for_scale_up"] == 0


@pytest.mark.parametrize("routing", ["random", "jsq"])
def test_continuous_batching_replicas_reproduce_fixed_and_scale(routing):
    model = ContinuousModel(10.0, 0.1, (1, 2), (2.0, 3.0), duration_ratios=(0.8, 1.2))
    reqs = _phases((0, 300, 2), (300, 600, 40), (600, 900, 2))
    plain = simulate(reqs, model, 2, 2, routing, seed=1)
    fixed, sim = simulate_policy(Knobs("tokens", 2, 2, 15.0, 60.0, 1.0, 3.0), reqs, model, 2, routing,
                                 [], USD, HOURS_PER_MONTH, seed=1)
    np.testing.assert_array_equal(sim.e2el_ms, plain.e2el_ms)
    assert fixed["cost_per_month_usd"] == pytest.approx(2 * USD * HOURS_PER_MONTH, rel=1e-12)
    # 40 req/s x 100 tokens over a 1,500-token budget: 3 replicas in the burst, 1 outside it.
    ctl = Controller(_knobs(hi=4, budget=1500.0, cold=3.0, cooldown=30.0), reqs)
    scaled = simulate(reqs, model, 4, 2, routing, seed=1, scaler=ctl)
    assert [(u["at_s"], u["ready_s"], u["replicas"]) for u in ctl.scale_ups] == [(310.0, 313.0, 2)]
    assert reqs.arrival_s[scaled.replica >= 1].min() >= 313.0 and scaled.replica.max() == 2
    assert ctl.events[-1] == (630.0, 1)  # down at the first tick 30 s clear of the last high one (600)
    # On queue depth (the servers' slots and queues, read at each arrival): up in the burst, down after it.
    depth = Controller(_knobs(kind="queue", depth=2.0, budget=0.0, hi=4, cooldown=30.0), reqs)
    simulate(reqs, model, 4, 2, routing, seed=1, scaler=depth)
    assert depth.scale_ups and all(300.0 <= u["at_s"] <= 610.0 for u in depth.scale_ups) and depth.events[-1][1] == 1


def test_plan_option_keeps_its_inputs_with_a_prompt_filter():
    # keep= and a routed class's prompt mask once shared a name (fixed in e9c2bfa).
    keep: dict = {}
    recs = batch_records(model="card:tiny", variant="torch-fp32")
    rows = summary_rows(recs)
    got = plan_option(rows, HardwareProfile(**HARDWARE), [], rps=5.0, records=recs, keep=keep,
                      prompt_filter=lambda p: p < 200)
    assert set(keep) == {"service", "requests", "sim"} and got["replicas"] >= 1
    assert keep["requests"].prompt_tokens.max() < 200 and len(keep["sim"].e2el_ms) == len(keep["requests"])


def test_queue_depth_policy_scales_on_requests_in_flight():
    reqs = _phases((0, 300, 1), (300, 600, 6), (600, 900, 1))
    knobs = _knobs(kind="queue", depth=2.0, budget=0.0, cold=1.0, hi=4)
    fig, _ = simulate_policy(knobs, reqs, Fixed(0.25), 1, "jsq", [SLO("e2el", 99.0, 1000.0)], USD, HOURS_PER_MONTH)
    assert fig["scale_ups"] >= 1 and fig["peak_replicas"] >= 2
    # Down again after each cool-down; a depth target over a load needing 2 replicas flaps (4, 1, 4, ...): said in the figures.
    assert fig["scale_downs"] >= 1 and fig["mean_replicas"] < fig["peak_replicas"]


def test_grid_always_holds_the_fixed_plan_first_and_validates_knobs():
    g = grid(2, 3.0, 1000.0, 4, 1024)
    assert (g[0].min_replicas, g[0].max_replicas) == (2, 2)
    assert {k.kind for k in g} == {"tokens", "queue", "schedule"} and all(k.cold_start_s == 3.0 for k in g)
    assert {k.token_budget for k in g[1:] if k.kind == "tokens"} == {600.0, 800.0, 1000.0}
    assert {k.token_budget for k in g if k.kind == "schedule"} == {600.0, 800.0, 1000.0}
    assert {k.cooldown_s for k in g if k.kind == "schedule"} == {0.0}  # it scales down at its step
    with pytest.raises(ValueError):
        Knobs("schedule", 1, 2, 15.0, 0.0, 1.0, 0.0)  # a schedule needs a token budget too
    with pytest.raises(ValueError):
        Knobs("tokens", 3, 2, 15.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        Knobs("tokens", 1, 2, 15.0, 1.0, 1.0, 0.0)  # a range without a budget


@pytest.mark.parametrize("cold", [0.0, 4.5])
def test_a_schedule_has_the_replicas_ready_when_the_step_arrives(cold):
    # 1 req/s until 100 s, then 3 req/s: 100 -> 300 tokens/s, over a 100-token budget 1 -> 3 replicas.
    reqs = _phases((0, 100, 1), (100, 200, 3))
    ctl = Controller(_knobs(kind="schedule", budget=100.0, interval=10.0, cold=cold, cooldown=0.0), reqs)
    sim = simulate(reqs, Fixed(0.5), 3, 1, "random", scaler=ctl)
    # A tick at t counts the tokens of [t + cold, t + cold + 10): with no cold start the tick at 100 s
    # asks for 3; with 4.5 s, the tick at 90 s sees 5 requests of the first rate and 14 of the second
    # (190 tokens/s: 2 replicas, ready at 94.5 s) and the tick at 100 s asks for 3, ready at 104.5 s.
    if cold == 0.0:
        assert ctl.events == [(0.0, 1), (100.0, 3)]
    else:
        assert ctl.events == [(0.0, 1), (90.0, 2), (100.0, 3)]
        assert [(u["at_s"], u["ready_s"]) for u in ctl.scale_ups] == [(90.0, 94.5), (100.0, 104.5)]
    # Routed to the serving replicas only: one before the first scale-up, all three once ready.
    assert set(sim.replica[reqs.arrival_s < 90].tolist()) == {0}
    assert set(sim.replica[reqs.arrival_s >= 100 + cold].tolist()) == {0, 1, 2}
    # Steps past the trace's end bring no tokens: the schedule falls back to min_replicas.
    assert Controller(_knobs(kind="schedule", budget=100.0, interval=10.0, cold=cold), reqs)._tokens_ahead(500.0) == 0.0


def test_a_schedule_scales_down_at_its_step_without_a_cool_down():
    reqs = _phases((0, 100, 3), (100, 200, 1))
    ctl = Controller(_knobs(kind="schedule", budget=100.0, interval=10.0, cold=0.0, cooldown=0.0), reqs)
    simulate(reqs, Fixed(0.5), 3, 1, "random", scaler=ctl)
    assert ctl.events == [(0.0, 3), (100.0, 1)]  # started at the first step's count, down at the step


# ---- the CLI on a hand-built results folder -------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("run"), batch_records(model="card:tiny", variant="torch-fp32"))


def _trace(path, seconds: int, burst=(200, 260)):
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    t = 0.0
    while t < seconds:
        lines.append(f"{t:.3f},{100 + int(t * 37) % 300},{5 + int(t) % 30}")
        t += 0.05 if burst[0] <= t < burst[1] else 0.5
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_autoscale_json(run_dir, tmp_path):
    trace = _trace(tmp_path / "t.csv", 400)
    res = CliRunner().invoke(main, ["plan", str(run_dir), "--trace", str(trace), "--autoscale", "--json",
                                    "--slo", "e2el_p95=3s", "--no-measure"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    a, f = doc["autoscale"], doc["fixed"]
    assert a["cost_per_month_usd"] <= f["cost_per_month_usd"] + 1e-9 and a["slo_attainment"] >= 0.99
    assert f["cost_per_month_usd"] == pytest.approx(f["plan_cost_per_month"], rel=1e-12)
    assert f["min_replicas"] == f["max_replicas"] == f["replicas"]
    assert 1 <= a["min_replicas"] <= a["max_replicas"]
    # The hand-built run records neither a cold start nor a load time: said, not invented.
    assert a["cold_start_s"] is None and "not measured" in a["cold_start_source"]
    assert doc["slo"] == ["e2el_p95<=3000ms"] and len(doc["tried"]) > 10
    assert json.loads((run_dir / "plans" / "autoscale-trace-t.json").read_text())["fixed"] == f
    table = CliRunner().invoke(main, ["plan", str(run_dir), "--trace", str(trace), "--autoscale", "--no-measure"])
    assert table.exit_code == 0 and "fixed:" in table.stdout and "chosen:" in table.stdout


def test_without_an_slo_the_fixed_plan_sets_the_bar(run_dir, tmp_path):
    trace = _trace(tmp_path / "t.csv", 400)
    res = CliRunner().invoke(main, ["plan", str(run_dir), "--trace", str(trace), "--autoscale", "--json",
                                    "--attainment", "0.95", "--no-measure"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    (bar,) = doc["slo"]
    assert bar.startswith("e2el_p95<=") and "no SLO given" in doc["slo_source"]
    assert doc["fixed"]["slo_attainment"] >= 0.95 and doc["autoscale"]["slo_attainment"] >= 0.95
    assert doc["autoscale"]["cost_per_month_usd"] <= doc["fixed"]["cost_per_month_usd"] + 1e-9


@pytest.mark.parametrize("args, needle", [
    (["--autoscale"], "too short to plan autoscaling: 100 s, needs at least 240 s"),
    (["--autoscale", "--attainment", "1.5"], "--attainment"),
])
def test_autoscale_bad_input(run_dir, tmp_path, args, needle):
    trace = _trace(tmp_path / "short.csv", 100, burst=(0, 0))
    res = CliRunner().invoke(main, ["plan", str(run_dir), "--trace", str(trace), *args])
    assert res.exit_code == 2 and needle in res.stderr and "Traceback" not in res.stderr


def test_autoscale_needs_a_trace(run_dir):
    res = CliRunner().invoke(main, ["plan", str(run_dir), "--rps", "3", "--autoscale"])
    assert res.exit_code == 2 and "--trace" in res.stderr
