"""Distribution statistics used everywhere: percentiles, spread, bootstrap confidence intervals.

Confidence intervals resample independent units, not samples: every row of a static batch shares
its TTFT and step times, and every gap of one request shares that request's conditions, so
counting them as separate samples makes intervals too narrow. A caller passes `units` (one id per
value: the batch or the request it came from) and the bootstrap draws whole units.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)
BOOTSTRAP_RESAMPLES = 1000
CI_LEVEL = 0.95


def _unit_index(n: int, units: Sequence[Hashable] | None) -> tuple[np.ndarray, int]:
    """Each value's unit as 0..k-1, and k (without units, every value is its own unit)."""
    if units is None:
        return np.arange(n), n
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(u, len(index)) for u in units]), len(index)


def bootstrap_cis(values: Sequence[float], qs: Sequence[float], seed: int = 0, level: float = CI_LEVEL,
                  units: Sequence[Hashable] | None = None) -> list[tuple[float, float]]:
    """Percentile-bootstrap `level` confidence intervals of the percentiles `qs`, from one set of resamples.

    With `units`, whole units are drawn with replacement (a cluster bootstrap) and each percentile
    (numpy's default, linear) is taken over all values of the drawn units. A resample is done by
    weights, not copies: a value counts as often as its unit was drawn, so one sort serves all.
    """
    arr = np.asarray(values, dtype=float)
    unit_of, k = _unit_index(arr.size, units)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(BOOTSTRAP_RESAMPLES, k))
    order = np.argsort(arr, kind="stable")
    sorted_values, sorted_units = arr[order], unit_of[order]
    n = arr.size
    estimates = np.empty((len(qs), BOOTSTRAP_RESAMPLES))
    step = max(1, 4_000_000 // max(1, n))  # resamples per chunk: bounded memory
    for start in range(0, BOOTSTRAP_RESAMPLES, step):
        chunk = idx[start:start + step]
        r = chunk.shape[0]
        counts = np.bincount((chunk + k * np.arange(r)[:, None]).ravel(), minlength=r * k).reshape(r, k)
        cum = np.cumsum(counts[:, sorted_units], axis=1)
        total = cum[:, -1]
        # The value of pooled rank j is the first sorted value whose cumulative count exceeds j:
        # one binary search per row, over the rows laid end to end with disjoint offsets.
        offset = np.arange(r, dtype=np.int64) * (int(total.max()) + 1)
        flat = (cum + offset[:, None]).ravel()
        base = np.arange(r) * n
        for i, q in enumerate(qs):
            h = (total - 1) * q / 100.0
            lo = np.floor(h).astype(np.int64)
            hi = np.minimum(lo + 1, total - 1)
            a = sorted_values[np.searchsorted(flat, lo + offset, side="right") - base]
            b = sorted_values[np.searchsorted(flat, hi + offset, side="right") - base]
            estimates[i, start:start + r] = a + (h - lo) * (b - a)
    tail = (1 - level) / 2 * 100
    return [tuple(float(x) for x in np.percentile(e, [tail, 100 - tail])) for e in estimates]


def bootstrap_ci(values: Sequence[float], q: float, seed: int = 0, level: float = CI_LEVEL,
                 units: Sequence[Hashable] | None = None) -> tuple[float, float]:
    """Percentile-bootstrap `level` confidence interval of the q-th percentile (see bootstrap_cis)."""
    return bootstrap_cis(values, [q], seed, level, units)[0]


def half_width_pct(center: float, ci: Sequence[float]) -> float | None:
    """The larger distance from `center` to an end of `ci`, in % of `center` (the ±precision)."""
    if not center:
        return None
    return 100.0 * max(center - ci[0], ci[1] - center) / abs(center)


def describe(values: Sequence[float | None], seed: int = 0, units: Sequence[Hashable] | None = None) -> dict | None:
    """p50/p90/p95/p99, mean, std, CV%, bootstrap 95% CI of p50 and p95, n and n_units.

    `units` gives the independent unit of each value (see the module docstring); without it each
    value is its own unit. None when there are no values (a metric undefined for every sample).
    Full precision: rounding is for display only.
    """
    pairs = [(v, u) for v, u in zip(values, units if units is not None else range(len(values))) if v is not None]
    if not pairs:
        return None
    arr = np.asarray([v for v, _ in pairs], dtype=float)
    unit_ids = [u for _, u in pairs] if units is not None else None
    n_units = len(set(unit_ids)) if unit_ids is not None else int(arr.size)
    out: dict = {f"p{q}": float(np.percentile(arr, q)) for q in PERCENTILES}
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    out.update(mean=mean, std=std, cv_pct=(100.0 * std / mean) if mean else None, n=int(arr.size), n_units=n_units)
    if n_units > 1:
        p50_ci, p95_ci = bootstrap_cis(arr, (50, 95), seed, units=unit_ids)
        out["p50_ci95"], out["p95_ci95"] = list(p50_ci), list(p95_ci)
    else:  # one independent unit: no spread to resample
        out["p50_ci95"] = [out["p50"], out["p50"]]
        out["p95_ci95"] = [out["p95"], out["p95"]]
    return out
