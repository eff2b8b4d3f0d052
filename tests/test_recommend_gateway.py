"""The gateway's cores: verify's measured proxy CPU a request, times the planned load."""
from __future__ import annotations

import pytest

from llmbench.recommend.gateway import HOW_TO_MEASURE, gateway_sizing

VERIFY = {"verified_at": "2026-12-02T03:00:00+00:00", "load": {"requests": 583, "offered_rps": 19.4},
          "gateway": {"proxy_cpu_ms_per_request": 77.0}}


def test_cores_are_the_cpu_a_request_times_the_planned_rate():
    g = gateway_sizing(VERIFY, 19.4)
    assert g["cores_needed"] == pytest.approx(0.077 * 19.4)  # 1.49 cores: the acceptance run's figure
    assert g["whole_cores"] == 2 and g["at_rps"] == 19.4 and g["cpu_ms_per_request"] == 77.0
    assert "583 requests at 19.4 req/s" in g["source"] and VERIFY["verified_at"] in g["source"]
    assert gateway_sizing(VERIFY, 1.0)["whole_cores"] == 1  # a light load still needs a core to run on


@pytest.mark.parametrize("verify", [None, {}, {"gateway": {"proxy_cpu_ms_per_request": None}},
                                    {"gateway": {"proxy_cpu_ms_per_request": 0.0}}])
def test_without_a_measured_proxy_it_says_how_to_measure_one(verify):
    assert gateway_sizing(verify, 5.0) == {"cores_needed": None, "note": HOW_TO_MEASURE}


def test_without_a_target_load_the_measured_figure_is_kept_and_nothing_sized():
    g = gateway_sizing(VERIFY, None)
    assert g["cores_needed"] is None and g["cpu_ms_per_request"] == 77.0
