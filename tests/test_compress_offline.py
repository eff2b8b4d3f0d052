"""The offline shims for llmlingua 0.2.2, the prompts reader, forced segments and the net-saving maths.

None of these load the compressor, so they run in about a second.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from llmbench.errors import BadInput
from llmbench.optimizers.compress import offline
from llmbench.optimizers.compress.forced import forced_spans, split_forced
from llmbench.optimizers.compress.measure import greedy_agreement, net_latency, net_saving, prompt_token_price
from llmbench.optimizers.compress.prompts import Prompt, load_prompts


# --- tiktoken seeding -------------------------------------------------------------------------

def test_seed_tiktoken_writes_the_bundled_file_under_tiktokens_cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    seeded = offline.seed_tiktoken()
    assert seeded == tmp_path / hashlib.sha1(offline.CL100K_URL.encode()).hexdigest()
    assert seeded.read_bytes() == offline.bundled_cl100k().read_bytes()
    assert offline.seed_tiktoken() == seeded  # idempotent


def test_seeded_cache_lets_tiktoken_load_gpt35_without_network(tmp_path, monkeypatch):
    import tiktoken
    import tiktoken.load
    import tiktoken.registry

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    offline.seed_tiktoken()

    def no_download(blobpath):
        raise AssertionError(f"tiktoken tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    # Forget encodings this process already built, so this one really comes from the cache file.
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    enc = tiktoken.encoding_for_model("gpt-3.5-turbo")
    assert enc.decode(enc.encode("Let's think step by step")) == "Let's think step by step"


def test_seed_tiktoken_falls_back_to_own_cache_when_caching_is_off(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    monkeypatch.setenv("LLMBENCH_CACHE", str(tmp_path))
    seeded = offline.seed_tiktoken()
    assert seeded.parent == tmp_path / "tiktoken"
    import os

    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "tiktoken")


# --- KV-cache adapter -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_adapter_takes_and_returns_legacy_pairs_like_llmlingua_expects(small_llama):
    import torch

    model = offline.LegacyCacheModel(small_llama)
    ids = torch.arange(1, 13).unsqueeze(0)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, past_key_values=None, use_cache=True)
        assert isinstance(full.past_key_values, tuple) and len(full.past_key_values) == 2
        # What llmlingua does: slice the pairs, then continue from them.
        pairs = [[k[:, :, :8], v[:, :, :8]] for k, v in full.past_key_values]
        assert pairs[0][0].shape[2] == 8
        rest = model(ids[:, 8:], attention_mask=mask, past_key_values=pairs, use_cache=True)
    assert torch.allclose(rest.logits, full.logits[:, 8:], atol=1e-5)
    assert rest.past_key_values[0][0].shape[2] == 12
    assert model.config is small_llama.config  # everything else passes through


def test_unadapted_model_rejects_legacy_pairs(small_llama):
    # The failure the adapter exists for (transformers >= 4.48); if this starts passing, the
    # adapter may be dropped.
    import torch

    ids = torch.arange(1, 9).unsqueeze(0)
    with torch.no_grad():
        out = small_llama(ids, use_cache=True)
        pairs = offline.to_legacy(out.past_key_values)
        with pytest.raises(AttributeError):
            small_llama(ids[:, :1], past_key_values=list(pairs), use_cache=True)


def test_cache_conversions_round_trip(small_llama):
    import torch

    with torch.no_grad():
        out = small_llama(torch.arange(1, 6).unsqueeze(0), use_cache=True)
    pairs = offline.to_legacy(out.past_key_values)
    again = offline.to_legacy(offline.to_cache(pairs))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(pairs, again))
    assert offline.to_cache(None) is None and offline.to_legacy(None) is None


# --- prompts file -----------------------------------------------------------------------------

def test_text_file_is_one_prompt(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("Question: what?\nAnswer: this.\n")
    assert load_prompts(f) == [Prompt(context="Question: what?\nAnswer: this.\n")]


def test_jsonl_prompts_with_parts(tmp_path):
    f = tmp_path / "p.jsonl"
    rows = [{"prompt": "a long text"}, {"text": "another"},
            {"context": ["doc one", "doc two"], "instruction": "Read.", "question": "Which?"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    got = load_prompts(f)
    assert got[0].context == "a long text" and got[1].context == "another"
    assert got[2] == Prompt(context="doc one\n\ndoc two", instruction="Read.", question="Which?")
    assert got[2].text() == "Read.\n\ndoc one\n\ndoc two\n\nWhich?"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.txt", None, "cannot read"),
        ("empty.txt", "  \n", "is empty"),
        ("bad.jsonl", '{"prompt": "ok"}\n{"prompt": \n', "bad.jsonl:2: not valid JSON"),
        ("nokey.jsonl", '{"body": "x"}\n', "nokey.jsonl:1: no \"prompt\""),
        ("blank.jsonl", '{"prompt": "  "}\n', "is empty"),
        ("binary.txt", b"\xff\xfe\x00abc", "not UTF-8"),
    ],
)
def test_unusable_prompts_files_are_bad_input(tmp_path, name, content, message):
    f = tmp_path / name
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    with pytest.raises(BadInput, match=message):
        load_prompts(f)


# --- forced segments --------------------------------------------------------------------------

def test_forced_segments_join_back_and_merge_overlaps():
    text = "Question: 12 apples. Question: 4 pears.\n"
    segs = split_forced(text, ["Question", "tion: 1", "\n", ""])
    assert "".join(s for s, _ in segs) == text
    assert [s for s, forced in segs if forced] == ["Question: 1", "Question", "\n"]
    assert forced_spans("aaa", ["aa"]) == [(0, 3)]
    assert split_forced("plain", []) == [("plain", False)]


# --- net figures ------------------------------------------------------------------------------

def test_net_saving_says_when_compression_does_not_pay():
    # 500 tokens saved at $0.15/1M = $0.000075; 0.5 s of a $2/h machine = $0.00028.
    res = net_saving(500, 0.15e-6, 0.5, 2.0)
    assert not res["pays"] and res["net_usd"] < 0
    assert res["verdict"].startswith("compression does not pay")
    assert res["break_even_usd_per_token"] == pytest.approx(0.5 * 2.0 / 3600 / 500)
    pays = net_saving(500, 30e-6, 0.5, 2.0)  # a GPT-4-priced API model
    assert pays["pays"] and pays["net_usd"] == pytest.approx(500 * 30e-6 - 0.5 * 2.0 / 3600)


def test_net_latency_and_agreement():
    slow = net_latency(original_ms=40, compressed_ms=22, compressor_ms=150)
    assert not slow["pays"] and slow["net_ms"] == pytest.approx(-132) and "does not pay" in slow["verdict"]
    assert net_latency(900, 400, 150)["pays"]
    assert greedy_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 0.75
    assert greedy_agreement([1, 2], [1, 2, 3, 4]) == 0.5
    assert prompt_token_price(3.6, 1000) == pytest.approx(1e-6)


# --- window runs ------------------------------------------------------------------------------

def test_window_runs_mark_tokens_touching_forced_spans():
    from llmbench.optimizers.compress.windows import token_keep_rates, window_runs, window_size

    offsets = [(0, 3), (3, 4), (4, 4), (4, 9), (9, 12)]  # (4, 4): a byte of a split character
    rates = token_keep_rates(offsets, [(3, 5)], 0.4)
    assert rates == [0.4, 1.0, 1.0, 1.0, 0.4]
    assert window_runs(rates, 2) == [[(1, 0.4), (1, 1.0)], [(2, 1.0)], [(1, 0.4)]]
    for n in (2, 150, 200, 201, 202, 399, 401, 954, 5000):
        size = window_size(n)
        windows = -(-(n - 1) // 200)
        assert 1 <= size <= 200 and (n - 1) - size * windows < windows


def test_time_generation_reads_backend_timestamps():
    from types import SimpleNamespace

    from llmbench.optimizers.compress.measure import time_generation

    class Clockwork:
        """A backend whose prefill costs 1 ms per prompt token and each later token 2 ms."""

        def generate(self, prompts, new_tokens):
            n = len(prompts[0])
            times = [100 + n / 1000 + 0.002 * i for i in range(new_tokens)]
            return SimpleNamespace(start=100.0, token_times=times, end=times[-1], output_ids=[list(range(new_tokens))])

    got = time_generation(Clockwork(), list(range(400)), new_tokens=5, repeats=3)
    assert got["ttft_ms"] == pytest.approx(400) and got["e2el_ms"] == pytest.approx(408)
    assert got["output_ids"] == [0, 1, 2, 3, 4] and len(got["ttft_samples_ms"]) == 3


def test_latency_effect_alternates_and_nets_out_the_compressor():
    from types import SimpleNamespace

    from llmbench.optimizers.compress.compressor import CompressionResult
    from llmbench.optimizers.compress.measure import latency_effect

    class Backend:
        tokenizer = staticmethod(lambda text, add_special_tokens=False: SimpleNamespace(input_ids=text.split()))

        def __init__(self):
            self.seen = []

        def generate(self, prompts, new_tokens):
            self.seen.append(len(prompts[0]))
            ttft = len(prompts[0]) / 1000  # 1 ms per prompt token
            return SimpleNamespace(start=0.0, token_times=[ttft, ttft + 0.01], end=ttft + 0.01, output_ids=[[7, 8]])

    backend = Backend()
    result = CompressionResult(100, 40, 25.0, " ".join(["w"] * 40), 50, 1)
    e = latency_effect(backend, " ".join(["w"] * 100), result, new_tokens=2, repeats=2)
    assert backend.seen == [100, 40, 100, 40, 100, 40]
    assert e["ttft"]["saved_ms"] == pytest.approx(60) and e["ttft"]["net_ms"] == pytest.approx(35)
    assert e["ttft"]["pays"] and e["greedy_agreement"] == 1.0
    assert latency_effect(backend, " ".join(["w"] * 100), result, 2, 1, compressor_ms=80)["ttft"]["pays"] is False
