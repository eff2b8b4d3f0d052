"""The semantic cache: embed a prompt, find its nearest cached prompts, let a rule decide, keep statistics."""
from __future__ import annotations

import json
import time
import unicodedata
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Callable, Sequence

import numpy as np

from llmbench.optimizers.cache.decision import Candidate, CosineRule, DecisionRule
from llmbench.optimizers.cache.embedder import Embedder, TokenVectors
from llmbench.optimizers.cache.policy import EvictionPolicy
from llmbench.optimizers.cache.store import VectorStore


_TRIM = " \t\n\r.?!"


def normalise_text(text: str) -> str:
    """The form two prompts must share to count as the same request: Unicode NFKC, case-folded,
    curly quotes straightened, runs of white space as one space, no leading or trailing white space
    or end punctuation. Deliberately narrow: anything more (stemming, stop words) could merge
    prompts that ask different things."""
    t = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    t = t.replace("\u201c", '"').replace("\u201d", '"').casefold()
    return " ".join(t.split()).strip(_TRIM)


def payload_bytes(value: Any) -> int:
    """Bytes a cached response or metadata holds: its UTF-8 text, its bytes, or its JSON form."""
    if value is None:
        return 0
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    return len(json.dumps(value, default=str).encode("utf-8"))


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
    """The outcome of one lookup. `candidate_id` is the rule's best candidate even when not served.

    `exact`: served because a cached prompt has the same normalised text; such a lookup skips the
    index and the rule, and its `score` is +inf (served at every threshold).
    """

    hit: bool
    entry_id: int | None
    candidate_id: int | None
    score: float
    cosine: float | None
    response: Any
    latency_ms: float
    candidates: list[Candidate] = field(default_factory=list, repr=False)  # what the rule saw, nearest first
    exact: bool = False


@dataclass
class CacheStats:
    """Counters and lookup latencies (embedding excluded: it is the embedder's cost, reported apart)."""

    lookups: int = 0
    hits: int = 0
    misses: int = 0
    exact_hits: int = 0
    inserts: int = 0
    evictions: int = 0
    refused: int = 0
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
                "exact_hits": self.exact_hits, "inserts": self.inserts, "evictions": self.evictions,
                "refused": self.refused, "expirations": self.expirations,
                "lookup_ms_p50": self.latency_ms(50), "lookup_ms_p99": self.latency_ms(99)}


class SemanticCache:
    """A prompt cache keyed by meaning.

    A prompt whose normalised text (`normalise_text`) equals a cached one is served that entry
    before the index or the rule is consulted: exact repeats are the commonest and safest hits, and
    no threshold should refuse them. Otherwise `rule` decides (default: cosine >= 0.9);
    `candidates` is how many nearest entries the rule sees; `policy` evicts (default: unbounded).
    Texts are embedded with `embedder` unless the caller passes vectors (the simulator embeds a
    whole log in one batch).
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
        self._exact: dict[str, int] = {}  # normalised text -> the newest entry holding it
        self.stats = CacheStats()
        self._ids = count()
        self._clock = clock

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        """Bytes held for the live entries: index rows (vector, id, int8 mirror), token vectors, texts,
        responses and metadata (what `max_bytes` limits)."""
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
        """Cache prompts whose vectors are already computed (unit rows; NaN or unnormalised rows are refused).

        Stale entries expire first, so a full cache never evicts a live entry while keeping an
        expired one. An entry larger than `max_bytes` on its own is not kept (the cache is not
        emptied for it). Returns the new entry ids, including any not kept.
        """
        self.expire()
        ids = [next(self._ids) for _ in texts]
        self.store.add(ids, vectors)  # validates before anything is recorded
        for j, (entry_id, text) in enumerate(zip(ids, texts)):
            toks = tokens[j] if tokens is not None else None
            response = responses[j] if responses else None
            meta = metas[j] if metas else None
            nbytes = (self.store.row_bytes + len(text.encode("utf-8")) + (toks.nbytes if toks is not None else 0)
                      + payload_bytes(response) + payload_bytes(meta))
            self.entries[entry_id] = Entry(entry_id, text, response, meta, toks, nbytes)
            self.stats.inserts += 1
            for victim in self.policy.on_insert(entry_id, nbytes):
                self._drop(victim)
                if victim == entry_id:
                    self.stats.refused += 1  # larger than max_bytes on its own: never held
                else:
                    self.stats.evictions += 1
            if entry_id in self.entries:
                self._exact[normalise_text(text)] = entry_id
        return ids

    def _drop(self, entry_id: int) -> None:
        entry = self.entries.pop(entry_id, None)
        if entry is not None:
            self.store.remove(entry_id)
            key = normalise_text(entry.text)
            if self._exact.get(key) == entry_id:
                del self._exact[key]

    def exact_entry(self, text: str) -> int | None:
        """The live entry whose normalised text equals this prompt's, if any."""
        return self._exact.get(normalise_text(text))

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
        same = self.exact_entry(text)
        if same is not None:
            latency = (self._clock() - t0) * 1e3
            self.stats.lookups += 1
            self.stats.hits += 1
            self.stats.exact_hits += 1
            self.stats.latencies_ms.append(latency)
            self.policy.on_hit(same)
            entry = self.entries[same]
            return Lookup(True, same, same, float("inf"), None, entry.response, latency, [], exact=True)
        cands = self.candidates_for(vector)
        best, score = self.rule.best(text, tokens, cands)
        hit = best is not None and score >= self.rule.threshold  # reaching the threshold is enough
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
