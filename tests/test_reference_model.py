"""The shipped reference model (profiles/reference/): it loads, it learned, its variants get real verdicts.

Figures are recomputed here from the weights and the data, not read from the model card: the
held-out perplexity the card states must come out of the shipped weights again.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmbench.config import QualityConfig
from llmbench.golden import load_golden
from llmbench.models.reference import reference_dir
from llmbench.models.train_reference import Recipe, held_out_loss, split_text, train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "tinyshakespeare.txt"
GOLDEN = Path(__file__).resolve().parents[1] / "profiles" / "golden" / "shakespeare.jsonl"


@pytest.fixture(scope="module")
def text() -> str:
    return DATA.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(reference_dir(), trust_remote_code=False).eval()


def test_the_shipped_folder_is_a_plain_safetensors_llama(model):
    folder = reference_dir()
    weights = folder / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 20 * 2**20
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.py"))  # no pickles, no remote code
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "auto_map" not in config
    assert type(model).__name__ == "LlamaForCausalLM"
    n = sum(p.numel() for p in model.parameters())
    card = json.loads((folder / "training.json").read_text())
    assert n == card["figures"]["parameters"] and 2e6 < n < 8e6
    assert f"{card['figures']['held_out_ppl']:.1f}" in (folder / "README.md").read_text()
    assert (folder / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_held_out_perplexity_is_far_below_a_random_cards(model, text):
    import hashlib

    from transformers import AutoModelForCausalLM

    from llmbench.models.cards import card_dir
    from llmbench.models.tokenizer import load_shipped_tokenizer

    card = json.loads((reference_dir() / "training.json").read_text())
    assert hashlib.sha256(DATA.read_bytes()).hexdigest() == card["data"]["sha256"]
    held = load_shipped_tokenizer()(split_text(text)[1])["input_ids"]
    trained = held_out_loss(model, held, 256)
    # The card's figure comes out of the shipped weights again (thread counts may move the last bits).
    assert trained == pytest.approx(card["figures"]["held_out_loss"], abs=2e-3)
    random_card = AutoModelForCausalLM.from_pretrained(card_dir("llama-5m")).eval()
    untrained = held_out_loss(random_card, held[: 8 * 256 + 1], 256)
    assert math.exp(untrained) > 2000  # random weights: near the vocabulary's 4,096
    assert math.exp(trained) < math.exp(untrained) / 10


def test_the_golden_set_asks_what_the_model_learned_and_holds_out_the_rest(text):
    golden = load_golden(GOLDEN)
    assert golden.name == "shakespeare" and golden.version.count(".") == 2
    train_part, held = split_text(text)
    held_out = [i for i in golden.items if i.difficulty == "held-out"]
    phrase = [i for i in golden.items if i.difficulty == "phrase"]
    assert len(held_out) >= 5 and len(phrase) >= 8
    for item in held_out:
        assert item.reference is None and item.prompt in held and item.prompt not in train_part
    for item in phrase:
        # The start of a speech in the training text, and the reference is the word that follows there.
        at = train_part.find(f"\n\n{item.prompt} {item.reference}")
        assert at >= 0 and train_part[at + 3 + len(item.prompt) + len(item.reference)] in ",.;:!?"
        assert "\n" in item.stop and "," in item.stop


def test_int4_is_worse_than_fp32_and_the_floor_decides_it():
    from llmbench.models.source import resolve
    from llmbench.quality import gate, measure_candidate

    source = resolve(str(reference_dir()))
    assert not source.random_weights
    doc = measure_candidate(source, ["torch-fp32", "onnx-fp32", "onnx-int4"], "cpu", "float32",
                            load_golden(GOLDEN), QualityConfig())
    ref, same, int4 = (doc["variants"][v] for v in ("torch-fp32", "onnx-fp32", "onnx-int4"))
    assert doc["entropy_share"] < 0.9  # trained: peaked logits, so verdicts are damage, not ties
    assert ref["exact_match"] == 1.0  # every phrase item is one the fp32 model completes right
    assert same["gate"] == "pass" and same["kl_mean"] < 1e-6
    # int4 is measurably worse: KL and top-1 disagreement far above fp32's rounding noise, greedy
    # outputs that part early, answers lost. (Its perplexity on these few short texts moves by less
    # than 0.1%, either way: too few positions to tell.)
    assert int4["kl_mean"] > 1e3 * max(same["kl_mean"], 1e-9) and int4["top1_agreement"] < 0.99
    assert int4["greedy_agreement"] < 0.9 and int4["exact_match"] < ref["exact_match"]
    assert "gate_note" not in int4
    # Under the default floor (0.99) int4 fails: its top-1 agreement alone is below it.
    assert int4["gate"] == "fail" and not int4["checks"]["top1_agreement"]["ok"]
    # The verdict is the floor's: a floor just below every kept share passes it, one above the weaker agreement fails it.
    weaker = min(int4["greedy_agreement"], int4["top1_agreement"])
    lowest = min(c["value"] for c in int4["checks"].values() if "min" in c)
    ref_scores = {"exact_match": ref["exact_match"], "contains": ref["contains"]}
    assert gate(int4, ref_scores, QualityConfig(min_share=max(0.01, lowest - 1e-6)), None)["gate"] == "pass"
    assert gate(int4, ref_scores, QualityConfig(min_share=min(1.0, weaker + 1e-6)), None)["gate"] == "fail"


def test_training_is_deterministic_from_its_seed(text):
    import torch

    small = Recipe(steps=3, batch=2, block=32, hidden=64, intermediate=256, layers=1, heads=2, kv_heads=1, eval_every=3)
    sample = text[:20000]
    threads = torch.get_num_threads()
    a, curve_a, _ = train(sample, small, log=lambda s: None)
    b, curve_b, _ = train(sample, small, log=lambda s: None)
    other, _, _ = train(sample, Recipe(**{**small.__dict__, "seed": 1}), log=lambda s: None)
    assert torch.get_num_threads() == threads  # the caller's settings are restored
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    untimed = lambda curve: [{k: v for k, v in point.items() if k != "seconds"} for point in curve]  # noqa: E731
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and untimed(curve_a) == untimed(curve_b)
    assert not all(torch.equal(sa[k], so[k]) for k in sa)
