"""LLMLingua compression with a tiny local model: shorter, forced tokens kept, deterministic, offline.

The compressor has random weights, so which tokens go is arbitrary; what is checked is the
mechanics: sizes in the target tokenizer, forced text, the instruction/question split, the CLI.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.optimizers.compress import Compressor, Prompt
from llmbench.optimizers.compress.compressor import load_prompt_compressor
from llmbench.optimizers.compress.counting import load_tokenizer

FORCED = ["Question", "\n", "The answer is"]
SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared beside the project root


@pytest.fixture(scope="module")
def gsm8k() -> str:
    return (SHARED / "data" / "prompts" / "gsm8k_cot_3shot.txt").read_text()


@pytest.fixture(scope="module")
def compressor(tiny_llama, tmp_path_factory) -> Compressor:
    # Load under a network block: any connection attempt (hub, tiktoken download) fails the test.
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("tiktoken")))
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        import tiktoken.registry

        mp.setattr(tiktoken.registry, "ENCODINGS", {})  # make llmlingua's tiktoken call read the seeded file
        load_prompt_compressor.cache_clear()
        return Compressor(str(tiny_llama))


def test_rate_half_compresses_gsm8k_in_proportion(compressor, gsm8k):
    r = compressor.compress(gsm8k, rate=0.5)
    assert r.origin_tokens == len(compressor.tokenizer(gsm8k, add_special_tokens=False).input_ids)
    assert r.compressed_tokens == len(compressor.tokenizer(r.compressed_prompt, add_special_tokens=False).input_ids)
    assert r.compressed_tokens < r.origin_tokens and len(r.compressed_prompt) < len(gsm8k)
    assert 1.6 <= r.ratio <= 2.6
    assert r.latency_ms > 0 and r.passes >= 1


def test_forced_tokens_are_kept_and_result_is_deterministic(compressor, gsm8k):
    first = compressor.compress(gsm8k, rate=0.5, force_tokens=FORCED)
    second = compressor.compress(gsm8k, rate=0.5, force_tokens=FORCED)
    assert first.compressed_prompt == second.compressed_prompt
    assert first.compressed_tokens == second.compressed_tokens
    for token in FORCED:
        assert first.compressed_prompt.count(token) >= gsm8k.count(token), token
    assert first.compressed_tokens < first.origin_tokens


def test_lower_rate_compresses_more(compressor, gsm8k):
    third = compressor.compress(gsm8k, rate=0.33)
    assert 2.3 <= third.ratio <= 4.0
    assert third.compressed_tokens < compressor.compress(gsm8k, rate=0.5).compressed_tokens


def test_target_tokens_and_instruction_question_split(compressor, gsm8k):
    r = compressor.compress(gsm8k, target_tokens=300)
    assert abs(r.compressed_tokens - 300) <= 0.2 * 300
    p = Prompt(context=gsm8k, instruction="Solve the last problem.", question="Question: what is 7 x 6?")
    r = compressor.compress(p, rate=0.5)
    assert r.compressed_prompt.startswith("Solve the last problem.\n\n")
    assert r.compressed_prompt.endswith("\n\nQuestion: what is 7 x 6?")
    assert 1.6 <= r.ratio <= 2.6  # the rate is over the whole prompt, kept parts included


def test_counts_are_in_the_target_tokenizer(tiny_llama, gsm8k):
    # Through the project's loader, which seeds tiktoken's cache: a bare get_encoding() would
    # download on a fresh machine (and passed only where an earlier run had left the file).
    gpt = load_tokenizer("tiktoken:cl100k_base")
    r = Compressor(str(tiny_llama), target_tokenizer=gpt).compress(gsm8k, rate=0.5)
    assert r.origin_tokens == len(gpt.encode(gsm8k))
    assert r.compressed_tokens == len(gpt.encode(r.compressed_prompt))
    assert 1.6 <= r.ratio <= 2.6


def test_nothing_to_do_when_rate_is_one(compressor):
    r = compressor.compress("A short prompt.", rate=1.0)
    assert r.passes == 0 and r.compressed_prompt == "A short prompt." and r.ratio == 1.0


def test_text_split_inside_characters_compresses(compressor):
    # A byte-level BPE splits these characters over several tokens (llmlingua's own segmenter
    # raises IndexError on them).
    text = "ünïcödé ✓ 日本語のテキスト、圧縮のテスト。" * 8
    r = compressor.compress(text, rate=0.5, force_tokens=["✓"])
    assert r.compressed_tokens < r.origin_tokens and r.compressed_prompt.count("✓") >= 8


# --- command line -----------------------------------------------------------------------------

def test_cli_json_for_one_prompt(tiny_llama, gsm8k, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text(gsm8k)
    res = CliRunner().invoke(main, ["compress", str(f), "--rate", "0.5", "--model", str(tiny_llama),
                                    "--force-token", "\\n", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {"origin_tokens", "compressed_tokens", "ratio", "latency_ms", "compressed_prompt"} <= set(doc)
    assert 1.6 <= doc["ratio"] <= 2.6 and doc["force_tokens"] == ["\n"]
    assert doc["compressed_prompt"].count("\n") >= gsm8k.count("\n")


def test_cli_jsonl_with_out_file(tiny_llama, gsm8k, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": gsm8k}) + "\n" + json.dumps({"text": gsm8k[:1200], "question": "Why?"}) + "\n")
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(main, ["compress", str(f), "--target-tokens", "200", "--model", str(tiny_llama),
                                    "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["prompts"]) == 2 and "compressed_prompt" not in doc["prompts"][0]
    assert doc["totals"]["origin_tokens"] == sum(p["origin_tokens"] for p in doc["prompts"])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 2 and written[1]["prompt"].endswith("Why?")


@pytest.mark.parametrize("setup", ["missing", "empty", "directory"])
def test_cli_unreadable_prompts_exit_2(tmp_path, setup):
    path = tmp_path / "prompts.txt"
    if setup == "empty":
        path.write_text("")
    elif setup == "directory":
        path.mkdir()
    res = CliRunner().invoke(main, ["compress", str(path), "--json"])
    assert res.exit_code == 2
    assert res.stdout == "" and "Traceback" not in res.output
    assert res.stderr.count("\n") == 1 and str(path) in res.stderr


def test_cli_bad_options_exit_2(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("some prompt")
    for args in (["--rate", "1.5"], ["--rate", "0.5", "--target-tokens", "10"], ["--model", str(tmp_path / "nope")]):
        res = CliRunner().invoke(main, ["compress", str(f), *args])
        assert res.exit_code == 2, (args, res.output)


def test_compress_prompts_api(tiny_llama, gsm8k):
    from llmbench.optimizers.compress.measure import compress_prompts, net_saving

    results = compress_prompts([gsm8k, Prompt(context=gsm8k, question="Why?")], 0.5, str(tiny_llama))
    assert [r.compressed_prompt.endswith("Why?") for r in results] == [False, True]
    r = results[0]
    verdict = net_saving(r.tokens_saved, 0.15e-6, r.latency_ms / 1000, usd_per_hour=2.0)
    assert set(verdict) >= {"net_usd", "pays", "verdict"}


def test_cli_counts_in_a_tiktoken_target(tiny_llama, gsm8k, tmp_path):
    import tiktoken

    f = tmp_path / "p.txt"
    f.write_text(gsm8k)
    res = CliRunner().invoke(main, ["compress", str(f), "--model", str(tiny_llama), "--target", "tiktoken:cl100k_base", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["origin_tokens"] == len(tiktoken.get_encoding("cl100k_base").encode(gsm8k))
    bad = CliRunner().invoke(main, ["compress", str(f), "--target", "tiktoken:no_such_encoding"])
    assert bad.exit_code == 2
