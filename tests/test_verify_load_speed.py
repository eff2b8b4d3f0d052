"""verify's `at_load_speed`: the machine's speed read off a load's own decode windows.

The timelines here come from the continuous-batching simulator run at a known speed (every step
x1.3, or x1.0), as a llama-server whose steps the model describes exactly would stream them: the
speed measured from them must be that factor, and the plan's model given it must reproduce the load.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llmbench.planner.continuous import ContinuousModel, simulate_continuous
from llmbench.planner.queue import poisson_requests
from llmbench.served.client import StreamResult
from llmbench.verify.load import Outcome
from llmbench.verify.load_speed import load_speed

# a = 5 ms, 1.1 ms a prompt token; steps of 5 / 7 / 9 ms at 1 / 2 / 4 slots, + 0.005 ms a KV token.
MODEL = ContinuousModel(5.0, 1.1, (1, 2, 4), (5.0, 7.0, 9.0), step_ms_per_kv_token=0.005)


def _served(speed: float, rate: float = 3.0, n: int = 300, seed: int = 4, outputs=np.full(64, 32)):
    """A Poisson load served at `speed` x the model's step times: (requests, simulation, outcomes)."""
    reqs = poisson_requests(rate, n, np.random.default_rng(seed).integers(40, 200, 64).astype(float), outputs, seed)
    sim = simulate_continuous(reqs, dataclasses.replace(MODEL, duration_ratios=(speed,)), 1, 4)
    outs = []
    for at, p, o, ttft, e2el in zip(reqs.arrival_s, reqs.prompt_tokens, reqs.output_tokens, sim.ttft_ms, sim.e2el_ms):
        first, last = at + ttft / 1e3, at + e2el / 1e3
        res = StreamResult(sent=at, first_token=first, chunk_times=[first, last], end=last, output_tokens=int(o),
                           server_timings={"predicted_ms": e2el - ttft})
        outs.append(Outcome("llmbench", "http://127.0.0.1:8000", float(at), res, None, int(p)))
    return reqs, sim, outs


@pytest.mark.parametrize("speed", [1.0, 1.3])
def test_the_speed_a_load_ran_at_is_read_off_its_decode_windows(speed):
    _, _, outs = _served(speed)
    ratios, dropped = load_speed(MODEL, outs, parallel=4)
    assert dropped == 0 and len(ratios) == len(outs)  # every request decodes 31 steps
    # The windows rebuild each request's steps from the others' first and last tokens (KV held
    # interpolated linearly), so each ratio is near the speed, and their mean closer still.
    assert np.mean(ratios) == pytest.approx(speed, rel=0.02)
    assert np.percentile(ratios, [5, 95]) == pytest.approx([speed, speed], rel=0.08)


def test_one_token_answers_still_charge_their_prompt_to_the_windows_they_join():
    # A one-token answer decodes nothing, but its prompt takes a step of every window it joins.
    # Left out, these windows read x1.78 slow; in verify's Azure-trace cells, whose answers the cut
    # into a slot had shrunk to one token (113 of 148), x1.5-1.6 (BENCHMARKS.md, 2026-12-02).
    _, _, outs = _served(1.0, rate=4.0, outputs=np.tile([1, 1, 1, 32], 16))
    ratios, dropped = load_speed(MODEL, outs, parallel=4)
    assert dropped == 0 and len(ratios) == sum(o.res.output_tokens > 1 for o in outs)
    assert np.mean(ratios) == pytest.approx(1.0, rel=0.03)


def test_the_model_at_the_loads_speed_reproduces_the_load():
    # The model at its run's speed (x1.0) misses a load served x1.3 slower (at 74% of that server's
    # capacity) by +95% at p95, where the queue builds; given the speed read off the load, it
    # predicts the load's p95 again (-2%: the windows read the speed 1.5% fast).
    reqs, sim, outs = _served(1.3, rate=2.5)
    ratios, _ = load_speed(MODEL, outs, parallel=4)
    plan = simulate_continuous(reqs, MODEL, 1, 4)
    again = simulate_continuous(reqs, dataclasses.replace(MODEL, duration_ratios=ratios), 1, 4)
    measured = np.percentile(sim.e2el_ms, 95)
    assert measured / np.percentile(plan.e2el_ms, 95) - 1 > 0.5
    assert np.percentile(again.e2el_ms, 95) == pytest.approx(measured, rel=0.05)


def test_requests_of_other_servers_are_windows_of_their_own_server_only():
    # Two servers' outcomes side by side: each request's window counts only its own server's slots
    # (one cell per URL); served at x1.3 each, the speed is read as x1.3, not as a doubled load.
    _, _, a = _served(1.3, seed=4)
    _, _, b = _served(1.3, seed=5)
    b = [dataclasses.replace(o, target="http://127.0.0.1:8001") for o in b]
    ratios, _ = load_speed(MODEL, a + b, parallel=4)
    assert len(ratios) == len(a) + len(b) and np.mean(ratios) == pytest.approx(1.3, rel=0.02)


def test_a_failing_analysis_leaves_its_block_saying_why_not_the_document_lost():
    from llmbench.verify.run import _secondary

    block = _secondary(lambda: {"overall": 1 / 0})
    assert block == {"skipped": True, "reason": "the analysis failed: ZeroDivisionError: division by zero"}
    assert _secondary(lambda: {"skipped": False}) == {"skipped": False}
