"""LLM-as-a-judge (issue 16 point 3): rubrics, verdicts in both orders, labels, cost, and a run.

The judge on scripted answers talks to a scripted OpenAI-compatible judge server (real HTTP on
loopback) that applies a fixed rule to the rubric prompt it receives: known-correct verdicts, which
no real tiny model gives. The shipped reference model judges for real twice: directly, and inside
one `llmbench run`, where its (garbage) verdicts must be counted, not crash anything.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from http.server import BaseHTTPRequestHandler

import pytest
import yaml

from llmbench.config import parse_config
from llmbench.config_stages import JudgeConfig
from llmbench.errors import BadInput
from llmbench.golden import GoldenItem, GoldenSet, load_golden
from llmbench.judge.client import build_judge
from llmbench.judge.labels import judge_labels, read_labels
from llmbench.judge.rubric import load_rubric
from llmbench.judge.score import judge_pairwise, judge_reference
from llmbench.judge.verdict import parse_verdict
from llmbench.models.reference import reference_dir
from loopback import send_json, serve_in_thread

Z = 1.959963984540054  # the 97.5% normal quantile


def wilson(k: int, n: int) -> list[float]:
    """The Wilson score interval, written out (feedback.wilson uses scipy's)."""
    p = k / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return [centre - half, centre + half]


def kappa(human: list[str], machine: list[str]) -> float:
    """Cohen's kappa, written out: (p_o - p_e) / (1 - p_e)."""
    n = len(human)
    p_o = sum(h == m for h, m in zip(human, machine)) / n
    p_e = sum(human.count(c) / n * machine.count(c) / n for c in set(human) | set(machine))
    return (p_o - p_e) / (1 - p_e)


# ---- the scripted judge server -------------------------------------------------------------------
def _between(prompt: str, start: str, end: str) -> str:
    return prompt.split(start + "\n", 1)[1].split("\n\n" + end if end else "\n\n", 1)[0].strip()


def rule(prompt: str) -> str:
    """The fixed rule: the right verdict from the rubric prompt's own fields (garbage for '??')."""
    ref = _between(prompt, "Reference answer:", "")
    if "Answer to grade:" in prompt:
        answer = _between(prompt, "Answer to grade:", "")
        if "??" in answer:
            return "hmm, hard to say"
        return "CORRECT" if answer == ref else "UNSUPPORTED." if "moon" in answer else "incorrect"
    a, b = _between(prompt, "Answer A:", "Answer B:"), _between(prompt, "Answer B:", "")
    if "??" in a + b:
        return "{not a verdict}"
    if (a == ref) == (b == ref):
        return "TIE" if a == b else "A"  # neither (or both) right: this judge favours the first position
    return "A" if a == ref else "B"


class _Judge(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's hook
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        if "!!500" in body["prompt"]:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        # usage: prompt tokens = the prompt's words, so the test can recompute the cost
        doc = {"choices": [{"text": rule(body["prompt"])}],
               "usage": {"prompt_tokens": len(body["prompt"].split()), "completion_tokens": 1}}
        send_json(self, doc)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def judge_url():
    with serve_in_thread(_Judge) as port:
        yield f"http://127.0.0.1:{port}/v1"


def scripted(url: str, mode: str = "reference"):
    _Judge.seen = []
    cfg = JudgeConfig(endpoint={"url": url, "model": "rule"}, mode=mode, price={"input_usd_per_1m": 1.0, "output_usd_per_1m": 2.0})
    return build_judge(cfg, None, 0.0)


def priced(seen: list[dict], answered: int) -> float:
    """What the endpoint's price makes of the requests it answered (1 output token each)."""
    words = sum(len(b["prompt"].split()) for b in seen if "!!500" not in b["prompt"])
    return words * 1e-6 + answered * 2e-6


ITEMS = [GoldenItem(f"q{i}", f"Say word {i}:", ref) for i, ref in enumerate(["night", "love", "king", "death", "sword", "crown"])]


# ---- verdicts and rubrics ------------------------------------------------------------------------
def test_parse_verdict_takes_the_first_word_and_guesses_nothing():
    assert parse_verdict("reference", " Correct.") == "correct" and parse_verdict("reference", "INCORRECT") == "incorrect"
    assert parse_verdict("reference", "unsupported, clearly") == "unsupported"
    assert parse_verdict("reference", "mostly correct") is None and parse_verdict("reference", "") is None
    assert parse_verdict("pairwise", "B") == "B" and parse_verdict("pairwise", "tie") == "tie"
    assert parse_verdict("pairwise", "Both") is None and parse_verdict("pairwise", None) is None


def test_shipped_rubrics_are_versioned(tmp_path):
    ref, pair = load_rubric(None, "reference"), load_rubric("pairwise_v1", "pairwise")
    assert (ref.tag, pair.tag) == ("reference@1.0.0", "pairwise@1.0.0") and len(ref.sha256) == 64
    assert "night" in ref.render(question="q", answer="a", reference="night")
    for text, fault in [("name: r\nversion: 1\nmode: reference\ntext: '{answer} {reference}'", "version"),
                        ("name: r\nversion: 1.0.0\nmode: reference\ntext: '{answer}'", "must use"),
                        ("name: r\nversion: 1.0.0\nmode: reference\ntext: '{answer} {reference} {x}'", "unknown field"),
                        ("name: r\nversion: 1.0.0\nmode: pairwise\ntext: '{answer_a} {answer_b}'", "judge's mode")]:
        f = tmp_path / "r.yaml"
        f.write_text(text)
        with pytest.raises(BadInput, match=fault):
            load_rubric(str(f), "reference")
    with pytest.raises(BadInput, match="no such shipped rubric"):
        load_rubric("nope_v9", "reference")


# ---- the judge on scripted answers ---------------------------------------------------------------
def test_reference_mode_verdicts_figures_and_cost(judge_url):
    judge = scripted(judge_url)
    rows: list = []
    answers = ["night", "day", "the moon", "?? what", "sword", "!!500"]
    block = judge_reference(judge, load_rubric(None, "reference"), ITEMS, answers, rows, model="m", variant="v")
    assert [r["verdict"] for r in rows] == ["correct", "incorrect", "unsupported", None, "correct", None]
    assert [r["status"] for r in rows][3:] == ["unparseable", "ok", "failed"]
    assert all(r["rubric"] == "reference" and r["rubric_version"] == "1.0.0" for r in rows)
    assert block["verdicts"] == {"correct": 2, "incorrect": 1, "unsupported": 1}
    assert (block["judged"], block["unparseable"], block["failed_calls"], block["calls"]) == (4, 1, 1, 6)
    assert block["accuracy"] == 0.5 and block["hallucination_rate"] == 0.25
    assert block["accuracy_ci95"] == pytest.approx(wilson(2, 4), abs=1e-6)
    assert block["hallucination_rate_ci95"] == pytest.approx(wilson(1, 4), abs=1e-6)
    # tokens as the endpoint reported them, priced at the config's $1/$2 per 1M
    assert block["prompt_tokens"] == sum(len(b["prompt"].split()) for b in _Judge.seen[:5]) and block["output_tokens"] == 5
    assert block["cost_usd"] == pytest.approx(priced(_Judge.seen, 5), rel=1e-6)
    assert _Judge.seen[0]["temperature"] == 0 and "Reference answer:\nnight" in _Judge.seen[0]["prompt"]


def test_pairwise_judges_both_orders_and_measures_position_bias(judge_url):
    judge = scripted(judge_url, "pairwise")
    rows: list = []
    mine = ["night", "day", "love", "x", "?? no", "crown"]
    theirs = ["night", "love", "hate", "y", "sword", "crown"]
    items = ITEMS[:1] + [GoldenItem("q1", "p", "love"), GoldenItem("q2", "p", "love")] + ITEMS[3:]
    block = judge_pairwise(judge, load_rubric(None, "pairwise"), items, mine, theirs, rows, model="m", variant="v")
    assert [r["order"] for r in rows] == ["AB", "BA"] * 6
    # item: (verdict with the variant as A, verdict with it as B)
    assert [(rows[i]["verdict"], rows[i + 1]["verdict"]) for i in range(0, 12, 2)] == [
        ("tie", "tie"), ("B", "A"), ("A", "B"), ("A", "A"), (None, None), ("tie", "tie")]
    # by hand: variant wins q2 twice and q3 (as A); the reference wins q1 twice and q3 (as A); 4 ties
    assert block["verdicts"] == {"variant": 3, "reference": 3, "tie": 4}
    assert (block["pairs"], block["judged"], block["unparseable"]) == (6, 10, 2)
    assert block["win_rate"] == 0.3 and block["not_worse_rate"] == 0.7
    assert block["not_worse_rate_ci95"] == pytest.approx(wilson(7, 10), abs=1e-6)
    # 5 pairs judged in both orders, 4 name the same winner (q3 flips with the position)
    assert block["pairs_judged_both_orders"] == 5 and block["position_agreement"] == 0.8
    assert block["first_position_share"] == pytest.approx(4 / 6)  # A in 4 of the 6 non-tie verdicts
    assert block["cost_usd"] == pytest.approx(priced(_Judge.seen, 12), rel=1e-6) and block["output_tokens"] == 12


def test_labels_agreement_and_kappa(judge_url, tmp_path):
    golden = GoldenSet("g", "1.0.0", "0" * 64, "g.jsonl", ITEMS)
    lines = [{"question": "q", "reference": "night", "answer": "night", "verdict": "correct"},
             {"question": "q", "reference": "night", "answer": "day", "verdict": "incorrect"},
             {"question": "q", "reference": "night", "answer": "moon", "verdict": "Incorrect"},
             {"question": "q", "reference": "night", "answer": "dark", "verdict": "correct"},
             {"question": "q", "reference": "night", "answer": "??", "verdict": "correct"},
             {"id": "q4", "answer": "sword", "verdict": "correct"}]
    f = tmp_path / "labels.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    judge = scripted(judge_url)
    rows: list = []
    got = judge_labels(judge, load_rubric(None, "reference"), read_labels(f, "reference", golden), rows)
    human = ["correct", "incorrect", "incorrect", "correct", "correct"]
    machine = ["correct", "incorrect", "unsupported", "incorrect", "correct"]
    assert [r["verdict"] for r in rows if r["verdict"]] == machine
    assert (got["labels"], got["judged"], got["unparseable"]) == (6, 5, 1)
    assert got["agreement"] == 0.6 and got["cohen_kappa"] == pytest.approx(kappa(human, machine), abs=1e-6)
    assert "Reference answer:\nsword" in _Judge.seen[-1]["prompt"]  # by id: the golden item's reference
    for bad, fault in [({"answer": "a", "verdict": "maybe", "question": "q", "reference": "r"}, "verdict must be"),
                       ({"id": "nope", "answer": "a", "verdict": "correct"}, "not an item"),
                       ({"question": "q", "answer": "a", "verdict": "correct"}, "needs a reference")]:
        f.write_text(json.dumps(bad) + "\n")
        with pytest.raises(BadInput, match=fault):
            read_labels(f, "reference", golden)


# ---- config: bad values are exit 2 before anything loads -----------------------------------------
def _config(tmp_path, judge: dict) -> dict:
    return {"candidates": [{"name": "ref", "model": str(reference_dir()), "variants": ["torch-fp32", "torch-bf16"]}],
            "quality": {"judge": judge}}


@pytest.mark.parametrize("judge, fault", [
    ({"candidate": "ref", "endpoint": {"url": "http://127.0.0.1:9/v1", "model": "j"}}, "exactly one"),
    ({}, "exactly one"),
    ({"candidate": "ref", "rubric": "nope_v1"}, "quality.judge.rubric: rubric 'nope_v1'"),
    ({"candidate": "ref", "mode": "pairwise", "rubric": "reference_v1"}, "judge's mode is 'pairwise'"),
    ({"candidate": "./no-such-model"}, "quality.judge.candidate: model folder"),
    ({"candidate": "ref", "price": "gpt-4o"}, "price is for an endpoint"),
    ({"endpoint": {"url": "http://127.0.0.1:9/v1", "model": "j"}, "price": "no-such-model"}, "no price for API model"),
    ({"endpoint": {"url": "http://127.0.0.1:9/v1", "model": "j", "api_key_env": "LLMBENCH_TEST_UNSET_KEY"}}, "is not set"),
    ({"candidate": "ref", "mode": "both"}, "quality.judge.mode"),
    ({"candidate": "ref", "labels": "missing.jsonl"}, "quality.judge.labels"),
])
def test_bad_judge_blocks_are_bad_input(tmp_path, judge, fault):
    with pytest.raises(BadInput, match=re.escape(fault)):
        parse_config(_config(tmp_path, judge), str(tmp_path / "run.yaml"))


def test_paths_are_relative_to_the_config(tmp_path):
    (tmp_path / "l.jsonl").write_text(json.dumps({"question": "q", "answer_a": "a", "answer_b": "b", "verdict": "A"}) + "\n")
    with open(load_rubric(None, "pairwise").path) as fh:
        (tmp_path / "r.yaml").write_text(fh.read())
    cfg = parse_config(_config(tmp_path, {"candidate": "ref", "mode": "pairwise", "labels": "l.jsonl", "rubric": "./r.yaml"}),
                       str(tmp_path / "run.yaml"))
    assert cfg.quality.judge.labels == tmp_path / "l.jsonl" and cfg.quality.judge.rubric == str(tmp_path / "r.yaml")
    assert cfg.quality.judge.candidate == "ref"  # a run candidate's name stays a name


# ---- a real local judge: the shipped reference model ---------------------------------------------
def test_pairwise_over_a_quality_document_spares_the_reference_variant(judge_url, tmp_path):
    """judge_doc on a gate's quality.json: every other variant against the reference variant's answers."""
    from llmbench.judge.stage import judge_doc

    golden = tmp_path / "g.jsonl"
    golden.write_text(json.dumps({"golden": {"name": "g", "version": "1.0.0"}}) + "\n"
                      + "".join(json.dumps({"id": i.id, "prompt": i.prompt, "reference": i.reference}) + "\n" for i in ITEMS[:2]))
    g = load_golden(golden)
    doc = {"golden": g.identity(), "candidates": {"m": {
        "reference_variant": "torch-fp32", "answers": {"torch-fp32": ["night", "love"], "onnx-int4": ["night", "hate"]},
        "variants": {"torch-fp32": {"gate": "reference"}, "onnx-int4": {"gate": "fail"}}}}}
    rows: list = []
    top = judge_doc(doc, scripted(judge_url, "pairwise"), load_rubric(None, "pairwise"), rows)
    j = doc["candidates"]["m"]["variants"]["onnx-int4"]["judge"]
    assert "judge" not in doc["candidates"]["m"]["variants"]["torch-fp32"] and j["against"] == "torch-fp32"
    assert j["verdicts"] == {"variant": 0, "reference": 2, "tie": 2} and j["position_agreement"] == 1.0
    assert top["rubric"]["version"] == "1.0.0" and {r["variant"] for r in rows} == {"onnx-int4"}
    golden.write_text(golden.read_text() + "\n")  # the file the gate read has changed: refused, not judged
    with pytest.raises(BadInput, match="changed"):
        judge_doc(doc, scripted(judge_url, "pairwise"), load_rubric(None, "pairwise"), [])


def test_a_run_with_the_reference_model_as_judge(tmp_path):
    """One `llmbench run`: the judge block per variant in quality.json, judge.jsonl, the cost in
    summary.json and the report's table; the tiny judge's verdicts are whatever it says, counted."""
    golden = tmp_path / "golden.jsonl"
    src = (reference_dir().parent.parent / "golden" / "shakespeare.jsonl").read_text().splitlines()
    answered = [line for line in src[1:] if '"reference"' in line][:4]
    golden.write_text("\n".join([src[0]] + answered) + "\n")
    first = json.loads(answered[0])
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in (
        {"id": first["id"], "answer": first["reference"], "verdict": "correct"},
        {"id": first["id"], "answer": "no", "verdict": "incorrect"})))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "candidates": [{"name": "ref", "model": str(reference_dir()), "variants": ["torch-fp32", "torch-bf16"]}],
        "workload": {"prompt_tokens": 16, "output_tokens": 2, "requests": 2}, "warmup": 0,
        "quality": {"golden_set": "golden.jsonl",
                    "judge": {"candidate": "ref", "labels": "labels.jsonl", "max_new_tokens": 2}},
    }))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "llmbench", "run", str(tmp_path / "run.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "quality.json").read_text())
    variants = doc["candidates"]["ref"]["variants"]
    for v in ("torch-fp32", "torch-bf16"):  # reference mode: every variant's 4 answers, the reference variant's too
        j = variants[v]["judge"]
        assert j["rubric"] == "reference@1.0.0" and j["calls"] == 4 and j["failed_calls"] == 0
        # whatever the tiny judge says is a verdict or counted as unparseable, never guessed
        assert j["judged"] + j["unparseable"] == 4 and sum(j["verdicts"].values()) == j["judged"]
        assert j["accuracy"] == (j["verdicts"]["correct"] / j["judged"] if j["judged"] else None)
    top = doc["judge"]
    assert top["rubric"]["name"] == "reference" and top["labels"]["labels"] == 2 and top["labels"]["verdicts_asked"] == 2
    total = top["total"]
    assert total["calls"] == 10 and total["prompt_tokens"] > 10 * 50 and total["output_tokens"] <= 20
    assert total["prompt_tokens"] == sum(variants[v]["judge"]["prompt_tokens"] for v in variants) + top["labels"]["prompt_tokens"]
    # a local judge costs the machine's time: cpu-2core's $0.1008/hour for the seconds it judged
    assert total["cost_usd"] == pytest.approx(total["seconds"] * 0.1008 / 3600, rel=0.01, abs=1e-8) and total["cost_usd"] > 0
    lines = [json.loads(x) for x in (out / "judge.jsonl").read_text().splitlines()]
    assert len(lines) == 10 and all(x["rubric_version"] == "1.0.0" for x in lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge_cost_usd"] == top["total"]["cost_usd"]
    assert summary["judge_tokens"]["prompt"] == top["total"]["prompt_tokens"]
    report = (out / "report.md").read_text()
    assert "## LLM judge" in report and "reference@1.0.0" in report and "| ref | torch-bf16 | " in report
