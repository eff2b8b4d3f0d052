"""Distribution statistics used everywhere: percentiles, spread, bootstrap confidence intervals."""
from __future__ import annotations

from typing import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)
BOOTSTRAP_RESAMPLES = 1000


def bootstrap_ci(values: np.ndarray, q: float, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the q-th percentile."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))
    estimates = np.percentile(values[idx], q, axis=1)
    lo, hi = np.percentile(estimates, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def describe(values: Sequence[float], seed: int = 0) -> dict | None:
    """p50/p90/p95/p99, mean, std, CV%, bootstrap 95% CI of p50 and p95, and the count n.

    None when there are no values (a metric that is undefined for every sample).
    """
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return None
    out: dict = {f"p{q}": float(np.percentile(arr, q)) for q in PERCENTILES}
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    out.update(mean=mean, std=std, cv_pct=(100.0 * std / mean) if mean else None, n=int(arr.size))
    if arr.size > 1:
        out["p50_ci95"] = list(bootstrap_ci(arr, 50, seed))
        out["p95_ci95"] = list(bootstrap_ci(arr, 95, seed))
    else:
        out["p50_ci95"] = out["p95_ci95"] = [float(arr[0]), float(arr[0])]
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}
