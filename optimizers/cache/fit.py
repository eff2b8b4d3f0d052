"""Refit the shipped default verifiers and settings on labelled pairs.

    python -m llmbench.optimizers.cache.fit                 # writes profiles/cache/default.json
    python -m llmbench.optimizers.cache.fit --check         # also: held-out splits, fitted on the rest

Thresholds are chosen on out-of-fold probabilities (each lookup scored by a model that never saw
its pair), so the false-hit rate the chooser sees is the one new pairs will see, not an in-sample
one that is too kind. One verifier is fitted per cosine floor; for each target false-hit rate the
chooser keeps the floor and threshold with the most hits, and records plain cosine's threshold for
the same target as the baseline.

Deterministic: the folds are seeded and the sign-constrained logistic fit starts from zeros, so
the same embedding store gives the same file byte for byte. MiniLM's vectors themselves can differ
in the last bits with the batches a text was first embedded in, so a fresh store may move the
coefficients by about 1e-6 (the settings' thresholds stay within 2e-3).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmbench.optimizers.cache.chooser import Outcomes, best_threshold, choose, rates
from llmbench.optimizers.cache.embedder import TokenVectors, default_embedder
from llmbench.optimizers.cache.logs import PairsLog, read_log
from llmbench.optimizers.cache.profile import PLAIN_COSINE, CacheProfile, Setting, profile_path, save_profile
from llmbench.optimizers.cache.store import VectorStore
from llmbench.optimizers.cache.verifier import Verifier, fit_verifier

DEV_PAIRS = "../shared/data/cache/qqp_pairs_dev.jsonl"  # relative to the project root, as the tests read it
FLOORS = (0.80, 0.85, 0.90)
TARGETS = tuple(round(t, 3) for t in np.arange(0.01, 0.3001, 0.01))
CANDIDATES = 1  # verify the nearest entry only: choosing among more served more wrong entries (dev and hfdocs)
FOLDS = 5
C_REG = 0.3
SEED = 0


@dataclass
class Prepared:
    """Labelled lookups against a cache of the pairs' distinct text_a, with features for every candidate.

    `labels` are the pairs' own (what the verifiers are fitted on); `lookup_labels` are what a
    lookup is judged by: a text_b whose normalised text is cached is a repeat (label 1, the
    identical entry its right answer), whatever its pair's label (see simulate.py's protocol).
    """

    labels: np.ndarray          # (n,)
    own_x: np.ndarray           # (n, F) features of (text_b, own text_a)
    own_cos: np.ndarray         # (n,)
    cand_x: np.ndarray          # (n, C, F)
    cand_cos: np.ndarray        # (n, C); -inf where the cache had fewer than C entries
    cand_correct: np.ndarray    # (n, C) the candidate is a right answer: own text_a, or an identical text
    lookup_labels: np.ndarray   # (n,)
    repeat: np.ndarray          # (n,) the query's normalised text is cached: served before any rule

    def rows(self, rows: np.ndarray) -> "Prepared":
        """The same lookups, restricted to `rows` (their candidates still come from the whole cache)."""
        return Prepared(self.labels[rows], self.own_x[rows], self.own_cos[rows], self.cand_x[rows],
                        self.cand_cos[rows], self.cand_correct[rows], self.lookup_labels[rows], self.repeat[rows])


def prepare(pairs: PairsLog, vec_a: dict[str, np.ndarray], tok_a: dict[str, TokenVectors],
            vec_b: np.ndarray, tok_b: list[TokenVectors], candidates: int = CANDIDATES) -> Prepared:
    """Build the cache of distinct text_a, retrieve candidates for each text_b, compute all features."""
    from llmbench.optimizers.cache.features import FEATURE_NAMES, TOKEN_FEATURE_NAMES, pair_features, token_features

    def feats(q: str, tq: TokenVectors, e: str, te: TokenVectors, c: float) -> list[float]:
        return pair_features(e, q, c) + token_features(te.vectors, te.content, tq.vectors, tq.content)

    from llmbench.optimizers.cache.cache import normalise_text

    entries = list(dict.fromkeys(pairs.texts_a))
    cached = {normalise_text(t) for t in entries}
    store = VectorStore(vec_b.shape[1], capacity=len(entries))
    store.add(np.arange(len(entries)), np.vstack([vec_a[t] for t in entries]))
    cos, ids = store.search_batch(vec_b, candidates)
    n, width = len(pairs.texts_b), len(FEATURE_NAMES) + len(TOKEN_FEATURE_NAMES)
    own_x, own_cos = np.zeros((n, width)), np.zeros(n)
    cand_x = np.zeros((n, candidates, width))
    cand_cos = np.full((n, candidates), -np.inf)
    cand_ok = np.zeros((n, candidates), bool)
    labels = np.asarray(pairs.labels)
    repeat = np.array([normalise_text(b) in cached for b in pairs.texts_b], dtype=bool)
    for i, (a, b) in enumerate(zip(pairs.texts_a, pairs.texts_b)):
        own_cos[i] = float(vec_a[a] @ vec_b[i])
        own_x[i] = feats(b, tok_b[i], a, tok_a[a], own_cos[i])
        for j in range(ids.shape[1]):
            e = entries[int(ids[i, j])]
            cand_cos[i, j] = cos[i, j]
            # With a repeat only an identical entry is right; otherwise the pair's own text_a.
            cand_ok[i, j] = normalise_text(e) == normalise_text(b) if repeat[i] else e == a
            cand_x[i, j] = own_x[i] if e == a else feats(b, tok_b[i], e, tok_a[e], float(cos[i, j]))
    return Prepared(labels, own_x, own_cos, cand_x, cand_cos, cand_ok, np.where(repeat, 1, labels), repeat)


def embed_pairs(pairs: PairsLog, progress=None):
    """Vectors and token vectors for a pairs file (the on-disk store makes repeats fast)."""
    emb = default_embedder()
    entries = list(dict.fromkeys(pairs.texts_a))
    va, ta = emb.embed_with_tokens(entries, progress=progress)
    vb, tb = emb.embed_with_tokens(pairs.texts_b, progress=progress)
    return dict(zip(entries, va)), dict(zip(entries, ta)), vb, tb


def verifier_outcomes(v: Verifier, p: Prepared, rows: np.ndarray) -> Outcomes:
    """What the verifier rule would serve for the lookups in `rows`: best candidate's probability and correctness."""
    n, c, f = p.cand_x[rows].shape
    probs = v.probabilities(p.cand_x[rows].reshape(n * c, f)[:, : len(v.feature_names)],
                            p.cand_cos[rows].reshape(-1)).reshape(n, c)
    eligible = p.cand_cos[rows] >= v.floor
    probs = np.where(eligible, probs, -np.inf)
    best = np.argmax(probs, axis=1)
    score = probs[np.arange(n), best]
    correct = p.cand_correct[rows][np.arange(n), best]
    # The cache serves a repeat its identical entry before the verifier is asked, at any threshold.
    rep = p.repeat[rows]
    score = np.where(rep, np.inf, score)
    correct = np.where(rep, True, correct)
    return Outcomes(score, correct, p.lookup_labels[rows])


def cosine_outcomes(p: Prepared, rows: np.ndarray) -> Outcomes:
    """Plain cosine: the nearest entry (candidates come nearest first)."""
    return Outcomes(p.cand_cos[rows, 0], p.cand_correct[rows, 0], p.lookup_labels[rows])


def oof(p: Prepared, floor: float, folds: int, seed: int) -> Outcomes:
    """Out-of-fold verifier outcomes: each lookup scored by a model fitted without its pair."""
    from sklearn.model_selection import StratifiedKFold

    n = len(p.labels)
    scores, correct = np.full(n, -np.inf), np.zeros(n, bool)
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(p.own_x, p.labels):
        v = fit_verifier(p.own_x[tr], p.labels[tr], p.own_cos[tr], floor, "fold", c=C_REG)
        o = verifier_outcomes(v, p, te)
        scores[te], correct[te] = o.scores, o.correct
    return Outcomes(scores, correct, p.lookup_labels)


def fit_profile(p: Prepared, meta: dict, floors=FLOORS, targets=TARGETS, folds: int = FOLDS,
                seed: int = SEED) -> CacheProfile:
    """Fit one verifier per floor on all pairs; choose per target on out-of-fold outcomes."""
    all_rows = np.arange(len(p.labels))
    options = {f"floor{f:.2f}": oof(p, f, folds, seed) for f in floors}
    verifiers = {f"floor{f:.2f}": fit_verifier(p.own_x, p.labels, p.own_cos, f, f"floor{f:.2f}", c=C_REG)
                 for f in floors}
    cos_o = cosine_outcomes(p, all_rows)
    # Plain cosine competes too: where the floors cap the verifier's hits (loose targets), it wins.
    options[PLAIN_COSINE] = cos_o
    settings = []
    for t in targets:
        name, thr, r = choose(options, t)
        cthr, cr = best_threshold(cos_o, t)
        settings.append(Setting(float(t), name, round(thr, 6) if np.isfinite(thr) else 1e9, round(cthr, 6),
                                {"hit_rate": _r(r["hit_rate"]), "false_hit_rate": _r(r["false_hit_rate"]),
                                 "cosine_hit_rate": _r(cr["hit_rate"]),
                                 "cosine_false_hit_rate": _r(cr["false_hit_rate"])}))
    return CacheProfile(verifiers, settings, CANDIDATES, meta)


def _r(x):
    return None if x is None else round(float(x), 4)


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check(pairs: PairsLog, emb, splits: int = 5, holdout: float = 0.3, target: float = 0.05,
          prepared: Prepared | None = None) -> list[dict]:
    """Held-out check: fit on (1 - holdout) of the pairs, evaluate on the rest.

    Every lookup, training and held-out alike, searches the full cache of all the pairs' distinct
    text_a: the size of cache the shipped setting is chosen for. (A cache of the held-out part's
    texts only, a third the size, offers fewer near misses and flatters the false-hit rate.)
    """
    p = prepared if prepared is not None else prepare(pairs, *emb)
    out = []
    for s in range(splits):
        rng = np.random.default_rng(1000 + s)
        perm = rng.permutation(len(p.labels))
        cut = int(len(perm) * (1 - holdout))
        train, test = p.rows(perm[:cut]), p.rows(perm[cut:])
        prof = fit_profile(train, {}, targets=(target,))
        st = prof.setting_for(target)
        rows = np.arange(len(test.labels))
        chosen = (cosine_outcomes(test, rows) if st.verifier == PLAIN_COSINE
                  else verifier_outcomes(prof.verifiers[st.verifier], test, rows))
        rv = rates(chosen, st.threshold)
        rc = rates(cosine_outcomes(test, rows), st.cosine_threshold)
        out.append({"split": s, "verifier": st.verifier, "entries": len(dict.fromkeys(pairs.texts_a)),
                    "hit_rate": rv["hit_rate"], "false_hit_rate": rv["false_hit_rate"],
                    "wrong_entry_rate": rv["wrong_entry_rate"], "cosine_hit_rate": rc["hit_rate"],
                    "cosine_false_hit_rate": rc["false_hit_rate"], "cosine_wrong_entry_rate": rc["wrong_entry_rate"],
                    "ratio": rv["hit_rate"] / rc["hit_rate"] if rc["hit_rate"] else None})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default=DEV_PAIRS, help="labelled pairs JSONL (default: the shared dev pairs)")
    ap.add_argument("--out", default=None, help="where to write the profile (default: the shipped default.json)")
    ap.add_argument("--check", action="store_true", help="also run held-out splits and print them")
    ap.add_argument("--splits", type=int, default=5, help="held-out splits for --check")
    ap.add_argument("--holdout", type=float, default=0.3, help="share of the pairs each --check split holds out")
    args = ap.parse_args(argv)
    if args.pairs == DEV_PAIRS and not Path(DEV_PAIRS).exists():
        # Run from elsewhere: the shared folder sits beside the project root.
        args.pairs = str(Path(__file__).resolve().parents[2].parent / "shared/data/cache/qqp_pairs_dev.jsonl")
    pairs = read_log(args.pairs)
    if not isinstance(pairs, PairsLog):
        print(f"{args.pairs}: not a labelled pairs file", file=sys.stderr)
        return 2
    emb = embed_pairs(pairs)
    p = prepare(pairs, *emb)
    meta = {"fitted_on": Path(args.pairs).name, "sha256": _sha256(args.pairs), "pairs": len(pairs.labels),
            "command": "python -m llmbench.optimizers.cache.fit", "embedder": "all-MiniLM-L6-v2",
            "folds": FOLDS, "seed": SEED, "C": C_REG, "floors": list(FLOORS),
            "thresholds_from": "out-of-fold probabilities",
            "weights": "sign-constrained (features.FEATURE_SIGNS): no feature lowers the score for being more alike",
            "repeats": "a text_b whose normalised text is cached counts as label 1, its identical entry the right "
                       "answer (served before the verifier); other labels as given"}
    prof = fit_profile(p, meta)
    out = Path(args.out) if args.out else profile_path("default")
    save_profile(prof, out)
    s = prof.setting_for(0.05)
    print(f"wrote {out}; at target 0.05: {s.verifier} threshold {s.threshold:.4f} dev hit {s.dev['hit_rate']} "
          f"fhr {s.dev['false_hit_rate']} | cosine {s.cosine_threshold:.4f} hit {s.dev['cosine_hit_rate']} "
          f"fhr {s.dev['cosine_false_hit_rate']}", file=sys.stderr)
    if args.check:
        rows = check(pairs, emb, splits=args.splits, holdout=args.holdout, prepared=p)
        for r in rows:
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))
        keys = ("hit_rate", "false_hit_rate", "wrong_entry_rate", "cosine_hit_rate", "cosine_false_hit_rate",
                "cosine_wrong_entry_rate", "ratio")
        print(json.dumps({stat: {k: round(float(fn([r[k] for r in rows])), 4) for k in keys}
                          for stat, fn in (("mean", np.mean), ("min", np.min), ("max", np.max))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
