"""How far a load goes beyond what was measured: the figures and the notes."""
from __future__ import annotations

import numpy as np

from llmbench.planner.extrapolation import extrapolation
from llmbench.planner.service import ServiceModel


def _service(prompts: list, outputs: list) -> ServiceModel:
    return ServiceModel(prefill_fixed_ms=5.0, prefill_ms_per_token=0.1, step_batches=(1, 4), step_base_ms=(2.0, 3.0),
                        measured={"prompt_tokens": prompts, "output_tokens": outputs, "kv_tokens_max": 100.0})


def test_factors_and_counts_beyond_the_measured():
    doc, notes = extrapolation(_service([10, 50], [1, 20]), np.array([40.0, 60.0, 100.0]), np.array([10, 30, 40]), 8)
    assert doc["prompt_tokens"] == {"measured_max": 50.0, "load_max": 100.0, "factor": 2.0, "requests_beyond": 2,
                                    "share_beyond": 2 / 3}
    assert doc["output_tokens"]["factor"] == 2.0 and doc["output_tokens"]["requests_beyond"] == 2
    assert doc["batch"] == {"measured_max": 4, "load_max": 8, "factor": 2.0}
    assert any(n.startswith("2 of 3 requests (66.7%) have prompts longer") and "x2.00" in n for n in notes)


def test_a_measured_maximum_of_zero_is_said_not_divided():
    # Rows whose mean output rounds to 0 tokens: no ratio exists, and the note must still be written
    # (it was a TypeError that ended the plan).
    doc, notes = extrapolation(_service([10, 50], [0, 0]), np.array([20.0]), np.array([3]), 4)
    assert doc["output_tokens"]["factor"] is None and doc["output_tokens"]["requests_beyond"] == 1
    assert any("generate more tokens than the most measured (0;" in n and "none measured" in n for n in notes)
