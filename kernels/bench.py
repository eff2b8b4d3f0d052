"""`llmbench cache bench`: the kernels against numpy and faiss on the same data, in one run.

Every method is timed on the same matrix and the same queries, interleaved repeat by repeat in a
fresh random order (so that a noisy neighbour slows all of them alike, whatever its rhythm), and
each figure is a median over repeats. The
ratios are the result; the absolute times are kept beside them.

Numba and faiss each bring an OpenMP runtime; by default an idle OpenMP worker spins for a few
milliseconds after each parallel region, stealing a core from whichever library runs next. The
command line therefore sets OMP_WAIT_POLICY=PASSIVE before either is loaded (recorded in the
output); on 2 cores that changed every interleaved figure. numpy's OpenBLAS does the same for about
0.1 s after every `M @ q` (its own setting, OPENBLAS_THREAD_TIMEOUT, also set and recorded): on a
quiet machine that spinner cost the reads, the scan and faiss 20-35% of their speed.

The float32 scan's shape is chosen by timing the candidates on the benchmark matrix first
(`llmbench.kernels.calibrate`); the choice and every candidate's figures are in the output.
"""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

import numpy as np

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def random_unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    """n random L2-normalised float32 rows (Gaussian directions: the hardest case for int8 recall)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _numpy_single(m: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = m @ q
    kk = min(k, scores.shape[0])
    part = np.argpartition(-scores, kk - 1)[:kk]
    return part[np.argsort(-scores[part], kind="stable")]


def _numpy_batch(m: np.ndarray, qs: np.ndarray, k: int) -> np.ndarray:
    scores = qs @ m.T
    kk = min(k, m.shape[0])
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _median_ms(times: list[float]) -> float:
    return float(np.median(times) * 1e3)


def run_bench(n: int = 200_000, dim: int = 384, queries: int = 64, k: int = 10, single_repeats: int = 41,
              batch_repeats: int = 5, seed: int = 0, n_threads: int | None = None,
              progress: Progress | None = None) -> dict:
    """Time exact float32, int8 and batched search against numpy and faiss; return figures and ratios.

    Keys include speedup_vs_faiss_single, speedup_vs_faiss_batch, int8_speedup_vs_f32,
    int8_recall_at_10 (against the exact float32 answer, over `queries` queries), bandwidth_gbs
    (a parallel read of the same matrix) and bandwidth_fraction_single (matrix bytes / single-query
    time / bandwidth). faiss figures are None when faiss is not installed.
    """
    import numba

    from llmbench.kernels import search
    from llmbench.kernels.bandwidth import parallel_read_f32, parallel_read_rows_f32
    from llmbench.kernels.calibrate import CANDIDATES, calibrate_f32
    from llmbench.kernels.int8 import topk_int8_single
    from llmbench.kernels.topk import ROW_TILE, topk_f32_batch, topk_f32_single

    if n < 1 or dim < 1 or queries < 1 or k < 1:
        raise ValueError("n, dim, queries and k must all be at least 1")
    say = progress or (lambda stage, done, total: None)
    threads = search.threads(n_threads)

    say("data", 0, 1)
    m = random_unit_rows(n, dim, seed)
    qs = random_unit_rows(queries, dim, seed + 1)
    flat = m.reshape(-1)
    say("data", 1, 1)

    # Compile (or load from Numba's cache) on tiny inputs, outside every timing.
    say("compile", 0, 1)
    t0 = time.perf_counter()
    tiny = m[: min(n, 64)].copy()
    tq, ts = search.quantize(tiny)
    for p in CANDIDATES:
        topk_f32_single(tiny, tiny.shape[0], qs[0], k, threads, p.rows, p.ahead)
    topk_f32_batch(tiny, tiny.shape[0], qs[: min(queries, 8)], k, threads, ROW_TILE)
    topk_int8_single(tq, ts, tiny, tiny.shape[0], tq[0], ts[0], tiny[0], k, search.default_rescore(k), threads)
    parallel_read_f32(flat[:1024], threads)
    parallel_read_rows_f32(tiny, threads)
    compile_s = time.perf_counter() - t0
    say("compile", 1, 1)

    t0 = time.perf_counter()
    mq, scales = search.quantize(m)
    quantize_ms = (time.perf_counter() - t0) * 1e3
    qq, qscale = search.quantize(qs)
    say("calibrate", 0, 1)
    t0 = time.perf_counter()
    plan, plan_figures = calibrate_f32(m, n, qs[0], k, threads)
    calibrate_s = time.perf_counter() - t0
    say("calibrate", 1, 1)
    rescore = search.default_rescore(k)

    try:
        import faiss  # a comparison baseline only (test/bench dependency)

        index = faiss.IndexFlatIP(dim)
        index.add(m)
        faiss_version = faiss.__version__
    except ImportError:
        index, faiss_version = None, None

    methods: dict[str, Callable[[int], object]] = {
        "read": lambda i: parallel_read_f32(flat, threads),
        "read_rows": lambda i: parallel_read_rows_f32(m, threads),
        "f32_single": lambda i: topk_f32_single(m, n, qs[i], k, threads, plan.rows, plan.ahead),
        "int8_single": lambda i: topk_int8_single(mq, scales, m, n, qq[i], qscale[i], qs[i], k, rescore, threads),
        "numpy_single": lambda i: _numpy_single(m, qs[i], k),
    }
    if index is not None:
        methods["faiss_single"] = lambda i: index.search(qs[i: i + 1], k)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for name, fn in methods.items():  # one untimed pass: page in the matrix, warm every path
        fn(0)
    names = list(methods)
    # A fresh random order each repeat (seeded): every method runs in every place and after every
    # other one. A rotation keeps the cycle, so each method always followed the same neighbour; under
    # load the readers, always first after the long single-threaded numpy and faiss calls, then read
    # at up to 28 GB/s while the scan, always third, did not (fractions 0.54 and 0.70 in such runs).
    order_rng = np.random.default_rng(seed)
    orders: list[list[str]] = []
    for rep in range(single_repeats):
        i = rep % queries
        orders.append([names[j] for j in order_rng.permutation(len(names))])
        for name in orders[-1]:
            times[name].append(_timed(lambda: methods[name](i)))
        say("single query", rep + 1, single_repeats)

    batch_methods: dict[str, Callable[[], object]] = {
        "f32_batch": lambda: topk_f32_batch(m, n, qs, k, threads, ROW_TILE),
        "numpy_batch": lambda: _numpy_batch(m, qs, k),
    }
    if index is not None:
        batch_methods["faiss_batch"] = lambda: index.search(qs, k)
    btimes: dict[str, list[float]] = {name: [] for name in batch_methods}
    for rep in range(batch_repeats):
        for name, fn in batch_methods.items():
            btimes[name].append(_timed(fn))
        say("batch", rep + 1, batch_repeats)

    # Accuracy: int8 against the exact float32 answer, and the float32 kernel against faiss.
    exact_s, exact_i = topk_f32_batch(m, n, qs, k, threads, ROW_TILE)
    hits = 0
    for a in range(queries):
        _, got = topk_int8_single(mq, scales, m, n, qq[a], qscale[a], qs[a], k, rescore, threads)
        hits += len(set(got.tolist()) & set(exact_i[a].tolist()))
    kk = min(k, n)
    recall = hits / float(queries * kk)
    faiss_agreement = None
    if index is not None:
        _, fi = index.search(qs, k)
        faiss_agreement = float(np.mean([len(set(fi[a].tolist()) & set(exact_i[a].tolist())) / kk
                                         for a in range(queries)]))

    ms = {name: _median_ms(v) for name, v in times.items()}
    bms = {name: _median_ms(v) for name, v in btimes.items()}
    bandwidth = m.nbytes / (min(ms["read"], ms["read_rows"]) / 1e3) / 1e9  # the faster reader is the bound
    out = {
        "n": n, "dim": dim, "k": k, "queries": queries, "threads": threads,
        "single_repeats": single_repeats, "batch_repeats": batch_repeats,
        "matrix_mb": m.nbytes / 1e6, "int8_matrix_mb": (mq.nbytes + scales.nbytes) / 1e6,
        "bandwidth_gbs": bandwidth,
        "bandwidth_readers_gbs": {"flat": m.nbytes / ms["read"] / 1e6, "rows4": m.nbytes / ms["read_rows"] / 1e6},
        "f32_single_ms": ms["f32_single"], "int8_single_ms": ms["int8_single"],
        "numpy_single_ms": ms["numpy_single"], "faiss_single_ms": ms.get("faiss_single"),
        "f32_batch_ms": bms["f32_batch"], "numpy_batch_ms": bms["numpy_batch"],
        "faiss_batch_ms": bms.get("faiss_batch"),
        "speedup_vs_faiss_single": ms["faiss_single"] / ms["f32_single"] if index is not None else None,
        "speedup_vs_faiss_batch": bms["faiss_batch"] / bms["f32_batch"] if index is not None else None,
        "speedup_vs_numpy_single": ms["numpy_single"] / ms["f32_single"],
        "speedup_vs_numpy_batch": bms["numpy_batch"] / bms["f32_batch"],
        "speedup_batch_vs_single_loop": ms["f32_single"] * queries / bms["f32_batch"],
        "int8_speedup_vs_f32": ms["f32_single"] / ms["int8_single"],
        "int8_recall_at_10": recall if k == 10 else None,
        "int8_recall_at_k": recall,
        "int8_rescore": rescore,
        "bandwidth_fraction_single": m.nbytes / (ms["f32_single"] / 1e3) / 1e9 / bandwidth,
        "bandwidth_fraction_int8": (mq.nbytes + scales.nbytes) / (ms["int8_single"] / 1e3) / 1e9 / bandwidth,
        "f32_agreement_with_faiss": faiss_agreement,
        "f32_plan": plan.name, "f32_plan_rows": plan.rows, "f32_plan_prefetch_elements": plan.ahead,
        "f32_calibration": plan_figures, "f32_calibration_s": calibrate_s,
        "quantize_ms": quantize_ms, "compile_or_cache_load_s": compile_s,
        "single_times_ms": {name: [t * 1e3 for t in v] for name, v in times.items()},  # repeat by repeat
        "single_order": orders,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "numba": numba.__version__, "numpy": np.__version__, "faiss": faiss_version,
                    "threading_layer": _threading_layer(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")},
    }
    return out


def _threading_layer() -> str | None:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return None
