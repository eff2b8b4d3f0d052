"""Kernels against their numpy references: random shapes, k > N, empty index, duplicates, tie order."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmbench.kernels import reference as ref
from llmbench.kernels import search
from llmbench.kernels.calibrate import CANDIDATES
from llmbench.kernels.search import InvalidVectors

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = 2e-5  # float32 sums over <= 64 terms against float64


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[np.linalg.norm(x, axis=1) == 0] = 1.0
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def assert_order(scores: np.ndarray, idx: np.ndarray) -> None:
    """Best first: strictly lower score, or equal score and a higher index, down the list."""
    for a in range(len(idx) - 1):
        assert scores[a] > scores[a + 1] or (scores[a] == scores[a + 1] and idx[a] < idx[a + 1])


def assert_matches_ref(m: np.ndarray, q: np.ndarray, k: int, scores: np.ndarray, idx: np.ndarray) -> None:
    rs, ri = ref.topk_single_ref(m, q, k)
    assert len(idx) == len(ri) == min(k, len(m))
    assert len(set(idx.tolist())) == len(idx)
    assert np.allclose(scores, rs, atol=TOL)  # the same k best values
    exact = m.astype(np.float64) @ q.astype(np.float64)
    assert np.allclose(exact[idx], rs, atol=TOL)  # and the returned rows really have them
    # Where the reference has no near-tie, the very same rows in the same order.
    gaps = np.abs(np.diff(np.sort(exact)[::-1][: len(ri) + 1])) if len(ri) else np.array([])
    if len(gaps) and gaps.min() > 10 * TOL:
        assert idx.tolist() == ri.tolist()
    assert_order(scores, idx)


shapes = st.tuples(st.integers(0, 300), st.integers(1, 48), st.integers(0, 320), st.integers(1, 2),
                   st.integers(0, 2**31 - 1))


@SETTINGS
@given(shapes, st.sampled_from(CANDIDATES))
def test_single_matches_reference(shape, plan):
    n, d, k, threads, seed = shape
    rng = np.random.default_rng(seed)
    m, q = unit_rows(rng, n, d), unit_rows(rng, 1, d)[0]
    s, i = search.topk(m, q, k, n_threads=threads, plan=plan)
    assert s.dtype == np.float32 and i.dtype == np.int64
    assert_matches_ref(m, q, k, s, i)


@SETTINGS
@given(shapes, st.integers(1, 9))
def test_batch_matches_single(shape, nq):
    n, d, k, threads, seed = shape
    rng = np.random.default_rng(seed)
    m, qs = unit_rows(rng, n, d), unit_rows(rng, nq, d)
    bs, bi = search.topk_batch(m, qs, k, n_threads=threads, row_tile=7)  # an odd tile size hits the tile edges
    assert bs.shape == bi.shape == (nq, min(k, n))
    for a in range(nq):
        assert_matches_ref(m, qs[a], k, bs[a], bi[a])


@SETTINGS
@given(shapes)
def test_int8_with_full_rescore_is_exact(shape):
    n, d, k, threads, seed = shape
    rng = np.random.default_rng(seed)
    m, q = unit_rows(rng, n, d), unit_rows(rng, 1, d)[0]
    mq, sc = search.quantize(m)
    s, i = search.topk_int8(m, mq, sc, q, k, rescore=max(n, 1), n_threads=threads)
    assert_matches_ref(m, q, k, s, i)


@SETTINGS
@given(shapes, st.integers(1, 40))
def test_int8_matches_its_reference(shape, rescore):
    n, d, k, threads, seed = shape
    rng = np.random.default_rng(seed)
    m, q = unit_rows(rng, n, d), unit_rows(rng, 1, d)[0]
    mq, sc = search.quantize(m)
    s, i = search.topk_int8(m, mq, sc, q, k, rescore=rescore, n_threads=threads)
    rs, ri = ref.topk_int8_ref(m, q, k, rescore)
    assert len(i) == len(ri)
    assert np.allclose(s, rs, atol=TOL)
    assert_order(s, i)


@SETTINGS
@given(st.integers(1, 200), st.integers(1, 64), st.integers(0, 2**31 - 1))
def test_quantize_matches_reference(n, d, seed):
    m = unit_rows(np.random.default_rng(seed), n, d)
    q, s = search.quantize(m)
    rq, rs = ref.quantize_rows_ref(m)
    assert np.allclose(s, rs, rtol=1e-6)
    assert np.abs(q.astype(int) - rq.astype(int)).max() <= 1  # rounding of exact halves may differ
    assert np.abs(q).max() <= 127


@pytest.mark.parametrize("threads", [1, 2])
def test_duplicates_tie_to_lower_index(threads):
    rng = np.random.default_rng(3)
    base = unit_rows(rng, 5, 16)
    m = np.ascontiguousarray(np.vstack([base, base, base[::-1], base]))  # every row four times
    q = base[2]
    for fn in (*(lambda k, p=p: search.topk(m, q, k, n_threads=threads, plan=p) for p in CANDIDATES),
               lambda k: tuple(x[0] for x in search.topk_batch(m, q[None], k, n_threads=threads)),
               lambda k: search.topk_int8(m, *search.quantize(m), q, k, n_threads=threads)):
        s, i = fn(6)
        assert i[:4].tolist() == [2, 7, 12, 17]  # the four copies of row 2, lowest index first
        assert len(set(s[:4].tolist())) == 1
        assert_order(s, i)


def test_thread_count_does_not_change_answers():
    rng = np.random.default_rng(5)
    m, qs = unit_rows(rng, 3000, 24), unit_rows(rng, 5, 24)
    m[1000:1100] = m[0]  # many exact ties
    for q in (qs[0], m[0]):
        for plan in CANDIDATES:
            one = search.topk(m, q, 50, n_threads=1, plan=plan)
            two = search.topk(m, q, 50, n_threads=2, plan=plan)
            assert one[1].tolist() == two[1].tolist()
            assert np.array_equal(one[0], two[0])


def test_empty_index_and_k_beyond_n():
    d = 8
    empty = np.zeros((0, d), dtype=np.float32)
    q = unit_rows(np.random.default_rng(0), 1, d)[0]
    s, i = search.topk(empty, q, 5)
    assert s.shape == i.shape == (0,)
    bs, bi = search.topk_batch(empty, q[None], 5)
    assert bs.shape == (1, 0)
    mq, sc = search.quantize(empty)
    assert search.topk_int8(empty, mq, sc, q, 5)[1].shape == (0,)
    m = unit_rows(np.random.default_rng(1), 3, d)
    assert len(search.topk(m, q, 100)[1]) == 3
    assert search.topk(m, q, 0)[1].shape == (0,)
    # n below the capacity: only the first n rows are searched
    s, i = search.topk(m, q, 10, n=2)
    assert sorted(i.tolist()) == [0, 1]


@pytest.mark.parametrize("bad, message", [
    (np.array([[np.nan, 0.0]], dtype=np.float32), "NaN"),
    (np.array([[np.inf, 0.0]], dtype=np.float32), "NaN or infinite"),
    (np.array([[0.6, 0.6]], dtype=np.float32), "norm"),
    (np.array([[1.0, 0.0, 0.0]], dtype=np.float32), "width"),
    (np.array([[1, 0]], dtype=np.int64), "floating"),
])
def test_bad_vectors_are_refused(bad, message):
    with pytest.raises(InvalidVectors, match=message):
        search.check_unit_rows(bad, dim=2)


def test_parallel_read_sums_the_array():
    from llmbench.kernels.bandwidth import measure_read_bandwidth, parallel_read_f32, parallel_read_rows_f32

    x = np.random.default_rng(0).random(100_003).astype(np.float32)
    assert parallel_read_f32(x, 2) == pytest.approx(float(x.sum(dtype=np.float64)), rel=1e-4)
    for n in (0, 1, 5, 1001):
        rows = np.random.default_rng(n).random((n, 33)).astype(np.float32)
        assert parallel_read_rows_f32(rows, 2) == pytest.approx(float(rows.sum(dtype=np.float64)), rel=1e-4, abs=1e-6)
    assert measure_read_bandwidth(x, repeats=3) > 0


def test_kernels_load_from_numba_cache_in_a_new_process():
    """cache=True silently turns off for a kernel that reads a dynamic global: a fresh process must hit the cache."""
    import subprocess
    import sys

    code = """
import numpy as np
from llmbench.kernels import search, topk, int8, bandwidth
m = np.eye(4, dtype=np.float32)
mq, sc = search.quantize(m)
search.topk(m, m[0], 2); search.topk(m, m[0], 2, n_threads=2); search.topk_batch(m, m, 2)
search.topk_int8(m, mq, sc, m[0], 2); bandwidth.parallel_read_f32(m.reshape(-1), 2)
bandwidth.parallel_read_rows_f32(m, 2)
fns = (topk.topk_f32_single, topk.topk_f32_serial, topk.topk_f32_batch, int8.topk_int8_single,
       int8.quantize_rows, bandwidth.parallel_read_f32, bandwidth.parallel_read_rows_f32)
print(",".join(f.py_func.__name__ for f in fns if not sum(f.stats.cache_hits.values())))
"""
    for _ in range(2):  # the first run may compile and save; the second must load everything
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"not loaded from Numba's cache: {out.stdout.strip()}"


def test_every_scan_shape_gives_the_same_full_ranking_up_to_round_off():
    """The calibrated shapes differ in how they read memory and, on some hosts, in how a row's float32
    sum is split into vector lanes (on AVX2 one row per pass rounds differently from four): every
    row's score agrees with the default shape's to float32 round-off, the ranking follows the scores
    with exact ties to the lower index, and it matches the numpy reference where it has no near-tie.
    A prefetch or another thread count never changes the arithmetic: those answers are bit for bit."""
    from llmbench.kernels.calibrate import DEFAULT

    eps = float(np.finfo(np.float32).eps)
    rng = np.random.default_rng(11)
    for n, d in ((1001, 384), (303, 37), (7, 5)):  # n not a multiple of 4; a prefetch distance beyond the end
        m = unit_rows(rng, n, d)
        dup = n // 2
        m[dup: dup + 3] = m[2]  # a run of exact duplicates of row 2
        for q in (m[2], unit_rows(rng, 1, d)[0]):
            # float32 summation's error bound per row: d * eps * sum |m_rj q_j|
            bound = d * eps * (np.abs(m.astype(np.float64)) @ np.abs(q.astype(np.float64)))
            base_s, base_i = search.topk(m, q, n, n_threads=1, plan=DEFAULT)
            by_row = np.empty(n)
            by_row[base_i] = base_s
            by_rows = {}
            for p in CANDIDATES:
                for t in (1, 2):
                    s, i = search.topk(m, q, n, n_threads=t, plan=p)
                    assert_matches_ref(m, q, n, s, i)
                    assert np.all(np.abs(s - by_row[i]) <= bound[i]), (p.name, t)
                    first = by_rows.setdefault(p.rows, (s, i))
                    assert np.array_equal(s, first[0]) and np.array_equal(i, first[1]), (p.name, t)
        for p in CANDIDATES:
            s, i = search.topk(m, m[2], 4, plan=p)
            assert i.tolist() == [2, dup, dup + 1, dup + 2] and len(set(s.tolist())) == 1


def test_calibration_chooses_the_cheapest_shape_it_measured():
    from llmbench.kernels.calibrate import DEFAULT, MARGIN, calibrate_f32, choose

    rng = np.random.default_rng(2)
    m = unit_rows(rng, 4000, 64)
    plan, figs = calibrate_f32(m, 4000, m[0], 10, 2, repeats=3)
    assert set(figs) == {p.name for p in CANDIDATES}
    cheapest = min(CANDIDATES, key=lambda p: (figs[p.name]["cpu_ms"], figs[p.name]["wall_ms"]))
    saves = 1 - figs[cheapest.name]["cpu_ms"] / figs[DEFAULT.name]["cpu_ms"]
    quicker = figs[cheapest.name]["wall_ms"] <= figs[DEFAULT.name]["wall_ms"]
    assert plan == (cheapest if saves >= MARGIN and quicker else DEFAULT)
    for f in figs.values():  # GB/s per CPU second recomputed from the bytes and the least CPU time
        assert f["gbs_per_cpu_s"] == pytest.approx(m.nbytes / (f["cpu_ms"] / 1e3) / 1e9)
        assert f["cpu_ms"] <= f["cpu_median_ms"]
    # The rule by hand: 8% cheaper keeps the default, 20% cheaper replaces it unless slower in wall time.
    fig = {p.name: {"cpu_ms": 10.0, "wall_ms": 5.0} for p in CANDIDATES}
    fig[CANDIDATES[1].name]["cpu_ms"] = 9.2
    assert choose(fig) == DEFAULT
    fig[CANDIDATES[2].name].update(cpu_ms=8.0, wall_ms=5.5)
    assert choose(fig) == DEFAULT
    fig[CANDIDATES[2].name]["wall_ms"] = 4.0
    assert choose(fig) == CANDIDATES[2]


def test_large_matrix_is_calibrated_once_and_the_choice_kept(monkeypatch):
    from llmbench.kernels import calibrate

    calls = []
    real = calibrate.calibrate_f32

    def counting(*a, **kw):
        calls.append(a[1])
        return real(*a, **kw)

    monkeypatch.setattr(calibrate, "calibrate_f32", counting)
    monkeypatch.setattr(search, "CALIBRATE_ABOVE", 64 * 1024)  # bytes: make a small matrix "large"
    search.set_f32_plan(None)
    try:
        rng = np.random.default_rng(4)
        small, big = unit_rows(rng, 10, 16), unit_rows(rng, 2000, 16)  # 640 B and 128 kB
        assert search.f32_plan(small, 10) == calibrate.DEFAULT and calls == []
        search.topk(big, big[0], 5)
        search.topk(big, big[1], 5)
        assert calls == [2000]  # once per process, on the caller's own matrix
        assert search.f32_plan() in CANDIDATES
        search.set_f32_plan(CANDIDATES[2])
        assert search.f32_plan(big, 2000) == CANDIDATES[2]
    finally:
        search.set_f32_plan(None)


def test_bench_records_the_chosen_shape():
    from llmbench.kernels.bench import run_bench

    out = run_bench(n=3000, dim=32, queries=4, k=10, single_repeats=3, batch_repeats=1)
    from llmbench.kernels.calibrate import choose

    assert out["f32_plan"] == choose(out["f32_calibration"]).name
    chosen = next(p for p in CANDIDATES if p.name == out["f32_plan"])
    assert (out["f32_plan_rows"], out["f32_plan_prefetch_elements"]) == (chosen.rows, chosen.ahead)
    assert out["bandwidth_fraction_single"] == pytest.approx(
        3000 * 32 * 4 / (out["f32_single_ms"] / 1e3) / 1e9 / out["bandwidth_gbs"])


def test_scans_are_vectorised_and_prefetch():
    """The inner loops must compile to vector multiply-adds (a loop that indexes from a non-zero start
    keeps numpy's wrap-around check and runs scalar, at a third of the speed), and the prefetching
    shape must really emit a prefetch. Compiled afresh: Numba cannot inspect code loaded from cache."""
    import re

    import numba

    from llmbench.kernels._heap import FASTMATH
    from llmbench.kernels.topk import scan_rows1_f32, scan_rows4_f32

    m = np.zeros((8, 64), dtype=np.float32)
    hs, hi = np.full(2, -np.inf, dtype=np.float32), np.zeros(2, dtype=np.int64)
    for fn in (scan_rows1_f32, scan_rows4_f32):
        fresh = numba.njit(fastmath=FASTMATH)(fn.py_func)
        fresh(m, 0, 8, m[0], hs, hi, 256)
        ir = next(iter(fresh.inspect_llvm().values()))
        widths = {int(w) for w in re.findall(r"fmul[^\n]*<(\d+) x float>", ir)}
        widths |= {int(w) for w in re.findall(r"llvm\.fmuladd\.v(\d+)f32", ir)}
        assert widths and max(widths) >= 4, f"{fn.py_func.__name__}: no vector multiply in its IR"
        assert "llvm.prefetch" in ir


def test_cache_bench_stops_openblas_spinning_before_numpy_loads():
    """numpy's OpenBLAS workers spin about 0.1 s after each `M @ q`, on the core the next method
    needs; `cache bench` must set OPENBLAS_THREAD_TIMEOUT before numpy loads, and say so."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-m", "llmbench", "cache", "bench", "--n", "2000", "--dim", "16",
                          "--queries", "4", "--repeats", "3", "--json"], capture_output=True, text=True, env=env,
                         check=True)
    machine = json.loads(out.stdout)["machine"]
    assert machine["openblas_thread_timeout"] == "4" and machine["omp_wait_policy"] == "PASSIVE"
    # And the setting really stops the spinning: CPU time of a process asleep after a large matvec.
    code = """
import time, numpy as np
m = np.ones((20000, 384), dtype=np.float32); q = np.ones(384, dtype=np.float32)
spun = 0.0
for _ in range(3):
    m @ q
    c0 = time.process_time(); time.sleep(0.2); spun += time.process_time() - c0
print(spun)
"""
    env["OPENBLAS_THREAD_TIMEOUT"] = "4"
    spun = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                check=True).stdout)
    assert spun < 0.005, f"OpenBLAS workers still used {spun:.3f} s of CPU while the caller slept"


def test_bench_varies_the_order_of_methods():
    """Each method must run after several different neighbours and in several places: a rotation
    keeps the cycle (the scan always ran third after faiss), which under load biased the ratios."""
    from llmbench.kernels.bench import run_bench

    out = run_bench(n=500, dim=8, queries=2, k=5, single_repeats=12, batch_repeats=1)
    orders = out["single_order"]
    names = set(out["single_times_ms"])
    assert len(orders) == 12 and all(sorted(o) == sorted(names) for o in orders)
    for name in names:
        before = {o[o.index(name) - 1] for o in orders if o.index(name) > 0}
        places = {o.index(name) for o in orders}
        assert len(before) >= 3 and len(places) >= 3, (name, before, places)
