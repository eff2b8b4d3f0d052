"""The queue simulation against closed-form results (M/M/1, M/D/1, M/M/c bounds) and hand-worked batches."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmbench.planner.queue import Requests, poisson_requests, simulate
from llmbench.planner.service import ServiceModel

MEAN_SERVICE_MS = 100.0  # mu = 10 requests/s

# With prefill = 1 ms per prompt token and one output token, a request's service time is exactly
# its "prompt length" in ms, so any service distribution can be fed through the real code path.
UNIT = ServiceModel(prefill_fixed_ms=0.0, prefill_ms_per_token=1.0, step_batches=(1,), step_base_ms=(1.0,))


def _run(rho: float, service_ms: np.ndarray, seed: int, replicas: int = 1, policy="jsq"):
    n = len(service_ms)
    rate = replicas * rho * 1e3 / MEAN_SERVICE_MS
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    return simulate(Requests(arrivals, service_ms, np.ones(n)), UNIT, replicas, max_batch=1, policy=policy)


@pytest.mark.parametrize("rho", [0.5, 0.75])
def test_mm1_mean_wait_and_sojourn(rho):
    n = 300_000
    sim = _run(rho, np.random.default_rng(7).exponential(MEAN_SERVICE_MS, n), seed=11)
    mu, lam = 1e3 / MEAN_SERVICE_MS, rho * 1e3 / MEAN_SERVICE_MS
    wq, w = rho / (mu - lam) * 1e3, 1 / (mu - lam) * 1e3  # ms
    assert sim.queue_ms.mean() == pytest.approx(wq, rel=0.05)
    assert sim.e2el_ms.mean() == pytest.approx(w, rel=0.04)
    # M/M/1 sojourn is exponential with rate mu - lambda: its p95 is -ln(0.05) / (mu - lambda).
    assert np.percentile(sim.e2el_ms, 95) == pytest.approx(-math.log(0.05) * w, rel=0.05)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_pollaczek_khinchine(rho):
    n = 200_000
    sim = _run(rho, np.full(n, MEAN_SERVICE_MS), seed=5)
    mu = 1e3 / MEAN_SERVICE_MS
    wq = rho / (2 * mu * (1 - rho)) * 1e3
    assert sim.queue_ms.mean() == pytest.approx(wq, rel=0.04)
    assert sim.e2el_ms.mean() == pytest.approx(wq + MEAN_SERVICE_MS, rel=0.03)
    assert sim.utilization == pytest.approx(rho, rel=0.02)


def _erlang_c_wait_ms(c: int, rho: float) -> float:
    a = c * rho  # offered load in Erlangs
    top = a ** c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)
    return p_wait * MEAN_SERVICE_MS / (c * (1 - rho))


@pytest.mark.parametrize("policy", ["jsq", "round-robin"])
def test_dispatch_lies_between_mmc_and_independent_mm1(policy):
    # A central queue (M/M/c) is the best any dispatcher can do; independent random splitting
    # (c separate M/M/1 queues) is worse than both join-shortest-queue and round robin.
    c, rho, n = 4, 0.7, 200_000
    sim = _run(rho, np.random.default_rng(3).exponential(MEAN_SERVICE_MS, n), seed=9, replicas=c, policy=policy)
    split = rho / (1 - rho) * MEAN_SERVICE_MS
    wait = sim.queue_ms.mean()
    assert _erlang_c_wait_ms(c, rho) * 0.95 < wait < split
    assert np.bincount(sim.replica, minlength=c).min() > n / c * 0.9


def test_random_picks_are_independent_mm1_queues():
    # LiteLLM's simple-shuffle picks a replica at random per request: a Poisson stream split at
    # random is c independent M/M/1 queues at rate lambda/c, whose mean wait is rho/(1-rho) x S.
    c, rho, n = 4, 0.7, 400_000
    sim = _run(rho, np.random.default_rng(3).exponential(MEAN_SERVICE_MS, n), seed=9, replicas=c, policy="random")
    assert sim.queue_ms.mean() == pytest.approx(rho / (1 - rho) * MEAN_SERVICE_MS, rel=0.05)
    assert np.bincount(sim.replica, minlength=c).min() > n / c * 0.98
    # least-busy is join-shortest-queue under LiteLLM's name: the same picks exactly.
    service = np.random.default_rng(3).exponential(MEAN_SERVICE_MS, 20_000)
    a = _run(rho, service, seed=9, replicas=c, policy="least-busy")
    b = _run(rho, service, seed=9, replicas=c, policy="jsq")
    assert np.array_equal(a.replica, b.replica) and np.array_equal(a.e2el_ms, b.e2el_ms)


def test_gateway_strategies_map_to_policies():
    from llmbench.planner.queue import GATEWAY_STRATEGY, policy_for_strategy

    assert policy_for_strategy(None) == policy_for_strategy("simple-shuffle") == "random"
    assert policy_for_strategy("least-busy") == "least-busy"
    assert GATEWAY_STRATEGY["random"] == "simple-shuffle" and GATEWAY_STRATEGY["least-busy"] == "least-busy"
    with pytest.raises(ValueError, match="latency-based-routing"):
        policy_for_strategy("latency-based-routing")
    with pytest.raises(ValueError, match="unknown routing policy"):
        simulate(Requests([0.0], [1.0], [1]), UNIT, 2, 1, policy="shortest")


def test_static_batches_by_hand():
    # prefill 10 ms + 1 ms/token, steps 2 ms (b=1) / 3 ms (b=2); prompts of 10 tokens.
    svc = ServiceModel(10.0, 1.0, (1, 2), (2.0, 3.0))
    reqs = Requests([0.0, 0.001, 0.002], [10, 10, 10], [5, 3, 5])
    sim = simulate(reqs, svc, replicas=1, max_batch=2)
    # Request 0 runs alone: prefill 20 ms, then 4 steps of 2 ms -> E2EL 28 ms.
    assert sim.ttft_ms[0] == pytest.approx(20.0) and sim.e2el_ms[0] == pytest.approx(28.0)
    # Requests 1 and 2 queue until 28 ms, then run together: prefill 10 + 2*10 = 30 ms, steps 3 ms;
    # the batch lasts until the longer row's 5th token (30 + 12 ms), the 3-token row ends at 30 + 6 ms.
    assert sim.queue_ms[1] == pytest.approx(27.0) and sim.queue_ms[2] == pytest.approx(26.0)
    assert sim.ttft_ms[1] == pytest.approx(27.0 + 30.0)
    assert sim.e2el_ms[1] == pytest.approx(27.0 + 36.0)
    assert sim.e2el_ms[2] == pytest.approx(26.0 + 42.0)
    assert sim.tpot_ms[2] == pytest.approx(3.0)
    assert list(sim.batch_size) == [1, 2, 2]
    assert sim.busy_s[0] == pytest.approx(0.028 + 0.042)


def test_batch_never_exceeds_max_and_is_fifo():
    svc = ServiceModel(5.0, 0.0, (1, 4), (1.0, 1.0))
    reqs = Requests(np.zeros(10) + np.arange(10) * 1e-6, np.full(10, 8), np.full(10, 4))
    sim = simulate(reqs, svc, replicas=1, max_batch=4)
    assert sim.batch_size.max() == 4
    # First-come first-served: waiting never decreases along arrival order within a replica.
    starts = reqs.arrival_s * 1e3 + sim.queue_ms
    assert np.all(np.diff(starts) >= -1e-9)


def test_kv_growth_in_the_token_times():
    svc = ServiceModel(0.0, 0.0, (1,), (1.0,), step_ms_per_kv_token=0.01)
    first, offsets, duration, _ = svc.serve([100], [3])
    # Steps see kv = 101 and 102: 1 + 1.01 and 1 + 1.02 ms.
    assert offsets[0] == pytest.approx((2.01 + 2.02) / 1e3)
    assert duration == offsets[0]


def test_more_replicas_never_hurt_with_the_same_arrivals():
    svc = ServiceModel(20.0, 0.02, (1, 2, 4), (5.0, 6.0, 8.0))
    reqs = poisson_requests(30.0, 3000, np.array([64, 128, 256, 64]), np.array([16, 32, 32, 64]), seed=2)
    p95 = [np.percentile(simulate(reqs, svc, r, 4).e2el_ms, 95) for r in (1, 2, 3, 4, 6, 8)]
    assert all(b <= a * 1.001 for a, b in zip(p95, p95[1:]))


def test_service_variability_follows_pollaczek_khinchine():
    # Each batch's duration scaled by 0.5 or 1.5 at random: mean service unchanged, E[S^2] = 1.25 s^2,
    # so the mean wait is 1.25x the deterministic one (P-K: lambda E[S^2] / (2 (1 - rho))).
    n, rho = 200_000, 0.7
    svc = ServiceModel(0.0, 1.0, (1,), (1.0,), duration_ratios=(0.5, 1.5))
    rate = rho * 1e3 / MEAN_SERVICE_MS
    reqs = Requests(np.cumsum(np.random.default_rng(2).exponential(1 / rate, n)), np.full(n, MEAN_SERVICE_MS), np.ones(n))
    sim = simulate(reqs, svc, 1, 1, seed=4)
    es2 = 1.25 * (MEAN_SERVICE_MS / 1e3) ** 2
    assert sim.queue_ms.mean() == pytest.approx(rate * es2 / (2 * (1 - rho)) * 1e3, rel=0.05)
    # Seeded: the same draws every time; ratios of 1 change nothing.
    assert np.array_equal(simulate(reqs, svc, 1, 1, seed=4).e2el_ms, sim.e2el_ms)
    plain = ServiceModel(0.0, 1.0, (1,), (1.0,))
    ones = ServiceModel(0.0, 1.0, (1,), (1.0,), duration_ratios=(1.0,))
    assert np.allclose(simulate(reqs, ones, 1, 1).e2el_ms, simulate(reqs, plain, 1, 1).e2el_ms)
