"""Decision rules: which of the nearest cached entries (if any) a lookup may be served.

A rule ranks the candidates the index returned and gives its best one a score; the cache serves
it when the score reaches the rule's threshold. Keeping "best candidate and its score" apart from
"threshold" lets the simulator sweep thresholds from one pass of lookups.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from llmbench.optimizers.cache.embedder import TokenVectors
from llmbench.optimizers.cache.verifier import Verifier


@dataclass(frozen=True)
class Candidate:
    """A cached entry the index found for a query."""

    entry_id: int
    text: str
    cosine: float
    tokens: TokenVectors | None = None


class DecisionRule(Protocol):
    """Picks a candidate and scores it; `threshold` decides whether that score is a hit."""

    name: str
    threshold: float
    needs_tokens: bool

    def best(self, query: str, query_tokens: TokenVectors | None,
             candidates: Sequence[Candidate]) -> tuple[int | None, float]:
        """Index into candidates of the one to serve if any, and its score (-inf when none qualifies)."""
        ...


@dataclass
class CosineRule:
    """Plain semantic caching: serve the nearest entry when its cosine reaches the threshold."""

    threshold: float
    name: str = "cosine"
    needs_tokens: bool = False

    def best(self, query, query_tokens, candidates):
        if not candidates:
            return None, float("-inf")
        i = max(range(len(candidates)), key=lambda j: (candidates[j].cosine, -j))
        return i, float(candidates[i].cosine)


@dataclass
class VerifierRule:
    """Serve the candidate the verifier finds most likely to mean the same, when that probability is high enough."""

    verifier: Verifier
    threshold: float
    name: str = "verifier"

    @property
    def needs_tokens(self) -> bool:
        return self.verifier.uses_tokens

    def scores(self, query: str, query_tokens: TokenVectors | None,
               candidates: Sequence[Candidate]) -> np.ndarray:
        """The verifier's probability for each candidate (0 below its cosine floor)."""
        eligible = [c for c in candidates if c.cosine >= self.verifier.floor]
        out = np.zeros(len(candidates))
        if not eligible:
            return out
        rows = [self.verifier.features(query, query_tokens, c.text, c.tokens, c.cosine) for c in eligible]
        probs = self.verifier.probabilities(np.vstack(rows), np.array([c.cosine for c in eligible]))
        j = 0
        for i, c in enumerate(candidates):
            if c.cosine >= self.verifier.floor:
                out[i] = probs[j]
                j += 1
        return out

    def best(self, query, query_tokens, candidates):
        if not candidates:
            return None, float("-inf")
        probs = self.scores(query, query_tokens, candidates)
        if not (np.array([c.cosine for c in candidates]) >= self.verifier.floor).any():
            return None, float("-inf")
        i = int(np.argmax(probs))  # first maximum: ties go to the nearer candidate
        return i, float(probs[i])
