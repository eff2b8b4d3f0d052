import pytest

from llmbench.errors import BadInput
from llmbench.slo import meets_all, parse_slo, row_meets


def test_parse_units_and_percentiles():
    s = parse_slo("ttft_p95=500ms,tpot_p99=80ms,e2el_p95=5s")
    assert [(x.metric, x.percentile, x.limit_ms) for x in s] == [("ttft", 95, 500), ("tpot", 99, 80), ("e2el", 95, 5000)]


@pytest.mark.parametrize("bad", ["ttft=5s", "ttft_p95=5", "latency_p95=5s", "ttft_p95=5m", "ttft_p0=1s"])
def test_malformed_slo_is_bad_input(bad):
    with pytest.raises(BadInput, match="slo"):
        parse_slo(bad)


def test_row_meets_names_the_missed_objective():
    row = {"ttft_ms": {"p95": 700.0}, "tpot_ms": {"p99": 10.0}}
    assert row_meets(row, parse_slo("tpot_p99=80ms")) == []
    missed = row_meets(row, parse_slo("ttft_p95=500ms,tpot_p99=80ms"))
    assert len(missed) == 1 and "ttft" in missed[0]


def _record(ttft: float, e2el: float, tokens: int = 5):
    from llmbench.records import RequestRecord

    gaps = [(e2el - ttft) / (tokens - 1)] * (tokens - 1)
    return RequestRecord(timestamp=0.0, run_id="r", model="m", variant="v", scenario="s", point="p", request_id=0,
                         prompt_tokens=8, output_tokens=tokens, ttft_ms=ttft, e2el_ms=e2el, itl_ms=gaps)


def test_a_request_exactly_at_its_limit_meets_it():
    # "must not exceed": at the limit is met, a hair above is not (goodput counts the first).
    slos = parse_slo("ttft_p95=500ms,e2el_p95=2s")
    assert meets_all(_record(500.0, 2000.0), slos)
    assert not meets_all(_record(500.001, 2000.0), slos)
    assert not meets_all(_record(100.0, 2000.001), slos)
    # TPOT = (E2EL - TTFT) / (tokens - 1) = (900 - 100) / 4 = 200 ms: at a 200 ms limit it is met.
    assert meets_all(_record(100.0, 900.0), parse_slo("tpot_p99=200ms"))
    assert not meets_all(_record(100.0, 900.0), parse_slo("tpot_p99=199.9ms"))


def test_a_row_exactly_at_its_limit_meets_it():
    assert row_meets({"ttft_ms": {"p95": 500.0}}, parse_slo("ttft_p95=500ms")) == []


def test_an_slo_is_a_frozen_hashable_value():
    import dataclasses

    a, b = parse_slo("ttft_p95=500ms")[0], parse_slo("ttft_p95=0.5s")[0]
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1  # usable as a key: one objective, one entry
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.limit_ms = 1.0


def test_a_limit_must_be_positive_and_finite():
    assert parse_slo("ttft_p95=0.5ms")[0].limit_ms == 0.5  # under 1 ms but above 0: accepted
    for bad in ("ttft_p95=0ms", "ttft_p95=0.0s", "ttft_p95=" + "9" * 400 + "ms"):  # the last one is float inf
        with pytest.raises(BadInput, match="must be a positive number"):
            parse_slo(bad)


def test_itl_objectives_judge_the_longest_gap():
    slo = parse_slo("itl_p99=20ms")  # parsed, as a user gives it (the metric name is not an interned literal)
    assert not meets_all(_record(100.0, 100.0 + 4 * 25.0), slo)  # gaps of 25 ms
    assert meets_all(_record(100.0, 100.0 + 4 * 20.0), slo)
    # A one-token answer has no gap: it meets even a sub-millisecond ITL limit.
    one = _record(100.0, 200.0).model_copy(update={"output_tokens": 1, "itl_ms": []})
    assert meets_all(one, parse_slo("itl_p99=0.5ms"))


def test_a_row_without_one_figure_is_still_judged_on_the_others():
    missed = row_meets({"tpot_ms": {"p99": 90.0}}, parse_slo("ttft_p95=500ms,tpot_p99=80ms"))
    assert missed == ["tpot_p99<=80ms: measured 90.0ms"]
