"""Exact top-k inner-product search over float32 rows (L2-normalised embeddings) in Numba.

Two kernels over the first `n` rows of a C-contiguous (capacity, d) float32 matrix:
  topk_f32_single   one query: each thread scans a contiguous slice of rows into its own bounded
                    heap, then the heaps are merged. One pass over the matrix, so it runs at the
                    machine's read bandwidth.
  topk_f32_batch    many queries: rows are taken in tiles that stay in cache while every query
                    (four at a time, sharing each load of a row) is scored against them, so the
                    matrix is read from memory once per batch rather than once per query.
Order: higher score first, then lower index (see _heap). The numpy twins are in reference.py.
Thread counts are arguments, never read from Numba inside a kernel (that silently disables
`cache=True`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from llmbench.kernels._heap import EMPTY, FASTMATH, heap_clear, heap_push, merge_sorted

ROW_TILE = 64  # rows per tile in the batched kernel: 64 x 384 x 4 B = 96 KiB, L2-resident


@njit(cache=True, fastmath=FASTMATH, inline="always")
def dot_f32(m, r, q):
    """Row r of m dotted with q, accumulated in float32."""
    acc = np.float32(0.0)
    for j in range(q.shape[0]):
        acc += m[r, j] * q[j]
    return acc


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def topk_f32_single(m, n, q, k, n_threads):
    """Top-k rows of m[:n] by inner product with q: (scores float32[<=k], indices int64[<=k])."""
    kk = max(k, 1)
    hs = np.empty((n_threads, kk), dtype=np.float32)
    hi = np.empty((n_threads, kk), dtype=np.int64)
    for t in prange(n_threads):
        heap_clear(hs[t], hi[t])
        lo = t * n // n_threads
        hi_row = (t + 1) * n // n_threads
        s_t = hs[t]
        i_t = hi[t]
        for r in range(lo, hi_row):
            s = dot_f32(m, r, q)
            heap_push(s_t, i_t, s, np.int64(r))
    out_s, out_i = merge_sorted(hs.ravel(), hi.ravel(), kk)
    if k == 0:
        return out_s[:0], out_i[:0]
    return out_s, out_i


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _dot4(m, r, qs, a):
    """Row r of m dotted with queries a..a+3 of qs in one pass over the row."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    for j in range(qs.shape[1]):
        x = m[r, j]
        s0 += x * qs[a, j]
        s1 += x * qs[a + 1, j]
        s2 += x * qs[a + 2, j]
        s3 += x * qs[a + 3, j]
    return s0, s1, s2, s3


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def topk_f32_batch(m, n, qs, k, n_threads, row_tile):
    """Top-k rows of m[:n] for every row of qs: (scores float32[nq, kk], indices int64[nq, kk]).

    kk = min(k, n); each query's row of results is best first. Each thread owns a contiguous
    slice of rows and one heap per query; tiles of `row_tile` rows are scored against all queries.
    """
    nq = qs.shape[0]
    kk = max(k, 1)
    hs = np.empty((n_threads, nq, kk), dtype=np.float32)
    hi = np.empty((n_threads, nq, kk), dtype=np.int64)
    nq4 = nq - nq % 4
    for t in prange(n_threads):
        for a in range(nq):
            heap_clear(hs[t, a], hi[t, a])
        lo = t * n // n_threads
        hi_row = (t + 1) * n // n_threads
        for r0 in range(lo, hi_row, row_tile):
            r1 = min(r0 + row_tile, hi_row)
            for a in range(0, nq4, 4):
                h0s = hs[t, a]
                h0i = hi[t, a]
                h1s = hs[t, a + 1]
                h1i = hi[t, a + 1]
                h2s = hs[t, a + 2]
                h2i = hi[t, a + 2]
                h3s = hs[t, a + 3]
                h3i = hi[t, a + 3]
                for r in range(r0, r1):
                    s0, s1, s2, s3 = _dot4(m, r, qs, a)
                    ri = np.int64(r)
                    heap_push(h0s, h0i, s0, ri)
                    heap_push(h1s, h1i, s1, ri)
                    heap_push(h2s, h2i, s2, ri)
                    heap_push(h3s, h3i, s3, ri)
            for a in range(nq4, nq):
                q = qs[a]
                for r in range(r0, r1):
                    heap_push(hs[t, a], hi[t, a], dot_f32(m, r, q), np.int64(r))
    kout = min(kk, n)
    out_s = np.full((nq, kout), -np.inf, dtype=np.float32)
    out_i = np.full((nq, kout), -1, dtype=np.int64)
    for a in prange(nq):
        s_a, i_a = merge_sorted(hs[:, a, :].copy().ravel(), hi[:, a, :].copy().ravel(), kk)
        out_s[a, : s_a.shape[0]] = s_a
        out_i[a, : i_a.shape[0]] = i_a
    if k == 0:
        return out_s[:, :0], out_i[:, :0]
    return out_s, out_i
