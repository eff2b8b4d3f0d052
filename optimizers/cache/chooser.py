"""Pick the setting that serves the most hits while keeping false hits under a target rate.

Outcomes of labelled lookups are kept as "the score of the candidate the rule would serve" and
"whether that candidate is the right entry", so every threshold can be evaluated without
repeating a lookup.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Outcomes:
    """Per labelled lookup: the rule's score for its preferred candidate (-inf: none), its correctness, the label."""

    scores: np.ndarray
    correct: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.correct = np.asarray(self.correct, dtype=bool)
        self.labels = np.asarray(self.labels, dtype=np.int64)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def rates(o: Outcomes, threshold: float) -> dict:
    """Hit, false-hit and wrong-entry rates and precision when serving scores >= threshold.

    hit: a label-1 lookup served its own entry; false hit: a label-0 lookup served anything;
    wrong entry: a label-1 lookup served some other entry; precision: right entries / all served.
    """
    served = o.scores >= threshold
    pos, neg = o.labels == 1, o.labels == 0
    hits = int((served & pos & o.correct).sum())
    wrong = int((served & pos & ~o.correct).sum())
    false_hits = int((served & neg).sum())
    n_served = int(served.sum())
    return {"threshold": float(threshold), "lookups": int(len(o.labels)), "served": n_served, "hits": hits,
            "false_hits": false_hits, "wrong_entries": wrong,
            "hit_rate": _rate(hits, int(pos.sum())), "false_hit_rate": _rate(false_hits, int(neg.sum())),
            "wrong_entry_rate": _rate(wrong, int(pos.sum())), "precision": _rate(hits, n_served)}


def curve(o: Outcomes, thresholds: np.ndarray) -> list[dict]:
    """`rates` at each threshold."""
    return [rates(o, float(t)) for t in thresholds]


def best_threshold(o: Outcomes, target_false_hit: float) -> tuple[float, dict]:
    """The lowest threshold (so the most hits) whose false-hit rate is at most the target.

    Serving more never lowers the false-hit rate, so the candidates are the observed scores;
    when even the strictest one is over the target, nothing is served (threshold +inf).
    """
    if not 0.0 <= target_false_hit <= 1.0:
        raise ValueError(f"target false-hit rate must be within [0, 1], got {target_false_hit}")
    neg = o.labels == 0
    finite = np.unique(o.scores[np.isfinite(o.scores)])[::-1]  # strictest first
    if finite.size == 0:
        return float("inf"), rates(o, float("inf"))
    neg_scores = np.sort(o.scores[neg])
    n_neg = int(neg.sum())
    chosen = float("inf")
    for t in finite:
        # label-0 lookups served at threshold t: those with score >= t
        served_neg = n_neg - int(np.searchsorted(neg_scores, t, side="left")) if n_neg else 0
        if n_neg and served_neg / n_neg > target_false_hit:
            break
        chosen = float(t)
    return chosen, rates(o, chosen)


def choose(options: dict[str, Outcomes], target_false_hit: float) -> tuple[str, float, dict]:
    """Among named settings, the (name, threshold) with the most hits under the target; ties to the first."""
    best: tuple[str, float, dict] | None = None
    for name, o in options.items():
        t, r = best_threshold(o, target_false_hit)
        if best is None or (r["hits"] > best[2]["hits"]):
            best = (name, t, r)
    if best is None:
        raise ValueError("no settings to choose from")
    return best
