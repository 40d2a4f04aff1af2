"""Known answers for the DBSA statistics (reportgen_plugins.dbsa.stats, methods.md §3.3): energy distance, permutation test, BH."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from reportgen_plugins.dbsa.stats import (
    benjamini_hochberg,
    combine_pvalues,
    energy_distance,
    pairwise_distances,
    permutation_test,
)


def brute_energy(x: np.ndarray, y: np.ndarray, dist) -> float:
    n, m = len(x), len(y)
    sxy = sum(dist(a, b) for a in x for b in y)
    sxx = sum(dist(a, b) for a in x for b in x)
    syy = sum(dist(a, b) for a in y for b in y)
    return 2 * sxy / (n * m) - sxx / n**2 - syy / m**2


def cos_d(a, b):
    return 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.mark.parametrize(
    "metric,dist",
    [
        ("cosine", cos_d),
        ("l2", lambda a, b: np.linalg.norm(a - b)),
        ("l1", lambda a, b: np.abs(a - b).sum()),
    ],
)
def test_energy_matches_brute_force(metric, dist):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(7, 4)) + 0.3
    assert energy_distance(x, y, metric) == pytest.approx(brute_energy(x, y, dist), abs=1e-12)
    assert energy_distance(x, x, metric) == pytest.approx(0.0, abs=1e-12)


def test_cosine_energy_is_squared_mean_difference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 8))
    y = rng.normal(size=(4, 8)) + 1
    xu = x / np.linalg.norm(x, axis=1, keepdims=True)
    yu = y / np.linalg.norm(y, axis=1, keepdims=True)
    expect = float(np.sum((xu.mean(0) - yu.mean(0)) ** 2))
    assert energy_distance(xu, yu) == pytest.approx(expect, abs=1e-13)
    assert energy_distance(x, y) == pytest.approx(expect, abs=1e-13)  # cosine normalises itself


def test_pairwise_l2_nonnegative_on_duplicates():
    a = np.ones((3, 5)) * 1e4
    assert (pairwise_distances(a, a, "l2") >= 0).all()


def test_min_p_with_three_samples_is_one_tenth_exact():
    # N=3 vs 3: C(6,3)=20 splits; E is symmetric in the two groups, so p >= 2/20.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5)) + 10
    y = rng.normal(size=(3, 5)) - 10
    e, p = permutation_test(x, y, exact=True)
    assert p == pytest.approx(0.1)
    # brute-force enumeration of the 20 splits
    pooled = np.concatenate([x, y])
    es = []
    for idx in itertools.combinations(range(6), 3):
        rest = [i for i in range(6) if i not in idx]
        es.append(energy_distance(pooled[list(idx)], pooled[rest]))
    assert len(es) == 20
    assert p == pytest.approx(np.mean(np.array(es) >= e - 1e-12))
    # Monte Carlo with B=1000 gives about the same (each draw hits one of the 2 extreme splits w.p. 1/10)
    _, p_mc = permutation_test(x, y, permutations=1000, rng=np.random.default_rng(3), exact=False)
    assert 0.07 < p_mc < 0.13


def test_min_p_with_plus_one_correction():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 5)) + 5
    y = rng.normal(size=(20, 5)) - 5
    _, p = permutation_test(x, y, permutations=1000, rng=np.random.default_rng(5))
    assert p == pytest.approx(1 / 1001)


def test_self_replacement_pvalues_are_uniform():
    rng = np.random.default_rng(6)
    ps = []
    for _ in range(200):
        x = rng.normal(size=(6, 3))
        y = rng.normal(size=(6, 3))
        ps.append(permutation_test(x, y, permutations=199, rng=rng, exact=False)[1])
    assert sps.kstest(ps, "uniform").pvalue > 0.01
    assert 0.4 < np.mean(ps) < 0.6


def test_permutation_is_seeded():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 3)) + 0.5
    a = permutation_test(x, y, permutations=500, rng=np.random.default_rng(1), exact=False)
    b = permutation_test(x, y, permutations=500, rng=np.random.default_rng(1), exact=False)
    assert a == b


def test_bh_hand_computed_and_scipy():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted: .005 .01 .03 .04 .5 → ×5/k: .025 .025 .05 .05 .5 → cummin from right: same
    expect = np.array([0.025, 0.05, 0.05, 0.025, 0.5])
    np.testing.assert_allclose(benjamini_hochberg(p), expect)
    rng = np.random.default_rng(8)
    for _ in range(20):
        q = rng.uniform(size=30) ** 3
        np.testing.assert_allclose(benjamini_hochberg(q), sps.false_discovery_control(q), atol=1e-12)


def test_bh_ignores_nan():
    q = benjamini_hochberg([0.01, float("nan"), 0.02])
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], [0.02, 0.02])


def test_combine_pvalues():
    ps = [0.01, 0.2, 0.5]
    assert combine_pvalues(ps, "fisher") == pytest.approx(sps.combine_pvalues(ps, method="fisher").pvalue)
    chi = -2 * np.log(ps).sum()
    assert combine_pvalues(ps, "fisher") == pytest.approx(sps.chi2.sf(chi, 6))
    assert combine_pvalues(ps, "mean") == pytest.approx(2 * np.mean(ps))
    assert combine_pvalues(ps, "min_bonferroni") == pytest.approx(0.03)
    assert combine_pvalues([0.3], "fisher") == 0.3
    assert np.isnan(combine_pvalues([], "fisher"))
