"""The continuous-batching simulation (served engines) against closed forms and hand-worked steps."""
from __future__ import annotations

import numpy as np
import pytest

from llmbench.planner.continuous import ContinuousModel, _steps_before, saturation_rps, simulate_continuous
from llmbench.planner.queue import Requests, poisson_requests, simulate


def test_one_slot_is_md1():
    # One slot, no prompt cost beyond a, fixed steps: every request takes D = a + (m-1)*d, FIFO,
    # one at a time: an M/D/1 queue, whose mean wait is rho / (2 mu (1 - rho)) (Pollaczek-Khinchine).
    a, d, m = 20.0, 5.0, 17  # D = 100 ms
    model = ContinuousModel(a, 0.0, (1,), (d,))
    rho, n = 0.7, 60_000
    rate = rho * 10.0
    reqs = Requests(np.cumsum(np.random.default_rng(3).exponential(1 / rate, n)), np.full(n, 50.0), np.full(n, m))
    sim = simulate_continuous(reqs, model, 1, 1)
    wq = rho / (2 * 10.0 * (1 - rho)) * 1e3
    assert sim.queue_ms.mean() == pytest.approx(wq, rel=0.05)
    assert sim.e2el_ms.mean() == pytest.approx(wq + 100.0, rel=0.03)
    assert np.allclose(sim.ttft_ms - sim.queue_ms, a)
    assert sim.utilization == pytest.approx(rho, rel=0.02)
    assert np.allclose(sim.tpot_ms, d)


def test_two_slots_by_hand():
    # a = 10 ms (a prompt alone), k = 0.1 ms/token (10-token prompts: 1 ms), a step with 1 slot
    # decoding 2 ms, with 2 slots 3 ms.
    model = ContinuousModel(10.0, 0.1, (1, 2), (2.0, 3.0))
    sim = simulate(Requests([0.0, 0.005], [10, 10], [4, 3]), model, 1, 2)  # queue.simulate hands it over
    # A alone: 10 + 1 -> first token at 11. B (arrived at 5) joins at 11: a step of A's decode with
    # B's prompt beside it, fixed cost included, 2 + 10 + 1 -> 24 (A token 2, B first token: TTFT 19).
    # Then two steps of 3 ms with both decoding: 27 (A 3, B 2), 30 (A 4: done, E2EL 30; B 3: done, E2EL 25).
    assert list(sim.ttft_ms) == pytest.approx([11.0, 19.0])
    assert list(sim.e2el_ms) == pytest.approx([30.0, 25.0])
    assert list(sim.queue_ms) == pytest.approx([0.0, 6.0])
    assert list(sim.batch_size) == [1, 2]
    assert sim.busy_s[0] == pytest.approx(0.030)
    assert sim.tpot_ms[0] == pytest.approx(19.0 / 3) and sim.tpot_ms[1] == pytest.approx(3.0)


def test_full_slots_make_the_next_wait_by_hand():
    model = ContinuousModel(10.0, 0.1, (1, 2), (2.0, 3.0))
    sim = simulate_continuous(Requests([0.0, 0.0, 0.001], [10, 10, 10], [3, 5, 2]), model, 1, 2)
    # A and B share the first step: 10 + 1 + 1 = 12 ms. Two steps of 3 ms: A done at 18. C (arrived
    # at 1 ms) takes A's slot at 18: its prompt beside B's decode, 2 + 10 + 1 -> 31; then 3 ms -> 34
    # (B and C done).
    assert list(sim.ttft_ms) == pytest.approx([12.0, 12.0, 30.0])
    assert list(sim.e2el_ms) == pytest.approx([18.0, 34.0, 33.0])
    assert list(sim.queue_ms) == pytest.approx([0.0, 0.0, 17.0])
    assert list(sim.batch_size) == [1, 2, 2]


def test_long_prompts_are_chunked_and_quadratic():
    # n_batch 8: a 20-token prompt alone takes three steps (8, 8, 4 tokens), each with its fixed cost.
    model = ContinuousModel(10.0, 1.0, (1,), (2.0,), n_batch=8)
    sim = simulate_continuous(Requests([0.0], [20], [1]), model)
    assert sim.ttft_ms[0] == pytest.approx(18 + 18 + 14)
    # q: the chunks' (s+c)^2 - s^2 add up to q*P^2, as one prompt processed whole.
    quad = ContinuousModel(0.0, 0.0, (1,), (2.0,), prefill_ms_per_token2=0.01, n_batch=8)
    assert simulate_continuous(Requests([0.0], [20], [1]), quad).ttft_ms[0] == pytest.approx(4.0)


def test_kv_growth_inside_a_jump():
    # e = 0.01 ms per KV token: the steps after a 100-token prompt see kv 101, 102, 103.
    model = ContinuousModel(5.0, 0.0, (1,), (1.0,), step_ms_per_kv_token=0.01)
    sim = simulate_continuous(Requests([0.0], [100], [4]), model)
    assert sim.e2el_ms[0] == pytest.approx(5.0 + 2.01 + 2.02 + 2.03)
    # An arrival at 6.5 ms splits the jump: B takes the free slot at the next step (7.01 ms), which
    # adds B's prompt (a = 5, k = 0) to A's decode: 5 + 1 + 0.01*102 -> 14.03 (B's first and only
    # token); A's last step, at kv 103, then ends at 16.06.
    two = simulate_continuous(Requests([0.0, 0.0065], [100, 100], [4, 1]), model, 1, 2)
    assert two.e2el_ms[0] == pytest.approx(16.06)
    assert two.ttft_ms[1] == pytest.approx(14.03 - 6.5) and two.queue_ms[1] == pytest.approx(7.01 - 6.5)


@pytest.mark.parametrize("d0,delta", [(1.0, 0.0), (1.0, 0.01), (0.5, 0.3), (2.0, 1e-9)])
def test_steps_before_counts_step_starts(d0, delta):
    for gap in (0.2, 1.0, 1.0001, 3.7, 10.0, 55.5):
        starts = [j * d0 + delta * j * (j - 1) / 2 for j in range(1000)]
        assert _steps_before(gap, d0, delta) == max(1, sum(s < gap for s in starts))


def test_speed_ratios_scale_every_step_and_are_seeded():
    base = ContinuousModel(10.0, 0.1, (1, 2), (2.0, 3.0))
    slow = ContinuousModel(10.0, 0.1, (1, 2), (2.0, 3.0), duration_ratios=(2.0,))
    reqs = Requests([0.0, 0.005], [10, 10], [4, 3])
    a, b = simulate_continuous(reqs, base, 1, 2), simulate_continuous(reqs, slow, 1, 2)
    assert b.e2el_ms[0] == pytest.approx(2 * a.e2el_ms[0])
    mixed = ContinuousModel(10.0, 0.1, (1, 2), (2.0, 3.0), duration_ratios=(0.5, 1.5), epoch_s=0.01)
    load = poisson_requests(20.0, 400, np.array([10.0, 50.0]), np.array([8, 16]), seed=1)
    one, two = simulate_continuous(load, mixed, 2, 2, "random", seed=4), simulate_continuous(load, mixed, 2, 2, "random", seed=4)
    assert np.array_equal(one.e2el_ms, two.e2el_ms)
    assert not np.array_equal(one.e2el_ms, simulate_continuous(load, mixed, 2, 2, "random", seed=5).e2el_ms)


def test_saturation_by_hand_and_more_slots_help():
    model = ContinuousModel(10.0, 0.1, (1, 2, 4), (2.0, 3.0, 4.0))
    p, o = np.array([10.0]), np.array([5])
    # One slot: each request alone, 11 + 4*2 = 19 ms -> 1/0.019 requests/s.
    assert saturation_rps(model, p, o, 1) == pytest.approx(1 / 0.019, rel=1e-6)
    # Four slots of 4 ms steps serve more per second than one slot of 2 ms steps.
    assert saturation_rps(model, p, o, 4) > 1.5 * saturation_rps(model, p, o, 1)


def test_replicas_with_random_picks_are_independent_servers():
    model = ContinuousModel(10.0, 0.1, (1, 2), (2.0, 3.0))
    load = poisson_requests(60.0, 600, np.array([10.0, 40.0, 80.0]), np.array([4, 8, 16]), seed=2)
    sim = simulate_continuous(load, model, 2, 2, "round-robin")
    for r in (0, 1):
        mine = np.flatnonzero(sim.replica == r)
        part = Requests(load.arrival_s[mine], load.prompt_tokens[mine], load.output_tokens[mine])
        alone = simulate_continuous(part, model, 1, 2)
        assert np.allclose(alone.e2el_ms, sim.e2el_ms[mine])
    # Join-shortest-queue never does worse on the mean than round robin here, and every request ends.
    jsq = simulate_continuous(load, model, 2, 2, "least-busy")
    assert (jsq.e2el_ms > 0).all() and jsq.e2el_ms.mean() <= sim.e2el_ms.mean() * 1.02
    with pytest.raises(ValueError, match="unknown routing policy"):
        simulate_continuous(load, model, 2, 2, "nearest")
