"""The checked entry points to the kernels: validate inputs, pick the thread count, call Numba.

The kernels themselves trust their arguments (dtype, contiguity, finite unit rows); everything a
caller can get wrong is caught here with a message that names the row and the problem.
"""
from __future__ import annotations

import numpy as np

NORM_TOLERANCE = 1e-3  # |norm - 1| allowed: float32 normalisation leaves about 1e-7; 1e-3 is a typo guard
SERIAL_BELOW = 1 << 22  # matrix elements (16 MiB of float32, ~10k 384-d rows): below, one thread beats waking a pool
CALIBRATE_ABOVE = 64 << 20  # matrix bytes (twice the L3 here): from there a scan is memory-bound and the shape matters
_chosen_plan: list = []  # the float32 scan shape for this process, once calibrated or set (a list: no `global`)


class InvalidVectors(ValueError):
    """Vectors that the index refuses: wrong shape or dtype, NaN/inf, or not of unit length."""


def threads(n_threads: int | None = None) -> int:
    """The thread count to pass to a kernel (kernels never read Numba's global setting themselves)."""
    import numba

    if n_threads is None:
        return int(numba.get_num_threads())
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}")
    return min(int(n_threads), int(numba.config.NUMBA_NUM_THREADS))


def check_unit_rows(x: np.ndarray, dim: int | None = None, what: str = "vectors") -> np.ndarray:
    """Return x as a C-contiguous float32 2-D array, or raise InvalidVectors naming the first bad row.

    Refused: a wrong width, NaN or infinite values, and rows whose L2 norm is not 1 (within
    NORM_TOLERANCE): inner products are cosines only for unit rows.
    """
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidVectors(f"{what}: expected a 2-D array of rows, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidVectors(f"{what}: expected floating-point values, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise InvalidVectors(f"{what}: expected width {dim}, got {arr.shape[1]}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.shape[0] == 0:
        return arr
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise InvalidVectors(f"{what}: row {bad} contains NaN or infinite values")
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        bad = int(np.argmax(off))
        raise InvalidVectors(f"{what}: row {bad} has L2 norm {norms[bad]:.6g}, expected 1 "
                             "(normalise the embeddings first)")
    return arr


def _check_matrix(m: np.ndarray, n: int | None) -> int:
    if m.ndim != 2 or m.dtype != np.float32 or not m.flags.c_contiguous:
        raise InvalidVectors("matrix: expected a C-contiguous 2-D float32 array")
    n = m.shape[0] if n is None else int(n)
    if not 0 <= n <= m.shape[0]:
        raise InvalidVectors(f"n={n} is outside the matrix's {m.shape[0]} rows")
    return n


def _check_query(q: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(q, dtype=np.float32)
    if q.shape[-1] != dim:
        raise InvalidVectors(f"query: expected width {dim}, got {q.shape[-1]}")
    if not np.isfinite(q).all():
        raise InvalidVectors("query contains NaN or infinite values")
    return q


def f32_plan(m: np.ndarray | None = None, n: int | None = None, n_threads: int | None = None):
    """The float32 scan shape this process uses (a `calibrate.F32Plan`).

    Once set (`set_f32_plan`) or calibrated, that plan. Otherwise, for a matrix of at least
    CALIBRATE_ABOVE bytes, the candidates are timed once on it (28 scans, 0.2-1.5 s at 300 MB)
    and the cheapest is kept for the rest of the process; smaller matrices use the default shape.
    """
    from llmbench.kernels.calibrate import DEFAULT, calibrate_f32

    if _chosen_plan:
        return _chosen_plan[0]
    if m is None or n is None or n * m.shape[1] * m.itemsize < CALIBRATE_ABOVE:
        return DEFAULT
    plan, _ = calibrate_f32(m, n, np.ascontiguousarray(m[0]), 10, threads(n_threads))
    set_f32_plan(plan)
    return plan


def set_f32_plan(plan) -> None:
    """Use `plan` (a `calibrate.F32Plan`) for every later float32 scan of this process; None forgets it."""
    _chosen_plan.clear()
    if plan is not None:
        _chosen_plan.append(plan)


def topk(m: np.ndarray, q: np.ndarray, k: int, n: int | None = None,
         n_threads: int | None = None, plan=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of m[:n] @ q: (float32 scores, int64 indices), best first, ties to the lower index.

    Small indexes (under SERIAL_BELOW elements) are scanned on the calling thread unless
    n_threads is given; the answer is the same either way. `plan` fixes the scan's shape
    (default: `f32_plan`); every shape gives the same indices in the same order.
    """
    from llmbench.kernels.topk import topk_f32_serial, topk_f32_single

    n = _check_matrix(m, n)
    q = _check_query(q, m.shape[1]).reshape(-1)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    p = plan if plan is not None else f32_plan(m, n, n_threads)
    if (n_threads is None and n * m.shape[1] < SERIAL_BELOW) or n_threads == 1:
        return topk_f32_serial(m, n, q, int(k), p.rows, p.ahead)
    return topk_f32_single(m, n, q, int(k), threads(n_threads), p.rows, p.ahead)


def topk_batch(m: np.ndarray, qs: np.ndarray, k: int, n: int | None = None, n_threads: int | None = None,
               row_tile: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """topk for every row of qs at once: arrays of shape (len(qs), min(k, n)), each row best first."""
    from llmbench.kernels.topk import ROW_TILE, topk_f32_batch

    n = _check_matrix(m, n)
    qs = _check_query(qs, m.shape[1])
    if qs.ndim != 2:
        raise InvalidVectors(f"queries: expected a 2-D array, got shape {qs.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return topk_f32_batch(m, n, qs, int(k), threads(n_threads), int(row_tile or ROW_TILE))


def default_rescore(k: int) -> int:
    """How many int8 candidates to re-score exactly: generous, since re-scoring costs little."""
    return max(10 * k, 100)


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 copies of float32 rows: (int8 rows, float32 scales)."""
    from llmbench.kernels.int8 import quantize_rows

    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    q = np.empty(x.shape, dtype=np.int8)
    s = np.empty(x.shape[0], dtype=np.float32)
    if x.shape[0]:
        quantize_rows(x, q, s)
    return q, s


def topk_int8(m: np.ndarray, mq: np.ndarray, scales: np.ndarray, q: np.ndarray, k: int,
              n: int | None = None, rescore: int | None = None,
              n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by an int8 scan of mq[:n] (scales from `quantize`), re-scored exactly against m[:n]."""
    from llmbench.kernels.int8 import topk_int8_single

    n = _check_matrix(m, n)
    if mq.dtype != np.int8 or mq.shape[1] != m.shape[1] or mq.shape[0] < n or scales.shape[0] < n \
            or not mq.flags.c_contiguous:
        raise InvalidVectors("int8 rows: expected C-contiguous int8 rows and scales covering the first n rows")
    q = _check_query(q, m.shape[1]).reshape(-1)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    qq, qs = quantize(q)
    return topk_int8_single(mq, np.ascontiguousarray(scales, dtype=np.float32), m, n, qq[0], qs[0], q,
                            int(k), int(rescore or default_rescore(k)), threads(n_threads))
