"""Bootstrap intervals: the level they claim, and independent units instead of copies."""
import numpy as np
import pytest

from llmbench.stats import bootstrap_ci, describe, half_width_pct


def test_p50_interval_is_95_percent_wide_by_normal_theory():
    # The median of n normal draws has standard error sqrt(pi/2) * sigma / sqrt(n); a 95% interval
    # spans 2 * 1.96 of them, a 90% one only 2 * 1.645 (0.84 as wide). Averaged over datasets so
    # that bootstrap noise cannot hide the difference.
    n, sigma = 3000, 1.0
    se = np.sqrt(np.pi / 2) * sigma / np.sqrt(n)
    widths = []
    for seed in range(6):
        x = np.random.default_rng(100 + seed).normal(0.0, sigma, n)
        lo, hi = describe(x.tolist())["p50_ci95"]
        widths.append(hi - lo)
    ratio = np.mean(widths) / (2 * 1.959964 * se)
    assert 0.92 < ratio < 1.08, ratio


def test_level_argument_sets_the_coverage():
    x = np.random.default_rng(1).normal(0.0, 1.0, 3000)
    w95 = np.subtract(*bootstrap_ci(x, 50)[::-1])
    w90 = np.subtract(*bootstrap_ci(x, 50, level=0.90)[::-1])
    assert w95 / w90 == pytest.approx(1.959964 / 1.644854, rel=0.1)


def test_copies_of_one_batch_count_as_one_unit():
    # Ten batches of eight rows, every row of a batch with its batch's value (as TTFT in a static
    # batch): resampling batches gives exactly the interval of the ten distinct values.
    distinct = np.random.default_rng(3).normal(10.0, 1.0, 10)
    copies = np.repeat(distinct, 8)
    units = np.repeat(np.arange(10), 8)
    by_unit = describe(copies.tolist(), units=units.tolist())
    alone = describe(distinct.tolist())
    assert by_unit["n"] == 80 and by_unit["n_units"] == 10
    assert by_unit["p50_ci95"] == pytest.approx(alone["p50_ci95"], rel=1e-12)
    assert by_unit["p95_ci95"] == pytest.approx(alone["p95_ci95"], rel=1e-12)
    # Counting copies as samples would make the interval narrower than the data supports.
    naive = describe(copies.tolist())
    assert np.subtract(*naive["p50_ci95"][::-1]) < 0.8 * np.subtract(*alone["p50_ci95"][::-1])


def test_unequal_units_match_a_hand_bootstrap():
    # Units of different sizes: the cluster bootstrap drawn by hand with the same generator.
    groups = [[1.0, 2.0], [3.0], [10.0, 11.0, 12.0], [4.0], [7.0, 8.0]]
    values = [v for g in groups for v in g]
    units = [i for i, g in enumerate(groups) for _ in g]
    idx = np.random.default_rng(7).integers(0, len(groups), size=(1000, len(groups)))
    est = [np.percentile([v for i in row for v in groups[i]], 50) for row in idx]
    expected = np.percentile(est, [2.5, 97.5])
    assert bootstrap_ci(values, 50, seed=7, units=units) == pytest.approx(tuple(expected), rel=1e-12)


def test_one_unit_has_a_zero_width_interval_and_full_precision():
    d = describe([1.0 / 3, 1.0 / 3], units=[5, 5])
    assert d["n_units"] == 1 and d["p50_ci95"] == [d["p50"], d["p50"]]
    assert d["p50"] == 1.0 / 3  # not rounded
    assert half_width_pct(10.0, [9.0, 10.5]) == pytest.approx(10.0)
