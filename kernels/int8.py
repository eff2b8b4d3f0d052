"""Top-k search on int8 copies of the rows, re-scored in float32 so the answer is (almost always) exact.

Each row is stored as int8 with its own symmetric scale (scale = max|x| / 127), a quarter of the
float32 bytes, so the scan reads a quarter of the memory. The scan keeps the best `rescore`
candidates by approximate score; those are then scored exactly against the float32 rows and the
best k returned with their exact float32 scores. The numpy twin is in reference.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from llmbench.kernels._heap import FASTMATH, heap_clear, heap_push, merge_sorted
from llmbench.kernels.topk import dot_f32


@njit(cache=True, parallel=True)
def quantize_rows(x, out_q, out_scale):
    """Symmetric per-row int8 quantisation of float32 rows x into out_q (int8) and out_scale (float32)."""
    for r in prange(x.shape[0]):
        amax = np.float32(0.0)
        for j in range(x.shape[1]):
            v = abs(x[r, j])
            if v > amax:
                amax = v
        scale = amax / np.float32(127.0) if amax > 0 else np.float32(1.0)
        inv = np.float32(1.0) / scale
        for j in range(x.shape[1]):
            v = np.float32(round(x[r, j] * inv))
            out_q[r, j] = np.int8(min(max(v, np.float32(-127.0)), np.float32(127.0)))
        out_scale[r] = scale


@njit(cache=True, inline="always")
def dot_i8(mq, r, qq):
    """Row r of mq dotted with qq, int8 products accumulated in int32 (exact for d < 133,000).

    Numba widens int32 arithmetic to int64, which LLVM then vectorises eight lanes at a time; the
    explicit narrowing back to int32 each step lets it use 16-bit multiply-adds (vpmaddwd) instead,
    four times the lanes.
    """
    acc = np.int32(0)
    for j in range(qq.shape[0]):
        acc = np.int32(acc + np.int32(mq[r, j]) * np.int32(qq[j]))
    return acc


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def topk_int8_single(mq, scales, m, n, qq, q_scale, q, k, rescore, n_threads):
    """Top-k rows of m[:n] for query q, scanning the int8 rows mq and re-scoring `rescore` candidates.

    Returns exact float32 scores and indices, best first, like topk_f32_single.
    """
    kk = max(k, 1)
    rr = max(rescore, kk)
    hs = np.empty((n_threads, rr), dtype=np.float32)
    hi = np.empty((n_threads, rr), dtype=np.int64)
    for t in prange(n_threads):
        heap_clear(hs[t], hi[t])
        lo = t * n // n_threads
        hi_row = (t + 1) * n // n_threads
        s_t = hs[t]
        i_t = hi[t]
        for r in range(lo, hi_row):
            approx = np.float32(dot_i8(mq, r, qq)) * scales[r]
            heap_push(s_t, i_t, approx, np.int64(r))
    # The best `rr` candidates over all threads by approximate score (thread-count independent),
    # then exact scores for those only.
    _, cand = merge_sorted(hs.ravel(), hi.ravel(), rr)
    exact = np.empty(cand.shape[0], dtype=np.float32)
    for c in range(cand.shape[0]):
        exact[c] = dot_f32(m, cand[c], q)
    out_s, out_i = merge_sorted(exact, cand, kk)
    if k == 0:
        return out_s[:0], out_i[:0]
    return out_s, out_i
