import pytest

from llmbench.errors import BadInput
from llmbench.slo import parse_slo, row_meets


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
