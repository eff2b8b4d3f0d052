"""Measured read bandwidth: the bound a memory-bound scan is judged against.

A single-threaded numpy sum reads well below what both cores can pull (STACK.md: about 22 GB/s
against 31 GB/s), so the bound is measured with a parallel Numba reader: each thread sums its own
contiguous slice with vector loads.
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


def measure_read_bandwidth(arr: np.ndarray, repeats: int = 7, n_threads: int | None = None) -> float:
    """Median read bandwidth in GB/s (1e9 bytes/s) over `repeats` full reads of `arr`."""
    import numba

    threads = n_threads or numba.get_num_threads()
    flat = np.ascontiguousarray(arr).reshape(-1).view(np.float32)
    parallel_read_f32(flat[:1024], threads)  # compile or load from cache outside the timing
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        parallel_read_f32(flat, threads)
        times.append(time.perf_counter() - t0)
    return flat.nbytes / float(np.median(times)) / 1e9
