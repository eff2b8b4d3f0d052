"""Scenario timing on a real tiny model: closed-loop resends, one arrival process, sampling, warm-up."""
from __future__ import annotations

import types

import numpy as np
import pytest

from llmbench.backends.torch_backend import TorchBackend
from llmbench.errors import BadInput
from llmbench.models.source import resolve
from llmbench.records import RequestRecord
from llmbench.scenarios.base import CellContext, run_batch
from llmbench.scenarios.concurrency import ConcurrencyScenario
from llmbench.scenarios.sampling import MIN_UNITS, Sampler, Sampling
from llmbench.scenarios.single_stream import SingleStreamScenario
from llmbench.workload import Prompt


@pytest.fixture(scope="module")
def backend(tiny_llama):
    b = TorchBackend(resolve(str(tiny_llama)), "torch-fp32", "cpu", "float32")
    b.load()
    b.generate([[5, 6, 7]], 4)  # first-call costs out of the way
    return b


def ctx_for(scenario, point):
    ids = iter(range(10_000))
    return CellContext("r", "tiny", "torch-fp32", scenario.kind, point, 1.0, next_id=lambda: next(ids))


def prompts_with(outputs):
    return [Prompt(ids=list(range(10, 20)), output_tokens=n) for n in outputs]


FIXED = Sampling(iterations=1, precision_pct=None)


def test_closed_loop_client_resends_at_its_own_response_end(backend):
    # clients=2, max_batch=2, outputs 2 and 21 tokens: the 2-token client's next request is sent
    # when its own response ends and waits in the queue until the 21-token row finishes.
    sc = ConcurrencyScenario(types.SimpleNamespace(clients=[2], rates=[], max_batch=2))
    point = sc.points()[0]
    recs = list(sc.measure(backend, prompts_with([2, 21, 2, 21]), ctx_for(sc, point), FIXED))
    assert len(recs) == 4
    first_short, first_long = recs[0], recs[1]
    followups = {r.request_id: r for r in recs[2:]}
    short_end = first_short.timestamp + first_short.e2el_ms / 1e3
    long_end = first_long.timestamp + first_long.e2el_ms / 1e3
    sends = sorted(r.timestamp for r in followups.values())
    assert sends[0] == pytest.approx(short_end, abs=1e-6)
    assert sends[1] == pytest.approx(long_end, abs=1e-6)
    # The early resend queued at least for the rest of the long row (about 19 decode steps): the
    # next batch can start only after the long row's last token.
    early = min(followups.values(), key=lambda r: r.timestamp)
    assert early.queue_ms >= (long_end - short_end) * 1e3 - 1e-6
    assert early.queue_ms > 5 * first_long.tpot_ms


def test_open_loop_is_one_arrival_process_across_passes(backend):
    # 4 passes of 8 prompts at one rate: the 32 sends follow one stream of exponential gaps drawn
    # from the seeded generator, with no restart (and no fresh empty queue) between passes.
    rate, seed = 400.0, 3
    sc = ConcurrencyScenario(types.SimpleNamespace(clients=[], rates=[rate], max_batch=4), seed=seed)
    point = sc.points()[0]
    recs = list(sc.measure(backend, prompts_with([2] * 8), ctx_for(sc, point), Sampling(iterations=4, precision_pct=None)))
    assert len(recs) == 32
    sends = np.sort([r.timestamp for r in recs])
    gaps = np.random.default_rng(seed).exponential(1 / rate, size=32)
    assert np.diff(sends) == pytest.approx(gaps[1:], abs=2e-5)


def test_zero_output_tokens_are_bad_input(backend):
    sc = SingleStreamScenario(None)
    with pytest.raises(BadInput, match="0 output tokens"):
        run_batch(backend, prompts_with([0]), [0.0], ctx_for(sc, sc.points()[0]))


def test_warmup_counts_batches_at_the_largest_batch_a_point_runs(backend):
    calls = []

    class Counting:  # the real backend, with its batch sizes written down
        def generate(self, prompts, n, timed=True):
            calls.append(len(prompts))
            return backend.generate(prompts, n, timed)

    sc = ConcurrencyScenario(types.SimpleNamespace(clients=[3], rates=[5.0], max_batch=4))
    clients, rate = sc.points()
    assert sc.warmup(Counting(), prompts_with([4] * 3), clients, 2) == 6 and calls == [3, 3]
    calls.clear()
    assert sc.warmup(Counting(), prompts_with([4] * 3), rate, 2) == 8 and calls == [4, 4]


def rec(i, tpot_ms, batch_id=None):
    return RequestRecord(timestamp=0.0, run_id="r", model="m", variant="v", scenario="s", point="p", request_id=i,
                         prompt_tokens=4, output_tokens=11, ttft_ms=1.0, e2el_ms=1.0 + 10 * tpot_ms, batch_id=batch_id)


def test_sampler_stops_once_the_median_is_known_to_the_target():
    s = Sampler(Sampling(iterations=1, precision_pct=2.0, time_cap_s=60.0), pass_size=2)
    sent = 0
    while s.more(sent):
        s.add([rec(sent, 10.0 + 0.01 * (sent % 3))])
        sent += 1
    # Never below MIN_UNITS units; stopped as soon as the interval was within ±2%, not by the cap.
    assert sent == MIN_UNITS and not s.hit_cap and s.reached is not None and s.reached <= 2.0


def test_sampler_flags_a_cell_that_hits_its_cap():
    rng = np.random.default_rng(0)
    s = Sampler(Sampling(iterations=1, precision_pct=0.01, time_cap_s=0.2), pass_size=2)
    sent = 0
    while s.more(sent):
        s.add([rec(sent, float(rng.uniform(5, 50)))])
        sent += 1
    assert s.hit_cap and s.reached > 0.01 and s.elapsed_s() >= 0.2
    assert s.outcome()["hit_cap"] is True and s.outcome()["time_cap_s"] == 0.2


def test_sampler_counts_batches_not_rows():
    # Rows of one batch are one unit: five batches of four rows are not yet MIN_UNITS units.
    s = Sampler(Sampling(iterations=1, precision_pct=50.0, time_cap_s=60.0), pass_size=1)
    for b in range(MIN_UNITS - 1):
        s.add([rec(4 * b + j, 10.0, batch_id=4 * b) for j in range(4)])
    assert s.precision_pct() is None and s.more(20)
    s.add([rec(100 + j, 10.0, batch_id=100) for j in range(4)])
    assert s.precision_pct() == 0.0 and not s.more(24)
