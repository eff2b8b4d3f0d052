"""The `compression` stage of `llmbench run` on a tiny local model: every figure it writes, recomputed."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from rich.console import Console

PROMPT = ("Question: A baker makes 12 loaves in the morning and 9 in the afternoon. He sells 15 of them. "
          "How many loaves are left at the end of the day? Let's think step by step. In the morning he "
          "makes 12, in the afternoon 9 more, so 21 in all; selling 15 leaves 6. The answer is 6.\n") * 3


def test_compression_stage_writes_figures_that_add_up(tiny_llama, tmp_path):
    from llmbench.optimizers.compress.stage import NEW_TOKENS, compression_stage
    from llmbench.optimizers.compress.counting import load_tokenizer

    prompts = tmp_path / "prompt.txt"
    prompts.write_text(PROMPT, encoding="utf-8")
    run_dir = SimpleNamespace(path=tmp_path / "run")
    run_dir.path.mkdir()
    usd_per_hour = 0.5
    meta = {"config": {"compression": {"prompts": str(prompts), "rates": [0.5], "model": str(tiny_llama)},
                       "candidates": [{"model": str(tiny_llama), "name": "tiny", "variants": ["torch-fp32"]}],
                       "dtype": "float32"},
            "hardware_profile": {"usd_per_hour": usd_per_hour, "devices": 2}, "device": "cpu"}
    compression_stage(run_dir, meta, {}, Console(quiet=True))
    doc = json.loads((run_dir.path / "compression.json").read_text())
    assert doc["prompts"] == str(prompts) and doc["new_tokens"] == NEW_TOKENS and len(doc["entries"]) == 1
    e = doc["entries"][0]
    assert (e["model"], e["variant"], e["rate"]) == ("tiny", "torch-fp32", 0.5)
    # Counted in the candidate's own tokenizer.
    tok = load_tokenizer(str(tiny_llama))
    assert e["origin_tokens"] == len(tok(PROMPT, add_special_tokens=False).input_ids)
    assert 0 < e["compressed_tokens"] < e["origin_tokens"]
    assert e["ratio"] == round(e["origin_tokens"] / e["compressed_tokens"], 3)
    # Net latency: the compressed prompt's E2EL plus the compressor, against the original's (one prompt).
    assert e["net_latency_change_ms"] == pytest.approx(
        e["e2el_compressed_ms"] + e["compressor_ms"] - e["e2el_original_ms"], abs=0.02)
    # Money per request: saved prompt tokens at the prefill price of the machine (2 devices), minus
    # the compressor's own time on it.
    hour = usd_per_hour * 2
    price_per_token = hour / 3600 / (e["origin_tokens"] / (e["ttft_original_ms"] / 1e3))
    want = (e["origin_tokens"] - e["compressed_tokens"]) * price_per_token - e["compressor_ms"] / 1e3 * hour / 3600
    assert e["net_saving_usd_per_request"] == pytest.approx(want, rel=1e-3, abs=1e-12)
    assert e["pays"] == (e["net_saving_usd_per_request"] > 0 and e["net_latency_change_ms"] < 0)
    assert 0.0 <= e["agreement"] <= 1.0 and e["agreement"] == round(e["agreement"], 4)
