"""Plain numpy twins of the kernels, for the tests: slow, obvious, and with the same order.

Scores are computed in float64 so that the references are the exact answer the kernels'
float32 sums approximate; ties go to the lower index.
"""
from __future__ import annotations

import numpy as np


def _order(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the best k scores: higher score first, then lower index."""
    idx = np.arange(scores.shape[0])
    order = np.lexsort((idx, -scores))
    return order[: max(0, min(k, scores.shape[0]))]


def topk_single_ref(m: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of m @ q: (scores float64, indices int64), best first."""
    scores = m.astype(np.float64) @ q.astype(np.float64)
    order = _order(scores, k)
    return scores[order], order.astype(np.int64)


def topk_batch_ref(m: np.ndarray, qs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """topk_single_ref for each row of qs: arrays of shape (len(qs), min(k, len(m)))."""
    kk = max(0, min(k, m.shape[0]))
    out_s = np.empty((qs.shape[0], kk))
    out_i = np.empty((qs.shape[0], kk), dtype=np.int64)
    for a in range(qs.shape[0]):
        out_s[a], out_i[a] = topk_single_ref(m, qs[a], k)
    return out_s, out_i


def quantize_rows_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantisation: (int8 rows, float32 scales = max|x| / 127, 1 for zero rows)."""
    amax = np.abs(x).max(axis=1) if x.shape[0] else np.zeros(0, dtype=np.float32)
    scales = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.round(x * (np.float32(1.0) / scales)[:, None]), -127, 127).astype(np.int8)
    return q, scales


def topk_int8_ref(m: np.ndarray, q: np.ndarray, k: int, rescore: int) -> tuple[np.ndarray, np.ndarray]:
    """The int8 scan's answer: best `rescore` rows by approximate int8 score, re-ranked exactly."""
    mq, scales = quantize_rows_ref(m)
    qq, _ = quantize_rows_ref(q[None, :])
    approx = (mq.astype(np.int64) @ qq[0].astype(np.int64)).astype(np.float32) * scales
    cand = _order(approx.astype(np.float64), max(rescore, k))
    exact = m[cand].astype(np.float64) @ q.astype(np.float64)
    order = _order(exact, k)
    return exact[order], cand[order].astype(np.int64)
