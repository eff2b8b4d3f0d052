"""The shipped embedding guard: it loads, it reproduces its held-out figures, fit rows are told apart."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmbench.optimizers.guard.embedding import load_fit, row_key, shipped_fit
from llmbench.optimizers.guard.evaluate import confusion, read_labelled
from llmbench.optimizers.guard.fit import threshold_at

TRAIN = "guard/prompt_injections_train.jsonl"


def test_threshold_rule_by_hand():
    scores = np.array([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.8, 0.7])
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    # 6 benign: at most 0% above -> the top benign score itself (flag: score > threshold)
    assert threshold_at(scores, labels, 0.0) == 0.9
    # at most 1/6 above: one benign (0.9) may exceed it -> 0.5
    assert threshold_at(scores, labels, 1 / 6 + 1e-9) == 0.5


def test_shipped_fit_reproduces_held_out(shared_data):
    doc = json.loads(shipped_fit().read_text())
    guard = load_fit()
    texts, labels = read_labelled(shared_data / TRAIN)
    assert doc["data_sha256"] and doc["rows"] == len(texts)
    fit = guard.fit_rows
    held = [i for i, t in enumerate(texts) if row_key(t) not in fit]
    assert len(fit) == doc["split"]["fit"] and len(held) == doc["split"]["held_out"]
    # stratified: both parts keep the file's share of injections within one row
    share = labels.mean()
    assert abs(labels[held].mean() - share) < 1.5 / len(held)
    verdicts = [guard.check(texts[i]) for i in held]
    got = confusion([v.flagged for v in verdicts], labels[held])
    want = doc["held_out"]
    assert (got["n"], got["positives"]) == (want["n"], want["positives"])
    # one prompt at a time here, as in the fit's own held-out pass: the same figures within rounding
    assert abs(got["tp"] - want["tp"]) <= 1 and abs(got["fp"] - want["fp"]) <= 1
    assert got["catch_rate"] == pytest.approx(want["catch_rate"], abs=1.01 / want["positives"])
    assert got["false_positive_rate"] == pytest.approx(want["false_positive_rate"], abs=1.01 / want["negatives"])
    # and the logits are the model's: a flagged prompt scores above the threshold, a passed one not
    assert all((v.score > guard.threshold) == v.flagged for v in verdicts)


def test_eval_tells_fit_rows_from_held_out(shared_data, tmp_path):
    from llmbench.optimizers.guard.evaluate import evaluate

    texts, labels = read_labelled(shared_data / TRAIN)
    guard = load_fit()
    fit = guard.fit_rows
    fit_i = [i for i, t in enumerate(texts) if row_key(t) in fit][:6]
    held_i = [i for i, t in enumerate(texts) if row_key(t) not in fit][:6]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({"text": texts[i], "label": int(labels[i])}) + "\n" for i in fit_i + held_i))
    r = evaluate(guard, path)
    assert r["fit_rows"] == 6 and r["held_out"]["n"] == 6 and r["n"] == 12
    assert "fitted on" in r["all_rows_note"]
