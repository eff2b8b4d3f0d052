"""Requests beyond the model's context, and the prefill sweep on a real (tiny) model (issue 11 item 1)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.planner.context import context_tokens, split_over_context
from llmbench.planner.queue import Requests
from test_planner_synth import HARDWARE, batch_records, summary_rows

PROMPTS, OUTPUTS = (50, 150, 300, 450, 600), (10, 20, 30, 70, 5)  # 450+70 and 600+5 exceed 512 positions


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama):
    """A results folder whose candidate is a real local model (max_position_embeddings 512)."""
    path = tmp_path_factory.mktemp("ctxrun")
    model = str(tiny_llama)
    recs = batch_records(model=model, variant="torch-fp32")
    meta = {"run_id": "synthetic", "device": "cpu", "hardware_profile": HARDWARE,
            "config": {"candidates": [{"model": model, "variants": ["torch-fp32"]}], "slo": None,
                       "scenarios": [{"kind": "single-stream"}, {"kind": "batch", "batch_sizes": [2, 4, 8]}]},
            "environment": {"machine": {"cpu_model": "test CPU", "cpu_cores_logical": 2, "gpus": []}}}
    (path / "run.json").write_text(json.dumps(meta))
    (path / "summary.json").write_text(json.dumps({"run_id": "synthetic", "rows": summary_rows(recs)}))
    (path / "requests.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in recs))
    return path


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "t.csv"
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"{0.5 * i},{PROMPTS[i % 5]},{OUTPUTS[i % 5]}" for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _plan(*args) -> dict:
    result = CliRunner().invoke(main, ["plan", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_requests_beyond_the_context_are_counted_and_left_out(run_dir, trace):
    over = sum(p + o > 512 for p, o in zip(PROMPTS, OUTPUTS)) * 12  # by hand: 2 of every 5, 60 requests
    (opt,) = _plan(run_dir, "--trace", trace, "--no-measure")["options"]
    assert (opt["context_tokens"], opt["requests_over_context"], opt["share_over_context"]) == (512, over, over / 60)
    assert opt["load"]["requests_planned"] == 60 - over and opt["context_source"].endswith("config.json")
    # What is planned never reaches beyond the context.
    assert opt["extrapolation"]["kv_tokens"]["load_max"] == 330.0
    assert any(f"{over} of 60 requests (40.0%) need more than the model's context of 512" in n for n in opt["notes"])
    assert any("prefill sweep not run (--no-measure)" in n for n in opt["notes"])


def test_the_prefill_sweep_measures_the_real_model_up_to_the_longest_prompt_needed(run_dir, trace):
    (opt,) = _plan(run_dir, "--trace", trace)["options"]
    kept = json.loads((run_dir / "prefill_sweep.json").read_text())["options"][f"{opt['model']}|torch-fp32"]
    lengths = [p["prompt_tokens"] for p in kept["points"]]
    # Up to 300 tokens, the longest prompt that fits in the context (600 does not, 450 + 70 does not).
    assert max(lengths) == 300 and opt["prefill_sweep"]["prompt_tokens"] == lengths
    assert all(len(p["prefill_ms"]) == 2 and min(p["prefill_ms"]) > 0 for p in kept["points"])
    assert opt["extrapolation"]["prompt_tokens"]["factor"] == 1.0 and opt["prefill_sweep"]["reused"] is False
    assert opt["service_model"]["measured"]["prefill_sweep_prompt_tokens"][-1] == 300
    # A later plan needing no longer prompts reuses it.
    (again,) = _plan(run_dir, "--trace", trace)["options"]
    assert again["prefill_sweep"]["reused"] is True and again["prefill_sweep"]["prompt_tokens"] == lengths


def test_context_from_a_card_and_from_run_json():
    meta = {"config": {"candidates": [{"card": "llama-5m", "name": "small"}]}}
    assert context_tokens(meta, "small", "onnx-int8")[0] == 2048  # the card's max_position_embeddings
    meta["variants"] = {"small|onnx-int8": {"context_tokens": 1024}}
    assert context_tokens(meta, "small", "onnx-int8") == (1024, "run.json variants[small|onnx-int8].context_tokens")
    assert context_tokens({"config": {"candidates": []}}, "./nowhere", "torch-fp32")[0] is None


def test_split_over_context_by_hand():
    reqs = Requests(np.arange(4.0), [100, 2000, 2040, 10], [48, 48, 8, 2039])  # 10 + 2039 > 2048
    kept, facts = split_over_context(reqs, 2048)
    assert facts["requests_over_context"] == 1 and facts["share_over_context"] == 0.25  # 2000 + 48 fits exactly
    assert list(kept.prompt_tokens) == [100, 2000, 2040] and list(kept.arrival_s) == [0.0, 1.0, 2.0]
    assert split_over_context(reqs, None)[1]["requests_over_context"] is None


def test_the_sweep_stops_at_its_time_budget(run_dir, monkeypatch):
    from llmbench.planner import sweep

    meta = json.loads((run_dir / "run.json").read_text())
    label = meta["config"]["candidates"][0]["model"]
    monkeypatch.setattr(sweep, "BUDGET_S", 0.0)  # no time at all: only the first length is timed
    got = sweep.measure(meta, label, "torch-fp32", {"overlap": [100, 199], "long": [300, 400]})
    assert [p["prompt_tokens"] for p in got["points"]] == [100]
    assert got["not_measured_over_budget"] == [199, 300, 400]
