"""The semantic cache's parts without a real model: index, eviction, decision rules, chooser, logs, profile."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from llmbench.errors import BadInput
from llmbench.kernels.search import InvalidVectors
from llmbench.optimizers.cache.cache import Entry, SemanticCache, payload_bytes
from llmbench.optimizers.cache.chooser import Outcomes, best_threshold, choose, rates
from llmbench.optimizers.cache.decision import Candidate, CosineRule, VerifierRule
from llmbench.optimizers.cache.embedder import CachedEmbedder, TokenVectors
from llmbench.optimizers.cache.features import (FEATURE_NAMES, FEATURE_SIGNS, TOKEN_FEATURE_NAMES, pair_features,
                                               parse, token_features)
from llmbench.optimizers.cache.logs import PairsLog, PromptLog, read_log
from llmbench.optimizers.cache.policy import EvictionPolicy
from llmbench.optimizers.cache.profile import load_profile
from llmbench.optimizers.cache.store import VectorStore
from llmbench.optimizers.cache.verifier import Verifier, fit_verifier


class WordEmbedder:
    """A deterministic stand-in for MiniLM: a text's vector is the normalised sum of hashed word vectors."""

    name = "test-words"
    dim = 32

    def __init__(self) -> None:
        self.calls = 0

    def _word(self, w: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_with_tokens(self, texts, progress=None):
        self.calls += 1
        vecs, toks = [], []
        for t in texts:
            words = t.lower().split() or ["<empty>"]
            w = np.vstack([self._word(x) for x in words])
            v = w.sum(axis=0)
            vecs.append(v / np.linalg.norm(v))
            toks.append(TokenVectors(w.astype(np.float16), np.ones(len(words), dtype=bool)))
        return np.vstack(vecs).astype(np.float32), toks

    def embed(self, texts, progress=None):
        return self.embed_with_tokens(texts)[0]


def unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- index -------------------------------------------------------------------------------------

def test_store_grows_by_doubling_not_per_insert():
    rng = np.random.default_rng(0)
    store = VectorStore(16, capacity=4)
    for i in range(1000):
        store.add([i], unit(rng, 1))
    assert len(store) == 1000
    assert store.grow_count <= 9  # 4 -> 8 -> ... -> 1024: log2(1000/4) reallocations, not 1000
    assert store.capacity >= 1000


def test_store_search_after_removals_returns_live_ids():
    rng = np.random.default_rng(1)
    x = unit(rng, 50)
    store = VectorStore(16)
    store.add(np.arange(100, 150), x)
    for gone in (100, 120, 149, 133):
        store.remove(gone)
    assert len(store) == 46
    for i in (101, 121, 148):
        cos, ids = store.search(x[i - 100], 1)
        assert ids[0] == i and cos[0] == pytest.approx(1.0, abs=1e-5)
    _, ids = store.search(x[20], 46)
    assert set(ids.tolist()) == set(range(100, 150)) - {100, 120, 149, 133}


def test_store_int8_mirror_agrees_with_float32():
    rng = np.random.default_rng(2)
    x = unit(rng, 400)
    f32, i8 = VectorStore(16), VectorStore(16, use_int8=True, int8_min_rows=1)
    f32.add(np.arange(400), x)
    i8.add(np.arange(400), x)
    i8.remove(7)
    f32.remove(7)
    for q in unit(rng, 5):
        assert f32.search(q, 10)[1].tolist() == i8.search(q, 10)[1].tolist()


@pytest.mark.parametrize("bad, message", [
    (np.full((1, 16), np.nan, dtype=np.float32), "NaN"),
    (np.full((1, 16), 0.5, dtype=np.float32), "norm"),
    (np.ones((1, 8), dtype=np.float32) / np.sqrt(8), "width"),
])
def test_store_refuses_bad_vectors_at_insert(bad, message):
    store = VectorStore(16)
    with pytest.raises(InvalidVectors, match=message):
        store.add([0], bad)
    assert len(store) == 0


def test_store_refuses_reused_ids():
    store = VectorStore(16)
    store.add([1], unit(np.random.default_rng(0), 1))
    with pytest.raises(InvalidVectors, match="new and distinct"):
        store.add([1], unit(np.random.default_rng(1), 1))


# ---- eviction ----------------------------------------------------------------------------------

def test_lru_by_entries_keeps_the_recently_hit():
    p = EvictionPolicy(max_entries=3)
    for i in range(3):
        assert p.on_insert(i, 10) == []
    p.on_hit(0)
    assert p.on_insert(3, 10) == [1]  # 0 was just used, 1 is now the least recent
    assert p.on_insert(4, 10) == [2]


def test_lru_by_bytes():
    p = EvictionPolicy(max_bytes=100)
    assert p.on_insert(0, 40) == [] and p.on_insert(1, 40) == []
    assert p.on_insert(2, 40) == [0]
    assert p.bytes == 80
    # Too big to keep at all: refused on its own, without emptying the cache for it.
    assert p.on_insert(3, 500) == [3]
    assert p.bytes == 80 and len(p) == 2


def test_ttl_with_a_fake_clock():
    now = [0.0]
    p = EvictionPolicy(ttl_s=10, clock=lambda: now[0])
    p.on_insert(0, 1)
    now[0] = 5
    p.on_insert(1, 1)
    p.on_hit(0)  # a hit does not make an answer younger
    now[0] = 10
    assert p.expired() == [0]
    now[0] = 14.9
    assert p.expired() == []
    now[0] = 15
    assert p.expired() == [1]


def test_policy_refuses_silly_limits():
    with pytest.raises(ValueError):
        EvictionPolicy(max_entries=0)


# ---- the cache ---------------------------------------------------------------------------------

def test_cache_hits_misses_stats_and_eviction():
    emb = WordEmbedder()
    cache = SemanticCache(emb, rule=CosineRule(0.99), policy=EvictionPolicy(max_entries=2))
    a = cache.insert("how do i bake bread", response="flour")
    assert cache.lookup("how do i bake bread").response == "flour"
    miss = cache.lookup("what is the capital of france")
    assert not miss.hit and miss.entry_id is None
    cache.insert("what is the capital of france", response="paris")
    cache.lookup("how do i bake bread")  # refresh a, so the next insert evicts the other one
    cache.insert("tell me a joke")
    assert a in cache.entries and len(cache) == 2
    s = cache.stats.to_dict()
    assert (s["lookups"], s["hits"], s["misses"], s["evictions"]) == (3, 2, 1, 1)
    assert s["lookup_ms_p50"] is not None and s["lookup_ms_p99"] >= s["lookup_ms_p50"]


def test_cache_ttl_expires_entries():
    now = [0.0]
    cache = SemanticCache(WordEmbedder(), rule=CosineRule(0.99), policy=EvictionPolicy(ttl_s=60, clock=lambda: now[0]))
    cache.insert("stale answer please")
    assert cache.lookup("stale answer please").hit
    now[0] = 61
    assert not cache.lookup("stale answer please").hit
    assert cache.stats.expirations == 1 and len(cache) == 0


def test_insert_expires_stale_entries_before_evicting_live_ones():
    """max 2 entries, 10 s TTL: a (t=0, hit at t=6 so most recent) is stale at t=11, b (t=5) is live."""
    now = [0.0]
    cache = SemanticCache(WordEmbedder(), rule=CosineRule(0.99),
                          policy=EvictionPolicy(max_entries=2, ttl_s=10, clock=lambda: now[0]))
    a = cache.insert("first answer here")
    now[0] = 5
    b = cache.insert("second answer here")
    now[0] = 6
    assert cache.lookup("first answer here").entry_id == a
    now[0] = 11
    c = cache.insert("third answer here")
    assert set(cache.entries) == {b, c}  # the expired one went, the live one stayed
    assert (cache.stats.expirations, cache.stats.evictions) == (1, 0)


def test_an_entry_over_max_bytes_does_not_wipe_the_cache():
    cache = SemanticCache(WordEmbedder(), rule=CosineRule(0.99), policy=EvictionPolicy(max_bytes=2000))
    keep = [cache.insert("small one"), cache.insert("small two")]
    huge = cache.insert("huge", response="x" * 300_000)
    assert set(cache.entries) == set(keep) and huge not in cache.entries
    assert (cache.stats.refused, cache.stats.evictions) == (1, 0)
    assert not cache.lookup("huge").hit and cache.lookup("small one").hit


def test_byte_count_holds_responses_ids_and_the_int8_mirror():
    dim = 32
    cache = SemanticCache(WordEmbedder(), rule=CosineRule(0.99), use_int8=True,
                          policy=EvictionPolicy(max_bytes=10_000))
    cache.insert("héllo", response="answer", meta={"k": 1})
    assert next(iter(cache.entries.values())).tokens is None  # a cosine rule keeps no token vectors
    want = (dim * 4 + 8 + dim + 4) + len("héllo".encode()) + len("answer") + len('{"k": 1}')
    assert cache.nbytes == want and cache.policy.bytes == want
    # 300,000 bytes of responses cannot sit under max_bytes=1000.
    small = SemanticCache(WordEmbedder(), rule=CosineRule(0.99), policy=EvictionPolicy(max_bytes=1000))
    for i in range(3):
        small.insert(f"q{i}", response="r" * 100_000)
    assert len(small) == 0 and small.policy.bytes == 0


def test_exact_repeats_are_served_at_any_threshold():
    """A threshold no rule can reach still serves a prompt whose normalised text is cached."""
    cache = SemanticCache(WordEmbedder(), rule=VerifierRule(_toy_verifier(), 1e9))
    a = cache.insert("How do I bake bread?", response="flour")
    for same in ("How do I bake bread?", "  how do i   BAKE bread ", "How do I bake bread"):
        res = cache.lookup(same)
        assert res.hit and res.exact and res.entry_id == a and res.response == "flour"
    assert not cache.lookup("How do I bake rye bread?").hit
    assert (cache.stats.hits, cache.stats.exact_hits, cache.stats.misses) == (3, 3, 1)
    cache.remove(a)  # a removed entry is no longer an exact match
    assert not cache.lookup("How do I bake bread?").hit


def test_a_score_equal_to_the_threshold_is_a_hit():
    """cosine >= threshold serves; the boundary belongs to the hit side (kills a `>` mutant)."""
    cache = SemanticCache(rule=CosineRule(1.0), dim=4)
    e0 = np.array([[1, 0, 0, 0]], dtype=np.float32)
    cache.insert_many(["cached text"], e0)
    res = cache.lookup_vector("another text", e0[0])  # cosine exactly 1.0, but not the same text
    assert not res.exact and res.cosine == 1.0 and res.hit
    q = np.array([0.6, 0.8, 0, 0], dtype=np.float32)
    cos = cache.candidates_for(q)[0].cosine
    cache.rule = CosineRule(cos)
    assert cache.lookup_vector("a third text", q).hit
    cache.rule = CosineRule(float(np.nextafter(np.float32(cos), np.float32(2))))
    assert not cache.lookup_vector("a third text", q).hit


def test_cache_stats_count_each_kind_of_lookup_exactly():
    """A scripted clock: each lookup's latency is known, so are the counters, the hit rate and the percentiles."""
    ticks = iter([0.001, 0.005, 0.002, 0.012, 0.001, 0.007])  # small starts: only "-" gives 4, 10 and 6 ms
    cache = SemanticCache(rule=CosineRule(0.9), dim=4, clock=lambda: next(ticks))
    e = np.eye(4, dtype=np.float32)
    assert cache.insert_many(["Hello  World!", "other"], e[:2], ["hi", "no"]) == [0, 1]
    assert cache.stats.inserts == 2 and cache.stats.hit_rate is None and cache.stats.latency_ms(50) is None
    assert cache.entries[1].nbytes == 4 * 4 + 8 + len("other") + len("no")  # float32 row and id, no int8 mirror by default
    exact = cache.lookup_vector("hello world", e[3])  # same normalised text: served before the index is asked
    assert (exact.hit, exact.exact, exact.entry_id, exact.candidate_id, exact.score, exact.cosine, exact.response) == (
        True, True, 0, 0, float("inf"), None, "hi")
    assert exact.latency_ms == pytest.approx(4.0) and exact.candidates == [] and "candidates" not in repr(exact)
    near = cache.lookup_vector("near", e[1])
    assert (near.hit, near.exact, near.entry_id, near.response, near.cosine) == (True, False, 1, "no", 1.0)
    assert near.latency_ms == pytest.approx(10.0)
    far = cache.lookup_vector("far", e[2])
    assert (far.hit, far.entry_id, far.response, far.candidate_id) == (False, None, None, far.candidates[0].entry_id)
    s = cache.stats
    assert (s.lookups, s.hits, s.misses, s.exact_hits, s.inserts) == (3, 2, 1, 1, 2)
    assert s.hit_rate == pytest.approx(2 / 3)
    # Latencies 4, 10, 6 ms: p50 6, p99 6 + 0.98 x (10 - 6).
    d = s.to_dict()
    assert d["lookup_ms_p50"] == pytest.approx(6.0) and d["lookup_ms_p99"] == pytest.approx(9.92)
    assert (d["hit_rate"], d["refused"], d["evictions"], d["expirations"]) == (pytest.approx(2 / 3), 0, 0, 0)


def test_cache_sees_three_candidates_and_forgets_exact_texts_by_value():
    cache = SemanticCache(rule=CosineRule(0.9), dim=4)
    rng = np.random.default_rng(0)
    ids = cache.insert_many([f"text {i}" for i in range(300)], unit(rng, 300, 4))
    assert len(cache.lookup_vector("query", unit(rng, 1, 4)[0]).candidates) == 3
    assert cache.exact_entry("TEXT 299") == ids[299]
    cache.remove(int("299"))  # an id equal in value, not the same object (ints past 256 are not shared)
    assert cache.exact_entry("text 299") is None and not cache.lookup_vector("text 299", unit(rng, 1, 4)[0]).exact
    assert Entry(0, "t").nbytes == 0


def test_cache_refuses_what_it_cannot_work_with():
    with pytest.raises(ValueError, match="^candidates must be at least 1, got 0$"):
        SemanticCache(dim=4, candidates=0)
    assert SemanticCache(dim=4, candidates=1).candidates == 1 and SemanticCache(WordEmbedder()).store.dim == 32
    with pytest.raises(ValueError, match=r"^give an embedder or the vector width \(dim\)$"):
        SemanticCache()
    with pytest.raises(ValueError, match="^this cache has no embedder: pass vectors$"):
        SemanticCache(dim=4).lookup("x")

    class VectorsOnly:
        """x and y share a vector; z is orthogonal to them (cosine 0)."""

        name, dim = "plain", 4

        def embed(self, texts, progress=None):
            return np.eye(4, dtype=np.float32)[[int(t == "z") for t in texts]]

    with pytest.raises(ValueError, match="^rule verifier needs token vectors; embedder plain has none$"):
        SemanticCache(VectorsOnly(), rule=VerifierRule(_toy_verifier(), 0.5)).insert("x")
    plain = SemanticCache(VectorsOnly())
    plain.insert("x", response="r")
    assert plain.lookup("y").response == "r" and plain.entries[0].tokens is None  # cosine 1.0 >= 0.9 by default
    assert not plain.lookup("z").hit and plain.rule.threshold == 0.9
    # A rule on token vectors keeps them, and they count: 2 words x 32 float16 + 2 mask bytes.
    tok = SemanticCache(WordEmbedder(), rule=VerifierRule(_toy_verifier(), 0.5))
    tok.insert("ab cd")
    assert tok.nbytes == 32 * 4 + 8 + len("ab cd") + 2 * 32 * 2 + 2


def test_cache_payload_bytes():
    assert payload_bytes(None) == 0 and payload_bytes("") == 0 and payload_bytes("é") == 2
    assert payload_bytes(b"abc") == 3 and payload_bytes(bytearray(5)) == 5 and payload_bytes(memoryview(b"ab")) == 2
    assert payload_bytes({"k": 1}) == len('{"k": 1}') and payload_bytes([1.5]) == 5
    assert payload_bytes({"p": Path("/a")}) == len('{"p": "/a"}')  # anything else by its str


def test_cache_refuses_nan_vectors_at_insert():
    cache = SemanticCache(rule=CosineRule(0.9), dim=4)
    with pytest.raises(InvalidVectors, match="row 1 contains NaN"):
        cache.insert_many(["a", "b"], np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]], dtype=np.float32))
    assert len(cache) == 0


def test_on_disk_embedding_store_reuses_vectors(tmp_path):
    inner = WordEmbedder()
    first = CachedEmbedder(inner, tmp_path)
    v1, t1 = first.embed_with_tokens(["one two", "three"])
    second = CachedEmbedder(inner, tmp_path)
    assert second.missing(["one two", "three", "four"], tokens=True) == 1
    calls = inner.calls
    v2, t2 = second.embed_with_tokens(["three", "one two"])
    assert inner.calls == calls  # nothing recomputed
    assert np.array_equal(v2[1], v1[0]) and np.array_equal(t2[0].vectors, t1[1].vectors)


# ---- features, verifier, rules -----------------------------------------------------------------

def test_features_catch_near_misses():
    names = FEATURE_NAMES
    f = dict(zip(names, pair_features("What happened in June 28?", "What happened in June 29?", 0.99)))
    assert f["numbers_differ"] == 1.0 and f["number_mismatch"] == 1.0
    f = dict(zip(names, pair_features("How to convert current to voltage?", "How to convert voltage to current?", 0.99)))
    assert f["order_swapped"] == 1.0 and f["content_jaccard"] == 1.0
    f = dict(zip(names, pair_features("Why don't people worry?", "Why do people worry?", 0.97)))
    assert f["negation_mismatch"] == 1.0
    f = dict(zip(names, pair_features("Is Tokyo big?", "Is Kyoto big?", 0.9)))
    assert f["name_mismatch"] == 1.0
    same = pair_features("How do I learn Python?", "How do I learn Python?", 1.0)
    assert dict(zip(names, same))["word_jaccard"] == 1.0
    assert parse("Don’t stop").content_seq == ("stop",)


def _toy_verifier() -> Verifier:
    rng = np.random.default_rng(0)
    width = len(FEATURE_NAMES) + len(TOKEN_FEATURE_NAMES)
    x = rng.random((200, width))
    cos = 0.8 + 0.2 * rng.random(200)
    x[:, 0] = cos
    y = (x[:, 0] + 0.1 * rng.standard_normal(200) > 0.9).astype(int)
    return fit_verifier(x, y, cos, floor=0.8, name="toy", c=1.0)


def test_verifier_weights_cannot_punish_identity():
    """Every weight keeps its feature's sign (sameness >= 0, difference <= 0), so an identical pair,
    which maximises every sameness feature and zeroes every difference feature, scores at least as
    high as any other pair of its length. Unconstrained, random features take weights of both signs."""
    rng = np.random.default_rng(3)
    width = len(FEATURE_NAMES) + len(TOKEN_FEATURE_NAMES)
    names = FEATURE_NAMES + TOKEN_FEATURE_NAMES
    x = rng.random((400, width))
    cos = 0.8 + 0.2 * rng.random(400)
    x[:, 0] = cos
    y = (rng.random(400) < 0.5).astype(int)  # labels unrelated to the features: free weights would scatter
    v = fit_verifier(x, y, cos, floor=0.8, name="noise", c=10.0)
    signs = np.array([FEATURE_SIGNS[n] for n in names])
    assert np.all(v.coef * signs >= -1e-12)
    for prof_v in load_profile().verifiers.values():  # the shipped verifiers too
        assert np.all(prof_v.coef * np.array([FEATURE_SIGNS[n] for n in prof_v.feature_names]) >= 0)
    # An identical pair against the same texts with one word changed: never lower.
    emb = WordEmbedder()
    texts = ["how do i learn python quickly", "how do i learn java quickly"]
    vecs, toks = emb.embed_with_tokens(texts)
    same = v.features(texts[0], toks[0], texts[0], toks[0], 1.0)
    other = v.features(texts[1], toks[1], texts[0], toks[0], float(vecs[0] @ vecs[1]))
    assert v.probabilities(same[None], [1.0])[0] >= v.probabilities(other[None], [0.9])[0]


def test_verifier_round_trips_as_plain_data():
    v = _toy_verifier()
    back = Verifier.from_dict(json.loads(json.dumps(v.to_dict())))
    x = np.random.default_rng(1).random((5, len(v.feature_names)))
    cos = np.array([0.5, 0.85, 0.9, 0.95, 1.0])
    assert np.allclose(v.probabilities(x, cos), back.probabilities(x, cos), atol=1e-6)
    assert back.probabilities(x, cos)[0] == 0.0  # below the floor
    bad = v.to_dict() | {"features": ["nonsense"]}
    with pytest.raises(ValueError, match="do not match"):
        Verifier.from_dict(bad)


def test_rules_pick_and_score():
    emb = WordEmbedder()
    texts = ["how do i cook rice", "how do i cook pasta"]
    vecs, toks = emb.embed_with_tokens(texts)
    cands = [Candidate(0, texts[0], 0.95, toks[0]), Candidate(1, texts[1], 0.97, toks[1])]
    assert CosineRule(0.9).best("q", None, cands) == (1, 0.97)
    assert CosineRule(0.9).best("q", None, []) == (None, float("-inf"))
    v = _toy_verifier()
    rule = VerifierRule(v, 0.5)
    qv, qt = emb.embed_with_tokens(["how do i cook rice"])
    i, p = rule.best("how do i cook rice", qt[0], cands)
    # By hand: the logistic model over each candidate's features, the larger probability wins.
    want = []
    for c in cands:
        row = np.array(pair_features(c.text, "how do i cook rice", c.cosine)
                       + token_features(c.tokens.vectors, c.tokens.content, qt[0].vectors, qt[0].content))
        z = float(((row - v.mean) / v.scale) @ v.coef + v.intercept)
        want.append(1 / (1 + np.exp(-z)))
    assert i == int(np.argmax(want)) and p == pytest.approx(max(want), rel=1e-9)
    low = [Candidate(0, texts[0], 0.5, toks[0])]
    assert rule.best("x", qt[0], low) == (None, float("-inf"))  # nothing above the floor


# ---- chooser -----------------------------------------------------------------------------------

def test_best_threshold_keeps_false_hits_under_target():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(500, int), np.zeros(500, int)]
    scores = np.r_[rng.normal(0.8, 0.1, 500), rng.normal(0.5, 0.1, 500)]
    o = Outcomes(scores, np.ones(1000, bool), labels)
    for target in (0.01, 0.05, 0.2):
        t, r = best_threshold(o, target)
        assert r["false_hit_rate"] <= target
        # one step looser would break the target (it is the most hits allowed)
        looser = scores[scores < t].max()
        assert rates(o, looser)["false_hit_rate"] > target
    t, r = best_threshold(Outcomes(np.ones(4), np.ones(4, bool), np.zeros(4, int)), 0.1)
    assert t == float("inf") and r["served"] == 0


def test_rates_count_wrong_entries_and_precision():
    o = Outcomes([0.9, 0.9, 0.9, 0.1], [True, False, True, True], [1, 1, 0, 0])
    r = rates(o, 0.5)
    assert (r["hits"], r["wrong_entries"], r["false_hits"], r["served"]) == (1, 1, 1, 3)
    assert r["hit_rate"] == 0.5 and r["wrong_entry_rate"] == 0.5 and r["false_hit_rate"] == 0.5
    assert r["precision"] == pytest.approx(1 / 3)


def test_choose_prefers_the_setting_with_more_hits():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    weak = Outcomes([0.9, 0.2, 0.2, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], np.ones(10, bool), labels)
    strong = Outcomes([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], np.ones(10, bool), labels)
    name, t, r = choose({"weak": weak, "strong": strong}, 0.0)
    assert name == "strong" and r["hits"] == 3 and r["false_hits"] == 0


# ---- logs and the shipped profile --------------------------------------------------------------

def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_log_kinds(tmp_path):
    pairs = read_log(_write(tmp_path / "p.jsonl", [json.dumps({"text_a": "a", "text_b": "b", "label": 1})]))
    assert isinstance(pairs, PairsLog) and pairs.labels == [1]
    prompts = read_log(_write(tmp_path / "q.jsonl", [json.dumps({"text": "hello"}), "",
                                                     json.dumps({"prompt": "hi"})]))
    assert isinstance(prompts, PromptLog) and prompts.kind == "prompts" and prompts.prompts == ["hello", "hi"]
    reqs = read_log(_write(tmp_path / "r.jsonl", [json.dumps({"prompt": "x", "prompt_tokens": 5,
                                                              "output_tokens": 3, "cost": 0.01})]))
    assert reqs.kind == "requests" and reqs.prompt_tokens == [5] and reqs.costs == [0.01]
    msgs = read_log(_write(tmp_path / "m.jsonl", [json.dumps({"messages": [{"role": "user", "content": "yo"}]})]))
    assert msgs.prompts == ["yo"]


@pytest.mark.parametrize("lines, message", [
    (['{"text_a": "a", "text_b": "b", "label": 1}', "{not json"], r"\.jsonl:2: not valid JSON"),
    (['{"text_a": "a", "text_b": "b", "label": 2}'], "label"),
    (['{"text_a": "a", "label": 1}'], "text_a and text_b"),
    (['{"prompt_tokens": 5, "output_tokens": 2}'], "hold no prompt text.*record_prompts: true"),
    (['{"prompt": "x", "prompt_tokens": -1}'], "non-negative"),
    (["[1, 2]"], "JSON object"),
    ([""], "is empty"),
])
def test_read_log_bad_input(tmp_path, lines, message):
    with pytest.raises(BadInput, match=message):
        read_log(_write(tmp_path / "bad.jsonl", lines))


def test_read_log_missing_file(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        read_log(tmp_path / "nope.jsonl")


def test_shipped_profile_is_consistent():
    prof = load_profile()
    assert prof.meta["fitted_on"] == "qqp_pairs_dev.jsonl" and prof.meta["pairs"] == 4000
    targets = [s.target for s in prof.settings]
    assert targets == sorted(targets) and 0.05 in targets
    s = prof.setting_for(0.05)
    assert s.dev["false_hit_rate"] <= 0.05 and s.dev["hit_rate"] > s.dev["cosine_hit_rate"]
    assert prof.setting_for(0.055).target == 0.05  # never looser than asked
    with pytest.raises(ValueError):
        prof.setting_for(0.001)
    # cosine thresholds loosen as the target loosens
    cos = [s.cosine_threshold for s in prof.settings]
    assert all(a >= b for a, b in zip(cos, cos[1:]))


def test_shipped_profile_is_reproduced_by_its_command(tmp_path):
    """`python -m llmbench.optimizers.cache.fit` on the dev pairs gives the shipped profile back.

    Compared with tolerances rather than bytes: MiniLM on another CPU may differ in the last bits.
    """
    from pathlib import Path

    from llmbench.optimizers.cache import fit

    dev = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cache" / "qqp_pairs_dev.jsonl"
    out = tmp_path / "refit.json"
    assert fit.main(["--pairs", str(dev), "--out", str(out)]) == 0
    shipped, refit = load_profile(), load_profile(str(out))
    assert refit.meta["sha256"] == shipped.meta["sha256"]
    assert [(s.target, s.verifier) for s in refit.settings] == [(s.target, s.verifier) for s in shipped.settings]
    for a, b in zip(refit.settings, shipped.settings):
        assert a.threshold == pytest.approx(b.threshold, abs=2e-3)
        assert a.cosine_threshold == pytest.approx(b.cosine_threshold, abs=2e-3)
    for name, v in shipped.verifiers.items():
        np.testing.assert_allclose(refit.verifiers[name].coef, v.coef, atol=1e-3)


# ---- fitting: the repeats protocol, determinism, the held-out check's cache size ----------------
def _synthetic_pairs(n: int = 200, seed: int = 0) -> PairsLog:
    """Pairs of 12-word texts whose text_b changes 1-3 words of its text_a; labels at random, so
    that both labels sit above every cosine floor."""
    rng = np.random.default_rng(seed)
    a, b, labels = [], [], []
    for _ in range(n):
        words = [f"w{int(i)}" for i in rng.choice(400, 12, replace=False)]
        other = list(words)
        for pos in rng.choice(12, int(rng.integers(1, 4)), replace=False):
            other[pos] = f"x{int(rng.integers(0, 400))}"
        a.append(" ".join(words))
        b.append(" ".join(other))
        labels.append(int(rng.random() < 0.5))
    return PairsLog("synthetic", a, b, labels)


def _embedded(pairs: PairsLog):
    emb = WordEmbedder()
    entries = list(dict.fromkeys(pairs.texts_a))
    va, ta = emb.embed_with_tokens(entries)
    vb, tb = emb.embed_with_tokens(pairs.texts_b)
    return dict(zip(entries, va)), dict(zip(entries, ta)), vb, tb


def test_prepare_treats_an_identical_cached_copy_as_the_right_answer():
    from llmbench.optimizers.cache import fit

    pairs = _synthetic_pairs(40)
    # Lookup 5 asks, word for word, what pair 0 cached; its own pair says "different" (label 0).
    pairs.texts_b[5], pairs.labels[5] = pairs.texts_a[0], 0
    p = fit.prepare(pairs, *_embedded(pairs))
    assert p.repeat[5] and p.lookup_labels[5] == 1 and p.labels[5] == 0  # trained as labelled, judged as a repeat
    assert p.cand_correct[5, 0]  # the nearest entry is the identical one: right
    assert p.repeat.sum() == 1 and (p.lookup_labels == np.where(p.repeat, 1, p.labels)).all()
    v = fit_verifier(p.own_x, p.labels, p.own_cos, 0.0, "all", c=1.0)
    o = fit.verifier_outcomes(v, p, np.arange(len(p.labels)))
    assert o.scores[5] == np.inf and o.correct[5]  # served before the verifier, at any threshold
    assert rates(o, 1e9)["hits"] == 1 and rates(o, 1e9)["false_hits"] == 0


def test_fit_is_deterministic_for_the_same_vectors():
    from llmbench.optimizers.cache import fit

    pairs = _synthetic_pairs()
    p = fit.prepare(pairs, *_embedded(pairs))
    one = json.dumps(fit.fit_profile(p, {}, targets=(0.05, 0.1)).to_dict())
    two = json.dumps(fit.fit_profile(p, {}, targets=(0.05, 0.1)).to_dict())
    assert one == two


def test_held_out_check_searches_the_full_size_cache(monkeypatch):
    """Held-out lookups are scored against the cache of every pair's text_a, the size the setting is for."""
    from llmbench.optimizers.cache import fit

    pairs = _synthetic_pairs()
    sizes = []
    real = fit.prepare

    def spy(sub, *args, **kwargs):
        sizes.append(len(dict.fromkeys(sub.texts_a)))
        return real(sub, *args, **kwargs)

    monkeypatch.setattr(fit, "prepare", spy)
    rows = fit.check(pairs, _embedded(pairs), splits=2, holdout=0.3)
    full = len(dict.fromkeys(pairs.texts_a))
    assert sizes and set(sizes) == {full}
    assert [r["entries"] for r in rows] == [full, full]
