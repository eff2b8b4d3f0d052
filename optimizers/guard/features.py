"""The embedding guard's n-gram features, and the design matrix [MiniLM vector | n-grams].

MiniLM (all-MiniLM-L6-v2, the semantic cache's model; its first layers, encoder.py) is
English-only and the labelled prompts are partly German; character n-grams of the prompt carry
what it misses (the wording of "ignore the above", in any language). The n-grams are hashed into a fixed width
(scikit-learn's stateless HashingVectorizer), so the shipped fit is weights only, no vocabulary.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

HASH_WIDTH = 1 << 14
NGRAMS = (2, 5)
EMBED_DIM = 384


def hasher():
    """The n-gram hasher (stateless: the same text always gives the same row)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char_wb", ngram_range=NGRAMS, n_features=HASH_WIDTH,
                             alternate_sign=False, norm=None)


def ngram_rows(texts: Sequence[str], hv=None):
    """Sublinear-tf, L2-normalised hashed n-gram counts: a sparse (n, HASH_WIDTH) matrix."""
    from sklearn.preprocessing import normalize

    m = (hv or hasher()).transform(list(texts)).astype(np.float64)
    m.data = 1.0 + np.log(m.data)  # a repeated n-gram adds evidence, not in proportion
    return normalize(m)


def stack(emb: np.ndarray, ngrams) -> "object":
    """The design matrix: [embedding | n-grams] as one sparse CSR matrix."""
    import scipy.sparse as sp

    return sp.hstack([sp.csr_matrix(np.asarray(emb, dtype=np.float64)), ngrams]).tocsr()
