"""Bootstrap intervals: the level they claim, and independent units instead of copies."""
import numpy as np
import pytest

from llmbench.stats import bootstrap_ci, bootstrap_cis, describe, half_width_pct


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


def test_many_values_resampled_in_chunks_match_a_hand_bootstrap():
    # 8002 values: the resamples are computed 499 at a time (bounded memory), in 3 chunks, the last
    # one short. Continuous values, so any shifted rank or skipped resample shows; an even count puts
    # p50 and p95 between two values. q=0/100: min and max.
    x = np.random.default_rng(11).normal(50.0, 5.0, 8002)
    idx = np.random.default_rng(3).integers(0, x.size, size=(1000, x.size))
    resampled = x[idx]
    for q, got in zip((0, 50, 95, 100), bootstrap_cis(x, (0, 50, 95, 100), seed=3)):
        expected = np.percentile(np.percentile(resampled, q, axis=1), [2.5, 97.5])
        assert got == pytest.approx(tuple(expected), rel=1e-12), q


def test_describe_gives_each_figure_by_its_definition():
    x = np.random.default_rng(5).lognormal(3.0, 0.5, 200)
    d = describe(x.tolist())
    for q in (50, 90, 95, 99):
        assert d[f"p{q}"] == np.percentile(x, q)
    assert d["p50_ci95"] == list(bootstrap_ci(x, 50)) and d["p95_ci95"] == list(bootstrap_ci(x, 95))
    assert d["std"] == pytest.approx(np.std(x, ddof=1), rel=1e-12) and d["cv_pct"] == pytest.approx(100 * d["std"] / np.mean(x))


def test_half_width_is_the_larger_side_in_percent_of_the_center():
    assert half_width_pct(10.0, [9.5, 12.0]) == pytest.approx(20.0)  # the upper side, 2 of 10
    assert half_width_pct(10.0, [8.0, 10.5]) == pytest.approx(20.0)  # the lower side
    assert half_width_pct(10.0, [9.0, 21.0]) == pytest.approx(110.0) and half_width_pct(8.0, [7.0, 11.0]) == pytest.approx(37.5)
    assert half_width_pct(-10.0, [-12.0, -9.5]) == pytest.approx(20.0)
    assert half_width_pct(0.0, [-1.0, 1.0]) is None


def test_one_value_or_one_unit_has_no_spread():
    assert describe([1.0, 3.0])["std"] == pytest.approx(2 ** 0.5)  # two values: the sample std (n - 1)
    d = describe([5.0])
    assert (d["std"], d["cv_pct"], d["n"], d["n_units"], d["p50_ci95"], d["p95_ci95"]) == (0.0, 0.0, 1, 1, [5.0, 5.0], [5.0, 5.0])
    # Distinct values of one batch: the interval is the percentile itself, exactly (nothing to resample).
    x = np.random.default_rng(0).normal(10.0, 1.0, 7).tolist()  # a resampled percentile would differ from it in the last bit
    d = describe(x, units=[4] * 7)
    assert d["p50_ci95"] == [d["p50"], d["p50"]] and d["p95_ci95"] == [d["p95"], d["p95"]]


def test_a_50_percent_interval_is_the_quartiles_of_the_resampled_estimates():
    x = np.random.default_rng(8).normal(0.0, 1.0, 300)
    est = np.percentile(x[np.random.default_rng(0).integers(0, 300, size=(1000, 300))], 50, axis=1)
    assert bootstrap_ci(x, 50, level=0.5) == pytest.approx(tuple(np.percentile(est, [25, 75])), rel=1e-12)


def test_the_default_seed_is_zero():
    x = np.random.default_rng(9).normal(0.0, 1.0, 50)
    assert bootstrap_cis(x, [50]) == [bootstrap_ci(x, 50, seed=0)]
