"""The quality stage end to end on scripted variants (bench/quality.py's measure_candidate, run_quality,
quality_stage): which variant is the reference, what each figure and verdict is, errors kept per
variant, what is closed, logged and printed. The variants are a backend family registered through
the backend registry whose outputs are fixed, so that every figure is recomputed by hand; the real
models walk the same path in test_quality.py (4-55 s a test, too slow for the mutation script)."""
from __future__ import annotations

import json
import math
import time
import types

import pytest
import torch

from llmbench.backends import registry
from llmbench.backends.base import Backend, Generation
from llmbench.quality import UNVERIFIED, quality_stage

VOCAB = "\x00\x01ab cdz."  # 0 is EOS, 1 another special token (decoded to nothing)


class Chars:
    """One token per character of VOCAB."""

    eos_token_id = 0

    def __call__(self, text):
        return {"input_ids": [VOCAB.index(c) for c in text]}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(VOCAB[i] for i in ids if i > 1 or not skip_special_tokens)


def ids(text: str) -> list[int]:
    return [VOCAB.index(c) for c in text]


class Scripted(Backend):
    """Fixed greedy outputs per variant (3 tokens, as generated); logits that put half the mass on each
    teacher-forced target and half on EOS (FLAT: uniform). A variant ending in "-bad" fails to load."""

    kind = "script"
    OUT = {"script-fp32": ["ab\x00", "z.c"], "script-int8": ["ab\x00", "z.d"], "script-q4": ["a\x00", "z.c"]}
    FLAT = False
    wall = 0.0
    made: list = []
    closed: list = []

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.served = self.variant == "script-q4"  # through its own server: greedy ids only
        Scripted.made.append(self)

    def load(self):
        if self.variant.endswith("-bad"):
            raise RuntimeError("x" * 400 + "\nsecond line")
        self.tokenizer = Chars()

    def generate(self, prompts, new_tokens, timed=True):
        assert (new_tokens, timed) == (3, False)
        return Generation(0.0, [0.0], [len(p) for p in prompts], [ids(t) for t in self.OUT[self.variant]])

    def greedy_ids(self, prompts, new_tokens):
        assert new_tokens == 3 and len(prompts) == 2
        return [ids(t) for t in self.OUT[self.variant]]

    def next_token_logits(self, texts):
        width = max(map(len, texts))
        logits = torch.zeros(len(texts), width, len(VOCAB), dtype=torch.float64)
        if not self.FLAT:
            for row, t in enumerate(texts):
                for j in range(len(t) - 1):  # left-padded: position pad + j predicts t[j + 1]
                    pos = width - len(t) + j
                    logits[row, pos] = -1e9
                    logits[row, pos, [0, t[j + 1]]] = 0.0
        return logits

    def close(self):
        Scripted.closed.append(self.variant)


@pytest.fixture
def stage(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._BACKENDS, "script", lambda: Scripted)
    monkeypatch.setattr(Scripted, "made", [])
    monkeypatch.setattr(Scripted, "closed", [])
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    golden = tmp_path / "g.jsonl"
    golden.write_text('{"golden": {"name": "g", "version": "1.0.0"}}\n{"id": "1", "prompt": "ab", "reference": "ab"}\n'
                      '{"id": "2", "prompt": "cd", "reference": "z", "difficulty": "hard", "stop": "."}\n')

    def run(variants, **cand):
        printed: list[str] = []
        meta = {"device": "cpu", "config": {"dtype": "float16", "quality": {"golden_set": str(golden), "min_share": 0.75,
                                                                            "max_new_tokens": 3},
                                            "candidates": [{"name": "m", "model": str(tmp_path / "m"), "variants": variants, **cand}]}}
        rows = [{"model": "m", "variant": v, "scenario": "single-stream", "point": "single"} for v in variants]
        t = time.perf_counter()
        quality_stage(types.SimpleNamespace(path=tmp_path), meta, {"rows": rows}, types.SimpleNamespace(print=printed.append))
        Scripted.wall = time.perf_counter() - t  # every time the stage reports lies within it
        doc = json.loads((tmp_path / "quality.json").read_text())
        assert doc == json.loads(json.dumps(doc)) and 0 <= doc["seconds"] <= Scripted.wall + 5e-4
        assert doc["seconds"] == round(doc["seconds"], 3)
        return doc, rows, printed

    return run


def test_each_variant_against_the_highest_precision_one(stage):
    doc, rows, printed = stage(["script-int8", "script-fp32", "script-q4", "script-bad"], trust_remote_code=True)
    cand = doc["candidates"]["m"]
    assert (cand["reference"], cand["reference_variant"], cand["reference_why"]) == ("script-fp32", "script-fp32",
                                                                                     "the highest-precision variant listed")
    # Every position: half the mass on its target, half on EOS: entropy ln 2 of ln 9, perplexity 2.
    flat = math.log(2) / math.log(9)
    assert cand["random_weights"] is False and cand["entropy_share"] == round(flat, 4)
    ref = cand["variants"]["script-fp32"]
    assert 0 <= ref.pop("seconds") <= Scripted.wall
    assert ref == {"role": "reference", "gate": "reference", "ppl": 2.0, "entropy_share": round(flat, 6),
                   "exact_match": 1.0, "contains": 1.0, "answered": 2}  # "ab"; "z.c" cut at "." -> "z"
    # int8: item 1 the same; item 2 "z.d" agrees for 2 tokens of 3: (1 + 2/3) / 2; same logits.
    int8 = cand["variants"]["script-int8"]
    for took in (cand["seconds"], int8["seconds"], cand["variants"]["script-q4"]["seconds"]):
        assert 0 <= took <= Scripted.wall + 5e-4 and took == round(took, 3)
    assert int8.pop("seconds") <= cand.pop("seconds") and int8.pop("checks")["greedy_agreement"] == {"value": pytest.approx(5 / 6), "min": 0.75, "ok": True}
    assert int8 == {"greedy_agreement": 0.833333, "greedy_exact": 0.5, "top1_agreement": 1.0, "kl_mean": 0.0, "ppl": 2.0,
                    "ppl_reference": 2.0, "positions": 4 + 3, "ppl_delta": 0.0, "exact_match": 1.0, "contains": 1.0, "answered": 2,
                    "by_difficulty": {"hard": {"greedy_agreement": 0.666667, "top1_agreement": 1.0, "kl_mean": 0.0, "n": 1}},
                    "gate": "pass"}
    # The served q4: "a" then EOS agrees for 1 token of 3, item 2 in full: 2/3; its answers "a" and "z".
    q4 = cand["variants"]["script-q4"]
    assert (q4["greedy_agreement"], q4["exact_match"], q4["contains"], q4["gate"]) == (0.666667, 0.5, 0.5, "fail")
    assert set(q4["checks"]) == {"greedy_agreement", "exact_match_kept", "contains_kept"} and "top1_agreement" not in q4
    assert cand["variants"]["script-bad"] == {"gate": "error", "error": ("RuntimeError: " + "x" * 400)[:300]}
    assert cand["answers"] == {"script-fp32": ["ab", "z"], "script-int8": ["ab", "z"], "script-q4": ["a", "z"]}
    # Each backend made with the run's device, dtype and trust setting; each loaded one closed once.
    assert [(b.variant, b.device, b.dtype, b.trust_remote_code) for b in Scripted.made] == [
        ("script-fp32", "cpu", "float16", True), ("script-int8", "cpu", "float16", True), ("script-q4", "cpu", "float16", True),
        ("script-bad", "cpu", "float16", True)]
    assert Scripted.closed == ["script-fp32", "script-int8", "script-q4"]
    assert printed == ["  quality m script-int8: measured", "  quality m script-q4: measured", "  quality m script-bad: measured",
                       "quality m script-int8: pass  greedy_agreement 0.833, top1_agreement 1.000, kl_mean 0.000, ppl_delta 0.000",
                       "quality m script-q4: fail  greedy_agreement 0.667",
                       f"quality m script-bad: error  RuntimeError: {'x' * 286}"]
    assert rows[0]["quality"]["gate"] == "pass" and rows[0]["quality"]["reference"] == "script-fp32" and "quality" in rows[1]


def test_flat_reference_logits_or_random_weights_leave_verdicts_unverified(stage, monkeypatch):
    monkeypatch.setattr(Scripted, "FLAT", True)
    doc, _, printed = stage(["script-fp32", "script-int8"])
    cand = doc["candidates"]["m"]
    note = "unverified: near-flat reference logits (entropy 100% of uniform; untrained weights?)"
    assert cand["entropy_share"] == 1.0 and cand["variants"]["script-int8"]["gate_note"] == note
    assert cand["variants"]["script-int8"]["would_pass"] is True and printed[-1].startswith(f"quality m script-int8: {note}  ")
    monkeypatch.setattr(Scripted, "FLAT", False)
    monkeypatch.setattr("llmbench.models.source.ModelSource.random_weights", property(lambda self: True))
    cand = stage(["script-fp32", "script-int8"])[0]["candidates"]["m"]
    assert cand["random_weights"] is True and cand["variants"]["script-int8"]["gate_note"] == UNVERIFIED
    assert [b.trust_remote_code for b in Scripted.made] == [False] * 4  # no remote code unless the candidate asks


def test_a_reference_that_fails_to_load_is_an_error_for_each_variant(stage):
    doc, _, printed = stage(["script-fp32-bad", "script-int8"])
    msg = ("RuntimeError: " + "x" * 400)[:300]  # the first line only, 300 characters at most
    assert doc["candidates"]["m"] == {"reference": "script-fp32-bad", "reference_variant": "script-fp32-bad", "error": msg,
                                      "variants": {"script-int8": {"gate": "error", "error": msg}}}
    assert printed == [f"  quality m: {msg}", f"quality m script-int8: error  {msg}"] and Scripted.closed == []


def test_encode_keeps_the_first_256_tokens_of_prompts_and_texts():
    from llmbench.golden import GoldenItem, GoldenSet
    from llmbench.quality import encode

    enc = encode(Chars(), GoldenSet("g", "1.0.0", "", "", [GoldenItem("1", "a" * 300, "b"), GoldenItem("2", "cd")]))
    assert enc.prompts == [[2] * 256, [5, 6]] and enc.texts == [[2] * 256, [5, 6]]  # "a" x 300 + " b": its first 256
