"""Two-sample statistics for distribution-based sensitivity analysis (methods.md §3).

* :func:`pairwise_distances`: cosine, L2 or L1 distance matrices.
* :func:`energy_distance`: the V-statistic energy distance
  E = (2/nm) Σ_ij d(X_i,Y_j) − (1/n²) Σ_ii' d(X_i,X_i') − (1/m²) Σ_jj' d(Y_j,Y_j').
  With cosine distance, E = ‖mean(X̂) − mean(Ŷ)‖² exactly (X̂, Ŷ the unit-normalised rows).
* :func:`permutation_test`: permutation p-value of E, Monte Carlo with the +1 correction
  p = (1 + #{E_b ≥ E})/(B + 1), or exact enumeration of every split when that is cheaper.
* :func:`combine_pvalues`: per-unit combination of neighbour p-values (fisher, mean,
  min_bonferroni). Fisher assumes independent tests; DBSA's neighbours share the baseline
  sample, so Fisher is anti-conservative under that positive dependence (mean and
  min_bonferroni are valid under any dependence: Bonferroni always, and twice the mean
  p-value is a valid p-value under arbitrary dependence (Rüschendorf; Meng 1994)).
* :func:`benjamini_hochberg`: BH step-up adjusted p-values (q-values).

All randomness comes from a ``numpy.random.Generator`` seeded by the caller.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Metric = Literal["cosine", "l2", "l1"]
Combine = Literal["fisher", "mean", "min_bonferroni"]

#: Relative tolerance when comparing a permuted statistic to the observed one (ties count).
TIE_RTOL = 1e-9


Array = NDArray[np.float64]


def _unit(x: Array) -> Array:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def pairwise_distances(a: ArrayLike, b: ArrayLike, metric: Metric = "cosine") -> Array:
    """Distance matrix D[i, j] = d(a_i, b_j)."""
    xs = np.asarray(a, dtype=np.float64)
    ys = np.asarray(b, dtype=np.float64)
    dist: Array
    if metric == "cosine":
        dist = 1.0 - _unit(xs) @ _unit(ys).T
    elif metric == "l2":
        # direct differences: the Gram-matrix shortcut loses ~1e-8 on the diagonal
        dist = np.sqrt(((xs[:, None, :] - ys[None, :, :]) ** 2).sum(-1))
    elif metric == "l1":
        dist = np.abs(xs[:, None, :] - ys[None, :, :]).sum(-1)
    else:
        raise ValueError(f"unknown metric {metric!r}; choose cosine, l2 or l1")
    return dist


def energy_distance(x: ArrayLike, y: ArrayLike, metric: Metric = "cosine") -> float:
    """V-statistic energy distance between samples ``x`` (n × d) and ``y`` (m × d)."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if len(xs) == 0 or len(ys) == 0:
        raise ValueError("energy distance needs at least one sample on each side")
    dxy = pairwise_distances(xs, ys, metric).mean()
    dxx = pairwise_distances(xs, xs, metric).mean()
    dyy = pairwise_distances(ys, ys, metric).mean()
    return float(2.0 * dxy - dxx - dyy)


def _split_statistics(d: Array, masks: NDArray[np.bool_]) -> Array:
    """E for each split of the pooled sample: rows of ``masks`` are True for group X.

    With w = 1_X/n − 1_Y/m, w^T D w = (1/n²)ΣD_XX + (1/m²)ΣD_YY − (2/nm)ΣD_XY = −E,
    so every split's statistic is one quadratic form in the pooled distance matrix D.
    """
    n = masks.sum(1, keepdims=True)
    m = masks.shape[1] - n
    w = np.where(masks, 1.0 / n, -1.0 / m)
    stats: Array = -np.einsum("bi,ij,bj->b", w, d, w)
    return stats


def n_splits(n: int, m: int) -> int:
    """Number of distinct ways to split n + m pooled samples into groups of n and m."""
    return math.comb(n + m, n)


def permutation_test(
    x: ArrayLike,
    y: ArrayLike,
    *,
    permutations: int = 1000,
    rng: np.random.Generator | None = None,
    metric: Metric = "cosine",
    exact: bool | Literal["auto"] = "auto",
) -> tuple[float, float]:
    """Energy distance and its permutation p-value.

    Monte Carlo: B random relabellings of the pooled sample, p = (1 + #{E_b ≥ E})/(B + 1)
    (the +1 counts the observed labelling, so p is never 0 and the test is valid).
    Exact (``exact=True``, or ``"auto"`` when C(n+m, n) ≤ B): every split is enumerated and
    p = #{splits with E_s ≥ E}/C(n+m, n); the observed split is one of them.
    Returns ``(E, p)``.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    n, m = len(xs), len(ys)
    if n == 0 or m == 0:
        raise ValueError("permutation test needs at least one sample on each side")
    pooled = np.concatenate([xs, ys])
    d = pairwise_distances(pooled, pooled, metric)
    observed_mask = np.zeros((1, n + m), dtype=bool)
    observed_mask[0, :n] = True
    e_obs = float(_split_statistics(d, observed_mask)[0])
    tol = TIE_RTOL * max(1.0, abs(e_obs))
    total = n_splits(n, m)
    if exact is True or (exact == "auto" and total <= permutations):
        count = 0
        for chunk in _chunks(itertools.combinations(range(n + m), n), 4096):
            masks = np.zeros((len(chunk), n + m), dtype=bool)
            for r, idx in enumerate(chunk):
                masks[r, list(idx)] = True
            count += int((_split_statistics(d, masks) >= e_obs - tol).sum())
        return e_obs, count / total
    if rng is None:
        raise ValueError("a Monte Carlo permutation test needs a seeded rng")
    exceed = 0
    for start in range(0, permutations, 2048):
        b = min(2048, permutations - start)
        order = rng.permuted(np.tile(np.arange(n + m), (b, 1)), axis=1)
        masks = order < n  # the first n labels of each relabelling form group X
        exceed += int((_split_statistics(d, masks) >= e_obs - tol).sum())
    return e_obs, (1 + exceed) / (permutations + 1)


def _chunks(it: Iterable[tuple[int, ...]], size: int) -> Iterator[list[tuple[int, ...]]]:
    buf: list[tuple[int, ...]] = []
    for item in it:
        buf.append(item)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def combine_pvalues(pvalues: Sequence[float | None], method: Combine = "fisher") -> float:
    """Combine one unit's neighbour p-values into one p-value.

    fisher: −2 Σ log p ~ χ²(2k) under independence (scipy.stats.combine_pvalues);
    mean: min(1, 2·mean p), valid under arbitrary dependence (the plain mean, as in the DBSA
    code, is not a p-value; the factor 2 makes it one);
    min_bonferroni: min(1, k·min p).
    """
    p = np.asarray([v for v in pvalues if v is not None and np.isfinite(v)], dtype=np.float64)
    if p.size == 0:
        return float("nan")
    if p.size == 1:
        return float(p[0])
    if method == "fisher":
        from scipy.stats import combine_pvalues as _scipy_combine

        return float(_scipy_combine(np.clip(p, 1e-300, 1.0), method="fisher").pvalue)
    if method == "mean":
        return float(min(1.0, 2.0 * p.mean()))
    if method == "min_bonferroni":
        return float(min(1.0, p.size * p.min()))
    raise ValueError(f"unknown combination {method!r}; choose fisher, mean or min_bonferroni")


def benjamini_hochberg(pvalues: ArrayLike) -> Array:
    """BH step-up adjusted p-values q_(i) = min_{k≥i} min(1, m·p_(k)/k); NaN stays NaN.

    NaN entries are left out of m (they were not tested).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    vals = p[ok]
    m = vals.size
    if m == 0:
        return q
    order = np.argsort(vals, kind="stable")
    ranked = vals[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.minimum(ranked, 1.0)
    q[ok] = adj
    return q
