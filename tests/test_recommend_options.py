"""Option enumeration (recommend/options.py) on hand-built runs: which rows become options, what
each is priced at, and how API models are priced on the workload. No model, no planner: these
are also the tests the mutation script runs against options.py (tests/benchmarks/bench_mutation.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from llmbench.errors import BadInput
from llmbench.recommend.inputs import RunData
from llmbench.recommend.options import (api_cost_per_1k, api_options, enumerate_options, named_api_models,
                                        partial_failure, self_hosted_options, workload_tokens)
from llmbench.records import RequestRecord


def _row(model="m/tiny", variant="torch-fp32", scenario="single-stream", **kw) -> dict:
    return {"model": model, "variant": variant, "scenario": scenario, "point": kw.pop("point", "batch=1"),
            "batch_size": 1, "e2el_ms": {"p50": 90.0, "p95": 100.0}, "ttft_ms": {"p95": 10.0},
            "request_throughput_req_s": 10.0, "cost_per_request_usd": 0.002, **kw}


def _data(rows, records=(), config=None, **summary) -> RunData:
    return RunData(path=Path("/nonexistent/run"), meta={"config": config or {}},
                   summary={"rows": rows, "hardware": "box", "usd_per_hour": 2.5, **summary}, records=list(records))


def _rec(i, prompt, output, status="ok") -> RequestRecord:
    return RequestRecord(timestamp=0.0, run_id="r", model="m", variant="v", scenario="single-stream", point="batch=1",
                         request_id=i, prompt_tokens=prompt, output_tokens=output, status=status)


def test_options_one_per_cell_from_the_cleanest_scenario():
    rows = [_row(scenario="concurrency", point="clients=1", e2el_ms={"p95": 300.0}),
            _row(e2el_ms={"p95": 100.0}),
            _row(scenario="batch", point="batch=1", e2el_ms={"p95": 200.0}),
            _row(scenario="unknown", point="x", e2el_ms={"p95": 400.0})]
    (o,) = self_hosted_options(_data(rows))
    assert o.scenario == "single-stream" and o.p95_ms == 100.0  # single-stream ranks before batch and concurrency
    # Order does not matter: the preferred row wins wherever it comes.
    (o2,) = self_hosted_options(_data([_row(scenario="batch", e2el_ms={"p95": 200.0}), _row(scenario="concurrency", e2el_ms={"p95": 300.0})]))
    assert o2.scenario == "batch"
    (o3,) = self_hosted_options(_data([_row(scenario="unknown", e2el_ms={"p95": 400.0}), _row(scenario="concurrency", e2el_ms={"p95": 300.0})]))
    assert o3.scenario == "concurrency"


def test_options_fields_are_the_rows_figures():
    row = _row(batch_size=4, device=None, ttft_ms={"p95": 12.0}, tpot_ms=None, output_throughput_tok_s=321.0,
               prompt_tokens_mean=64.0, output_tokens_mean=32.0, parameters=5_000_000, random_weights=True)
    (o,) = self_hosted_options(_data([row], device="cuda:0"))
    assert o.id == "tiny/torch-fp32/cuda:0/bs4" and o.label == "tiny" and o.batch_size == 4 and o.kind == "self-hosted"
    assert o.cost_per_1k_usd == pytest.approx(2.0)  # 1000 x $0.002
    assert o.cost_note == "box at $2.5/h, fully busy at batch 4"
    assert set(o.latency) == {"ttft_ms", "e2el_ms"}  # an absent tpot is not a latency
    assert (o.throughput_req_s, o.output_tok_s, o.prompt_tokens_mean, o.output_tokens_mean) == (10.0, 321.0, 64.0, 32.0)
    assert o.parameters == 5_000_000 and o.random_weights is True and o.hardware == "box"
    # Not servable on a CPU from torch: kept as a measurement, with the reason in a note.
    (cpu,) = self_hosted_options(_data([_row()]))
    assert cpu.device == "cpu" and cpu.servable is False and cpu.engine is None
    assert cpu.notes == [f"measured only, not deployable: {cpu.not_servable_reason}"]
    assert self_hosted_options(_data([_row(cost_per_request_usd=None)]))[0].cost_per_1k_usd is None


def test_options_skip_unusable_rows_and_failed_ones_unless_asked():
    bad = [_row(error="boom"), _row(e2el_ms={"p50": 1.0}), _row(request_throughput_req_s=0), _row(e2el_ms=None)]
    assert self_hosted_options(_data(bad)) == []
    assert [o.p95_ms for o in self_hosted_options(_data([*bad, _row()]))] == [100.0]  # an unusable row skips only itself
    failed = _row(failed=2, requests=10)
    assert self_hosted_options(_data([failed])) == []
    (kept,) = self_hosted_options(_data([failed]), include_failed=True)
    assert kept.notes[-1] == "2 of 10 requests failed in this cell (kept by --include-failed)"
    assert partial_failure({"partial_failure": True}) and partial_failure({"failed": 1}) and not partial_failure({"failed": 0})
    (shaky,) = self_hosted_options(_data([_row(unreliable=True, unreliable_reason="E2EL CV 80%")]))
    assert shaky.unreliable == "E2EL CV 80%" and shaky.notes[-1] == "unreliable measurement: E2EL CV 80%"
    (vague,) = self_hosted_options(_data([_row(unreliable=True)]))
    assert vague.unreliable == "the measurement is flagged unreliable (noisy)"
    # Distinct models, variants and batch sizes are distinct options.
    many = self_hosted_options(_data([_row(), _row(model="n/big"), _row(variant="onnx-int4"), _row(batch_size=2)]))
    assert sorted(o.id for o in many) == ["big/torch-fp32/cpu/bs1", "tiny/onnx-int4/cpu/bs1", "tiny/torch-fp32/cpu/bs1",
                                          "tiny/torch-fp32/cpu/bs2"]


def test_options_api_cost_is_input_times_input_price_plus_output_times_output_price():
    # 100 prompt tokens at $3/1M + 50 output tokens at $15/1M = $0.00105 a request, $1.05 per 1k.
    assert api_cost_per_1k(100, 50, 3.0, 15.0) == pytest.approx(1.05, rel=1e-12)
    assert api_cost_per_1k(100, 0, 3.0, 15.0) == pytest.approx(0.3, rel=1e-12)


def test_options_workload_tokens_from_records_rows_or_config():
    recs = [_rec(0, 100, 10), _rec(1, 301, 31), _rec(2, 999, 999, status="error")]
    assert workload_tokens(_data([_row(prompt_tokens_mean=7.0)], recs)) == (200.5, 20.5)  # the ok records' means
    assert workload_tokens(_data([_row(), _row(prompt_tokens_mean=64.0, output_tokens_mean=8.0)])) == (64.0, 8.0)
    assert workload_tokens(_data([_row(prompt_tokens_mean=64.0)])) == (64.0, 0.0)
    cfg = lambda p, o: {"workload": {"prompt_tokens": p, "output_tokens": o}}  # noqa: E731
    assert workload_tokens(_data([], config=cfg(128, 16))) == (128.0, 16.0)
    assert workload_tokens(_data([], config=cfg({"value": 50}, {"mean": 20}))) == (50.0, 20.0)
    assert workload_tokens(_data([], config=cfg({"low": 10, "high": 31}, {"high": 9}))) == (20.5, 4.5)
    assert workload_tokens(_data([], config=cfg("long", 8))) is None
    assert workload_tokens(_data([], config=cfg(0, 8))) is None
    assert workload_tokens(_data([], config=cfg(8, {}))) is None


def test_options_api_models_priced_on_the_workload():
    data = _data([_row(prompt_tokens_mean=1000.0, output_tokens_mean=500.0)])
    assert api_options(data, []) == []
    (o,) = api_options(data, ["gpt-4o-mini", "gpt-4o-mini"])  # named twice, one option
    # gpt-4o-mini's shipped list price: $0.15 / $0.60 per 1M tokens: (1000 x 0.15 + 500 x 0.6) / 1000.
    assert o.cost_per_1k_usd == pytest.approx(0.45)
    assert (o.id, o.kind, o.model, o.label, o.device) == ("api/gpt-4o-mini", "api", "gpt-4o-mini", "gpt-4o-mini", "api")
    assert o.cost_note.startswith("1000 input + 500 output tokens at list price (")
    assert o.prices["input_usd_per_1m"] == 0.15 and o.prices["output_usd_per_1m"] == 0.6
    assert o.prices["api_key_env"] == "OPENAI_API_KEY" and o.latency == {} and o.latency_source == "not measured"
    assert not o.verified and (o.prompt_tokens_mean, o.output_tokens_mean) == (1000.0, 500.0)
    with pytest.raises(BadInput, match="API model 'nope' is not in the price list"):
        api_options(data, ["gpt-4o", "nope"])
    assert api_options(_data([]), ["gpt-4o"]) == []  # no token counts to price on


def test_options_named_api_models_and_the_whole_enumeration():
    cfg = {"plan": {"api_models": ["gpt-4o"]}}
    assert named_api_models(_data([], config=cfg), ["gpt-4o-mini"]) == ["gpt-4o-mini"]
    assert named_api_models(_data([], config=cfg), None) == ["gpt-4o"]
    assert named_api_models(_data([]), None) == []
    data = _data([_row(prompt_tokens_mean=10.0, output_tokens_mean=10.0)], config=cfg)
    assert [o.id for o in enumerate_options(data)] == ["tiny/torch-fp32/cpu/bs1", "api/gpt-4o"]
    assert [o.id for o in enumerate_options(data, ["gpt-4o-mini"])] == ["tiny/torch-fp32/cpu/bs1", "api/gpt-4o-mini"]
    assert [o.id for o in enumerate_options(_data([_row(failed=1, requests=3)]), include_failed=True)] == ["tiny/torch-fp32/cpu/bs1"]
    assert enumerate_options(_data([_row(failed=1, requests=3)])) == []  # failed rows stay out unless asked


def test_options_scenario_preference_whatever_the_order_and_the_first_of_equals():
    def pick(*rows):
        (o,) = self_hosted_options(_data(list(rows)))
        return o.scenario, o.p95_ms

    ss, b, c = _row(e2el_ms={"p95": 100.0}), _row(scenario="batch", e2el_ms={"p95": 200.0}), _row(scenario="concurrency", e2el_ms={"p95": 300.0})
    assert pick(c, b) == ("batch", 200.0) and pick(b, ss) == ("single-stream", 100.0) and pick(c, ss) == ("single-stream", 100.0)
    # Two rows of one preference (a repeated cell, or scenarios llmbench does not rank): the first one stays.
    assert pick(ss, _row(e2el_ms={"p95": 150.0})) == ("single-stream", 100.0)
    u1, u2 = _row(scenario="custom", e2el_ms={"p95": 500.0}), _row(scenario="other", e2el_ms={"p95": 600.0})
    assert pick(u1, u2) == ("custom", 500.0)


def test_options_a_served_row_is_keyed_by_its_slots_and_defaults_are_one_and_zero():
    # Measured through a server with --parallel 4 at 4 clients: its requests carry batch size 1.
    (srv,) = self_hosted_options(_data([_row(scenario="concurrency", point="clients=4", server_parallel=4)]))
    assert srv.id == "tiny/torch-fp32/cpu/bs4" and srv.batch_size == 4
    (plain,) = self_hosted_options(_data([_row(batch_size=None)]))
    assert plain.id == "tiny/torch-fp32/cpu/bs1"
    data = _data([_row()])
    del data.summary["usd_per_hour"]
    assert self_hosted_options(data)[0].cost_note == "box at $0/h, fully busy at batch 1"


def test_options_api_pricing_details():
    from llmbench.recommend.api import api_prices

    two = _data([_row(prompt_tokens_mean=64.0, output_tokens_mean=8.0), _row(model="n/big", prompt_tokens_mean=32.0, output_tokens_mean=4.0)])
    assert workload_tokens(two) == (64.0, 8.0)  # the first row's lengths, both of them
    with pytest.raises(BadInput, match="API model 'first' is not"):
        api_options(two, ["first", "second"])
    dated = next(m for m in api_prices() if m["name"] == "gpt-4o")
    assert dated.get("price_date")
    (o,) = api_options(two, ["gpt-4o"])
    assert o.cost_note == f"64 input + 8 output tokens at list price ({dated['price_date']})"
