"""planner/search.py at the edges the mutation run found untested (tests/benchmarks/bench_mutation.py):
the sustainable rate's bisection grid, the headroom rule at exactly 80%, stability bounds that are
not whole, the fewest-count search on counts past 256 (not shared int objects), a goodput met
exactly, two decode floors, and a floor the simulation's own draws happen to meet. Each figure is
recomputed by hand; the service model is test_planner_search.py's (10 ms prefill, 5 ms a step)."""
from __future__ import annotations

import math
import types

import numpy as np
import pytest

from llmbench.planner.queue import Requests, poisson_requests, simulate
from llmbench.planner.search import Search, _headroom, check_slos, max_sustainable_rps, plan_at_batch, saturation_rps
from llmbench.planner.service import ServiceModel
from llmbench.slo import SLO

from test_planner_search import _service, _sim


def test_sustainable_rate_is_the_last_met_point_of_a_14_step_log_bisection():
    # Outputs of 3 and 9 tokens: 20 and 50 ms alone. The bisection runs on [sat / 1000, 0.999 sat]
    # in 14 halvings of the log range, so the answer is lo0 x (hi0 / lo0) ** (k / 2**14) for a whole
    # k, met with 2000 Poisson requests, and the next grid point up is not (though the half step
    # between them is: a 15th halving would leave the grid).
    svc, p, o = _service(), np.array([4.0, 4.0]), np.array([3, 9])
    sat = 27.5  # any capacity: the range scales with it
    slos = [SLO("e2el", 50, 40.0)]

    def meets(rate: float) -> bool:
        return check_slos(simulate(poisson_requests(rate, 2000, p, o, 0), svc, 1, 1, seed=0), slos)["ok"]

    r = max_sustainable_rps(svc, p, o, 1, slos, sat)
    lo0, hi0 = sat * 1e-3, sat * 0.999
    k = math.log(r / lo0) / math.log(hi0 / lo0) * 2**14
    assert k == pytest.approx(round(k), abs=1e-6) and 0 < round(k) < 2**14
    up = lo0 * (hi0 / lo0) ** ((round(k) + 1) / 2**14)
    assert meets(r) and not meets(up) and meets(math.sqrt(r * up))


def test_headroom_allows_exactly_80_percent_and_starts_at_one_replica():
    # Two requests 45 ms apart, each 10 + 4 x 5 = 30 ms: 60 ms busy in a 75 ms window, 80% exactly.
    reqs = Requests(np.array([0.0, 0.045]), np.array([4.0, 4.0]), np.array([5, 5]))
    search = Search(reqs, _service(), 1, "jsq", [], None, None)
    assert _headroom(search, 1.0, 50.0, 10) == (1, True)  # floor(1 / (0.8 x 50)) = 0: the search starts at 1
    assert search.runs[1][0].utilization == 0.8 and list(search.runs) == [1]


def test_headroom_never_starts_below_the_full_batch_bound():
    # 1 request/s on replicas said to serve 0.125 each: at most 80% busy needs 1 / (0.8 x 0.125) = 10 replicas
    # at least (1 // 0.1 is 9 in floating point), though the simulated load needs fewer.
    search = Search(Requests(np.arange(20) * 1.0, np.full(20, 4.0), np.full(20, 3)), _service(), 1, "jsq", [], None, None)
    assert _headroom(search, 1.0, 0.125, 20) == (10, True) and min(search.runs) == 10


def test_stability_bounds_that_are_not_whole_counts():
    slos = [SLO("e2el", 50, 1000.0)]
    # Offered load 2.5 replicas' worth: 2 replicas fall behind, 3 keep up.
    search = Search(None, None, 1, "jsq", slos, None, min_stable=2.5)
    assert search._judge(_sim([100.0]), 2)["ok"] is False and search._judge(_sim([100.0]), 3)["ok"] is True
    # A light load judged against a bound of 5 replicas: 1 replica is idle enough, yet only 6 are stable.
    reqs = Requests(np.arange(20) * 1.0, np.full(20, 4.0), np.full(20, 3))
    assert _headroom(Search(reqs, _service(), 1, "jsq", [], None, min_stable=5.0), 1.0, 50.0, 10) == (6, True)


def test_fewest_on_counts_past_256():
    # Counts made by arithmetic are distinct int objects past 256: equal values must still end the search.
    search = Search(None, None, 1, "jsq", [], None, None)
    calls: list[int] = []

    def ok(r: int) -> bool:
        calls.append(r)
        if len(calls) > 40:
            raise AssertionError("the search does not end")
        return r >= 300

    assert search.fewest(1, 1000, ok) == 300 and len(calls) == 10 + 8  # 1..512 doubling, then (256, 512] bisected
    calls.clear()
    assert search.fewest(int("300"), int("300"), lambda r: ok(r) and r > 300) is None and calls == [300]


def test_a_goodput_met_exactly_binds_nothing():
    sim = _sim([100, 200, 300, 400])
    for goodput in (0.5, 0.25):  # half (and more than a quarter) of the requests meet E2EL <= 250 ms
        c = check_slos(sim, [SLO("e2el", 50, 250.0)], goodput=goodput)
        assert c["ok"] is True and c["binding"] is None and c["goodput_share"] == 0.5


def test_a_poisson_kind_read_from_text_is_still_poisson():
    # The load's kind compared by value: one parsed from a file is not the interned literal.
    kind = "".join(["pois", "son"])
    plan = plan_at_batch(_service(), Requests(np.arange(200) * 0.01, np.full(200, 4.0), np.full(200, 3)),
                         {"offered_rps": 100.0, "kind": kind}, 1, [SLO("e2el", 95, 21.0)], None, 10, "jsq", 0)
    assert (plan["replicas"], plan["binding"]) == (3, "queue stability (offered load >= capacity)")


def test_two_decode_floors_the_first_listed_binds():
    # Decoded alone a step is 5 ms: TPOT <= 4 (ratio 1.25) and ITL <= 4.5 (1.11) are both missed.
    reqs = Requests(np.arange(200) * 0.01, np.full(200, 4.0), np.full(200, 3))
    plan = plan_at_batch(_service(), reqs, {"offered_rps": 100.0, "kind": "trace"}, 1,
                         [SLO("tpot", 50, 4.0), SLO("itl", 50, 4.5)], None, 10, "jsq", 0)
    assert plan["meets"] is False and plan["binding"] == plan["check"]["binding"] == "tpot_p50<=4ms"


def test_a_floor_is_never_met_even_where_the_simulated_draw_meets_it():
    # One request; an idle penalty of x0.5 or x1.5 on a 10 ms prefill. The floor draws x1.5 (15 ms
    # > 12 ms), the simulation's own uniform pick x0.5 (5 ms): the plan still says the SLO is not met.
    assert np.random.default_rng(2).choice([0.5, 1.5]) == 1.5 and np.random.default_rng(2).random() < 0.5
    penalty = types.SimpleNamespace(ratios=(0.5, 1.5), idle_s=0.0, bin_of=lambda gap: (0.5, 1.5))
    svc: ServiceModel = _service(idle_penalty=penalty)
    reqs = Requests(np.zeros(1), np.array([4.0]), np.array([3]))
    plan = plan_at_batch(svc, reqs, {"offered_rps": 1.0, "kind": "trace"}, 1, [SLO("ttft", 50, 12.0)], None, 4, "jsq", 2)
    assert plan["check"]["ok"] is True and plan["check"]["slos"][0]["predicted_ms"] == pytest.approx(5.0)
    assert (plan["replicas"], plan["meets"], plan["binding"]) == (1, False, "ttft_p50<=12ms")
    assert plan["notes"][0].endswith("its p50 TTFT would be 15 ms")
    # The same for a decode floor: TPOT 5 ms x 1.5 = 7.5 against 6 ms, simulated at 2.5.
    dec = plan_at_batch(svc, reqs, {"offered_rps": 1.0, "kind": "trace"}, 1, [SLO("tpot", 50, 6.0)], None, 4, "jsq", 2)
    assert dec["check"]["ok"] is True and dec["check"]["slos"][0]["predicted_ms"] == pytest.approx(2.5)
    assert (dec["meets"], dec["binding"]) == (False, "tpot_p50<=6ms")


def test_queue_floor_count_is_within_5_percent_of_the_floor():
    # Three requests 19.25 ms apart, each 20 ms: on one replica they wait 0, 0.75 and 1.5 ms, so p50
    # TTFT is 10.75 ms, 7.5% above the 10 ms floor: 2 replicas (no wait) are the count shown.
    reqs = Requests(np.arange(3) * 0.01925, np.full(3, 4.0), np.full(3, 3))
    plan = plan_at_batch(_service(), reqs, {"offered_rps": 52.0, "kind": "trace"}, 1, [SLO("ttft", 50, 5.0)], None, 10, "jsq", 0)
    assert plan["search"]["1"] is False and plan["sim"].replicas == 2
    assert plan["notes"][-1] == "2 replicas come within 5% of that; more do not help"
    # Two requests 19 ms apart: TTFT 10 and 11 ms on one replica, p50 10.5 ms, exactly 5% above: 1 is enough.
    edge = plan_at_batch(_service(), Requests(np.array([0.0, 0.019]), np.full(2, 4.0), np.full(2, 3)),
                         {"offered_rps": 52.0, "kind": "trace"}, 1, [SLO("ttft", 50, 5.0)], None, 10, "jsq", 0)
    assert edge["check"]["slos"][0]["predicted_ms"] == 10.5 and edge["notes"][-1] == "1 replicas come within 5% of that; more do not help"


def test_saturation_draws_every_length_equally_often():
    # Batches of 1 taking 20 ms (3 tokens) or 10 + 200 x 5 = 1010 ms (201 tokens), each half the time:
    # 1 / 0.515 s requests/s, within the sampling error of 256 draws (seed 0: 6% below).
    sat = saturation_rps(_service(), np.array([4.0, 4.0]), np.array([3, 201]), 1)
    assert abs(sat * 0.515 - 1) < 0.1


def test_capped_plans_and_two_queue_floors_say_which():
    reqs = Requests(np.arange(200) * 0.01, np.full(200, 4.0), np.full(200, 3))
    # A Poisson load of 2 replicas' capacity, capped at 2: never stable.
    capped = plan_at_batch(_service(), reqs, {"offered_rps": 100.0, "kind": "poisson"}, 1, [SLO("e2el", 95, 21.0)], None, 2, "jsq", 0)
    assert (capped["replicas"], capped["meets"]) == (2, False)
    assert capped["notes"] == ["even 2 replicas do not meet the SLO (queue stability (offered load >= capacity)); "
                               "raise --max-replicas or relax the SLO"]
    # TTFT 10 ms alone against 5 (ratio 2), E2EL 20 ms against 15 (1.33): both floors said, the first (and worst) binds.
    two = plan_at_batch(_service(), reqs, {"offered_rps": 100.0, "kind": "trace"}, 1, [SLO("ttft", 50, 5.0), SLO("e2el", 50, 15.0)],
                        None, 10, "jsq", 0)
    assert (two["meets"], two["binding"], two["check"]["binding"]) == (False, "ttft_p50<=5ms", "ttft_p50<=5ms")
    assert [n.split(":")[0] for n in two["notes"]] == ["no replica count meets ttft_p50<=5ms", "no replica count meets e2el_p50<=15ms",
                                                       "2 replicas come within 5% of that; more do not help"]


def test_a_light_poisson_load_starts_the_search_at_one_replica():
    # 25 requests/s on a replica that serves 50: half a replica's worth, so the search starts at 1, which meets E2EL.
    reqs = Requests(np.arange(50) * 0.04, np.full(50, 4.0), np.full(50, 3))
    plan = plan_at_batch(_service(), reqs, {"offered_rps": 25.0, "kind": "poisson"}, 1, [SLO("e2el", 95, 21.0)], None, 10, "jsq", 0)
    assert (plan["replicas"], plan["meets"], plan["binding"], plan["search"]) == (1, True, None, {"1": True})
