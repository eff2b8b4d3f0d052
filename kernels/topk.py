"""Exact top-k inner-product search over float32 rows (L2-normalised embeddings) in Numba.

Two kernels over the first `n` rows of a C-contiguous (capacity, d) float32 matrix:
  topk_f32_single   one query: each thread scans a contiguous slice of rows into its own bounded
                    heap, then the heaps are merged. One pass over the matrix, so it runs at the
                    machine's read bandwidth.
  topk_f32_batch    many queries: rows are taken in tiles that stay in cache while every query
                    (four at a time, sharing each load of a row) is scored against them, so the
                    matrix is read from memory once per batch rather than once per query.
The single-query scan comes in shapes that suit different hosts (`rows`: four rows per pass or one;
`ahead`: a software prefetch distance, 0 for none); `llmbench.kernels.calibrate` times them on the
machine and picks one. Every shape gives the same ranking up to float32 round-off (calibrate.py says
when shapes round differently) and the same order of exact ties.
Order: higher score first, then lower index (see _heap). The numpy twins are in reference.py.
Thread counts are arguments, never read from Numba inside a kernel (that silently disables
`cache=True`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from llmbench.kernels._heap import FASTMATH, heap_clear, heap_push, merge_sorted
from llmbench.kernels._prefetch import prefetch

ROW_TILE = 64  # rows per tile in the batched kernel: 64 x 384 x 4 B = 96 KiB, L2-resident


@njit(cache=True, fastmath=FASTMATH, inline="always")
def dot_f32(m, r, q):
    """Row r of m dotted with q, accumulated in float32."""
    acc = np.float32(0.0)
    for j in range(q.shape[0]):
        acc += m[r, j] * q[j]
    return acc


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _dot_rows4(m, r0, r1, r2, r3, q):
    """Rows r0..r3 of m dotted with q in one pass: each load of q serves four rows."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    for j in range(q.shape[0]):
        qj = q[j]
        s0 += m[r0, j] * qj
        s1 += m[r1, j] * qj
        s2 += m[r2, j] * qj
        s3 += m[r3, j] * qj
    return s0, s1, s2, s3


@njit(cache=True, inline="always")
def prefetch_rows(m, r0, count, ahead, step):
    """Prefetch the cache lines of rows r0..r0+count-1 of m, `ahead` elements further on.

    `step` is the number of elements in a 64-byte line; lines past the end of m are skipped.
    """
    lo = r0 * m.shape[1] + ahead
    hi = min(lo + count * m.shape[1], m.shape[0] * m.shape[1])
    for x in range(lo, hi, step):
        prefetch(m, x)


@njit(cache=True, fastmath=FASTMATH)
def scan_rows4_f32(m, lo, hi_row, q, hs, hi, ahead):
    """Offer rows lo..hi_row-1 of m, scored against q, to the heap (hs, hi), four rows per pass.

    Each load of q serves four rows (fewer loads per multiply-add). The last group repeats its
    final row rather than taking another code path, so every row's score comes from the same
    arithmetic and identical rows tie exactly (then the lower index wins). `ahead` > 0 prefetches
    the group that far ahead (in elements).
    """
    last = hi_row - 1
    for r in range(lo, hi_row, 4):
        if ahead > 0:
            prefetch_rows(m, r, 4, ahead, 16)
        s0, s1, s2, s3 = _dot_rows4(m, r, min(r + 1, last), min(r + 2, last), min(r + 3, last), q)
        heap_push(hs, hi, s0, np.int64(r))
        if r + 1 <= last:
            heap_push(hs, hi, s1, np.int64(r + 1))
        if r + 2 <= last:
            heap_push(hs, hi, s2, np.int64(r + 2))
        if r + 3 <= last:
            heap_push(hs, hi, s3, np.int64(r + 3))


@njit(cache=True, fastmath=FASTMATH)
def scan_rows1_f32(m, lo, hi_row, q, hs, hi, ahead):
    """scan_rows4_f32 one row at a time: the matrix is read as one sequential stream, like a flat
    read, which is what the hardware prefetcher follows best on some hosts."""
    for r in range(lo, hi_row):
        if ahead > 0:
            prefetch_rows(m, r, 1, ahead, 16)
        heap_push(hs, hi, dot_f32(m, r, q), np.int64(r))


@njit(cache=True, fastmath=FASTMATH)
def scan_rows_f32(m, lo, hi_row, q, hs, hi, rows, ahead):
    """Offer rows lo..hi_row-1 to the heap in the given shape: `rows` 4 or 1 per pass, prefetch `ahead`."""
    if rows == 4:
        scan_rows4_f32(m, lo, hi_row, q, hs, hi, ahead)
    else:
        scan_rows1_f32(m, lo, hi_row, q, hs, hi, ahead)


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def topk_f32_single(m, n, q, k, n_threads, rows, ahead):
    """Top-k rows of m[:n] by inner product with q: (scores float32[<=k], indices int64[<=k]).

    `rows` and `ahead` choose the scan's shape (see scan_rows_f32); the ranking does not, up to round-off.
    """
    kk = max(k, 1)
    hs = np.empty((n_threads, kk), dtype=np.float32)
    hi = np.empty((n_threads, kk), dtype=np.int64)
    for t in prange(n_threads):
        heap_clear(hs[t], hi[t])
        scan_rows_f32(m, t * n // n_threads, (t + 1) * n // n_threads, q, hs[t], hi[t], rows, ahead)
    out_s, out_i = merge_sorted(hs.ravel(), hi.ravel(), kk)
    if k == 0:
        return out_s[:0], out_i[:0]
    return out_s, out_i


@njit(cache=True, fastmath=FASTMATH)
def topk_f32_serial(m, n, q, k, rows, ahead):
    """topk_f32_single on the calling thread: for small indexes, where waking a thread pool costs
    more than the scan (and, on a busy machine, a descheduled worker stalls the whole lookup)."""
    kk = max(k, 1)
    hs = np.empty(kk, dtype=np.float32)
    hi = np.empty(kk, dtype=np.int64)
    heap_clear(hs, hi)
    scan_rows_f32(m, 0, n, q, hs, hi, rows, ahead)
    out_s, out_i = merge_sorted(hs, hi, kk)
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
            for a in range(nq4, nq):  # the last nq % 4 queries, one at a time
                scan_rows4_f32(m, r0, r1, qs[a], hs[t, a], hi[t, a], 0)
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
