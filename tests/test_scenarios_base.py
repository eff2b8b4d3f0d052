"""What every scenario shares (scenarios/base.py): records from one static batch, warm-up, the load
shape a point has on a server, and the measuring loop. A scripted in-process backend gives exact
token times, so every figure is recomputed by hand; test_scenarios.py runs the same code on a real
tiny model, test_scenarios_served.py on a loopback server. These are also the tests the mutation
script runs against base.py (tests/benchmarks/bench_mutation.py), with the served closed loop."""
from __future__ import annotations

import dataclasses
import hashlib
import time
import types

import pytest

from llmbench.backends.base import Generation
from llmbench.errors import BadInput
from llmbench.scenarios.base import _WALL_OFFSET, CellContext, Point, Scenario, UnitScenario, run_batch, to_records
from llmbench.scenarios.batch import BatchScenario
from llmbench.scenarios.sampling import Sampling
from llmbench.scenarios.served import Load, Warmup
from llmbench.workload import Prompt


class Scripted:
    """A backend whose every step takes 10 ms from t0 (perf_counter seconds), calls written down."""

    def __init__(self, served: bool = False, t0: float = 100.0):
        self.served, self.t0, self.calls = served, t0, []

    def generate(self, prompts, n, timed=True):
        self.calls.append((prompts, n))
        return Generation(start=self.t0, token_times=[self.t0 + 0.01 * (k + 1) for k in range(n)], prompt_tokens=[len(p) for p in prompts])


class Fixed(UnitScenario):
    """The smallest unit scenario: batches of the point's size, prompts taken in turn."""

    kind = "fixed"

    def points(self):
        return [Point("p", batch_size=2, parallel=3)]

    def pass_size(self, prompts, point):
        return len(prompts)

    def unit(self, prompts, point, i):
        b = point.batch_size
        return [prompts[(i * b + j) % len(prompts)] for j in range(b)]


def _ctx(point: Point, first_id: int = 7, usd_per_second: float = 2.0) -> CellContext:
    ids = iter(range(first_id, 10_000))
    return CellContext("run", "org/m", "torch-fp32", "fixed", point, usd_per_second, next_id=lambda: next(ids))


def _prompts(outputs, **kw) -> list[Prompt]:
    return [Prompt(ids=list(range(10 + i)), output_tokens=n, **kw) for i, n in enumerate(outputs)]


def test_records_of_a_static_batch():
    # Times small against their differences, so that no operator but "-" gives these intervals.
    gen = Generation(start=0.2, token_times=[0.3, 0.5, 0.8], prompt_tokens=[4, 2])
    a = Prompt(ids=[1, 2, 3, 4], output_tokens=3, text="hello", template="t", template_version="1", dataset="d", record_text=True)
    b = Prompt(ids=[5, 6], output_tokens=2)
    ra, rb = to_records(gen, [a, b], [0.1, 0.25], _ctx(Point("batch=2", batch_size=2)))
    assert (ra.run_id, ra.model, ra.variant, ra.scenario, ra.point) == ("run", "org/m", "torch-fp32", "fixed", "batch=2")
    assert (ra.request_id, ra.batch_id, rb.request_id, rb.batch_id) == (7, 7, 8, 7)  # the batch is named by its first row
    assert ra.timestamp == pytest.approx(0.1 + _WALL_OFFSET) and rb.timestamp == pytest.approx(0.25 + _WALL_OFFSET)
    # Row a: sent 0.1, tokens at 0.3 / 0.5 / 0.8; the batch started at 0.2, so it queued 100 ms.
    assert (ra.ttft_ms, ra.e2el_ms, ra.queue_ms) == pytest.approx((200.0, 700.0, 100.0))
    assert ra.itl_ms == pytest.approx([200.0, 300.0])
    # Row b ends at its own last (second) token; it arrived after the start: no queue, never negative.
    assert (rb.ttft_ms, rb.e2el_ms, rb.queue_ms) == pytest.approx((50.0, 250.0, 0.0)) and rb.itl_ms == pytest.approx([200.0])
    assert (ra.prompt_tokens, ra.output_tokens, rb.prompt_tokens, rb.output_tokens) == (4, 3, 2, 2)
    # 0.6 s busy at $2/s, shared by two rows.
    assert ra.cost == pytest.approx(0.6) and rb.cost == pytest.approx(0.6) and ra.batch_size == rb.batch_size == 2
    assert (ra.prompt_length, ra.template, ra.template_version, ra.dataset) == (5, "t", "1", "d")
    assert ra.prompt == "hello" and ra.prompt_sha256 == hashlib.sha256(b"hello").hexdigest()
    assert (rb.prompt_length, rb.prompt, rb.prompt_sha256, rb.template) == (0, None, None, None)
    assert ra.usage_source == rb.usage_source == "engine" and ra.status == "ok"


def test_records_carry_wall_clock_send_times():
    # perf_counter has an arbitrary origin; a record says when it was sent by the wall clock, through
    # one offset taken once, so that a run's timestamps keep their order if the wall clock steps (this
    # VM's stepped 28 s within a test session: hence a day's margin against time.time(), not 0.5 s).
    now = time.perf_counter()
    (r,) = to_records(Generation(now, [now + 0.01], [1]), _prompts([1]), [now], _ctx(Point("p")))
    assert r.timestamp == pytest.approx(_WALL_OFFSET + now, abs=1e-6)
    assert r.timestamp == pytest.approx(time.time(), abs=86400.0)


def test_points_are_values_and_scenarios_must_say_what_they_send():
    assert {Point("a", batch_size=2): 1}[Point("a", batch_size=2)] == 1  # hashable: usable as a key
    with pytest.raises(dataclasses.FrozenInstanceError):
        Point("a").batch_size = 3  # type: ignore[misc]
    assert Scenario.__abstractmethods__ == {"points", "pass_size", "stream"}
    assert UnitScenario.__abstractmethods__ == {"points", "pass_size", "unit"}


def test_run_batch_asks_for_the_longest_row_and_refuses_an_empty_one():
    be = Scripted()
    recs = run_batch(be, _prompts([1, 3]), [99.99, 99.99], _ctx(Point("p", batch_size=2)))
    (ids, n), = be.calls
    assert n == 3 and ids == [list(range(10)), list(range(11))]
    assert [r.e2el_ms for r in recs] == pytest.approx([20.0, 40.0])  # 1 and 3 tokens of 10 ms after a 10 ms queue
    for n in (0, -1):
        with pytest.raises(BadInput, match=f"a request asks for {n} output tokens; every request needs at least 1"):
            run_batch(be, _prompts([2, n]), [0.0, 0.0], _ctx(Point("p")))
    assert len(be.calls) == 1  # nothing sent for a refused batch


def test_in_process_warmup_runs_count_batches_of_the_point_size():
    be, sc, point = Scripted(), Fixed(None), Point("p", batch_size=3)
    ps = _prompts([2, 20, 5, 1])
    assert sc.warmup(be, ps, point, 2) == 6
    # Prompts taken in turn across batches, at most 8 output tokens each batch.
    assert [([len(p) for p in ids], n) for ids, n in be.calls] == [([10, 11, 12], 8), ([13, 10, 11], 8)]
    be.calls.clear()
    assert sc.warmup(be, _prompts([2, 5, 3]), point, 1) == 3 and be.calls[0][1] == 5  # shorter than 8: the longest row
    be.calls.clear()
    assert sc.warmup(be, _prompts([2, 2]), Point("p", batch_size=2), 3) == 6  # more batches than prompts: they wrap
    assert [[len(p) for p in ids] for ids, _ in be.calls] == [[10, 11]] * 3
    be.calls.clear()
    assert sc.warmup(be, ps, point, 0) == 0 and be.calls == []
    with pytest.raises(BadInput, match="0 output tokens"):
        sc.warmup(be, _prompts([2, 0, 2]), point, 1)
    assert sc._served_warmup is None


def test_served_warmup_is_kept_for_the_measuring_loop():
    be, sc = Scripted(served=True), Fixed(None)
    ps = _prompts([20, 3, 1])
    assert sc.warmup(be, ps, Point("p", batch_size=2, parallel=4), 3) == 6 and be.calls == []
    w = sc._served_warmup
    assert w.count == 6 and w.clients == 4 and [p.output_tokens for p in w.prompts] == [8, 3, 1]
    assert [p.ids for p in w.prompts] == [p.ids for p in ps] and [p.output_tokens for p in ps] == [20, 3, 1]  # copies
    assert sc.warmup(be, ps, Point("p", batch_size=2, parallel=10), 3) == 6 and sc._served_warmup.clients == 6  # no idle client
    assert sc.warmup(be, ps, Point("p", batch_size=2, parallel=4), 0) == 0
    assert sc._served_warmup == Warmup(sc._served_warmup.prompts, 0, 1)
    # An in-process warm-up after a served one forgets it.
    sc.warmup(Scripted(), ps, Point("p"), 1)
    assert sc._served_warmup is None


def test_a_backend_that_does_not_say_is_in_process():
    calls = []

    class Bare:  # no `served` attribute at all
        def generate(self, prompts, n, timed=True):
            calls.append(n)
            return Generation(start=1.0, token_times=[1.0 + 0.01 * (k + 1) for k in range(n)], prompt_tokens=[1])

    sc = Fixed(None)
    assert sc.warmup(Bare(), _prompts([3]), Point("p"), 1) == 1 and calls == [3] and sc._served_warmup is None
    recs = list(sc.measure(Bare(), _prompts([2]), _ctx(Point("p")), Sampling(iterations=1, precision_pct=None)))
    assert len(recs) == 1 and calls == [3, 2]
    assert CellContext("r", "m", "v", "s", Point("p"), 0.0).next_id() == 0  # one id for all unless told


def test_served_load_of_each_kind_of_point():
    sc = Fixed(types.SimpleNamespace(arrivals="constant"))
    sc.seed = 5
    assert sc.served_load(Point("c", clients=3, parallel=2)) == Load(clients=3, parallel=2)
    assert sc.served_load(Point("r", rate=4.0, parallel=6)) == Load(rate=4.0, arrivals="constant", seed=5, parallel=6)
    assert Fixed(None).served_load(Point("r", rate=4.0)) == Load(rate=4.0, arrivals="poisson", seed=0, parallel=1)
    assert sc.served_load(Point("s")) == Load(clients=1)
    assert sc.warmup_batch(Point("b", batch_size=5)) == 5
    assert sc.resolve(Point("x"), "m", "v") == Point("x")


def test_measure_in_process_sends_whole_units_until_the_pass_is_done():
    be, sc = Scripted(), Fixed(None)
    point = Point("p", batch_size=2)
    recs = list(sc.measure(be, _prompts([2, 3, 4]), _ctx(point, first_id=0), Sampling(iterations=1, precision_pct=None)))
    # A pass is 3 requests: two batches of 2 go out (prompts 0, 1 then 2, 0), each named by its first row.
    assert [r.request_id for r in recs] == [0, 1, 2, 3] and [r.batch_id for r in recs] == [0, 0, 2, 2]
    assert [r.prompt_tokens for r in recs] == [10, 11, 12, 10] and [n for _, n in be.calls] == [3, 4]
    assert sc.last_sampler.min_requests == 3 and sc.last_sampler.stopped and sc.last_facts == {}
    assert len(sc.last_sampler.tpot) == 4
    two = list(sc.measure(Scripted(), _prompts([2, 3, 4]), _ctx(point), Sampling(iterations=2, precision_pct=None)))
    assert len(two) == 6
    rated = Point("r", batch_size=1, rate=2.5)
    list(sc.measure(Scripted(), _prompts([2]), _ctx(rated), Sampling(iterations=1, precision_pct=None)))
    assert sc.last_facts == {"rate_rps": 2.5}


def test_a_static_batch_on_a_server_is_bad_input():
    sc = BatchScenario(types.SimpleNamespace(batch_sizes=[2]))
    (point,) = sc.points()
    with pytest.raises(BadInput, match="^batch batch=2 has no meaning for a served backend$"):
        next(sc.measure(Scripted(served=True), _prompts([2, 2]), _ctx(point), Sampling(iterations=1, precision_pct=None)))
