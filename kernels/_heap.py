"""A bounded top-k kept as a binary min-heap of (score, index) pairs, with one total order.

"Better" means a higher score, or the same score and a lower index. Every kernel uses this order
for its per-thread heaps and for the final merge, so results never depend on the thread count.
An empty slot holds (-inf, EMPTY): it is worse than any real candidate (NaN never gets in: the
index refuses it at insert).

Note on Numba's on-disk cache: it keys a function on its own file only, so after editing this
module delete the kernels' __pycache__ to force a recompile of the callers.
"""
from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = np.int64(2**62)

# Reassociation lets LLVM vectorise the dot-product reductions. Infinities must keep their
# meaning (empty heap slots are -inf), so the full fastmath set (which assumes no inf) is avoided.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, inline="always")
def worse(sa, ia, sb, ib):
    """True when (sa, ia) ranks below (sb, ib): a lower score, or equal score and a higher index."""
    return sa < sb or (sa == sb and ia > ib)


@njit(cache=True, inline="always")
def heap_clear(hs, hi):
    """Fill a heap with empty slots."""
    for j in range(hs.shape[0]):
        hs[j] = -np.inf
        hi[j] = EMPTY


@njit(cache=True)
def heap_replace_root(hs, hi, s, i):
    """Replace the worst entry (the root) by (s, i) and restore the heap; the caller checked it is better."""
    k = hs.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        right = child + 1
        if right < k and worse(hs[right], hi[right], hs[child], hi[child]):
            child = right
        if worse(hs[child], hi[child], s, i):
            hs[pos] = hs[child]
            hi[pos] = hi[child]
            pos = child
        else:
            break
    hs[pos] = s
    hi[pos] = i


@njit(cache=True, inline="always")
def heap_push(hs, hi, s, i):
    """Offer (s, i) to the heap: it goes in if it beats the current worst."""
    if worse(hs[0], hi[0], s, i):
        heap_replace_root(hs, hi, s, i)


@njit(cache=True)
def merge_sorted(cand_s, cand_i, k):
    """The best k of flat candidate arrays, best first, empty slots dropped."""
    m = cand_s.shape[0]
    hs = np.empty(max(k, 1), dtype=cand_s.dtype)
    hi = np.empty(max(k, 1), dtype=np.int64)
    heap_clear(hs, hi)
    for j in range(m):
        if cand_i[j] != EMPTY:
            heap_push(hs, hi, cand_s[j], cand_i[j])
    n_real = 0
    for j in range(hs.shape[0]):
        if hi[j] != EMPTY:
            n_real += 1
    out_s = np.empty(n_real, dtype=cand_s.dtype)
    out_i = np.empty(n_real, dtype=np.int64)
    # Selection by repeated scan: k is small (tens to a few hundred), so O(k^2) is cheap and simple.
    taken = np.zeros(hs.shape[0], dtype=np.bool_)
    for r in range(n_real):
        best = -1
        for j in range(hs.shape[0]):
            if taken[j] or hi[j] == EMPTY:
                continue
            if best < 0 or worse(hs[best], hi[best], hs[j], hi[j]):
                best = j
        taken[best] = True
        out_s[r] = hs[best]
        out_i[r] = hi[best]
    if k == 0:
        return out_s[:0], out_i[:0]
    return out_s, out_i
