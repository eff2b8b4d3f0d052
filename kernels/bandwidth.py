"""Measured read bandwidth: the bound a memory-bound scan is judged against.

A single-threaded numpy sum reads well below what both cores can pull (STACK.md: about 22 GB/s
against 31 GB/s), so the bound is measured with parallel Numba readers: each thread sums its own
contiguous slice with vector loads. Two access patterns are timed (a flat sum, and rows four at a
time as the scan reads them) and the faster one is the bound, so a kernel cannot look faster than
memory merely because one reader happened to be slow.
"""
from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

from llmbench.kernels._heap import FASTMATH


@njit(cache=True, fastmath=FASTMATH)
def _sum_chunk(chunk):
    """Sum of a 1-D float32 slice.

    Its own function, indexed from 0: a loop over range(lo, hi) on the whole array cannot prove
    its index non-negative, keeps numpy's wrap-around check per element and never vectorises
    (about 9 GB/s instead of 40 here).
    """
    acc = np.float32(0.0)
    for j in range(chunk.shape[0]):
        acc += chunk[j]
    return acc


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def parallel_read_f32(flat, n_threads):
    """Sum of a 1-D float32 array, read by n_threads threads in contiguous slices."""
    n = flat.shape[0]
    partial = np.zeros(n_threads, dtype=np.float32)
    for t in prange(n_threads):
        lo = t * n // n_threads
        hi = (t + 1) * n // n_threads
        partial[t] = _sum_chunk(flat[lo:hi])
    return partial.sum()


@njit(cache=True, fastmath=FASTMATH)
def _sum_rows4(m, lo, hi):
    """Sum of rows lo..hi-1 of a 2-D float32 array, four rows per pass (the scan kernel's access pattern)."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    full = lo + (hi - lo) // 4 * 4
    for r in range(lo, full, 4):
        for j in range(m.shape[1]):
            a0 += m[r, j]
            a1 += m[r + 1, j]
            a2 += m[r + 2, j]
            a3 += m[r + 3, j]
    for r in range(full, hi):
        for j in range(m.shape[1]):
            a0 += m[r, j]
    return a0 + a1 + a2 + a3


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def parallel_read_rows_f32(m, n_threads):
    """A second reader over a 2-D float32 array, row by row in groups of four, n_threads slices."""
    n = m.shape[0]
    partial = np.zeros(n_threads, dtype=np.float32)
    for t in prange(n_threads):
        partial[t] = _sum_rows4(m, t * n // n_threads, (t + 1) * n // n_threads)
    return partial.sum()


def measure_read_bandwidth(arr: np.ndarray, repeats: int = 7, n_threads: int | None = None) -> float:
    """Read bandwidth in GB/s (1e9 bytes/s): the faster of the two readers' medians over `repeats` reads."""
    import numba

    threads = n_threads or numba.get_num_threads()
    flat = np.ascontiguousarray(arr).reshape(-1).view(np.float32)
    rows = flat.reshape(-1, flat.shape[0] // 64 if flat.shape[0] % 64 == 0 and flat.shape[0] else 1)
    parallel_read_f32(flat[:1024], threads)  # compile or load from cache outside the timing
    parallel_read_rows_f32(rows[:8], threads)
    best = float("inf")
    for reader, data in ((parallel_read_f32, flat), (parallel_read_rows_f32, rows)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            reader(data, threads)
            times.append(time.perf_counter() - t0)
        best = min(best, float(np.median(times)))
    return flat.nbytes / best / 1e9
