"""Request classes for routing: prompt length bands, the one thing a gateway sees on every request.

(Golden-set difficulty is not a class: no gateway knows a request's difficulty, and the golden
set's composition is not the workload's.)"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmbench.recommend.inputs import RunData

# Below this spread (longest / shortest prompt) one class is enough: routing by length would
# separate requests whose service times barely differ.
MIN_SPREAD = 1.5


@dataclass(frozen=True)
class RequestClass:
    """Requests whose prompt length falls in [lo, hi] tokens."""

    name: str
    lo: int
    hi: int | None
    share: float
    prompt_tokens_mean: float
    output_tokens_mean: float

    def holds(self, prompt_tokens: int) -> bool:
        return prompt_tokens >= self.lo and (self.hi is None or prompt_tokens <= self.hi)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def length_bands(prompt_tokens: list[int]) -> list[tuple[str, int, int | None]]:
    """One band, or short/long split at the median, by the measured prompt lengths."""
    if not prompt_tokens:
        return [("all", 0, None)]
    lo, hi = min(prompt_tokens), max(prompt_tokens)
    if lo <= 0 or hi / lo < MIN_SPREAD:
        return [("all", 0, None)]
    cut = int(np.median(prompt_tokens))
    return [(f"short (<= {cut} tokens)", 0, cut), (f"long (> {cut} tokens)", cut + 1, None)]


def workload_records(data: RunData) -> list:
    """One pass over the workload: the successful records of the cell that completed the most
    (every cell replays the same prompts, so shares come from the workload, counted once)."""
    cells: dict[tuple, list] = {}
    for r in data.records:
        if r.ok:
            cells.setdefault(r.cell, []).append(r)
    return max(cells.values(), key=len, default=[])


def request_classes(data: RunData) -> list[RequestClass]:
    """Classes with their share of the workload's requests and their mean token counts."""
    ok = workload_records(data)
    bands = length_bands([r.prompt_tokens for r in ok])
    out = []
    for name, lo, hi in bands:
        members = [r for r in ok if r.prompt_tokens >= lo and (hi is None or r.prompt_tokens <= hi)]
        share = len(members) / len(ok) if ok else 1.0
        p_in = float(np.mean([r.prompt_tokens for r in members])) if members else 0.0
        p_out = float(np.mean([r.output_tokens for r in members])) if members else 0.0
        out.append(RequestClass(name, lo, hi, share, p_in, p_out))
    return out
