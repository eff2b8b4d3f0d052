"""`llmbench guard eval`: a guard on a labelled file: catch rate, false positives, per-request latency."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from llmbench.errors import BadInput


def read_labelled(path: Path) -> tuple[list[str], np.ndarray]:
    """Prompts and labels (1 = injection) from a JSONL of {text, label}; BadInput names the line at fault."""
    texts, labels = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the labelled file ({getattr(exc, 'strerror', None) or exc})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise BadInput(f"{path}:{i}: not a JSON object") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise BadInput(f"{path}:{i}: needs a 'text' string")
        if row.get("label") not in (0, 1) or isinstance(row.get("label"), bool):
            raise BadInput(f"{path}:{i}: needs 'label' 0 or 1, got {row.get('label')!r}")
        texts.append(row["text"])
        labels.append(int(row["label"]))
    if not texts:
        raise BadInput(f"{path}: no labelled prompts")
    return texts, np.asarray(labels, dtype=np.int64)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def confusion(flagged: Sequence[bool | None], labels: np.ndarray) -> dict:
    """Counts and rates; an undecided verdict (None) lets the prompt through (counted as `undecided`)."""
    f = np.array([v is not None and bool(v) for v in flagged])  # numpy bools too
    und = np.array([v is None for v in flagged])
    y = np.asarray(labels) == 1
    tp, fp = int((f & y).sum()), int((f & ~y).sum())
    fn, tn = int((~f & y).sum()), int((~f & ~y).sum())
    return {"n": int(len(y)), "positives": int(y.sum()), "negatives": int((~y).sum()), "tp": tp, "fp": fp, "tn": tn,
            "fn": fn, "undecided": int(und.sum()), "catch_rate": _ratio(tp, tp + fn),
            "false_positive_rate": _ratio(fp, fp + tn), "precision": _ratio(tp, tp + fp)}


def latency(ms: Sequence[float]) -> dict:
    """Per-request added latency in ms: p50, p95, mean, max over single-prompt checks."""
    a = np.asarray(ms, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3), "max": round(float(a.max()), 3), "n": int(len(a))}


def run_guard(guard, texts: Sequence[str], warmup: int = 3) -> tuple[list, list[float]]:
    """Check every prompt one at a time; returns verdicts and each check's wall time in ms."""
    for t in list(texts)[:warmup]:  # model load and first-call costs are not a request's
        guard.check(t)
    verdicts, ms = [], []
    for t in texts:
        s = time.perf_counter()
        verdicts.append(guard.check(t))
        ms.append((time.perf_counter() - s) * 1e3)
    return verdicts, ms


def evaluate(guard, path: Path) -> dict:
    """The report of `guard eval`: all rows, and (for a fitted guard) held-out rows apart from fit rows."""
    texts, labels = read_labelled(path)
    verdicts, ms = run_guard(guard, texts)
    flagged = [v.flagged for v in verdicts]
    out = {"file": str(path), "guard_kind": guard.describe().get("kind"), **confusion(flagged, labels),
           "latency_ms": latency(ms), "latency_note": "wall time of one check on one prompt (a per-request cost)"}
    fit_rows = getattr(guard, "fit_rows", None)
    if fit_rows:
        from llmbench.optimizers.guard.embedding import row_key

        seen = np.array([row_key(t) in fit_rows for t in texts])
        out["fit_rows"] = int(seen.sum())
        out["all_rows_note"] = ("the figures above include rows the guard was fitted on; "
                                "'held_out' has only rows it never saw")
        if (~seen).any():
            idx = np.flatnonzero(~seen)
            out["held_out"] = {**confusion([flagged[i] for i in idx], labels[idx]),
                               "latency_ms": latency([ms[i] for i in idx])}
    out["guard"] = guard.describe()  # last: its fit's own figures must not be read as this file's
    return out
