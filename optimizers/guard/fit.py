"""Fit the shipped embedding guard on labelled prompts, honestly held out.

    python -m llmbench.optimizers.guard.fit      # writes profiles/guard/embedding.{json,npz}

The labelled file is split once, seeded and stratified, into a fit part and a held-out part
(HOLDOUT of the rows). The guard is a cascade: the shipped rules (profiles/guard/rules.yaml,
copied into the fit) first, then the model on what they let through. Everything is chosen on
the fit part alone, by out-of-fold catch rate of the whole cascade at the target false-positive
rate (5 stratified folds): the regularisation C, and the threshold as the out-of-fold score that
keeps the benign prompts flagged, by the rules or the model, to at most TARGET_FPR of the fit
part's (a margin under the 2% goal). MiniLM's layer count is fixed at 3: choosing it per split
on out-of-fold catch (2, 3 or 4) was noise that cost held-out catch over seven seeded splits
(BENCHMARKS.md, "Guardrails"); --layers with several values still chooses (the fewest within
one injection of the best). The held-out part is scored once, at the end, and its figures are
written beside the weights. Every figure in the files is a pure function of the data, the rules
and the packaged MiniLM, so a refit on the same machine rewrites them byte for byte; timings are
printed, not written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from llmbench.optimizers.guard.embedding import load_fit, row_key, save_fit, shipped_fit
from llmbench.optimizers.guard.evaluate import confusion, latency, read_labelled, run_guard
from llmbench.optimizers.guard.features import ngram_rows, stack
from llmbench.optimizers.guard.rules import load_rules, shipped_rules

TRAIN = "../shared/data/guard/prompt_injections_train.jsonl"  # relative to the project root
HOLDOUT = 0.3
SEED = 0
FOLDS = 5
LAYER_GRID = (3,)
C_GRID = (10.0, 30.0, 100.0, 300.0)
# The threshold aims under the goal (at most 2% false positives on prompts never seen): it rests
# on the few highest of ~240 benign scores, and on fourteen seeded splits aiming at 2% itself gave
# 2.1% held out on average (10.7% on one split), aiming at 1.5% gave 1.4% (BENCHMARKS.md).
TARGET_FPR = 0.015


def threshold_at(scores: np.ndarray, labels: np.ndarray, fpr: float, pre: np.ndarray | None = None) -> float:
    """The lowest threshold with at most `fpr` of the benign prompts flagged (flag: score > threshold),
    counting those that `pre` (the rules, checked first) flags already; +inf when they alone exceed it."""
    benign = labels == 0
    pre = np.zeros(len(labels), dtype=bool) if pre is None else np.asarray(pre, dtype=bool)
    allowed = int(np.floor(fpr * benign.sum())) - int((pre & benign).sum())
    neg = np.sort(scores[benign & ~pre])[::-1]  # the benign prompts the model alone decides
    if allowed < 0:
        return float("inf")
    return float(neg[allowed]) if allowed < len(neg) else float(neg[-1]) - 1e-9


def _model(c: float):
    from sklearn.linear_model import LogisticRegression

    # balanced: 37% injections; lbfgs from zeros is deterministic
    return LogisticRegression(C=c, max_iter=5000, class_weight="balanced")


def oof_scores(x, y: np.ndarray, c: float) -> np.ndarray:
    """Each fit row scored by a model fitted without it."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    return cross_val_predict(_model(c), x, y, cv=StratifiedKFold(FOLDS, shuffle=True, random_state=SEED),
                             method="decision_function")


def choose(tried: dict) -> tuple[int, float]:
    """(layers, C): the fewest layers whose best catch is within one injection of the best overall,
    then that layer count's best C (ties: the smaller C, the stronger regularisation). Counted in
    caught prompts (tp), not in rounded rates."""
    tp = {k: v[0]["tp"] for k, v in tried.items()}
    best = max(tp.values())
    layers = min(L for (L, _c), n in tp.items() if n >= best - 1)
    c = max((k for k in tp if k[0] == layers), key=lambda k: (tp[k], -k[1]))[1]
    return layers, c


def rules_of(path: Path) -> tuple:
    """The rules guard of a rules file and its content as the fit stores it (name, version, sha256, patterns)."""
    guard = load_rules(path)
    patterns = [{"id": rid, "regex": rx.pattern} for rid, rx in guard.patterns]
    return guard, {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "name": guard.name,
                   "version": guard.version, "patterns": patterns}


def main(argv: list[str] | None = None) -> int:
    from sklearn.model_selection import train_test_split

    from llmbench.optimizers.guard.encoder import LayerEncoder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=TRAIN, help="labelled JSONL {text, label} (default: the shared training file)")
    ap.add_argument("--out", default=None, help="where to write (default: the shipped profiles/guard/embedding.json)")
    ap.add_argument("--layers", type=int, nargs="+", default=list(LAYER_GRID), help="MiniLM layer counts to try")
    ap.add_argument("--C", type=float, nargs="+", default=list(C_GRID), dest="c_grid", help="values of C to try")
    ap.add_argument("--rules", default=None, help="rules checked before the model (default: the shipped rules.yaml)")
    ap.add_argument("--no-rules", action="store_true", help="the model alone, no rules first")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if args.data == TRAIN and not data.exists():  # run from elsewhere: shared/ sits beside the project root
        data = Path(__file__).resolve().parents[2].parent / "shared/data/guard/prompt_injections_train.jsonl"
    texts, y = read_labelled(data)
    fit_i, held_i = train_test_split(np.arange(len(y)), test_size=HOLDOUT, stratify=y, random_state=SEED)
    fit_i, held_i = np.sort(fit_i), np.sort(held_i)
    grams = ngram_rows(texts)
    yf = y[fit_i]
    rules = None if args.no_rules else rules_of(Path(args.rules) if args.rules else shipped_rules())
    pre = np.zeros(len(y), dtype=bool) if rules is None else np.array([rules[0].check(t).flagged for t in texts])
    tried, designs = {}, {}
    for layers in args.layers:
        # each prompt encoded alone, as a request is: the fit sees exactly the guard's vectors
        designs[layers] = stack(LayerEncoder(layers).encode_many(texts), grams)
        for c in args.c_grid:
            s = oof_scores(designs[layers][fit_i], yf, c)
            thr = threshold_at(s, yf, TARGET_FPR, pre[fit_i])
            tried[(layers, c)] = (confusion(list((s > thr) | pre[fit_i]), yf), thr)
    layers, best_c = choose(tried)
    oof_report, thr = tried[(layers, best_c)]
    model = _model(best_c).fit(designs[layers][fit_i], yf)
    meta = {"command": "python -m llmbench.optimizers.guard.fit", "data": data.name,
            "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(), "rows": len(y),
            "split": {"holdout": HOLDOUT, "seed": SEED, "stratified": True, "fit": len(fit_i), "held_out": len(held_i)},
            "features": (f"all-MiniLM-L6-v2's first {layers} layers, mean-pooled, unit (384; int8 onnxruntime graph) "
                         "+ hashed char_wb 2-5-grams (16384, sublinear tf, L2)"),
            "model": "sklearn LogisticRegression, class_weight=balanced", "C": best_c,
            "cascade": "rules first (flag on any match), then the model" if rules else "the model alone",
            "choice_rule": "fewest layers within one injection of the best out-of-fold catch, then that count's best C",
            "threshold_rule": (f"out-of-fold ({FOLDS} folds) score with at most {TARGET_FPR:.1%} of fit benign "
                               "flagged, by the rules or above it"),
            "oof_by_layers_C": {f"{k[0]}/{k[1]:g}": {m: v[0][m] for m in ("catch_rate", "false_positive_rate")}
                                for k, v in tried.items()},
            "oof": oof_report, "rules": None if rules is None else rules[1],
            "fit_rows": sorted(row_key(texts[i]) for i in fit_i)}
    out = Path(args.out) if args.out else shipped_fit()
    save_fit(out, layers, model.coef_[0], float(model.intercept_[0]), thr, meta)
    # Held-out: scored once, through the guard as loaded from the files just written (one prompt per call).
    guard = load_fit(out)
    verdicts, ms = run_guard(guard, [texts[i] for i in held_i])
    held = confusion([v.flagged for v in verdicts], y[held_i])
    doc = json.loads(out.with_suffix(".json").read_text())
    doc["held_out"] = held
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"layers": layers, "C": best_c, "threshold": round(thr, 4), "oof": oof_report,
                      "held_out": {**held, "latency_ms": latency(ms)}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
