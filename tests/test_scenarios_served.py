"""Load shapes on a served backend (real HTTP client, scripted loopback server that logs the load):
closed loops hold N requests in flight, open loops send on their schedule, failures and Ctrl-C
end cleanly, and the runner fails one cell at a time."""
from __future__ import annotations

import io
import os
import signal
import threading
import time
import types

import numpy as np
import pytest
from rich.console import Console

from load_server import LoadServer, ServedStub
from llmbench.config import RunConfig
from llmbench.errors import BadInput
from llmbench.results import RunDir
from llmbench.runner import Prepared, Runner
from llmbench.scenarios.base import _WALL_OFFSET, CellContext
from llmbench.scenarios.concurrency import ConcurrencyScenario
from llmbench.scenarios.plan import check_unserved, drop_unserved
from llmbench.scenarios.registry import make_scenario
from llmbench.scenarios.sampling import MIN_UNITS, Sampling
from llmbench.scenarios.single_stream import SingleStreamScenario
from llmbench.workload import Prompt

FIXED = Sampling(iterations=1, precision_pct=None)


@pytest.fixture
def server():
    with LoadServer(gap_s=0.003) as srv:
        yield srv


def prompts(n: int, out=lambda i: 3 + i % 4) -> list[Prompt]:
    return [Prompt(ids=[1, 2, 3], output_tokens=out(i), text=f"prompt {i}") for i in range(n)]


def ctx_for(sc, point) -> CellContext:
    ids = iter(range(1_000_000))
    return CellContext("r", "m", "http", sc.kind, point, 1.0, next_id=lambda: next(ids))


def concurrency(clients=(), rates=(), arrivals="poisson", max_batch=4, seed=0):
    cfg = types.SimpleNamespace(clients=list(clients), rates=list(rates), max_batch=max_batch, arrivals=arrivals)
    return ConcurrencyScenario(cfg, seed=seed)


def load_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("llmbench-load")]


@pytest.mark.parametrize("n", [1, 4])
def test_closed_loop_holds_exactly_n_requests_in_flight(server, n):
    sc = SingleStreamScenario(None) if n == 1 else concurrency(clients=[n])
    point = sc.points()[0]
    assert sc.warmup(ServedStub(server), prompts(12), point, 2) == 2 * n
    recs = list(sc.measure(ServedStub(server), prompts(12), ctx_for(sc, point), Sampling(iterations=2, precision_pct=None)))
    assert len(recs) == 24 and all(r.ok and r.usage_source == "server" for r in recs)
    warm = 2 * n
    assert len(server.arrivals) == warm + 24
    measured = server.arrivals[warm:]
    # Never more than n at the server, and n reached.
    assert max(a.in_flight for a in measured) == n
    # The k-th measured request can arrive only after the (k-n)-th finished (at most n in flight),
    # and arrives right after it (each client resends the moment its previous response ends).
    finishes = sorted(server.finishes[warm:])
    delays = [a.at - f for a, f in zip(measured[n:], finishes)]
    assert min(delays) >= 0
    assert np.median(delays) < 0.005
    assert not load_threads()


def test_open_loop_constant_sends_on_its_schedule_whatever_is_in_flight(server):
    rate = 100.0
    sc = concurrency(rates=[rate], arrivals="constant")
    point = sc.points()[0]
    long = prompts(30, out=lambda i: 12)  # 12 x 3 ms: about 4 requests in flight at 100/s
    recs = list(sc.measure(ServedStub(server), long, ctx_for(sc, point), FIXED))
    assert len(recs) == 30
    sends = np.sort([r.timestamp for r in recs])
    assert np.diff(sends) == pytest.approx(np.full(29, 1 / rate), abs=1e-6)  # the schedule
    # What the server saw: its own thread's wake-ups jitter by milliseconds on a loaded 2-core CI
    # machine, so only the centre and the span are held, not each gap. Waiting on completions
    # (12 x 3 ms each) would stretch the span past 1 s; the schedule makes it 0.29 s.
    arrived = np.array([a.at for a in server.arrivals])
    assert np.median(np.diff(arrived)) == pytest.approx(1 / rate, abs=0.002)
    assert arrived[-1] - arrived[0] < 0.6
    # Sent regardless of completions: several in flight at once.
    assert max(a.in_flight for a in server.arrivals) >= 3
    assert all(r.queue_ms == 0.0 for r in recs)
    # Latency counts from the scheduled arrival, and lateness is reported per cell.
    lags = [a.at - (r.timestamp - _WALL_OFFSET) for a, r in zip(server.arrivals, sorted(recs, key=lambda r: r.timestamp))]
    assert min(lags) > 0
    facts = sc.last_facts
    assert facts["rate_rps"] == rate and facts["late_sends"] >= 0 and facts["max_send_lag_ms"] < 1e3 * max(lags) + 1


def test_open_loop_poisson_follows_the_seeded_schedule(server):
    rate, seed, n = 250.0, 7, 120
    sc = concurrency(rates=[rate], seed=seed)
    point = sc.points()[0]
    recs = list(sc.measure(ServedStub(server), prompts(n, out=lambda i: 2), ctx_for(sc, point), FIXED))
    sends = np.sort([r.timestamp for r in recs])
    expected = np.random.default_rng(seed).exponential(1 / rate, size=n)
    assert np.diff(sends) == pytest.approx(expected[1:], abs=1e-6)
    # The server saw the same process: mean gap within the 99.9% interval of an exponential mean.
    gaps = np.diff([a.at for a in server.arrivals])
    half = 3.29 / np.sqrt(len(gaps))
    assert (1 - half) / rate < gaps.mean() < (1 + half) / rate


def test_an_exception_in_the_loop_fails_the_cell_in_the_callers_thread(server):
    sc = concurrency(clients=[3])
    point = sc.points()[0]
    got = []
    with pytest.raises(RuntimeError, match="backend broke on request 5"):
        for rec in sc.measure(ServedStub(server, fail_after=5), prompts(12), ctx_for(sc, point), FIXED):
            got.append(rec)
    assert 1 <= len(got) <= 4  # what completed first was handed over
    assert not load_threads()


def test_ctrl_c_cancels_requests_in_flight_and_leaves_no_thread(server):
    server.gap_s = 0.05  # 200 tokens: 10 s per request, far longer than the test
    sc = concurrency(clients=[3])
    point = sc.points()[0]
    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    t = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        list(sc.measure(ServedStub(server), prompts(6, out=lambda i: 200), ctx_for(sc, point), FIXED))
    assert time.perf_counter() - t < 5
    assert not load_threads()
    deadline = time.perf_counter() + 3
    while server.in_flight and time.perf_counter() < deadline:
        time.sleep(0.02)
    assert server.in_flight == 0 and len(server.arrivals) == 3  # the server saw the streams closed


def test_closing_the_generator_midway_stops_the_loop(server):
    sc = concurrency(clients=[2])
    point = sc.points()[0]
    gen = sc.measure(ServedStub(server), prompts(8, out=lambda i: 3 if i == 0 else 300), ctx_for(sc, point), FIXED)
    first = next(gen)
    assert first.ok and load_threads()
    gen.close()
    assert not load_threads()


def test_precision_driven_sampling_stops_as_in_process(server):
    # Steady 3 ms tokens: the p50 TPOT is known to +-50% as soon as MIN_UNITS requests are in,
    # so the cell stops there (plus what the other client sent while the check ran), not at a cap.
    sc = concurrency(clients=[2])
    point = sc.points()[0]
    recs = list(sc.measure(ServedStub(server), prompts(4, out=lambda i: 4), ctx_for(sc, point),
                           Sampling(iterations=1, precision_pct=50.0, time_cap_s=30.0)))
    s = sc.last_sampler
    assert MIN_UNITS <= len(recs) <= MIN_UNITS + 2
    assert s.reached is not None and s.reached <= 50.0 and not s.hit_cap


def test_an_unreachable_precision_stops_at_the_time_cap(server):
    sc = concurrency(clients=[2])
    point = sc.points()[0]
    t = time.perf_counter()
    list(sc.measure(ServedStub(server), prompts(4, out=lambda i: 4), ctx_for(sc, point),
                    Sampling(iterations=1, precision_pct=1e-9, time_cap_s=0.6)))
    s = sc.last_sampler
    assert s.hit_cap and 0.6 <= time.perf_counter() - t < 2.0
    assert s.outcome()["measured_s"] >= 0.6


# ---- through the runner -------------------------------------------------------------------------
class CellBreaker(ServedStub):
    """begin_cell fails at clients=1; send() raises on the 3rd request of clients=2; clients=3 is fine."""

    engine_info = {"name": "scripted", "version": "1.0"}

    def __init__(self, server):
        super().__init__(server)
        self.label, self.in_cell, self.parallel = None, 0, None

    def cell_facts(self) -> dict:
        return {"peak_rss_mb": 123.0, "server_parallel": self.parallel}

    def begin_cell(self, point, prompts, run_dir):
        super().begin_cell(point, prompts, run_dir)
        self.parallel = point.parallel
        if point.label == "clients=1":
            raise RuntimeError("server failed to start\nlog line 1\nlog line 2")
        self.label, self.in_cell = point.label, 0

    async def send(self, client, prompt):
        self.in_cell += 1
        if self.label == "clients=2" and self.in_cell == 3:
            raise RuntimeError("connection pool exploded")
        return await super().send(client, prompt)


def run_served(tmp_path, backend_cls, scenarios, monkeypatch, requests=6, console=None):
    from llmbench.backends import registry

    monkeypatch.setitem(registry._BACKENDS, "stub", lambda: backend_cls)
    cfg = RunConfig(candidates=[{"model": "stubbed", "name": "srv", "variants": ["stub-a"]}],
                    workload={"prompt_tokens": 8, "output_tokens": 3, "requests": requests},
                    scenarios=scenarios, warmup=1, precision_pct=None, quality=None)
    prep = Prepared(cfg, [types.SimpleNamespace(random_weights=False)], types.SimpleNamespace(usd_per_second=0.0), "cpu")
    meta = {"run_id": "t", "completed_cells": [], "roofline_bandwidth": None}
    runner = Runner(prep, RunDir(tmp_path), meta, console or Console(file=io.StringIO()), progress_enabled=False)
    runner.measure()
    return runner, meta


def stub_class(server, base=ServedStub):
    holder = {}

    class Stub(base):
        def __init__(self, source, variant, device, dtype, trust_remote_code=False):
            base.__init__(self, server)
            holder["last"] = self

        @classmethod
        def check_variant(cls, variant, device):
            pass

    return Stub, holder


def test_runner_fails_a_broken_cell_alone_and_keeps_what_it_measured(server, tmp_path, monkeypatch):
    cls, holder = stub_class(server, CellBreaker)
    runner, meta = run_served(tmp_path, cls, [{"kind": "concurrency", "clients": [1, 2, 3]}], monkeypatch)
    assert meta["completed_cells"] == [["srv", "stub-a", "concurrency", "clients=3"]]
    recs = RunDir(tmp_path).records()
    by_point = {p: [r for r in recs if r.point == p] for p in ("clients=1", "clients=2", "clients=3")}
    [begin_err] = by_point["clients=1"]
    assert begin_err.status == "error" and begin_err.error == "RuntimeError: server failed to start | log line 1 | log line 2"
    broken = by_point["clients=2"]
    assert broken[-1].status == "error" and "connection pool exploded" in broken[-1].error
    assert all(r.ok for r in broken[:-1])  # measured before the failure, kept
    assert len(by_point["clients=3"]) == 6 and all(r.ok for r in by_point["clients=3"])
    assert len(runner.failed_cells) == 2
    # The backend's own facts override the trackers' for every cell, failed ones too.
    facts = {k.split("|")[-1]: v for k, v in meta["cells"].items()}
    assert {p: (f["peak_rss_mb"], f["server_parallel"]) for p, f in facts.items()} == {
        "clients=1": (123.0, 1), "clients=2": (123.0, 2), "clients=3": (123.0, 3)}
    assert meta["engines"] == {"scripted": {"name": "scripted", "version": "1.0"}}
    # Every begun cell was ended, failed ones included.
    cells = holder["last"].cells
    assert cells == [("begin", "clients=1"), ("end", ""), ("begin", "clients=2"), ("end", ""), ("begin", "clients=3"), ("end", "")]
    assert not load_threads()


def test_batch_cells_are_skipped_on_served_variants_with_one_line():
    served = {"torch-fp32": False, "http": True}
    scenarios = [make_scenario(s) for s in RunConfig(candidates=[{"model": "x"}], scenarios=["single-stream", "batch"]).scenarios]
    plan = [(0, v, si, p) for v in served for si, sc in enumerate(scenarios) for p in sc.points()]
    said = []
    kept = drop_unserved(plan, scenarios, served, said.append)
    assert [(v, p.label) for _, v, _, p in kept] == [("torch-fp32", "single"), ("torch-fp32", "batch=1"), ("torch-fp32", "batch=2"),
                                                     ("torch-fp32", "batch=4"), ("torch-fp32", "batch=8"), ("http", "single")]
    assert len(said) == 1 and "batch" in said[0] and "http" in said[0]


def test_batch_when_every_variant_is_served_is_bad_input():
    cfg = RunConfig(candidates=[{"model": "x"}], scenarios=["single-stream", "batch"])
    with pytest.raises(BadInput, match=r"scenarios\[1\]: batch .* every variant of this run is served"):
        check_unserved(cfg, {"http": True, "gguf-q4_0": True})
    check_unserved(cfg, {"http": True, "torch-fp32": False})  # mixed: those cells are skipped instead
