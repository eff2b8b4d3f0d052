"""The replica search (planner/search.py) on hand-built simulations and a service model whose every
batch takes a known time: SLO checks, the count search, one replica's limits, the floors and the
no-SLO headroom rule, each figure recomputed by hand. These run first in the mutation script's
selection for search.py (tests/benchmarks/bench_mutation.py); test_planner_capacity*.py walk it
through whole plans."""
from __future__ import annotations

import types

import numpy as np
import pytest

from llmbench.planner.queue import Requests, SimResult
from llmbench.planner.search import (NO_SLO_UTILIZATION, Search, _headroom, check_slos, floors, max_sustainable_rps,
                                     plan_at_batch, saturation_rps)
from llmbench.planner.service import ServiceModel
from llmbench.slo import SLO

NAN = float("nan")


def _sim(e2el, ttft=None, tpot=None, busy=(1.0,), window=10.0, replicas=1) -> SimResult:
    n = len(e2el)
    z = np.zeros(n)
    return SimResult(np.asarray(ttft if ttft is not None else z, float), np.asarray(e2el, float),
                     np.asarray(tpot if tpot is not None else z, float), z, z, z, np.asarray(busy, float), window, replicas)


def _service(**kw) -> ServiceModel:
    """Prefill 10 ms, 5 ms a decode step at any batch size: a batch whose longest output is m tokens takes 10 + 5 (m - 1) ms."""
    return ServiceModel(**{"prefill_fixed_ms": 10.0, "prefill_ms_per_token": 0.0, "step_batches": (1,), "step_base_ms": (5.0,), **kw})


def test_check_slos_items_share_and_binding():
    sim = _sim([100, 200, 300, 400], ttft=[10, 20, 30, 40], tpot=[1, NAN, 3, 5])
    slos = [SLO("e2el", 50, 250.0), SLO("tpot", 50, 3.0)]
    c = check_slos(sim, slos)
    # p50 E2EL 250 and p50 TPOT 3 (of 1, 3, 5; the undefined one left out): both met exactly at their limits.
    assert c["slos"] == [
        {"slo": "e2el_p50<=250ms", "metric": "e2el_ms", "percentile": 50, "predicted_ms": 250.0, "limit_ms": 250.0, "ok": True, "ratio": 1.0},
        {"slo": "tpot_p50<=3ms", "metric": "tpot_ms", "percentile": 50, "predicted_ms": 3.0, "limit_ms": 3.0, "ok": True, "ratio": 1.0}]
    # Requests meeting both: 100 and 200 ms (the undefined TPOT fails nothing); 300 and 400 ms miss E2EL.
    assert c["goodput_share"] == 0.5 and c["ok"] is True and c["binding"] is None
    assert check_slos(sim, slos, goodput=0.5)["ok"] is True
    short = check_slos(sim, slos, goodput=0.6)
    assert short["ok"] is False and short["binding"] == "goodput>=0.6"
    # Two misses: the one missed by the larger ratio binds, wherever it is listed (p99 TTFT 39.7 / 30; p95 E2EL 385 / 300).
    missed = check_slos(sim, [SLO("e2el", 95, 300.0), SLO("ttft", 99, 30.0)], goodput=0.1)
    assert missed["ok"] is False and missed["binding"] == "ttft_p99<=30ms"
    assert [round(i["ratio"], 4) for i in missed["slos"]] == [round(385 / 300, 4), round(39.7 / 30, 4)]
    assert missed["goodput_share"] == 0.75  # all but the 400 ms request (40 ms TTFT), at or under both limits
    assert check_slos(sim, [SLO("itl", 50, 2.0)])["slos"][0]["metric"] == "tpot_ms"
    empty = check_slos(_sim([]), [SLO("e2el", 50, 1.0)])
    assert empty["goodput_share"] == 1.0 and empty["ok"] is True


def test_fewest_doubles_then_bisects():
    search = Search(None, None, 1, "jsq", [], None, None)
    calls: list[int] = []

    def at_least(n):
        def ok(r):
            calls.append(r)
            return r >= n
        return ok

    assert search.fewest(1, 100, at_least(5)) == 5 and calls == [1, 2, 4, 8, 6, 5]
    calls.clear()
    assert search.fewest(1, 3, at_least(5)) is None and calls == [1, 2, 3]
    calls.clear()
    assert search.fewest(3, 10, at_least(1)) == 3 and calls == [3]
    calls.clear()
    assert search.fewest(1, 6, at_least(6)) == 6 and calls == [1, 2, 4, 6, 5]
    calls.clear()
    assert search.fewest(2, 9, at_least(3)) == 3 and calls == [2, 4, 3]
    calls.clear()
    assert search.fewest(3, 10, at_least(5)) == 5 and calls == [3, 6, 5, 4]  # bisects (3, 6]: 3 failed already


def test_a_poisson_load_needs_more_replicas_than_offered_over_capacity():
    slos = [SLO("e2el", 50, 1000.0)]
    search = Search(None, None, 1, "jsq", slos, None, min_stable=2.0)
    at2 = search._judge(_sim([100.0]), 2)
    assert at2["ok"] is False and at2["binding"] == "queue stability (offered load >= capacity)"
    assert search._judge(_sim([100.0]), 3)["ok"] is True
    # An SLO that binds already is kept as the reason.
    assert search._judge(_sim([2000.0]), 2)["binding"] == "e2el_p50<=1000ms"
    assert Search(None, None, 1, "jsq", slos, None, None)._judge(_sim([100.0]), 1)["ok"] is True


def _even(n=200, gap_s=0.01, prompt=4, out=3) -> Requests:
    return Requests(np.arange(n) * gap_s, np.full(n, prompt), np.full(n, out))


def test_each_count_is_simulated_once_and_rejudged_without_simulating():
    search = Search(_even(20), _service(), 1, "jsq", [SLO("e2el", 50, 25.0)], None, None)
    sim, check = search.at(1)
    assert search.at(1)[0] is sim and list(search.runs) == [1]
    # One replica, a request every 10 ms taking 20 ms: the queue grows, p50 E2EL far above 25 ms.
    assert check["ok"] is False and sim.replicas == 1
    strict = search.rechecked([SLO("e2el", 50, 1.0)], 0.5)
    assert strict.runs[1][0] is sim and strict.runs[1][1]["binding"] == "e2el_p50<=1ms" and strict.goodput == 0.5
    assert (strict.max_batch, strict.policy, strict.min_stable) == (1, "jsq", None)
    loose = search.rechecked([], None)
    assert loose.runs[1][1]["ok"] is True


def test_saturation_is_full_batches_of_known_duration():
    p, o = np.array([4.0, 4.0]), np.array([3, 3])
    # A full batch of 2 takes 10 + 2 x 5 = 20 ms: 2 / 0.02 = 100 requests/s; measured batches twice as long: 50.
    assert saturation_rps(_service(), p, o, 2) == pytest.approx(100.0)
    assert saturation_rps(_service(duration_ratios=(1.5, 2.5)), p, o, 2) == pytest.approx(50.0)


def test_sustainable_rate_ends_of_the_range():
    p, o = np.array([4.0]), np.array([3])
    sat = saturation_rps(_service(), p, o, 1)  # 50/s, 20 ms a request
    assert max_sustainable_rps(_service(), p, o, 1, [], sat) is None
    # Every request takes 20 ms, so an SLO of 10 ms is missed at any rate; 10 s is met at 99.9% of saturation.
    assert max_sustainable_rps(_service(), p, o, 1, [SLO("e2el", 50, 10.0)], sat) == 0.0
    assert max_sustainable_rps(_service(), p, o, 1, [SLO("e2el", 50, 10_000.0)], sat) == pytest.approx(sat * 0.999)
    # 30 ms is met when queueing is rare: somewhere strictly inside the range.
    mid = max_sustainable_rps(_service(), p, o, 1, [SLO("e2el", 50, 30.0)], sat)
    assert sat * 1e-3 < mid < sat * 0.999


def test_floors_are_objectives_missed_even_served_alone():
    svc = _service()
    reqs = Requests(np.zeros(2), np.array([4.0, 4.0]), np.array([1, 3]))
    # Alone: TTFT 10 ms; E2EL 10 and 20 ms; TPOT undefined and 5 ms.
    slos = [SLO("ttft", 50, 5.0), SLO("e2el", 99, 25.0), SLO("tpot", 50, 4.0), SLO("itl", 50, 5.0), SLO("e2el", 50, 15.0)]
    assert floors(svc, reqs, slos, 0) == [(slos[0], 10.0), (slos[2], 5.0)]  # p50 E2EL 15 is met, exactly
    # With measured variability each request is scaled (one ratio: all by 2); an idle penalty's ratios replace them.
    scaled = [SLO("ttft", 50, 15.0), SLO("e2el", 50, 25.0), SLO("tpot", 50, 8.0)]  # alone x 2: 20; 20 and 40 (p50 30); 10
    assert floors(_service(duration_ratios=(2.0,)), reqs, scaled, 0) == list(zip(scaled, [20.0, 30.0, 10.0]))
    idle = _service(duration_ratios=(2.0,), idle_penalty=types.SimpleNamespace(ratios=(3.0,)))
    assert floors(idle, reqs, [SLO("ttft", 50, 25.0)], 0) == [(SLO("ttft", 50, 25.0), 30.0)]
    one_token = Requests(np.zeros(1), np.array([4.0]), np.array([1]))
    assert floors(svc, one_token, [SLO("tpot", 50, 0.1)], 0) == []  # no TPOT to miss


def test_no_slo_plans_the_fewest_replicas_at_most_80_percent_busy():
    # A request every 10 ms, each 20 ms alone (batch 1): 200 requests, 4 s of work in a 2.01 s window.
    # 2 replicas are 4 / 4.02 = 99.5% busy, 3 are 66.3%: 3 is the plan.
    svc, reqs = _service(), _even()
    search = Search(reqs, svc, 1, "jsq", [], None, None)
    assert _headroom(search, 100.0, 50.0, 10) == (3, True)
    assert search.runs[3][0].utilization == pytest.approx(4.0 / (3 * 2.01)) and search.runs[2][0].utilization > NO_SLO_UTILIZATION
    assert min(search.runs) == 2  # the search starts at floor(100 / (0.8 x 50)) = 2
    assert _headroom(Search(reqs, svc, 1, "jsq", [], None, None), 100.0, 50.0, 2) == (2, False)
    # A Poisson load: replicas at or below offered / capacity never count as enough, whatever the utilisation.
    assert _headroom(Search(reqs, svc, 1, "jsq", [], None, min_stable=3.0), 100.0, 50.0, 10) == (4, True)
    plan = plan_at_batch(svc, reqs, {"offered_rps": 100.0, "kind": "trace"}, 1, [], None, 10, "jsq", 0)
    assert (plan["replicas"], plan["meets"], plan["binding"]) == (3, True, "utilization<=80% (no SLO given)")
    assert plan["saturation"] == pytest.approx(50.0) and plan["sustainable"] is None and plan["batch"] == 1
    # Doubling from 2 tried 4 before bisecting down to 3; without an SLO every check is "ok".
    assert plan["search"] == {"2": True, "3": True, "4": True} and plan["sim"].replicas == 3
    assert plan["notes"] == ["no SLO given: the fewest replicas whose simulated utilisation (busy share of the window) is at most 80%"]
    capped = plan_at_batch(svc, reqs, {"offered_rps": 100.0, "kind": "trace"}, 1, [], None, 2, "jsq", 0)
    assert (capped["replicas"], capped["meets"]) == (2, False) and capped["notes"][0].endswith("; not reached within 2 replicas")


def test_plans_with_slos_floors_and_caps():
    svc, reqs = _service(), _even()
    load = {"offered_rps": 100.0, "kind": "trace"}
    # E2EL p95 <= 21 ms: met with no queueing at all (20 ms), i.e. 2 replicas (each takes every other request).
    ok = plan_at_batch(svc, reqs, load, 1, [SLO("e2el", 95, 21.0)], None, 10, "jsq", 0)
    assert (ok["replicas"], ok["meets"], ok["binding"], ok["notes"]) == (2, True, "e2el_p95<=21ms", [])
    assert ok["check"]["ok"] is True and ok["sustainable"] is not None
    # Capped at 1: not met, and said.
    capped = plan_at_batch(svc, reqs, load, 1, [SLO("e2el", 95, 21.0)], None, 1, "jsq", 0)
    assert (capped["replicas"], capped["meets"], capped["binding"]) == (1, False, "e2el_p95<=21ms")
    assert capped["notes"] == ["even 1 replica does not meet the SLO (e2el_p95<=21ms); raise --max-replicas or relax the SLO"]
    # TTFT 5 ms is missed even alone (10 ms): the count shown is where more replicas stop helping.
    floor = plan_at_batch(svc, reqs, load, 1, [SLO("ttft", 50, 5.0)], None, 10, "jsq", 0)
    assert (floor["replicas"], floor["meets"], floor["binding"]) == (2, False, "ttft_p50<=5ms")
    assert floor["notes"] == ["no replica count meets ttft_p50<=5ms: even served alone with no queueing, its p50 TTFT would be 10 ms",
                              "2 replicas come within 5% of that; more do not help"]
    # A Poisson load of 100/s on 50/s replicas: 2 would meet the SLO but cannot keep up; 3 is the plan, bound by that.
    pois = plan_at_batch(svc, reqs, {"offered_rps": 100.0, "kind": "poisson"}, 1, [SLO("e2el", 95, 21.0)], None, 10, "jsq", 0)
    assert (pois["replicas"], pois["meets"], pois["binding"]) == (3, True, "queue stability (offered load >= capacity)")
    assert min(map(int, pois["search"])) == 2  # started at offered / capacity
    # One replica is enough for a request a second: nothing binds.
    one = plan_at_batch(svc, _even(20, gap_s=1.0), {"offered_rps": 1.0, "kind": "trace"}, 1, [SLO("e2el", 95, 21.0)], None, 10,
                        "jsq", 0)
    assert (one["replicas"], one["meets"], one["binding"]) == (1, True, None)
    # A request a second: one replica serves each alone, so 1 is already within 5% of the floor.
    sparse = plan_at_batch(svc, _even(20, gap_s=1.0), {"offered_rps": 1.0, "kind": "trace"}, 1, [SLO("ttft", 50, 5.0)], None, 10,
                           "jsq", 0)
    assert sparse["replicas"] == 1 and sparse["notes"][-1] == "1 replicas come within 5% of that; more do not help"
    # TPOT 4 ms is missed even decoded alone (5 ms): the replicas shown meet the other objectives.
    dec = plan_at_batch(svc, reqs, load, 1, [SLO("tpot", 50, 4.0), SLO("e2el", 95, 21.0)], None, 10, "jsq", 0)
    assert (dec["replicas"], dec["meets"], dec["binding"]) == (2, False, "tpot_p50<=4ms")
    assert dec["notes"] == ["no replica count meets tpot_p50<=4ms: even decoded alone (batch 1, where a decode step is shortest), "
                            "its p50 TPOT would be 5 ms; more replicas do not shorten a decode step",
                            "2 replicas shown: the fewest that meet e2el_p95<=21ms alone"]
    assert dec["check"]["binding"] == "tpot_p50<=4ms" and len(dec["check"]["slos"]) == 2
    only = plan_at_batch(svc, reqs, load, 1, [SLO("tpot", 50, 4.0)], None, 10, "jsq", 0)
    assert only["replicas"] == 3 and only["notes"][-1] == "3 replicas shown: the fewest that meet the 80% utilisation rule alone"
