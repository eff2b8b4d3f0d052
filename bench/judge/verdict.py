"""A judge's verdict from its answer: the first word, in the rubric mode's vocabulary, or None.

Nothing is guessed: an answer whose first word is not a verdict word is unparseable, counted as
such, and scored as nothing (not as the likeliest verdict, not as a loss).
"""
from __future__ import annotations

import re

WORDS = {
    "reference": {"CORRECT": "correct", "INCORRECT": "incorrect", "UNSUPPORTED": "unsupported"},
    "pairwise": {"A": "A", "B": "B", "TIE": "tie"},
}
VERDICTS = {mode: tuple(dict.fromkeys(words.values())) for mode, words in WORDS.items()}


def parse_verdict(mode: str, answer: str | None) -> str | None:
    """'correct' | 'incorrect' | 'unsupported' (reference) or 'A' | 'B' | 'tie' (pairwise); None when unparseable."""
    m = re.match(r"[\W_]*([A-Za-z]+)", answer or "")
    return WORDS[mode].get(m.group(1).upper()) if m else None
