"""An unverified quality figure (random weights, not measured) never wins over a verified one.

The quality floor is met by definition by an unverified option (its quality counts as 1.0), so
choose() picks among the verified feasible options while there is one; only when none is verified
does the cheapest unverified option win, with the caveat in its reasons.
"""
from __future__ import annotations

from llmbench.recommend.choose import Constraints, choose
from llmbench.recommend.option import Option


def _o(oid: str, cost: float, status: str, quality: float = 1.0, gate: str | None = None) -> Option:
    return Option(id=oid, kind="self-hosted", model=oid, latency={"e2el_ms": {"p95": 100.0}}, cost_per_1k_usd=cost,
                  quality=quality, quality_status=status, gate=gate)


RANDOM = "unverified: random weights"


def test_a_verified_option_wins_over_a_cheaper_unverified_one():
    cheap = _o("card/gguf-q4", 1.0, RANDOM, gate="unverified")
    good = _o("ref/gguf-q8", 2.0, "measured", quality=0.995, gate="pass")
    dear = _o("ref/gguf-f16", 3.0, "measured", quality=1.0, gate="pass")
    r = choose([cheap, good, dear], {}, Constraints(quality_floor=0.99))
    assert r["chosen"] == "ref/gguf-q8" and r["meets_all"]
    assert "with verified quality" in r["answer"]
    by = {v["id"]: v for v in r["verdicts"]}
    assert by["card/gguf-q4"]["status"] == "feasible" and "unverified" in by["card/gguf-q4"]["reasons"][0]
    assert by["ref/gguf-f16"]["reasons"] == ["meets every constraint but costs more than ref/gguf-q8"]
    assert by["ref/gguf-q8"]["reasons"] == ["cheapest option meeting every constraint with verified quality"]


def test_a_verified_option_under_the_floor_does_not_count():
    cheap = _o("card/gguf-q4", 1.0, RANDOM, gate="unverified")
    failed = _o("ref/gguf-q4", 0.5, "measured", quality=0.9, gate="fail")
    r = choose([cheap, failed], {}, Constraints(quality_floor=0.99))
    # No verified option meets the floor: the unverified one is chosen, and says so.
    assert r["chosen"] == "card/gguf-q4"
    by = {v["id"]: v for v in r["verdicts"]}
    assert "the floor was checked against an unverified figure" in by["card/gguf-q4"]["reasons"][1]
    assert "with verified quality" not in r["answer"]
    assert by["ref/gguf-q4"]["status"] == "rejected"


def test_among_verified_options_the_cheapest_wins_as_before():
    a, b = _o("a", 1.0, "measured", 0.995, "pass"), _o("b", 2.0, "reference variant (1.0 by definition)")
    r = choose([b, a], {}, Constraints(quality_floor=0.99))
    assert r["chosen"] == "a" and "with verified quality" not in r["answer"]
    assert r["verdicts"][0]["reasons"] == ["cheapest option meeting every constraint"]
