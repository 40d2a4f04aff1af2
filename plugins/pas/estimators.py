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
        x = x + np.asarray(logw, dtype=np.float64).reshape([-1 if i == (axis % x.ndim) else 1 for i in range(x.ndim)])
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


def pool_growth_pays(as_top: float, d_s: float, log_bounded: float, log_unbounded: float, tolerance: float, target: float) -> bool:
    """Whether one-step bounds for more tail candidates can make the certified interval say more.

    The upper end of :func:`certified_as_interval` is the top set's own AS, ``as_top`` = c + d_s − n_s,
    plus the slack log(1 + U/D_S), U = B + R the tail bound: B = e^{log_bounded} over tail candidates
    that have a one-step bound, R = e^{log_unbounded} over those bounded by their prior alone. However
    many one-step bounds are added, the slack stays at least log(1 + B/D_S). Growing pays when it can
    remove more than ``tolerance`` of the slack and the upper end could then fall below −``target``,
    i.e. the interval could show that the response makes the token clearly less likely than a typical
    replacement (the lower end, c + log(D_S + U) − log(N_S + U), barely moves while U ≫ N_S: it stays
    near c).
    """
    if not math.isfinite(log_unbounded):
        return False
    total = log1pexp(float(np.logaddexp(log_bounded, log_unbounded)) - d_s)
    floor = log1pexp(log_bounded - d_s) if math.isfinite(log_bounded) else 0.0
    return total - floor > tolerance and as_top + floor < -target


def betting_as_interval(
    c: float,
    d_s: float,
    n_s: float,
    log_tail: float,
    r_den: npt.ArrayLike,
    r_num: npt.ArrayLike,
    bounds: tuple[float, float],
    *,
    level: float = 0.95,
    grid: int = 129,
) -> tuple[float, float] | None:
    """A confidence interval on AS from i.i.d. tail draws, valid at every sample size (anytime).

    Setting: AS = c + log(D_S + D_T) − log(N_S + N_T) with D_S = e^{d_s}, N_S = e^{n_s} exact and
    the tail sums D_T = Σ_{v∉S} e_den(v), N_T = Σ_{v∉S} e_num(v) unknown. Draws v_1, v_2, … are
    i.i.d. from q(v) = u(v)/U over the tail (U = e^{log_tail}, u the per-candidate bound with
    e_num(v) ≤ e_den(v) ≤ u(v)); ``r_den[i]`` = e_den(v_i)/u(v_i) and ``r_num[i]`` = e_num(v_i)/u(v_i),
    both in [0, 1], so E[r_den] = D_T/U and E[r_num] = N_T/U.

    For a candidate value s of AS, γ = e^{c−s} is the ratio (N_S + N_T)/(D_S + D_T), and
    s is the true AS exactly when the bounded variable x_i = r_num,i − γ r_den,i + γ ∈ [0, 1] has
    mean m(γ) = γ (D_S/U + 1) − N_S/U. Each s is tested with the hedged betting capital of
    Waudby-Smith & Ramdas (2023, "Estimating means of bounded random variables by betting"),
    predictable plug-in bets: a nonnegative martingale under the hypothesis, so by Ville's
    inequality the true s is rejected at *any* time (also after an adaptive stopping rule) with
    probability at most 1 − ``level``. Numerator and denominator are tested jointly through the
    ratio, so their correlated sampling errors cancel instead of adding up.

    Returns the hull of the candidate values in ``bounds`` (the certified interval) that are not
    rejected, found on a grid (``grid`` even points and the point estimate, each boundary refined 16
    times and widened outward to the last rejected point), or None when no grid value is accepted
    (then nothing narrower than the certified interval can honestly be reported).
    """
    lo_b, hi_b = bounds
    rd = np.clip(np.asarray(r_den, dtype=np.float64), 0.0, 1.0)
    rn = np.minimum(np.clip(np.asarray(r_num, dtype=np.float64), 0.0, 1.0), rd)
    n = len(rd)
    if n == 0 or not hi_b > lo_b:
        return None
    dsu = math.exp(min(d_s - log_tail, 700.0))
    nsu = math.exp(min(n_s - log_tail, 700.0))
    log_thresh = math.log(1.0 / (1.0 - level))
    t = np.arange(1, n + 1, dtype=np.float64)

    def accepted(s: FloatArray) -> npt.NDArray[np.bool_]:
        gam = np.exp(np.minimum(c - s, 0.0))[:, None]  # N/D ≤ 1
        x = np.clip(rn[None, :] - gam * rd[None, :] + gam, 0.0, 1.0)  # (G, n)
        m = gam[:, 0] * (dsu + 1.0) - nsu
        ok = (m > 0.0) & (m < 1.0)
        m = np.clip(m, 1e-300, 1.0 - 1e-16)[:, None]
        mu = (0.5 + np.cumsum(x, axis=1)) / (t + 1.0)
        var = (0.25 + np.cumsum((x - mu) ** 2, axis=1)) / (t + 1.0)
        var_prev = np.concatenate([np.full((x.shape[0], 1), 0.25), var[:, :-1]], axis=1)
        lam = np.sqrt(2.0 * math.log(2.0 / (1.0 - level)) / (var_prev * t * np.log1p(t)))
        lam_p = np.minimum(lam, 0.5 / m)
        lam_m = np.minimum(lam, 0.5 / (1.0 - m))
        log_kp = np.cumsum(np.log1p(lam_p * (x - m)), axis=1)
        log_km = np.cumsum(np.log1p(-lam_m * (x - m)), axis=1)
        log_k = np.logaddexp(log_kp, log_km) + math.log(0.5)
        res: npt.NDArray[np.bool_] = ok & (np.max(log_k, axis=1) < log_thresh)
        return res

    # the grid: evenly over the certified interval, plus the point estimate (inside the confidence set
    # whenever the set is not empty in practice, so a set narrower than the grid step is still found)
    a_hat, b_hat = float(rd.mean()), float(rn.mean())
    s_hat = c + math.log(dsu + a_hat) - math.log(nsu + b_hat) if nsu + b_hat > 0 else hi_b
    s = np.union1d(np.linspace(lo_b, hi_b, grid), [min(max(s_hat, lo_b), hi_b)])
    acc = accepted(s)
    if not acc.any():
        return None
    i_lo, i_hi = int(np.argmax(acc)), int(len(acc) - 1 - np.argmax(acc[::-1]))
    lo, hi = lo_b, hi_b
    if i_lo > 0:  # refine between the last rejected and the first accepted grid point
        f = np.linspace(s[i_lo - 1], s[i_lo], 17)
        a = accepted(f)
        lo = float(f[max(int(np.argmax(a)) - 1, 0)]) if a.any() else float(s[i_lo - 1])
    if i_hi < len(s) - 1:
        f = np.linspace(s[i_hi], s[i_hi + 1], 17)
        a = accepted(f)
        hi = float(f[min(int(len(a) - 1 - np.argmax(a[::-1])) + 1, len(f) - 1)]) if a.any() else float(s[i_hi + 1])
    return max(lo, lo_b), min(hi, hi_b)


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
