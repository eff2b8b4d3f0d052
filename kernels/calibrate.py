"""Choose the single-query float32 scan's shape on the machine that runs it.

Hosts of the same kind disagree on the fastest shape. On the 2026-11-30 VM (AMD EPYC, AVX-512) a
scan from memory ran fastest four rows per pass (one load of the query serves four rows), but from
L2 one row at a time was 1.3x faster (a single sequential stream, as a flat read); a software
prefetch a few kilobytes ahead is there for a host whose hardware prefetcher falls behind (on that
VM it gained nothing). So the candidates are timed on the caller's own matrix and the cheapest is used.

The measure is process CPU time per scan, not wall time: on a loaded machine wall time mostly says
how long the threads waited for a core, which is the same for every shape; CPU time says what the
shape itself costs. Neighbours only ever add to it, so the least CPU time over interleaved repeats
ranks the shapes. Their costs here differ by a few percent, about as much as the noise: a 5-repeat
median once ranked one-row passes first by 1%, and a 7-repeat minimum by 5.5%; in both runs the scan
then read at 0.76-0.83 of bandwidth against 0.96-0.98 with the default. So another shape replaces
the default only when it is at least MARGIN cheaper in CPU time and not slower in wall time: a host
that really wants another shape gains far more than that (a compute-bound scan at half speed).
On the AVX2 VM of 2026-12-01 four rows per pass was compute-bound (0.73-0.81 of the read bandwidth
in wall time) and one row per pass 13-38% cheaper in CPU time in every run (0.89-0.96 of bandwidth);
a 15% margin kept the slower default in 3 of 5 runs there, so the margin is 10%, still above the
noise measured on either host.

The shapes sum in float32 with fastmath, so LLVM decides how each row's sum is split into vector
lanes, and that depends on the loop around it and the host's vector width: on AVX-512 every shape
summed alike, bit for bit; on AVX2 one row per pass and four round differently in the last bit. So
shapes agree on scores to float32 round-off, on the ranking except between rows whose scores are
that close, and always on exact ties (the lower index first).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class F32Plan:
    """One shape of the float32 scan: `rows` per pass (4 or 1) and a prefetch distance in elements."""

    name: str
    rows: int
    ahead: int


CANDIDATES: tuple[F32Plan, ...] = (
    F32Plan("rows4", 4, 0),
    F32Plan("rows1", 1, 0),
    F32Plan("rows1+pf8k", 1, 2048),  # 2048 float32 = 8 KiB ahead
    F32Plan("rows4+pf4k", 4, 1024),
)
DEFAULT = CANDIDATES[0]
MARGIN = 0.10  # a shape must cost 10% less CPU than the default to replace it (noise is up to ~6%)


def plan_named(name: str) -> F32Plan:
    """The candidate called `name`; ValueError listing the names otherwise."""
    for p in CANDIDATES:
        if p.name == name:
            return p
    raise ValueError(f"unknown float32 scan shape {name!r}; known: {', '.join(p.name for p in CANDIDATES)}")


def calibrate_f32(m: np.ndarray, n: int, q: np.ndarray, k: int, n_threads: int,
                  repeats: int = 7) -> tuple[F32Plan, dict[str, dict[str, float]]]:
    """Time every candidate on m[:n] with query q; return the chosen plan and each one's figures.

    Figures per candidate: the least and the median process CPU ms per scan, the median wall ms,
    and the matrix bytes per least CPU second (GB/s). The chosen plan is the one with the least
    CPU ms, unless it saves less than MARGIN against DEFAULT or is slower in median wall time.
    Each candidate runs once untimed
    first, so compilation or cache loading never enters the figures.
    """
    from llmbench.kernels.topk import topk_f32_serial, topk_f32_single

    if n_threads == 1:
        def run(p: F32Plan) -> object:
            return topk_f32_serial(m, n, q, k, p.rows, p.ahead)
    else:
        def run(p: F32Plan) -> object:
            return topk_f32_single(m, n, q, k, n_threads, p.rows, p.ahead)

    cpu: dict[str, list[float]] = {p.name: [] for p in CANDIDATES}
    wall: dict[str, list[float]] = {p.name: [] for p in CANDIDATES}
    for p in CANDIDATES:
        run(p)
    order = list(CANDIDATES)
    for rep in range(max(1, repeats)):
        for p in order[rep % len(order):] + order[: rep % len(order)]:  # no shape always goes first
            c0, w0 = time.process_time(), time.perf_counter()
            run(p)
            cpu[p.name].append(time.process_time() - c0)
            wall[p.name].append(time.perf_counter() - w0)
    nbytes = n * m.shape[1] * m.itemsize
    figures = {}
    for p in CANDIDATES:
        c = float(np.min(cpu[p.name]))
        figures[p.name] = {"cpu_ms": c * 1e3, "cpu_median_ms": float(np.median(cpu[p.name])) * 1e3,
                           "wall_ms": float(np.median(wall[p.name])) * 1e3,
                           "gbs_per_cpu_s": nbytes / c / 1e9 if c > 0 else None}
    return choose(figures), figures


def choose(figures: dict[str, dict[str, float]]) -> F32Plan:
    """The plan with the least `cpu_ms`; DEFAULT when that saves less than MARGIN against it or
    takes longer in `wall_ms`."""
    best = min(CANDIDATES, key=lambda p: (figures[p.name]["cpu_ms"], figures[p.name]["wall_ms"]))
    b, d = figures[best.name], figures[DEFAULT.name]
    if b["cpu_ms"] > (1.0 - MARGIN) * d["cpu_ms"] or b["wall_ms"] > d["wall_ms"]:
        return DEFAULT
    return best
