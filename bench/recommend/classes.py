"""Request classes for routing: prompt length bands (and difficulty where the golden set has it)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmbench.recommend.inputs import RunData

# Below this spread (longest / shortest prompt) one class is enough: routing by length would
# separate requests whose service times barely differ.
MIN_SPREAD = 1.5


@dataclass(frozen=True)
class RequestClass:
    """Requests whose prompt length falls in [lo, hi] tokens (and of one difficulty, if set)."""

    name: str
    lo: int
    hi: int | None
    share: float
    prompt_tokens_mean: float
    output_tokens_mean: float
    difficulty: str | None = None

    def holds(self, prompt_tokens: int) -> bool:
        return prompt_tokens >= self.lo and (self.hi is None or prompt_tokens <= self.hi)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _difficulties(data: RunData) -> dict[str, float]:
    # Shares of each difficulty label in the golden set, from the counts the quality stage writes
    # (llmbench.quality.by_difficulty: {label: {..., "n": rows}}).
    for row in data.rows:
        groups = (row.get("quality") or {}).get("by_difficulty")
        if groups:
            total = sum(g["n"] for g in groups.values())
            return {label: g["n"] / total for label, g in groups.items()}
    return {}


def length_bands(prompt_tokens: list[int]) -> list[tuple[str, int, int | None]]:
    """One band, or short/long split at the median, by the measured prompt lengths."""
    if not prompt_tokens:
        return [("all", 0, None)]
    lo, hi = min(prompt_tokens), max(prompt_tokens)
    if lo <= 0 or hi / lo < MIN_SPREAD:
        return [("all", 0, None)]
    cut = int(np.median(prompt_tokens))
    return [(f"short (<= {cut} tokens)", 0, cut), (f"long (> {cut} tokens)", cut + 1, None)]


def request_classes(data: RunData) -> list[RequestClass]:
    """Classes with their share of the measured traffic and their mean token counts."""
    ok = [r for r in data.records if r.ok]
    bands = length_bands([r.prompt_tokens for r in ok])
    diffs = _difficulties(data) or {None: 1.0}
    out = []
    for name, lo, hi in bands:
        members = [r for r in ok if r.prompt_tokens >= lo and (hi is None or r.prompt_tokens <= hi)]
        share = len(members) / len(ok) if ok else 1.0
        p_in = float(np.mean([r.prompt_tokens for r in members])) if members else 0.0
        p_out = float(np.mean([r.output_tokens for r in members])) if members else 0.0
        for diff, dshare in diffs.items():
            label = name if diff is None else f"{name}, {diff}"
            out.append(RequestClass(label, lo, hi, share * dshare, p_in, p_out, diff))
    return out
