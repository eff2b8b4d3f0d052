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


def _grouped(values: np.ndarray, units: Sequence[Hashable] | None) -> np.ndarray:
    """Values as a (units, longest unit) matrix padded with +inf (sorted last, never read)."""
    if units is None:
        return values.reshape(-1, 1)
    groups: dict[Hashable, list[float]] = {}
    for v, u in zip(values, units):
        groups.setdefault(u, []).append(float(v))
    width = max(len(g) for g in groups.values())
    out = np.full((len(groups), width), np.inf)
    for i, g in enumerate(groups.values()):
        out[i, : len(g)] = g
    return out


def _row_percentiles(sorted_rows: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """numpy's default (linear) percentile of each row's first `counts` values."""
    h = (counts - 1) * q / 100.0
    lo = np.floor(h).astype(int)
    hi = np.minimum(lo + 1, counts - 1)
    rows = np.arange(sorted_rows.shape[0])
    a, b = sorted_rows[rows, lo], sorted_rows[rows, hi]
    return a + (h - lo) * (b - a)


def bootstrap_ci(values: Sequence[float], q: float, seed: int = 0, level: float = CI_LEVEL,
                 units: Sequence[Hashable] | None = None) -> tuple[float, float]:
    """Percentile-bootstrap `level` confidence interval of the q-th percentile.

    With `units`, whole units are drawn with replacement (a cluster bootstrap) and the percentile
    is taken over all values of the drawn units.
    """
    arr = np.asarray(values, dtype=float)
    grouped = _grouped(arr, units)
    k = grouped.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(BOOTSTRAP_RESAMPLES, k))
    drawn = np.sort(grouped[idx].reshape(BOOTSTRAP_RESAMPLES, -1), axis=1)
    counts = np.isfinite(drawn).sum(axis=1)
    estimates = _row_percentiles(drawn, counts, q)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(estimates, [tail, 100 - tail])
    return float(lo), float(hi)


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
        out["p50_ci95"] = list(bootstrap_ci(arr, 50, seed, units=unit_ids))
        out["p95_ci95"] = list(bootstrap_ci(arr, 95, seed, units=unit_ids))
    else:  # one independent unit: no spread to resample
        out["p50_ci95"] = [out["p50"], out["p50"]]
        out["p95_ci95"] = [out["p95"], out["p95"]]
    return out
