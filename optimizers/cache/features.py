"""Features of a (cached prompt, new prompt) pair that tell a paraphrase from a near miss.

A cosine between sentence embeddings rates topic, not meaning: "How do I learn Python?" and
"How do I learn Java?" sit close together. The cheap lexical signals below catch what the
embedding glosses over (a different number, a negation, a different name, a different question
word, a word that only one side has), and the verifier weighs them together with the cosine.

All features are symmetric in the two texts, so it does not matter which one was cached.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# A small closed list: function words carry little of a question's meaning, and leaving them
# out makes "which words differ" about content.
STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with about from into over under as is are was
were be been being am do does did doing have has had having i me my mine we us our you your he him his
she her it its they them their this that these those there here what which who whom whose when where
why how can could should would will shall may might must so than too very just also any some such
more most other own same s t get got one ones way ways thing things someone something anyone anything
really much many
""".split())
NEGATIONS = frozenset("not no never none nobody nothing neither nor cannot without isnt arent wasnt "
                      "werent dont doesnt didnt cant couldnt shouldnt wouldnt wont hasnt havent hadnt".split())
QUESTION_WORDS = ("what", "which", "who", "whom", "whose", "when", "where", "why", "how",
                  "can", "could", "should", "would", "will", "is", "are", "was", "were", "do", "does", "did")

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITAL = re.compile(r"\b[A-Z][a-zA-Z0-9]+\b")

FEATURE_NAMES = (
    "cosine",            # embedding cosine
    "cosine_sq",         # lets the logistic model bend its response to the cosine
    "word_jaccard",      # all words
    "content_jaccard",   # words outside STOPWORDS
    "content_miss_max",  # share of the larger miss: content words only one side has
    "content_miss_min",
    "bigram_jaccard",    # word order: "flight from A to B" against "from B to A"
    "char3_jaccard",     # spelling variants and morphology
    "number_mismatch",   # both sides' numbers differ (1) or agree/none (0)
    "negation_mismatch", # one side negated, the other not
    "name_mismatch",     # share of capitalised words (names) not shared, when there are any
    "qword_mismatch",    # different leading question word
    "length_ratio",      # shorter / longer, in words
    "log_length",        # log of the mean word count: short texts are riskier
    "order_discord",     # shared content words in a different order ("A to B" against "B to A")
    "order_swapped",     # any such swap at all
    "only_words_min",    # content words that only one side has, counted (not as a share)
    "only_words_max",
    "numbers_differ",    # both sides have numbers and they differ (June 28 against June 29)
    "numbers_one_side",  # only one side has numbers
)
# Computed from contextual token vectors (BERTScore-like greedy alignment), when the embedder has them.
TOKEN_FEATURE_NAMES = (
    "tok_precision",     # mean over a's tokens of the best match in b
    "tok_recall",        # the same from b's side
    "tok_f1",
    "tok_weighted_min",  # content-weighted precision/recall, the smaller and the larger
    "tok_weighted_max",
    "tok_worst",         # the worst-matched content token on either side: one word that has no counterpart
    "tok_worst2",        # mean of the two worst
    "tok_content_min",   # mean best match of content tokens, the smaller side
    "tok_maxpool_cos",   # cosine of the element-wise maxima over all tokens: a second pooling of the same vectors
)

# The direction each feature may push the verifier's probability: +1 for a "sameness" feature
# (largest for identical texts), -1 for a "difference" feature (zero for identical texts), 0 for
# one that says nothing about sameness. The verifier's weights are fitted under these signs, so no
# feature can lower the probability of a pair for being more alike: identity is never punished.
FEATURE_SIGNS = {
    "cosine": 1, "cosine_sq": 1, "word_jaccard": 1, "content_jaccard": 1, "content_miss_max": -1,
    "content_miss_min": -1, "bigram_jaccard": 1, "char3_jaccard": 1, "number_mismatch": -1,
    "negation_mismatch": -1, "name_mismatch": -1, "qword_mismatch": -1, "length_ratio": 1, "log_length": 0,
    "order_discord": -1, "order_swapped": -1, "only_words_min": -1, "only_words_max": -1,
    "numbers_differ": -1, "numbers_one_side": -1,
    "tok_precision": 1, "tok_recall": 1, "tok_f1": 1, "tok_weighted_min": 1, "tok_weighted_max": 1,
    "tok_worst": 1, "tok_worst2": 1, "tok_content_min": 1, "tok_maxpool_cos": 1,
}


@dataclass(frozen=True)
class Parsed:
    """What the features need of one text, computed once per text."""

    words: tuple[str, ...]
    content_seq: tuple[str, ...]  # stemmed content words in order of first appearance
    content: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    char3: frozenset[str]
    numbers: frozenset[str]
    negated: bool
    names: frozenset[str]
    qword: str


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").lower()


def _stem(word: str) -> str:
    # A crude suffix strip is enough to match "shaved"/"shave", "countries"/"country".
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + repl
    return word


@lru_cache(maxsize=65536)
def parse(text: str) -> Parsed:
    """Tokenise a text once for all features (cached: cache entries are compared many times)."""
    low = _normalise(text)
    words = tuple(w.replace("'", "") for w in _WORD.findall(low))
    content_seq = tuple(dict.fromkeys(_stem(w) for w in words if w not in STOPWORDS and w not in NEGATIONS))
    content = frozenset(content_seq)
    bigrams = frozenset(zip(words, words[1:]))
    squashed = " ".join(words)
    char3 = frozenset(squashed[i:i + 3] for i in range(max(0, len(squashed) - 2)))
    numbers = frozenset(n.replace(",", "") for n in _NUMBER.findall(text))
    negated = any(w in NEGATIONS for w in words)
    # Capitalised words other than the first word of the text: a cheap stand-in for names.
    caps = _CAPITAL.findall(text.replace("\u2019", "'"))
    first = text.strip().split(" ", 1)[0] if text.strip() else ""
    names = frozenset(c.lower() for i, c in enumerate(caps) if not (i == 0 and c == first)
                      and c.lower() not in STOPWORDS)
    qword = next((w for w in words[:3] if w in QUESTION_WORDS), "")
    return Parsed(words, content_seq, content, bigrams, char3, numbers, negated, names, qword)


def _jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _order_discord(pa: Parsed, pb: Parsed) -> float:
    """Share of pairs of shared content words that the two texts put in opposite orders."""
    pos_b = {w: i for i, w in enumerate(pb.content_seq)}
    pos = [pos_b[w] for w in pa.content_seq if w in pos_b]
    pairs = len(pos) * (len(pos) - 1) // 2
    if pairs == 0:
        return 0.0
    discord = sum(1 for i in range(len(pos)) for j in range(i + 1, len(pos)) if pos[i] > pos[j])
    return discord / pairs


def pair_features(a: str, b: str, cosine: float) -> list[float]:
    """The FEATURE_NAMES values for one pair of texts with their embedding cosine."""
    pa, pb = parse(a), parse(b)
    miss_a = len(pa.content - pb.content) / max(1, len(pa.content))
    miss_b = len(pb.content - pa.content) / max(1, len(pb.content))
    la, lb = len(pa.words), len(pb.words)
    only_a, only_b = len(pa.content - pb.content), len(pb.content - pa.content)
    discord = _order_discord(pa, pb)
    names_union = pa.names | pb.names
    return [
        cosine,
        cosine * cosine,
        _jaccard(frozenset(pa.words), frozenset(pb.words)),
        _jaccard(pa.content, pb.content),
        max(miss_a, miss_b),
        min(miss_a, miss_b),
        _jaccard(pa.bigrams, pb.bigrams),
        _jaccard(pa.char3, pb.char3),
        float(bool(pa.numbers or pb.numbers) and pa.numbers != pb.numbers),
        float(pa.negated != pb.negated),
        len(names_union - (pa.names & pb.names)) / len(names_union) if names_union else 0.0,
        float(pa.qword != pb.qword),
        min(la, lb) / max(1, la, lb),
        math.log1p((la + lb) / 2.0),
        discord,
        float(discord > 0),
        float(min(only_a, only_b)),
        float(max(only_a, only_b)),
        float(bool(pa.numbers) and bool(pb.numbers) and pa.numbers != pb.numbers),
        float(bool(pa.numbers) != bool(pb.numbers)),
    ]


_CONTENT_WEIGHT, _OTHER_WEIGHT = 1.0, 0.2  # function words and punctuation still count, a little


def token_features(ta: np.ndarray, ca: np.ndarray, tb: np.ndarray, cb: np.ndarray) -> list[float]:
    """TOKEN_FEATURE_NAMES for two texts' unit token vectors (ta, tb) and content masks (ca, cb)."""
    if ta.shape[0] == 0 or tb.shape[0] == 0:
        return [0.0] * len(TOKEN_FEATURE_NAMES)
    sim = ta.astype(np.float32) @ tb.astype(np.float32).T
    best_a = sim.max(axis=1)  # each token of a: its best counterpart in b
    best_b = sim.max(axis=0)
    p, r = float(best_a.mean()), float(best_b.mean())
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    wa = np.where(ca, _CONTENT_WEIGHT, _OTHER_WEIGHT)
    wb = np.where(cb, _CONTENT_WEIGHT, _OTHER_WEIGHT)
    pw, rw = float((best_a * wa).sum() / wa.sum()), float((best_b * wb).sum() / wb.sum())
    ka = best_a[ca] if ca.any() else best_a
    kb = best_b[cb] if cb.any() else best_b
    worst2 = min(float(np.sort(ka)[:2].mean()), float(np.sort(kb)[:2].mean()))
    ma, mb = ta.max(axis=0).astype(np.float32), tb.max(axis=0).astype(np.float32)
    maxpool_cos = float(ma @ mb) / max(float(np.linalg.norm(ma) * np.linalg.norm(mb)), 1e-12)
    return [p, r, f1, min(pw, rw), max(pw, rw), float(min(ka.min(), kb.min())), worst2,
            min(float(ka.mean()), float(kb.mean())), maxpool_cos]


def feature_matrix(texts_a: list[str], texts_b: list[str], cosines: np.ndarray,
                   tokens_a: list | None = None, tokens_b: list | None = None) -> np.ndarray:
    """Features for many pairs at once: (n, len(FEATURE_NAMES) [+ len(TOKEN_FEATURE_NAMES)]) float64.

    tokens_a/tokens_b are lists of TokenVectors (see embedder); give both or neither.
    """
    width = len(FEATURE_NAMES) + (len(TOKEN_FEATURE_NAMES) if tokens_a is not None else 0)
    out = np.empty((len(texts_a), width), dtype=np.float64)
    for i, (a, b, c) in enumerate(zip(texts_a, texts_b, cosines)):
        row = pair_features(a, b, float(c))
        if tokens_a is not None and tokens_b is not None:
            row += token_features(tokens_a[i].vectors, tokens_a[i].content, tokens_b[i].vectors, tokens_b[i].content)
        out[i] = row
    return out
