"""Options built on a measured one (recommend/derived.py): a semantic cache in front, compressed
prompts. Hand-built options and figures, every expectation recomputed by hand in the comments. No
model, no planner: these are also the tests the mutation script runs against derived.py
(tests/benchmarks/bench_mutation.py); test_recommend_decide.py walks the same code end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbench.recommend.derived import derived_options, with_cache, with_compression
from llmbench.recommend.inputs import RunData
from llmbench.recommend.option import Option

BASE_ID = "m/v/cpu/bs1"


def _base(**kw) -> Option:
    latency = {"ttft_ms": {"p50": 10.0, "p95": 20.0, "mean": 12.0, "n": 5},
               "e2el_ms": {"p50": 100.0, "p95": 200.0, "mean": 120.0, "p99": 300.0, "n": 5, "cv_pct": 12.5,
                           "p50_ci95": [90.0, 110.0]},
               "tpot_ms": {"p50": 3.0}}
    return Option(**{"id": BASE_ID, "kind": "self-hosted", "model": "org/m", "label": "m", "variant": "v",
                     "cost_per_1k_usd": 2.0, "quality": 0.9, "latency": latency, "notes": ["n0"], **kw})


def _cache(**kw) -> dict:
    return {"served_from_cache_rate": 0.25, "wrong_answer_rate": 0.1, "embed_ms_p50": 30.0, "lookup_ms_p50": 10.0,
            "rule": "cosine", "threshold": 0.9, "traffic": "t", "rule_text": "cos>=0.9", **kw}


def _comp(**kw) -> dict:
    return {"model": "m", "variant": "v", "rate": 0.5, "ratio": 4.0, "compressor_ms": 5.0, "ttft_original_ms": 100.0,
            "ttft_compressed_ms": 40.0, "agreement": 0.95, **kw}


def test_cache_option_figures():
    base = _base()
    o = with_cache(base, _cache(), usd_per_hour=3.6)
    assert (o.id, o.base_id) == (f"{BASE_ID}+cache", BASE_ID)
    # 40 ms of embedding + lookup at $3.6/h = $0.001/s: $4e-5 a request, $0.04 per 1000; a quarter served from cache.
    assert o.cost_per_1k_usd == pytest.approx(2.0 * 0.75 + 0.04)
    assert o.quality == pytest.approx(0.9 * 0.9)
    assert o.latency["ttft_ms"] == {"p50": 50.0, "p95": 60.0, "mean": 52.0, "n": 5}  # counts are not shifted
    # Percentiles and the mean only: a spread in % and an interval (a list) are kept as measured.
    assert o.latency["e2el_ms"] == {"p50": 140.0, "p95": 240.0, "mean": 160.0, "p99": 340.0, "n": 5, "cv_pct": 12.5,
                                    "p50_ci95": [90.0, 110.0]}
    assert o.latency["tpot_ms"] == {"p50": 3.0}  # per-token time does not pay the lookup
    assert o.sidecars == [{"role": "semantic-cache embedder", "busy_ms_per_request": 40.0, "share_of_requests": 1.0}]
    assert o.cache == {"rule": "cosine", "verifier": None, "profile": None, "threshold": 0.9, "served_from_cache_rate": 0.25,
                       "wrong_answer_rate": 0.1, "hit_rate": None, "false_hit_rate": None, "units": None, "traffic": "t",
                       "embed_ms_p50": 30.0, "lookup_ms_p50": 10.0}
    assert o.latency_source == "measured, plus the cache's embedding and lookup time"
    assert o.notes == ["n0", "semantic cache (cos>=0.9, the rule the gateway config deploys): 25.0% of requests served from cache, "
                             "10.0% answered wrongly from cache (t); embedding 30.0 ms + lookup 10.00 ms added to every request and priced"]
    # The base option is left as it was.
    assert base.notes == ["n0"] and base.sidecars == [] and base.latency["ttft_ms"]["p50"] == 10.0 and base.id == BASE_ID
    assert base.cost_per_1k_usd == 2.0 and base.quality == 0.9 and base.cache is None


def test_figures_read_from_json_are_shifted_too():
    # summary.json's keys are fresh strings, not the literals of the code: compared by value.
    o = with_cache(_base(latency=json.loads('{"ttft_ms": {"mean": 12.0}, "e2el_ms": {"mean": 120.0}}')), _cache(), 3.6)
    assert o.latency == {"ttft_ms": {"mean": 52.0}, "e2el_ms": {"mean": 160.0}}


def test_cache_option_without_timings_or_cost():
    c = {"served_from_cache_rate": 0.5, "wrong_answer_rate": 0.0}
    o = with_cache(_base(cost_per_1k_usd=None, latency={"ttft_ms": {"p50": None, "p95": 20.0}}), c, usd_per_hour=3.6)
    assert o.cost_per_1k_usd is None and o.quality == pytest.approx(0.9)
    assert o.latency == {"ttft_ms": {"p50": None, "p95": 20.0}}  # nothing measured, nothing added
    assert o.sidecars[0]["busy_ms_per_request"] == 0.0
    assert o.notes[-1] == ("semantic cache (plain cosine, the rule the gateway config deploys): 50.0% of requests served from cache, "
                           "0.0% answered wrongly from cache (traffic not stated in cache.json); embedding time not measured "
                           "(not included) + lookup 0.00 ms added to every request and priced")
    # Priced on the machine's rate: 20 ms a request at $7.2/h = $0.002/s is $4e-5, $0.04 per 1000.
    o2 = with_cache(_base(), {**c, "lookup_ms_p50": 20.0}, usd_per_hour=7.2)
    assert o2.cost_per_1k_usd == pytest.approx(2.0 * 0.5 + 0.04)


def test_compression_option_figures():
    base = _base()
    o = with_compression(base, _comp(), usd_per_hour=3.6)
    # share = min(1 - 40/100, 1 - 1/4) = 0.6 of TTFT saved, 5 ms of compressor added.
    assert (o.id, o.base_id) == (f"{BASE_ID}+compress0.5", BASE_ID)
    assert o.latency["ttft_ms"] == pytest.approx({"p50": 9.0, "p95": 13.0, "mean": 9.8, "n": 5})  # 10 * 0.4 + 5, ...
    # E2EL loses the TTFT saved at the same percentile (100 - 6 + 5, 200 - 12 + 5, 120 - 7.2 + 5); p99 has no TTFT: + 5 only.
    e2el = dict(o.latency["e2el_ms"])
    assert e2el.pop("p50_ci95") == [90.0, 110.0]
    assert e2el == pytest.approx({"p50": 99.0, "p95": 193.0, "mean": 117.8, "p99": 305.0, "n": 5, "cv_pct": 12.5})
    assert o.latency["tpot_ms"] == {"p50": 3.0}
    # Server time 2.0 * (120 - 12 * 0.6) / 120 = 1.88, compressor 5 ms at $0.001/s = $0.005 per 1000.
    assert o.cost_per_1k_usd == pytest.approx(1.88 + 0.005)
    assert o.quality == pytest.approx(0.9 * 0.95)
    assert o.compression == {"rate": 0.5, "ratio": 4.0, "compressor_ms": 5.0, "ttft_original_ms": 100.0, "ttft_compressed_ms": 40.0,
                             "agreement": 0.95, "ttft_share_saved": pytest.approx(0.6)}
    assert o.sidecars == [{"role": "prompt compressor", "busy_ms_per_request": 5.0, "share_of_requests": 1.0}]
    assert o.latency_source == "measured, prefill scaled by the compression measured on this variant, plus the compressor's time"
    assert o.notes == ["n0", "compression rate 0.5: 60.0% of TTFT saved (measured share on the compression prompt, capped at the "
                             "75% of tokens removed), compressor 5.0 ms per request added and priced"]
    assert base.notes == ["n0"] and base.sidecars == [] and base.latency["e2el_ms"]["p50"] == 100.0 and base.compression is None
    # The compressor's price in full: 0.25 ms a request at $1000/s ($3.6M/h) is $0.25, $250 per 1000 requests.
    assert with_compression(base, _comp(compressor_ms=0.25), 3.6e6).cost_per_1k_usd == pytest.approx(1.88 + 250.0)


def test_compression_share_is_capped_and_never_negative():
    # 1 - 10/100 = 0.9 measured, capped at 1 - 1/4 = 0.75 of the tokens removed: TTFT p50 10 * 0.25 + 5.
    capped = with_compression(_base(), _comp(ttft_compressed_ms=10.0), 3.6)
    assert capped.compression["ttft_share_saved"] == pytest.approx(0.75) and capped.latency["ttft_ms"]["p50"] == pytest.approx(7.5)
    # Slower when compressed (150 ms): no saving, only the compressor's time.
    slower = with_compression(_base(), _comp(ttft_compressed_ms=150.0, compressor_ms=None), 3.6)
    assert slower.compression["ttft_share_saved"] == 0.0 and slower.latency["ttft_ms"]["p50"] == 10.0
    assert slower.cost_per_1k_usd == pytest.approx(2.0) and slower.sidecars[0]["busy_ms_per_request"] == 0.0
    # Compressed TTFT not measured: taken as the original, no saving.
    same = with_compression(_base(), _comp(ttft_compressed_ms=None), 3.6)
    assert same.compression["ttft_share_saved"] == 0.0 and same.latency["e2el_ms"]["p50"] == 105.0


def test_compression_only_on_its_own_measured_variant():
    assert with_compression(_base(), _comp(model="org/m"), 3.6) is not None  # the model's full name matches too
    # Equal names, not the same string object; a name that sorts before or after is another variant.
    assert with_compression(_base(variant="".join(["v", "2"])), _comp(variant="".join(["v", "2"])), 3.6) is not None
    for bad in ({"variant": "w"}, {"variant": "u"}, {"model": "other"}, {"ratio": 0}, {"ratio": None}, {"ttft_original_ms": 0},
                {"ttft_original_ms": None}):
        assert with_compression(_base(), _comp(**bad), 3.6) is None, bad


def test_compression_cost_and_quality_when_figures_are_missing():
    # No base cost: none made up. No E2EL mean or no TTFT mean: server cost as measured (the copy's).
    assert with_compression(_base(cost_per_1k_usd=None), _comp(), 3.6).cost_per_1k_usd is None
    no_e2el = _base(latency={"ttft_ms": {"p50": 10.0, "mean": 12.0}})
    assert with_compression(no_e2el, _comp(), 3.6).cost_per_1k_usd == 2.0
    no_ttft = _base(latency={"e2el_ms": {"mean": 120.0}})
    o = with_compression(no_ttft, _comp(), 3.6)
    assert o.latency == {"e2el_ms": {"mean": pytest.approx(125.0)}}  # nothing to take off, compressor added
    assert o.cost_per_1k_usd == 2.0
    # A measured TTFT mean of 0: nothing saved in prefill, the compressor still priced.
    zero = _base(latency={"ttft_ms": {"mean": 0.0}, "e2el_ms": {"mean": 120.0}})
    assert with_compression(zero, _comp(), 3.6).cost_per_1k_usd == pytest.approx(2.0 + 0.005)
    # Random weights: the agreement decides nothing; quality kept, and the note says why.
    rw = with_compression(_base(random_weights=True), _comp(), 3.6)
    assert rw.quality == 0.9 and rw.notes[1] == ("compression agreement measured on random weights (unverified): it decides nothing, "
                                                 "quality kept as without compression")
    nm = with_compression(_base(), _comp(agreement=None), 3.6)
    assert nm.quality == 0.9 and nm.notes[1].startswith("compression agreement not measured: it decides nothing")
    assert len(nm.notes) == 3 and nm.notes[2].startswith("compression rate 0.5:")


def _data(compression=(), gateway=None, meta=None, **summary) -> RunData:
    return RunData(path=Path("/nonexistent/run"), meta=meta or {}, summary=summary, records=[],
                   cache=None if gateway is None else {"gateway": gateway}, compression=list(compression))


def test_derived_options_combine_cache_and_compression():
    other = _comp(variant="w", rate=0.3)
    data = _data([_comp(), _comp(rate=None), other], _cache(), meta={"hardware_profile": {"usd_per_hour": 1.8, "devices": 2}})
    out = derived_options([_base()], data)
    assert [o.id for o in out] == [f"{BASE_ID}+compress0.5", f"{BASE_ID}+cache", f"{BASE_ID}+compress0.5+cache"]
    comp, cached, both = out
    # 2 devices at $1.8/h: $3.6/h, as in the tests above.
    assert comp.cost_per_1k_usd == pytest.approx(1.885) and cached.cost_per_1k_usd == pytest.approx(1.54)
    assert both.cost_per_1k_usd == pytest.approx(1.885 * 0.75 + 0.04) and both.base_id == comp.id
    assert both.quality == pytest.approx(0.9 * 0.95 * 0.9)


def test_derived_options_price_on_the_run_rate_and_need_a_whole_cache_figure():
    # No hardware profile: the summary's rate, one device ($3.6/h).
    (cached,) = derived_options([_base()], _data(gateway=_cache(), usd_per_hour=3.6))
    assert cached.cost_per_1k_usd == pytest.approx(1.54)
    (one_dev,) = derived_options([_base()], _data(gateway=_cache(), meta={"hardware_profile": {"usd_per_hour": 3.6}}, usd_per_hour=99))
    assert one_dev.cost_per_1k_usd == pytest.approx(1.54)
    (free,) = derived_options([_base()], _data(gateway=_cache()))
    assert free.cost_per_1k_usd == pytest.approx(1.5)  # no rate known: the embedder costs nothing
    for gw in ({**_cache(), "wrong_answer_rate": None}, {**_cache(), "served_from_cache_rate": None}, {}):
        assert derived_options([_base()], _data(gateway=gw)) == [], gw
    assert derived_options([_base()], _data()) == []
