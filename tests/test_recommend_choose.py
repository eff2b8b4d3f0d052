"""The choice among options (recommend/choose.py) on hand-built options and plans: what each
constraint rejects, how options are ranked, how far a miss is, and the answer's words. No model,
no planner: these are also the tests the mutation script runs against choose.py."""
from __future__ import annotations

import pytest

from llmbench.recommend.choose import (Constraints, _binding, choose, cost_key, failures, miss_distance,
                                       not_servable_answer)
from llmbench.recommend.option import Option
from llmbench.slo import parse_slo

E2EL = parse_slo("e2el_p95=500ms")


def _o(oid="a", p95=400.0, cost=1.0, **kw) -> Option:
    return Option(id=oid, kind="self-hosted", model=oid, latency={"e2el_ms": {"p95": p95}} if p95 is not None else {},
                  cost_per_1k_usd=cost, **kw)


def test_choose_constraints_describe_themselves():
    c = Constraints(slos=parse_slo("ttft_p99=250ms,e2el_p95=2s"), quality_floor=0.9, budget_usd_month=100.0, rps=2.0)
    assert c.describe() == {"slo": ["ttft_p99<=250ms", "e2el_p95<=2000ms"], "slo_spec": "ttft_p99=250ms,e2el_p95=2000ms",
                            "quality_floor": 0.9, "budget_usd_per_month": 100.0, "rps": 2.0}


def test_choose_failures_name_each_missed_constraint():
    c = Constraints(slos=E2EL)
    assert failures(_o(p95=500.0), None, c) == []  # at the limit meets it
    assert failures(_o(p95=600.0), None, c) == [("e2el_p95<=500ms", "e2el_p95<=500ms: measured 600.0ms")]
    assert failures(_o(p95=None), None, c) == [("e2el_p95<=500ms", "e2el p95 not measured for this option")]
    # Measured latencies pass but the planner predicts a miss under load.
    plan = {"meets_slo": False, "binding": "e2el_p95<=500ms under load", "notes": ["n1", "n2"]}
    assert failures(_o(), plan, c) == [("e2el_p95<=500ms under load", "the planner predicts a miss under load (n1; n2)")]
    assert failures(_o(), {"meets_slo": False}, c) == [("slo under load", "the planner predicts a miss under load (no replica count meets it)")]
    assert failures(_o(), {"meets_slo": False}, Constraints()) == []  # no SLO asked: the planner's miss is no constraint
    assert failures(_o(p95=600.0), {"meets_slo": False}, c) == [("e2el_p95<=500ms", "e2el_p95<=500ms: measured 600.0ms")]
    assert failures(_o(gate="fail", quality=0.8125), None, Constraints()) == [
        ("quality gate", "the variant failed the quality gate (0.812 of its reference)")]
    assert failures(_o(gate="error"), None, Constraints()) == [("quality gate", "the quality gate could not measure this variant (error)")]
    floor = Constraints(quality_floor=0.9)
    assert failures(_o(quality=0.9), None, floor) == []
    assert failures(_o(quality=0.85), None, floor) == [("quality floor", "quality 0.850 < floor 0.9")]
    assert failures(_o(cost=None), None, Constraints()) == [("cost", "cost per request not measured")]


def test_choose_budget_is_checked_on_the_whole_deployment():
    c = Constraints(budget_usd_month=1000.0)
    assert failures(_o(), None, c) == [("budget", "monthly cost not known (no plan)")]
    assert failures(_o(), {"cost_per_month": 1000.0}, c) == []
    assert failures(_o(), {"cost_per_month": 1000.5}, c) == [("budget", "$1,000.50/month for the whole deployment > budget $1,000.00")]
    # The deployment's total (standbys included) is what counts, not the plan's servers alone.
    assert failures(_o(), {"cost_per_month": 900.0}, c, total=1460.0)[0][1].startswith("$1,460.00/month")
    assert failures(_o(), {"cost_per_month": 2000.0}, c, total=900.0) == []


def test_choose_cost_key_orders_cheapest_then_faster_then_better():
    inf = float("inf")
    assert cost_key(_o(quality=0.9), {"cost_per_month": 10.1234567}, None) == (10.123457, 1.0, 400.0, -0.9, "a")
    assert cost_key(_o(cost=None, p95=None), None) == (inf, inf, inf, -1.0, "a")
    assert cost_key(_o(), {"cost_per_month": 50.0}, total=70.0)[0] == 70.0


def test_choose_miss_distance_is_the_relative_excess_summed():
    c = Constraints(slos=E2EL, quality_floor=0.8, budget_usd_month=100.0)
    # 750 ms against 500 (0.5) + quality 0.6 under 0.8 (0.25) + $150 against $100 (0.5).
    assert miss_distance(_o(p95=750.0, quality=0.6), {"cost_per_month": 150.0}, c) == pytest.approx(1.25)
    assert miss_distance(_o(p95=400.0), {"cost_per_month": 80.0}, c) == 0.0
    # Under load, the planner's predicted p95 counts when it is worse than measured.
    plan = {"meets_slo": False, "cost_per_month": 80.0, "predicted": {"e2el_ms": {"p95": 1000.0}}}
    assert miss_distance(_o(p95=400.0), plan, c) == pytest.approx(1.0)
    assert miss_distance(_o(p95=400.0), {**plan, "meets_slo": True}, c) == 0.0
    # Unmeasured figures count as far (10 each); a failed gate 1, an errored one 10.
    assert miss_distance(_o(p95=None, cost=None), None, c) == pytest.approx(30.0)
    assert miss_distance(_o(gate="fail"), None, Constraints()) == 1.0
    assert miss_distance(_o(gate="error"), None, Constraints()) == 10.0
    assert miss_distance(_o(), None, Constraints(), total=None) == 0.0
    assert miss_distance(_o(), {"cost_per_month": 80.0}, c, total=300.0) == pytest.approx(2.0)


def test_choose_binding_constraint_and_closest():
    # Dropping the SLO alone makes b feasible: the SLO binds.
    fails = {"a": [("slo", "x"), ("budget", "y")], "b": [("slo", "z")]}
    assert _binding(fails, {"a": 0.5, "b": 0.7}) == (["slo"], "a")
    # No single constraint frees any option: the closest's misses bind jointly.
    fails = {"a": [("slo", "x"), ("budget", "y")], "b": [("slo", "z"), ("quality floor", "w")]}
    assert _binding(fails, {"a": 0.9, "b": 0.3}) == (["quality floor", "slo"], "b")
    assert _binding(fails, {"a": 0.3, "b": 0.3}) == (["budget", "slo"], "a")  # a tie: the cheapest (first)
    assert _binding({}, {}) == ([], None)


def test_choose_the_cheapest_feasible_servable_option():
    opts = [_o("dear", cost=3.0), _o("cheap", cost=1.0, quality_status="random weights"),
            _o("slow", p95=900.0, cost=0.5), _o("nosrv", cost=0.1, servable=False, not_servable_reason="onnx")]
    plans = {"dear": {"cost_per_month": 300.0, "replicas": 2}, "cheap": {"cost_per_month": 100.0, "replicas": 1},
             "slow": {"cost_per_month": 50.0}, "nosrv": {"cost_per_month": 10.0}}
    r = choose(opts, plans, Constraints(slos=E2EL, rps=2.0), totals={"cheap": 150.0})
    assert r["chosen"] == "cheap" and r["meets_all"] and r["binding"] == [] and r["closest"] is None
    assert r["answer"] == "cheap is the cheapest option meeting every constraint ($150.00/month at 2 req/s)"
    v = {x["id"]: x for x in r["verdicts"]}
    assert [x["id"] for x in r["verdicts"]] == ["nosrv", "slow", "cheap", "dear"]  # by total, else plan cost: 10, 50, 150, 300
    assert v["cheap"]["status"] == "chosen" and v["cheap"]["deployment_cost_per_month_usd"] == 150.0
    assert v["cheap"]["reasons"][1].startswith("quality unverified (random weights)")
    assert v["dear"] == {"id": "dear", "status": "feasible", "reasons": ["meets every constraint but costs more than cheap"],
                         "cost_per_1k_usd": 3.0, "cost_per_month_usd": 300.0, "deployment_cost_per_month_usd": None,
                         "replicas": 2, "quality": 1.0, "p95_ms": 400.0}
    assert v["slow"]["status"] == "rejected" and v["slow"]["reasons"] == ["e2el_p95<=500ms: measured 900.0ms"]
    assert v["nosrv"]["status"] == "not servable" and v["nosrv"]["reasons"] == ["measured only: onnx"]
    # Without a load the answer is the cost per 1k requests; an unreliable choice says so.
    r = choose([_o("x", cost=0.25, unreliable="CV 80%", quality_status="measured")], {}, Constraints())
    assert r["answer"] == "x is the cheapest option meeting every constraint ($0.2500 per 1k requests)"
    assert r["verdicts"][0]["reasons"] == ["cheapest option meeting every constraint", "rests on an unreliable measurement: CV 80%"]


def test_choose_when_nothing_fits_names_the_binding_constraint_and_the_closest():
    opts = [_o("a", p95=750.0, cost=1.0), _o("b", p95=600.0, cost=2.0)]
    r = choose(opts, {}, Constraints(slos=E2EL))
    assert r["chosen"] is None and not r["meets_all"] and r["binding"] == ["e2el_p95<=500ms"] and r["closest"] == "b"
    assert r["answer"] == ("no option meets every constraint; binding: e2el_p95<=500ms. "
                           "Closest: b (e2el_p95<=500ms: measured 600.0ms; misses by 20% in all)")
    assert choose([], {}, Constraints())["answer"] == "no option was measured successfully, so nothing can be recommended"
    ns = [_o(f"o{i}", servable=False, not_servable_reason="onnx" if i < 4 else None) for i in range(5)]
    r = choose(ns, {}, Constraints())
    assert r["chosen"] is None and r["answer"] == not_servable_answer(ns)
    assert not_servable_answer(ns).startswith("nothing measured can be deployed as a self-hosted server "
                                              "(onnx (o0, o1, o2, ...); no engine (o4)): the measurements stay")


def _parsed(text: str) -> str:
    # A string built at run time, as read from summary.json: equal to a literal, never the same object.
    return "".join(list(text))


def test_choose_every_constraint_is_judged_even_after_an_unmeasured_one():
    o = _o(p95=750.0)  # no TTFT measured
    slos = parse_slo("ttft_p95=100ms,e2el_p95=500ms")
    assert [n for n, _ in failures(o, None, Constraints(slos=slos))] == ["ttft_p95<=100ms", "e2el_p95<=500ms"]
    assert miss_distance(o, None, Constraints(slos=slos)) == pytest.approx(10.0 + 0.5)


def test_choose_gates_read_from_files_and_a_floor_that_is_met():
    fail, error = _parsed("fail"), _parsed("error")
    assert failures(_o(gate=fail, quality=0.5), None, Constraints())[0][0] == "quality gate"
    assert failures(_o(gate=error), None, Constraints()) == [("quality gate", "the quality gate could not measure this variant (error)")]
    assert miss_distance(_o(gate=fail), None, Constraints()) == 1.0 and miss_distance(_o(gate=error), None, Constraints()) == 10.0
    floor = Constraints(quality_floor=0.8)
    assert failures(_o(quality=0.95), None, floor) == [] and miss_distance(_o(quality=0.8), None, floor) == 0.0
    assert miss_distance(_o(quality=0.3), None, floor) == pytest.approx(0.625)  # (0.8 - 0.3) / 0.8


def test_choose_only_the_chosen_is_called_chosen_and_the_money_needs_both_cost_and_load():
    opts = [_o("b-cheap", cost=1.0), _o("a-dear", cost=2.0), _o("a-slow", p95=900.0, cost=3.0)]
    plans = {"b-cheap": {"cost_per_month": 100.0}, "a-dear": {"cost_per_month": 200.0}, "a-slow": {"cost_per_month": 300.0}}
    r = choose(opts, plans, Constraints(slos=E2EL))
    assert [(v["id"], v["status"]) for v in r["verdicts"]] == [("b-cheap", "chosen"), ("a-dear", "feasible"), ("a-slow", "rejected")]
    assert r["answer"].endswith("($1.0000 per 1k requests)")  # a monthly cost but no load: per 1k requests
    assert choose(opts, {}, Constraints(slos=E2EL, rps=3.0))["answer"].endswith("($1.0000 per 1k requests)")
    three = [_o(f"o{i}", servable=False, not_servable_reason="onnx") for i in range(3)]
    assert "(onnx (o0, o1, o2)):" in not_servable_answer(three)
