"""The semantic cache: embed a prompt, find its nearest cached prompts, let a rule decide, keep statistics."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Callable, Sequence

import numpy as np

from llmbench.optimizers.cache.decision import Candidate, CosineRule, DecisionRule
from llmbench.optimizers.cache.embedder import Embedder, TokenVectors
from llmbench.optimizers.cache.policy import EvictionPolicy
from llmbench.optimizers.cache.store import VectorStore


@dataclass
class Entry:
    """One cached prompt with its answer."""

    entry_id: int
    text: str
    response: Any = None
    meta: dict | None = None
    tokens: TokenVectors | None = None
    nbytes: int = 0


@dataclass
class Lookup:
    """The outcome of one lookup. `candidate_id` is the rule's best candidate even when not served."""

    hit: bool
    entry_id: int | None
    candidate_id: int | None
    score: float
    cosine: float | None
    response: Any
    latency_ms: float
    candidates: list[Candidate] = field(default_factory=list, repr=False)  # what the rule saw, nearest first


@dataclass
class CacheStats:
    """Counters and lookup latencies (embedding excluded: it is the embedder's cost, reported apart)."""

    lookups: int = 0
    hits: int = 0
    misses: int = 0
    inserts: int = 0
    evictions: int = 0
    expirations: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None

    def latency_ms(self, q: float) -> float | None:
        """The q-th percentile (0-100) of lookup latency."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def to_dict(self) -> dict:
        """JSON-ready counters with p50/p99 latency."""
        return {"lookups": self.lookups, "hits": self.hits, "misses": self.misses, "hit_rate": self.hit_rate,
                "inserts": self.inserts, "evictions": self.evictions, "expirations": self.expirations,
                "lookup_ms_p50": self.latency_ms(50), "lookup_ms_p99": self.latency_ms(99)}


class SemanticCache:
    """A prompt cache keyed by meaning.

    `rule` decides hits (default: cosine >= 0.9); `candidates` is how many nearest entries the rule
    sees; `policy` evicts (default: unbounded). Texts are embedded with `embedder` unless the
    caller passes vectors (the simulator embeds a whole log in one batch).
    """

    def __init__(self, embedder: Embedder | None = None, rule: DecisionRule | None = None, candidates: int = 3,
                 policy: EvictionPolicy | None = None, dim: int | None = None, use_int8: bool = False,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        self.embedder = embedder
        self.rule = rule if rule is not None else CosineRule(0.9)
        self.candidates = candidates
        self.policy = policy if policy is not None else EvictionPolicy()  # (an empty policy is falsy: len 0)
        width = dim or (embedder.dim if embedder is not None else None)
        if width is None:
            raise ValueError("give an embedder or the vector width (dim)")
        self.store = VectorStore(width, use_int8=use_int8)
        self.entries: dict[int, Entry] = {}
        self.stats = CacheStats()
        self._ids = count()
        self._clock = clock

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        """Bytes of vectors, token vectors and texts held."""
        return sum(e.nbytes for e in self.entries.values())

    def _embed(self, texts: Sequence[str]) -> tuple[np.ndarray, list[TokenVectors] | None]:
        if self.embedder is None:
            raise ValueError("this cache has no embedder: pass vectors")
        if self.rule.needs_tokens:
            if not hasattr(self.embedder, "embed_with_tokens"):
                raise ValueError(f"rule {self.rule.name} needs token vectors; embedder {self.embedder.name} has none")
            return self.embedder.embed_with_tokens(texts)  # type: ignore[attr-defined]
        return self.embedder.embed(texts), None

    def insert(self, text: str, response: Any = None, meta: dict | None = None) -> int:
        """Embed and cache one prompt; returns its entry id."""
        vecs, toks = self._embed([text])
        return self.insert_many([text], vecs, [response], [meta], toks)[0]

    def insert_many(self, texts: Sequence[str], vectors: np.ndarray, responses: Sequence[Any] | None = None,
                    metas: Sequence[dict | None] | None = None,
                    tokens: Sequence[TokenVectors] | None = None) -> list[int]:
        """Cache prompts whose vectors are already computed (unit rows; NaN or unnormalised rows are refused)."""
        ids = [next(self._ids) for _ in texts]
        self.store.add(ids, vectors)  # validates before anything is recorded
        for j, (entry_id, text) in enumerate(zip(ids, texts)):
            toks = tokens[j] if tokens is not None else None
            nbytes = self.store.dim * 4 + len(text.encode("utf-8")) + (toks.nbytes if toks is not None else 0)
            self.entries[entry_id] = Entry(entry_id, text, responses[j] if responses else None,
                                           metas[j] if metas else None, toks, nbytes)
            self.stats.inserts += 1
            for victim in self.policy.on_insert(entry_id, nbytes):
                self._drop(victim)
                self.stats.evictions += 1
        return ids

    def _drop(self, entry_id: int) -> None:
        if entry_id in self.entries:
            del self.entries[entry_id]
            self.store.remove(entry_id)

    def remove(self, entry_id: int) -> None:
        """Forget one entry."""
        self.policy.forget(entry_id)
        self._drop(entry_id)

    def expire(self) -> int:
        """Drop entries past their time to live; returns how many."""
        gone = self.policy.expired()
        for entry_id in gone:
            self._drop(entry_id)
        self.stats.expirations += len(gone)
        return len(gone)

    def candidates_for(self, vector: np.ndarray) -> list[Candidate]:
        """The nearest cached entries to a query vector, nearest first."""
        cos, ids = self.store.search(vector, self.candidates)
        return [Candidate(int(i), self.entries[int(i)].text, float(c), self.entries[int(i)].tokens)
                for c, i in zip(cos, ids)]

    def lookup(self, text: str) -> Lookup:
        """Embed a prompt and look it up."""
        vecs, toks = self._embed([text])
        return self.lookup_vector(text, vecs[0], toks[0] if toks else None)

    def lookup_vector(self, text: str, vector: np.ndarray, tokens: TokenVectors | None = None) -> Lookup:
        """Look up a prompt whose vector is already computed; counts towards the statistics."""
        self.expire()
        t0 = self._clock()
        cands = self.candidates_for(vector)
        best, score = self.rule.best(text, tokens, cands)
        hit = best is not None and score >= self.rule.threshold
        latency = (self._clock() - t0) * 1e3
        self.stats.lookups += 1
        self.stats.latencies_ms.append(latency)
        cand = cands[best] if best is not None else None
        if hit:
            self.stats.hits += 1
            self.policy.on_hit(cand.entry_id)
        else:
            self.stats.misses += 1
        return Lookup(hit, cand.entry_id if hit else None, cand.entry_id if cand else None, score,
                      cand.cosine if cand else None, self.entries[cand.entry_id].response if hit else None, latency,
                      cands)
