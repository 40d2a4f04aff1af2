"""PAS estimators: every quantity and interval from a weighted candidate support, free of model code.

Notation (methods.md §1): x is the model input, y the response, k a prompt position,
x^(v) is x with x_k replaced by the vocabulary item v, and for every candidate v

    ℓ_den(v)   = Σ_{i≥k} log P(x^(v)_i | x^(v)_{<i})            (prompt from k on)
    ℓ^(j)(v)   = ℓ_den(v) + Σ_{j'≤j} log P(y_j' | x^(v), y_{<j'})   (j = 0..t, ℓ^(0) = ℓ_den)
    ℓ_num(v)   = ℓ^(t)(v).

π_k = softmax ℓ_den is the prior of the token at k given the rest of the prompt (Bayes: the
common factor P(x_{<k}) cancels), ρ_k^(j) = softmax ℓ^(j) the posterior given y_{≤j}, ρ_k = ρ^(t).

Everything here works on a *weighted support*: candidates v with exactly computed ℓ values
and a weight w_v. The exact method uses the whole vocabulary with w_v = 1. The fast method
uses the evaluated top set S (w = 1) plus, when needed, an importance sample of the tail
(w = count / (m q(v))), which makes every sum Σ_v f(v) an unbiased estimate of the full sum.
All sums are taken in log space (logsumexp) in float64.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def logsumexp(a: npt.ArrayLike, logw: npt.ArrayLike | None = None, axis: int = 0) -> FloatArray:
    """log Σ w·exp(a) along ``axis`` (stable; ``logw`` are log weights broadcast like ``a``)."""
    x = np.asarray(a, dtype=np.float64)
    if logw is not None:
        x = x + np.asarray(logw, dtype=np.float64).reshape(
            [-1 if i == (axis % x.ndim) else 1 for i in range(x.ndim)]
        )
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    res: FloatArray = np.squeeze(out, axis=axis)
    return res


def log1pexp(z: float) -> float:
    """log(1 + e^z), stable for large |z|."""
    return z if z > 35 else math.log1p(math.exp(z))


@dataclass(frozen=True)
class PositionStats:
    """Every PAS quantity at one prompt position, from a (weighted) candidate support."""

    d_den: float  # log Σ_v w_v exp ℓ_den(v)
    d_num: float  # log Σ_v w_v exp ℓ_num(v)
    attribution_score: float  # log ρ(x_k) − log π(x_k) = ℓ_num(x_k) − ℓ_den(x_k) − (d_num − d_den)
    log_prior_original: float
    log_posterior_original: float
    entropy_prompt: float
    entropy_prompt_response: float
    kl_posterior_prior: float
    kl_prior_posterior: float
    matrix_row: FloatArray  # length t: log ρ^(j)(x_k) − log ρ^(j−1)(x_k)
    log_prior: FloatArray  # per support item: log π(v) (individual probability, not weighted)
    log_posterior: FloatArray  # per support item: log ρ(v)


def position_stats(l_cum: npt.ArrayLike, orig: int, logw: npt.ArrayLike | None = None) -> PositionStats:
    """All PAS quantities from a support.

    ``l_cum`` is (m, t+1): column 0 is ℓ_den, column j is ℓ^(j); ``orig`` is the row of the
    original token x_k; ``logw`` (m,) are log weights (None = all ones).
    """
    ell = np.asarray(l_cum, dtype=np.float64)
    lw = np.zeros(ell.shape[0]) if logw is None else np.asarray(logw, dtype=np.float64)
    logz = logsumexp(ell, lw, axis=0)  # (t+1,)
    log_post_orig = ell[orig] - logz  # log ρ^(j)(x_k), j = 0..t
    row = np.diff(log_post_orig)
    lp = ell[:, 0] - logz[0]
    lr = ell[:, -1] - logz[-1]
    w = np.exp(lw)
    p, r = np.exp(lp), np.exp(lr)
    h_p = float(-np.sum(w * p * lp))
    h_pr = float(-np.sum(w * r * lr))
    kl_rp = float(np.sum(w * r * (lr - lp)))
    kl_pr = float(np.sum(w * p * (lp - lr)))
    return PositionStats(
        d_den=float(logz[0]),
        d_num=float(logz[-1]),
        attribution_score=float(log_post_orig[-1] - log_post_orig[0]),
        log_prior_original=float(log_post_orig[0]),
        log_posterior_original=float(log_post_orig[-1]),
        entropy_prompt=max(h_p, 0.0),
        entropy_prompt_response=max(h_pr, 0.0),
        kl_posterior_prior=max(kl_rp, 0.0),
        kl_prior_posterior=max(kl_pr, 0.0),
        matrix_row=row,
        log_prior=lp,
        log_posterior=lr,
    )


def certified_as_interval(c: float, d_s: float, n_s: float, log_tail_bound: float) -> tuple[float, float]:
    """Certified interval on AS from a partial sum and a tail bound.

    AS = c − log(N_S + N_T) + log(D_S + D_T), with c = ℓ_num(x_k) − ℓ_den(x_k), D_S = e^{d_s},
    N_S = e^{n_s} the sums over the evaluated set S (x_k ∈ S), and unknown tails with
    0 ≤ N_T ≤ D_T ≤ U = e^{log_tail_bound} (each candidate's num term is at most its den
    term, which is at most its bound u(v)). Also N_S ≤ D_S. Then
      max AS at N_T = 0, D_T = U:   c + log(D_S + U) − n_s
      min AS at N_T = D_T = U:      c + log(D_S + U) − log(N_S + U)
    (for N_T = D_T = s the AS is decreasing in s because N_S ≤ D_S).
    """
    if not math.isfinite(log_tail_bound):
        v = c - n_s + d_s
        return v, v
    den_hi = d_s + log1pexp(log_tail_bound - d_s)
    num_hi = n_s + log1pexp(log_tail_bound - n_s)
    return c + den_hi - num_hi, c + den_hi - n_s


def bootstrap_as_interval(
    c: float,
    d_s: float,
    n_s: float,
    w_den: FloatArray,
    w_num: FloatArray,
    *,
    rng: np.random.Generator,
    n_boot: int = 1000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval on AS when the tails are importance-sampled.

    ``w_den[i]`` = exp ℓ_den(v_i)/q(v_i) and ``w_num[i]`` = exp ℓ_num(v_i)/q(v_i) for the m
    draws v_i ~ q (with replacement); their means are unbiased for the tail sums D_T, N_T.
    """
    m = len(w_den)
    idx = rng.integers(0, m, size=(n_boot, m))
    dt = np.asarray(w_den)[idx].mean(axis=1)
    nt = np.asarray(w_num)[idx].mean(axis=1)
    with np.errstate(divide="ignore"):
        as_b = c + np.logaddexp(d_s, np.log(dt)) - np.logaddexp(n_s, np.log(nt))
    lo, hi = np.quantile(as_b, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def nucleus(probs: FloatArray, top_p: float, cap: int) -> npt.NDArray[np.intp]:
    """Indices of the smallest top set whose probability reaches ``top_p`` (at most ``cap``)."""
    order = np.argsort(-np.asarray(probs), kind="stable")
    cum = np.cumsum(np.asarray(probs)[order])
    n = int(np.searchsorted(cum, top_p - 1e-12) + 1)
    return order[: max(1, min(n, cap, len(order)))]


def response_entropy(responses: Sequence[tuple[int, ...]]) -> float:
    """Shannon entropy (nats) of the empirical distribution of distinct responses."""
    if not responses:
        return 0.0
    counts = np.array(list(Counter(responses).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(max(0.0, -np.sum(p * np.log(p))))
