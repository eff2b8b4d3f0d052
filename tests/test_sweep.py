"""The sweep scenario: sync and max throughputs measured, k rates evenly between, the same after a resume;
served (real HTTP, scripted loopback server) and in-process (tiny real model) alike."""
from __future__ import annotations

import io
import json
import types

import numpy as np
import pytest
from rich.console import Console

from load_server import LoadServer, ServedStub
from llmbench.backends.torch_backend import TorchBackend  # noqa: F401 - imported once, before timing
from llmbench.config import RunConfig
from llmbench.models.source import resolve
from llmbench.results import RunDir
from llmbench.runner import Prepared, Runner
from llmbench.scenarios.sweep import MAX, SYNC, SweepScenario, spaced_rates

K = 3


def by_hand_throughput(records: list[dict]) -> float:
    """Successes over first send to last completion, from the JSON lines."""
    ok = [r for r in records if r["status"] == "ok"]
    start = min(r["timestamp"] for r in ok)
    end = max(r["timestamp"] + r["e2el_ms"] / 1e3 for r in ok)
    return len(ok) / (end - start)


def read(out):
    recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    meta = json.loads((out / "run.json").read_text())
    return recs, meta


def sweep_run(out, variant, source, monkeypatch=None, backend_cls=None, meta=None, requests=8, max_clients=4):
    if backend_cls is not None:
        from llmbench.backends import registry

        monkeypatch.setitem(registry._BACKENDS, "stub", lambda: backend_cls)
    cfg = RunConfig(candidates=[{"model": "m", "name": "c", "variants": [variant]}],
                    workload={"prompt_tokens": 8, "output_tokens": 4, "requests": requests},
                    scenarios=[{"kind": "sweep", "rates": K, "max_clients": max_clients}],
                    warmup=1, precision_pct=None, quality=None)
    prep = Prepared(cfg, [source], types.SimpleNamespace(usd_per_second=0.0), "cpu")
    meta = meta or {"run_id": "t", "completed_cells": [], "roofline_bandwidth": None}
    Runner(prep, RunDir(out), meta, Console(file=io.StringIO()), progress_enabled=False).measure()
    return read(out)


def check_rates(recs, meta, label="c", variant="stub-a", ordered=True):
    """The rates in run.json are the ones recomputed by hand from the sync and max records."""
    cells = meta["cells"]
    lo = by_hand_throughput([r for r in recs if r["point"] == SYNC])
    hi = by_hand_throughput([r for r in recs if r["point"] == MAX])
    # A server runs 4 streams at once: max is above sync. A tiny in-process model on 2 busy
    # cores may not gain from batching; the rates then run from sync down to max.
    assert (hi > lo > 0) if ordered else min(hi, lo) > 0
    rates = [cells[f"{label}|{variant}|sweep|sweep=r{i}"]["rate_rps"] for i in range(1, K + 1)]
    step = (hi - lo) / (K + 1)
    assert rates == pytest.approx([lo + i * step for i in range(1, K + 1)], rel=1e-9)
    assert np.diff([lo, *rates, hi]) == pytest.approx([step] * (K + 1), rel=1e-6)
    return rates


def stub_class(server):
    holder = {}

    class Stub(ServedStub):
        def __init__(self, source, variant, device, dtype, trust_remote_code=False):
            ServedStub.__init__(self, server)
            self.points = []
            holder["last"] = self

        @classmethod
        def check_variant(cls, variant, device):
            pass

        def begin_cell(self, point, prompts, run_dir):
            self.points.append(point)

    return Stub, holder


@pytest.fixture
def server():
    with LoadServer(gap_s=0.003) as srv:
        yield srv


def test_spaced_rates_lie_strictly_between():
    assert spaced_rates(2.0, 10.0, 3) == [4.0, 6.0, 8.0]


def test_served_sweep_sends_at_rates_evenly_between_sync_and_max(server, tmp_path, monkeypatch):
    cls, holder = stub_class(server)
    recs, meta = sweep_run(tmp_path, "stub-a", types.SimpleNamespace(random_weights=False), monkeypatch, cls)
    assert len(meta["completed_cells"]) == 2 + K
    rates = check_rates(recs, meta)
    # begin_cell got each point as measured: clients for sync/max, the rate for the others, and
    # the --parallel bound for every one.
    pts = {p.label: p for p in holder["last"].points}
    assert (pts[SYNC].clients, pts[SYNC].parallel, pts[MAX].clients, pts[MAX].parallel) == (1, 1, 4, 4)
    assert [pts[f"sweep=r{i}"].rate for i in range(1, K + 1)] == rates
    assert all(pts[f"sweep=r{i}"].parallel == 4 for i in range(1, K + 1))
    # Constant arrivals at each rate, as the records' scheduled send times show.
    for i, rate in enumerate(rates, 1):
        sends = np.sort([r["timestamp"] for r in recs if r["point"] == f"sweep=r{i}"])
        assert np.diff(sends) == pytest.approx(np.full(len(sends) - 1, 1 / rate), abs=1e-5)


def test_a_resumed_sweep_sends_at_the_same_rates(server, tmp_path, monkeypatch):
    cls, _ = stub_class(server)
    recs, meta = sweep_run(tmp_path, "stub-a", types.SimpleNamespace(random_weights=False), monkeypatch, cls)
    first = check_rates(recs, meta)
    # Interrupted after sweep=max and sweep=r1: the resume measures r2.. again from the log.
    meta["completed_cells"] = [c for c in meta["completed_cells"] if c[3] in (SYNC, MAX, "sweep=r1")]
    again_recs, again = sweep_run(tmp_path, "stub-a", types.SimpleNamespace(random_weights=False), monkeypatch, cls,
                                  meta=meta)
    assert len(again["completed_cells"]) == 2 + K
    assert check_rates(again_recs, again) == first  # exactly: the same records give the same window
    # The re-measured cells are new measurements (sent after the first run ended); r1 was kept.
    first_end = max(r["timestamp"] for r in recs)
    assert all(r["timestamp"] > first_end for r in again_recs if r["point"] in ("sweep=r2", "sweep=r3"))
    assert [r for r in again_recs if r["point"] == "sweep=r1"] == [r for r in recs if r["point"] == "sweep=r1"]


def test_rate_points_fail_cleanly_when_sync_was_not_measured():
    sc = SweepScenario(RunConfig(candidates=[{"model": "x"}], scenarios=["sweep"]).scenarios[0])
    rate_point = sc.points()[2]
    with pytest.raises(RuntimeError, match="need sweep=sync and sweep=max measured first"):
        sc.resolve(rate_point, "c", "v")
    assert sc.resolve(sc.points()[0], "c", "v") == sc.points()[0]  # sync needs nothing measured before it


def test_in_process_sweep_runs_through_the_static_batching_queue(tmp_path, tiny_llama):
    recs, meta = sweep_run(tmp_path, "torch-fp32", resolve(str(tiny_llama)), requests=4, max_clients=3)
    assert len(meta["completed_cells"]) == 2 + K
    check_rates(recs, meta, variant="torch-fp32", ordered=False)
    assert max(r["batch_size"] for r in recs if r["point"] == MAX) == 3  # the max clients batched together
    assert all(r["batch_size"] == 1 for r in recs if r["point"] == SYNC)
