"""plan.json's best option and the recommendation break equal costs the same way (issue 13 item 7)."""
from __future__ import annotations

from llmbench.planner.plan_run import _cheapest_first


def _opt(model: str, variant: str, cpm: float, p95: float) -> dict:
    return {"model": model, "variant": variant, "cost_per_month": cpm, "predicted": {"e2el_ms": {"p95": p95}}}


def test_equal_cost_goes_to_the_faster_whatever_the_order():
    slow, fast = _opt("m", "torch-fp32", 140.16, 630.0), _opt("m", "onnx-int8", 140.16, 33.0)
    assert min([slow, fast], key=_cheapest_first) is fast
    assert min([fast, slow], key=_cheapest_first) is fast


def test_cost_still_comes_first():
    cheap_slow, dear_fast = _opt("m", "a", 70.08, 900.0), _opt("m", "b", 140.16, 10.0)
    assert min([dear_fast, cheap_slow], key=_cheapest_first) is cheap_slow


def test_equal_cost_and_speed_are_ordered_by_name():
    a, b = _opt("m", "onnx-int4", 70.08, 50.0), _opt("m", "onnx-int8", 70.08, 50.0)
    assert min([b, a], key=_cheapest_first) is a
