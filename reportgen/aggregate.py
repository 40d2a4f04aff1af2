"""Aggregations of the attribution matrix A (n input × t output), seed 001 §3.3–3.4 and A.3.

All functions are NaN-aware: cells a method leaves undefined (NaN) do not count.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def dimension_reduce(a: np.ndarray, how: Literal["l2", "sum", "mean"] = "l2") -> np.ndarray:
    """Eq. 9: reduce trailing per-cell dimensions (n × t × d … → n × t)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim <= 2:
        return a
    flat = a.reshape(a.shape[0], a.shape[1], -1)
    if how == "l2":
        return np.asarray(np.sqrt(np.sum(flat**2, axis=-1)))
    if how == "sum":
        return np.asarray(np.sum(flat, axis=-1))
    if how == "mean":
        return np.asarray(np.mean(flat, axis=-1))
    raise ValueError(f"unknown dimensional aggregation {how!r}; choose l2, sum or mean")


def _all_nan(a: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(np.all(np.isnan(a), axis=axis))


def token_importance(a: np.ndarray, absolute: bool = False) -> tuple[list[float | None], list[float | None]]:
    """Eq. 6: I(x_i) = Σ_j A_ij and I(y_j) = Σ_i A_ij (NaN cells skipped; all-NaN → None)."""
    a = np.asarray(a, dtype=np.float64)
    if absolute:
        a = np.abs(a)
    ix = np.nansum(a, axis=1)
    iy = np.nansum(a, axis=0)
    ix_l = [None if m else float(v) for v, m in zip(ix, _all_nan(a, 1), strict=True)]
    iy_l = [None if m else float(v) for v, m in zip(iy, _all_nan(a, 0), strict=True)]
    return ix_l, iy_l


def intensity(a: np.ndarray) -> np.ndarray:
    """Eq. 7: min–max scaling to [0, 1] over the finite cells (constant A → zeros)."""
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.full_like(a, np.nan)
    lo, hi = float(finite.min()), float(finite.max())
    if hi == lo:
        return np.where(np.isfinite(a), 0.0, np.nan)
    return (a - lo) / (hi - lo)


def clamp_window(c: int, n: int, t: int) -> int:
    """1 ≤ c ≤ ⌊min(n, t)/2⌋ (§3.4); returns 1 when the matrix is too small for a window."""
    upper = max(1, min(n, t) // 2)
    return max(1, min(int(c), upper))


def input_window(a: np.ndarray, k: int, c: int) -> np.ndarray:
    """Eq. 4: A_{x_k,c}(j) = Σ_{i=max(1,k−⌊c/2⌋)}^{min(n,k+⌊c/2⌋)} A_ij (0-based k)."""
    a = np.asarray(a, dtype=np.float64)
    h = c // 2
    return np.asarray(np.nansum(a[max(0, k - h) : min(a.shape[0], k + h + 1), :], axis=0))


def output_window(a: np.ndarray, k: int, c: int) -> np.ndarray:
    """Eq. 5: A_{y_k,c}(i) = Σ_{j=max(1,k−⌊c/2⌋)}^{min(t,k+⌊c/2⌋)} A_ij (0-based k)."""
    a = np.asarray(a, dtype=np.float64)
    h = c // 2
    return np.asarray(np.nansum(a[:, max(0, k - h) : min(a.shape[1], k + h + 1)], axis=1))


def multi_method_mean(mats: list[np.ndarray], normalise: bool = True) -> np.ndarray:
    """Eq. 10: the mean over methods (each min–max scaled first when ``normalise``)."""
    if not mats:
        raise ValueError("no matrices to combine")
    shapes = {m.shape for m in mats}
    if len(shapes) != 1:
        raise ValueError(f"matrices differ in shape: {sorted(shapes)}")
    stack = np.stack([intensity(m) if normalise else np.asarray(m, dtype=np.float64) for m in mats])
    return np.asarray(np.nanmean(stack, axis=0))


def difference(a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """§4.5: the differential matrix A^{m1} − A^{m2} over the common n × t block."""
    n = min(a1.shape[0], a2.shape[0])
    t = min(a1.shape[1], a2.shape[1])
    return np.asarray(a1, dtype=np.float64)[:n, :t] - np.asarray(a2, dtype=np.float64)[:n, :t]


def temporal_weights(turn_of_token: list[int], decay: float) -> np.ndarray:
    """Eq. 11: weight w_i = decay^(T − turn_i) for each input token (latest turn weight 1)."""
    turns = np.asarray(turn_of_token, dtype=np.float64)
    if turns.size == 0:
        return turns
    if not 0 < decay <= 1:
        raise ValueError("decay must be in (0, 1]")
    return np.asarray(decay ** (turns.max() - turns))
