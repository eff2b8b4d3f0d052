"""The quality gate: golden sets, figures, the gate's verdicts, and the stage in a real run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from tiny_models import session_root, tiny_sources, train_tiny

from llmbench.config import QualityConfig
from llmbench.errors import BadInput
from llmbench.golden import GoldenItem, load_golden
from llmbench.quality import (UNVERIFIED, Encoded, Outputs, answer_scores, compare, entropy_share, gate,
                              greedy_agreement, measure_candidate, next_token_figures, reference_variant)


# ---- golden sets --------------------------------------------------------------------------------
def test_default_golden_set_is_versioned_and_has_references():
    g = load_golden()
    assert g.name == "default" and g.version.count(".") == 2 and len(g.sha256) == 64
    assert len(g.items) >= 12 and sum(i.reference is not None for i in g.items) >= 8
    assert len({i.id for i in g.items}) == len(g.items)
    assert {i.difficulty for i in g.items} == {"short-answer", "open"}


@pytest.mark.parametrize("lines, fault", [
    (['{"prompt": "no header"}'], "header"),
    (['{"golden": {"name": "x", "version": "1"}}', '{"prompt": "a"}'], "version"),
    (['{"golden": {"name": "x", "version": "1.0.0"}}', '{"prompt": ""}'], "prompt"),
    (['{"golden": {"name": "x", "version": "1.0.0"}}', '{"prompt": "a", "reference": 3}'], "reference"),
    (['{"golden": {"name": "x", "version": "1.0.0"}}', '{"id": 1, "prompt": "a"}', '{"id": 1, "prompt": "b"}'], "duplicate"),
    (['{"golden": {"name": "x", "version": "1.0.0"}}'], "no items"),
    (['{"golden": {"name": "x", "version": "1.0.0"}}', '{"prompt": "a", "difficulty": ""}'], "difficulty"),
])
def test_bad_golden_sets_are_bad_input(tmp_path, lines, fault):
    p = tmp_path / "g.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match=fault):
        load_golden(p)


def test_item_text_joins_prompt_and_reference():
    assert GoldenItem("a", "Q: 2+2?\nA:", "4").text == "Q: 2+2?\nA: 4"
    assert GoldenItem("b", "plain prose").text == "plain prose"


# ---- figures ------------------------------------------------------------------------------------
def test_greedy_agreement_counts_up_to_the_first_difference():
    assert greedy_agreement([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == (1.0, 1.0)
    # After the first difference the outputs continue from different prefixes: later matches do not count.
    assert greedy_agreement([[1, 2, 3, 4]], [[1, 9, 3, 4]]) == (0.25, 0.0)
    assert greedy_agreement([[1, 2], [5, 6]], [[1, 2], [0, 6]]) == (0.5, 0.5)


def test_identical_outputs_score_agreement_one_and_kl_zero():
    torch.manual_seed(0)
    texts = [[3, 4, 5, 6, 7], [8, 9, 10]]
    logits = torch.randn(2, 5, 50)
    outs = Outputs([[1, 2, 3], [4, 5, 6]], logits, ["Paris", "no idea"])
    figs = compare(outs, outs, Encoded([[1], [2]], texts), ["Paris", "Tokyo"])
    assert figs["greedy_agreement"] == 1.0 and figs["greedy_exact"] == 1.0 and figs["top1_agreement"] == 1.0
    assert figs["kl_mean"] == 0.0 and figs["ppl_delta"] == 0.0
    assert figs["positions"] == 4 + 2  # the left padding of the shorter text is not a position
    groups = compare(outs, outs, Encoded([[1], [2]], texts), ["Paris", "Tokyo"], ["a", "b"])["by_difficulty"]
    assert groups == {"a": {"greedy_agreement": 1.0, "top1_agreement": 1.0, "kl_mean": 0.0, "n": 1},
                      "b": {"greedy_agreement": 1.0, "top1_agreement": 1.0, "kl_mean": 0.0, "n": 1}}


def test_figures_by_difficulty_follow_each_group():
    torch.manual_seed(0)
    texts = [[3, 4, 5, 6, 7], [8, 9, 10]]
    ref_logits = torch.randn(2, 5, 50) * 5
    var_logits = ref_logits.clone()
    var_logits[1] = torch.randn(5, 50) * 5  # only the second (shorter, left-padded) row changes
    ref = Outputs([[1, 2], [4, 5]], ref_logits, ["", ""])
    var = Outputs([[1, 2], [9, 5]], var_logits, ["", ""])
    groups = compare(ref, var, Encoded([[1], [2]], texts), [None, None], ["same", "changed"])["by_difficulty"]
    assert groups["same"]["greedy_agreement"] == 1.0 and groups["same"]["kl_mean"] == 0.0
    assert groups["changed"]["greedy_agreement"] == 0.0 and groups["changed"]["kl_mean"] > 0
    # The group's own figure equals the figure of that row measured alone.
    alone = next_token_figures(ref_logits[1:, 2:], var_logits[1:, 2:], texts[1:])
    assert groups["changed"]["top1_agreement"] == pytest.approx(alone["top1_agreement"], abs=1e-6)


def test_next_token_figures_see_a_change():
    torch.manual_seed(0)
    texts = [[3, 4, 5, 6, 7]]
    ref = torch.randn(1, 5, 50) * 5
    worse = ref + torch.randn(1, 5, 50) * 5
    figs = next_token_figures(ref, worse, texts)
    assert figs["kl_mean"] > 0.1 and figs["top1_agreement"] < 1.0 and figs["ppl"] != figs["ppl_reference"]


def test_entropy_share_tells_flat_from_peaked():
    texts = [[1, 2, 3, 4]]
    assert entropy_share(torch.zeros(1, 4, 100), texts) == pytest.approx(1.0)
    peaked = torch.zeros(1, 4, 100)
    peaked[..., 7] = 20.0
    assert entropy_share(peaked, texts) < 0.01


def test_answer_scores():
    scores = answer_scores([" Paris.\nQuestion: next", " It is tokyo", " 12"], ["Paris", "Tokyo", None])
    assert scores == {"exact_match": 0.5, "contains": 1.0, "answered": 2}
    assert answer_scores(["x"], [None]) is None
    # "contains" wants the whole word: "48" is not in "148".
    assert answer_scores([" 148"], ["48"])["contains"] == 0.0


# ---- the gate -----------------------------------------------------------------------------------
def _figs(agree: float, top1: float, em: float = 1.0) -> dict:
    return {"greedy_agreement": agree, "top1_agreement": top1, "kl_mean": 0.01, "ppl": 10.3, "ppl_reference": 10.0,
            "exact_match": em, "contains": em}


def test_gate_passes_fails_and_leaves_random_weights_unverified():
    cfg = QualityConfig()
    ref_scores = {"exact_match": 0.8, "contains": 0.8}
    assert gate(_figs(1.0, 0.995, 0.8), ref_scores, cfg, None)["gate"] == "pass"
    failed = gate(_figs(0.9, 0.995, 0.8), ref_scores, cfg, None)
    assert failed["gate"] == "fail" and not failed["checks"]["greedy_agreement"]["ok"]
    # Keeping 0.6 of the reference's 0.8 exact matches is 75% of its quality: a fail.
    assert gate(_figs(1.0, 1.0, 0.6), ref_scores, cfg, None)["checks"]["exact_match_kept"]["ok"] is False
    unverified = gate(_figs(0.2, 0.5), ref_scores, cfg, UNVERIFIED)
    assert unverified["gate"] == "unverified" and unverified["gate_note"] == UNVERIFIED and unverified["would_pass"] is False
    assert gate(_figs(0.95, 0.95), None, QualityConfig(min_share=0.9), None)["gate"] == "pass"


def test_optional_perplexity_and_kl_limits():
    strict = QualityConfig(max_ppl_increase=0.01, max_kl=0.001)
    verdict = gate(_figs(1.0, 1.0), None, strict, None)
    assert verdict["gate"] == "fail" and not verdict["checks"]["ppl_increase"]["ok"] and not verdict["checks"]["kl_mean"]["ok"]
    assert gate(_figs(1.0, 1.0), None, QualityConfig(max_ppl_increase=0.05, max_kl=0.1), None)["gate"] == "pass"


def test_the_reference_is_the_highest_precision_variant():
    # On a GPU too: fp32 variants are never judged against a bf16 reference.
    assert reference_variant("cuda", ["torch-bf16", "torch-fp32", "onnx-int8"]) == "torch-fp32"
    assert reference_variant("cuda", ["torch-bf16", "torch-fp16"]) == "torch-fp32"  # measured anyway
    assert reference_variant("cuda") == reference_variant("cpu") == "torch-fp32"
    assert reference_variant("cpu", ["onnx-int8", "onnx-fp32", "onnx-int4"]) == "onnx-fp32"
    assert reference_variant("cpu", ["onnx-fp32", "torch-fp32"]) == "torch-fp32"


def test_answers_are_cut_at_eos_and_stop_strings():
    """A fixed-length generation runs past EOS: " Paris<eos> The capital" is the answer " Paris"."""
    from llmbench.backends.base import Generation
    from llmbench.models.tokenizer import load_shipped_tokenizer
    from llmbench.quality import collect

    tok = load_shipped_tokenizer()
    ids = lambda text: tok(text)["input_ids"]  # noqa: E731
    eos = tok.eos_token_id
    greedy = [ids(" Paris") + [eos] + ids(" The capital"), ids(" Tokyo, I think") + [eos]]

    class FixedOutput:
        """The greedy ids a backend returned (it generates a fixed count, as the gate asks)."""

        def generate(self, prompts, new_tokens, timed=True):
            return Generation(start=0.0, token_times=[0.0], prompt_tokens=[1, 1], output_ids=[list(g) for g in greedy])

        def next_token_logits(self, texts):
            return torch.zeros(len(texts), max(map(len, texts)), 8)

    out = collect(FixedOutput(), tok, Encoded([[5], [5]], [[5, 6], [5, 6]]), 16, [(), (",",)])
    assert out.greedy == [ids(" Paris") + [eos], ids(" Tokyo, I think") + [eos]]
    assert out.answers == [" Paris", " Tokyo"]
    assert answer_scores(out.answers, ["Paris", "Tokyo"]) == {"exact_match": 1.0, "contains": 1.0, "answered": 2}


def test_golden_stop_strings_are_read_and_checked(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text('{"golden": {"name": "x", "version": "1.0.0"}}\n{"prompt": "a", "stop": "\\n"}\n'
                 '{"prompt": "b", "stop": ["Q:", "."]}\n{"prompt": "c"}\n')
    assert [i.stop for i in load_golden(p).items] == [("\n",), ("Q:", "."), ()]
    p.write_text('{"golden": {"name": "x", "version": "1.0.0"}}\n{"prompt": "a", "stop": [3]}\n')
    with pytest.raises(BadInput, match="item 1: 'stop'"):
        load_golden(p)


def test_gate_passes_exactly_at_the_bar():
    """A figure equal to min_share keeps the share asked for: a pass (kills a `>` mutant)."""
    cfg = QualityConfig(min_share=0.75)
    verdict = gate(_figs(0.75, 0.75, 0.75), {"exact_match": 1.0, "contains": 1.0}, cfg, None)
    assert verdict["gate"] == "pass"
    assert all(c["ok"] for c in verdict["checks"].values()) and verdict["checks"]["exact_match_kept"]["value"] == 0.75


# ---- on a real (tiny) model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_sources(tmp_path_factory)["llama"]


def test_identical_variant_through_the_stage_scores_one_and_zero(llama):
    """onnx-fp32 computes what torch-fp32 computes: agreement 1.0 and KL 0 on the golden set."""
    doc = measure_candidate(llama, ["torch-fp32", "onnx-fp32", "onnx-int4"], "cpu", "float32", load_golden(), QualityConfig())
    same = doc["variants"]["onnx-fp32"]
    assert same["greedy_agreement"] == 1.0 and same["top1_agreement"] == 1.0 and same["kl_mean"] < 1e-9
    assert abs(same["ppl_delta"]) < 1e-3
    int4 = doc["variants"]["onnx-int4"]
    assert int4["kl_mean"] > 0 and "checks" in int4
    # A random-weight local model: its reference logits are nearly flat, so the gate does not judge it.
    assert doc["entropy_share"] > 0.9
    assert same["gate"] == int4["gate"] == "unverified" and "near-flat" in same["gate_note"]
    assert doc["variants"]["torch-fp32"]["gate"] == "reference"


def test_a_trained_model_gets_a_real_verdict(tmp_path_factory):
    """Peaked logits (briefly trained): the gate judges. fp32 passes; quantized variants get figures and a verdict."""
    from llmbench.models.source import resolve

    source = resolve(str(train_tiny(session_root(tmp_path_factory) / "trained-llama")))
    doc = measure_candidate(source, ["torch-fp32", "onnx-fp32", "onnx-int4"], "cpu", "float32", load_golden(), QualityConfig())
    assert doc["entropy_share"] < 0.9
    same, int4 = doc["variants"]["onnx-fp32"], doc["variants"]["onnx-int4"]
    assert same["gate"] == "pass" and "gate_note" not in same
    assert int4["gate"] in ("pass", "fail") and int4["kl_mean"] > same["kl_mean"]
    # The verdict follows min_share: a bar at what int4 reached passes it.
    bar = min(int4["greedy_agreement"], int4["top1_agreement"]) - 1e-6
    assert gate(int4, None, QualityConfig(min_share=max(bar, 0.01)), None)["gate"] == "pass"


def test_quality_stage_in_a_run(tmp_path, llama):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "candidates": [{"model": llama.ref, "name": "tiny", "variants": ["torch-fp32", "onnx-fp32", "onnx-int8"]}],
        "workload": {"prompt_tokens": 16, "output_tokens": 4, "requests": 2},
        "warmup": 0,
        "quality": {"max_new_tokens": 8},
    }))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "llmbench", "run", str(cfg), "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    rows = {r["variant"]: r for r in summary["rows"]}
    assert set(rows) == {"torch-fp32", "onnx-fp32", "onnx-int8"}
    assert rows["onnx-fp32"]["quality"]["greedy_agreement"] == 1.0
    assert rows["onnx-int8"]["quality"]["gate"] == "unverified" and "kl_mean" in rows["onnx-int8"]["quality"]
    assert rows["torch-fp32"]["quality"]["gate"] == "reference"
    for v in ("onnx-fp32", "onnx-int8"):
        row = rows[v]
        assert row["speedup_vs_reference"]["reference"] == "torch-fp32" and row["speedup_vs_reference"]["tpot_p50"] > 0
        assert row["size_bytes"] > 0 and row["build_total_s"] >= 0 and row["load_s"] >= 0 and row["peak_rss_mb"] > 0
    # 15 MatMuls as MatMulInteger, and the embedding table as uint8 (onnxruntime quantizes Gather too).
    assert rows["onnx-int8"]["quantized_ops"] == {"MatMulInteger": 15, "Gather (uint8 table)": 1}
    assert set(rows["onnx-int8"]["quality"]["by_difficulty"]) == {"short-answer", "open"}
    doc = json.loads((out / "quality.json").read_text())
    assert doc["golden"]["name"] == "default" and doc["min_share"] == 0.99 and doc["max_new_tokens"] == 8
    assert doc["candidates"]["tiny"]["reference_variant"] == "torch-fp32"
    assert set(doc["candidates"]["tiny"]["variants"]) == {"torch-fp32", "onnx-fp32", "onnx-int8"}
    saved = json.loads((out / "summary.json").read_text())
    assert "quality" in saved["rows"][1]
    assert "quality_greedy_agreement" in (out / "summary.csv").read_text().splitlines()[0]
    # Issue 13 item 11: each verdict printed once, with the model's name beside the variant.
    verdicts = [line for line in proc.stderr.splitlines() if line.lstrip().startswith("quality") and "onnx-int8" in line and "unverified" in line]
    assert len(verdicts) == 1 and "tiny onnx-int8" in verdicts[0], verdicts


def test_without_torch_fp32_the_onnx_fp32_variant_is_the_reference(llama):
    doc = measure_candidate(llama, ["onnx-int4", "onnx-fp32"], "cpu", "float32", load_golden(), QualityConfig())
    assert doc["reference_variant"] == "onnx-fp32" and doc["variants"]["onnx-fp32"]["gate"] == "reference"
    assert set(doc["variants"]) == {"onnx-fp32", "onnx-int4"} and doc["variants"]["onnx-int4"]["kl_mean"] > 0


def test_a_run_with_only_the_reference_skips_quietly(tmp_path, llama):
    from llmbench.quality import run_quality

    doc = run_quality({"config": {"candidates": [{"model": llama.ref, "variants": ["torch-fp32"]}]}, "device": "cpu"})
    assert doc["candidates"][llama.ref]["skipped"]


def test_a_candidate_whose_reference_fails_is_an_error_not_a_crash(tmp_path):
    from llmbench.quality import run_quality

    (tmp_path / "config.json").write_text("{}")  # a folder that resolves but holds no model
    doc = run_quality({"config": {"candidates": [{"model": str(tmp_path), "variants": ["torch-fp32", "onnx-int8"]}]},
                       "device": "cpu"})
    cand = doc["candidates"][str(tmp_path)]
    assert cand["error"] and cand["variants"]["onnx-int8"]["gate"] == "error"
