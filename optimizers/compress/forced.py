"""Forced tokens: text that compression must keep, whatever its perplexity.

llmlingua 0.2.2 honours `force_tokens` only in LLMLingua-2; its perplexity-based compressor
ignores them. Its structured mode, though, takes a keep rate per run of tokens, and a run at rate
1.0 is kept whole. So every token that touches an occurrence of a forced string gets rate 1.0
(windows.py), and the tokens between them get the compression rate.
"""
from __future__ import annotations

from collections.abc import Iterable

Segment = tuple[str, bool]  # (text, forced)


def forced_spans(text: str, force_tokens: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans of every occurrence of every forced string, overlaps merged, in order."""
    spans = []
    for token in {t for t in force_tokens if t}:
        start = text.find(token)
        while start != -1:
            spans.append((start, start + len(token)))
            start = text.find(token, start + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def split_forced(text: str, force_tokens: Iterable[str]) -> list[Segment]:
    """The text cut into consecutive (piece, forced) segments that join back to it exactly."""
    return split_at(text, forced_spans(text, force_tokens))


def split_at(text: str, spans: list[tuple[int, int]]) -> list[Segment]:
    """The text cut at sorted, disjoint spans into (piece, inside a span) segments."""
    segments: list[Segment] = []
    at = 0
    for start, end in spans:
        if start > at:
            segments.append((text[at:start], False))
        segments.append((text[start:end], True))
        at = end
    if at < len(text):
        segments.append((text[at:], False))
    return segments
