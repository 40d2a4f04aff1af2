"""Faithfulness metrics as plain functions of a set function (no model in here).

A prompt's user tokens are numbered 0..n−1; a set of them is an ``int`` bitmask. ``F(mask)`` is
the target (e.g. log P(response | prompt with the tokens in ``mask`` perturbed)); every metric
below is a function of F and of a method's token ranking:

- deletion: ``g_del(S) = F(∅) − F(S)``, the drop after perturbing S; a ranking's AOPC is the mean
  of g_del over its prefixes r_{1:k}, k = 0..n (Edin et al. 2025: (1/(n+1)) Σ_k g_del(r_{1:k}));
- insertion: ``g_ins(S) = F(U∖S) − F(U)``, the gain from restoring only S into the fully
  perturbed prompt (U = every user token);
- NAOPC = (AOPC − lo) / (hi − lo), lo and hi the least and largest AOPC over every ordering of the
  same tokens: exact by dynamic programming over all 2^n subsets (the same optimum as enumerating
  the n! orderings, which :func:`enumerate_bounds` does for tests), else by beam search;
- infidelity (Yeh et al. 2019) with optimal scaling: over random subsets S, the squared error of
  β·Σ_{i∈S} φ_i against g_del(S), β ≥ 0 the least-squares scale; reported divided by mean g_del²
  (0: the attribution predicts every drop; 1: it predicts nothing);
- comprehensiveness / sufficiency (DeYoung et al. 2020) at k% of the user tokens:
  ``F(∅) − F(top_k)`` and ``F(∅) − F(U∖top_k)``;
- agreement: Spearman's ρ and Kendall's τ_b between two methods' ranking keys;
- concentration: Gini coefficient and normalised entropy of |I|.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
#: Evaluates many masks at once (one batched forward), returning one number per mask.
BatchFn = Callable[[Sequence[int]], Sequence[float]]


def bits(mask: int) -> list[int]:
    """The members of a bitmask set, ascending."""
    out, i = [], 0
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    return out


def mask_of(items: Iterable[int]) -> int:
    m = 0
    for i in items:
        m |= 1 << int(i)
    return m


def full_mask(n: int) -> int:
    return (1 << n) - 1


# --------------------------------------------------------------------------- rankings


def ranking_key(importance: Sequence[float | None], signed: bool) -> FloatArray:
    """What a method's ranking sorts by: the signed value (a signed method says a positive token
    supports the response, a negative one works against it) or the size (an unsigned method
    says how much a token matters, not in which direction). Missing values rank last."""
    v = np.array([np.nan if x is None else float(x) for x in importance], dtype=np.float64)
    key = v if signed else np.abs(v)
    return np.where(np.isfinite(key), key, -np.inf)


def order_from_key(key: Sequence[float] | FloatArray) -> list[int]:
    """Token indices, highest key first; ties broken by position (earlier first)."""
    k = np.asarray(key, dtype=np.float64)
    return [int(i) for i in np.lexsort((np.arange(len(k)), -k))]


def prefix_masks(order: Sequence[int]) -> list[int]:
    """Masks of r_{1:k} for k = 0..len(order)."""
    out, m = [0], 0
    for i in order:
        m |= 1 << int(i)
        out.append(m)
    return out


def aopc(gains: Sequence[float]) -> float:
    """Mean of g over the prefixes (``gains[k]`` = g(r_{1:k}), k = 0..n, g(∅) included)."""
    return float(np.mean(np.asarray(gains, dtype=np.float64)))


def normalise(value: float | None, lo: float | None, hi: float | None) -> float | None:
    """(value − lo) / (hi − lo); None when the bounds are missing or equal (every ordering ties)."""
    if value is None or lo is None or hi is None or not hi - lo > 1e-12:
        return None
    return float(min(1.0, max(0.0, (value - lo) / (hi - lo))))


# --------------------------------------------------------------------------- bounds over orderings


def exact_bounds(n: int, g: Callable[[int], float]) -> tuple[float, float]:
    """(least, largest) AOPC over every ordering of n tokens, exactly.

    An ordering's AOPC sums g over a chain ∅ ⊂ S_1 ⊂ … ⊂ S_n = U; the best chain ending in S is
    g(S) + the best chain ending in some S ∖ {i}, a recursion over the 2^n subsets (n·2^n steps)
    that finds the same optimum as trying all n! orderings.
    """
    size = 1 << n
    best_hi = [0.0] * size
    best_lo = [0.0] * size
    best_hi[0] = best_lo[0] = g(0)
    for mask in range(1, size):
        gm = g(mask)
        hi, lo = -math.inf, math.inf
        m = mask
        while m:
            low = m & -m
            prev = mask ^ low
            hi = max(hi, best_hi[prev])
            lo = min(lo, best_lo[prev])
            m ^= low
        best_hi[mask] = gm + hi
        best_lo[mask] = gm + lo
    return best_lo[size - 1] / (n + 1), best_hi[size - 1] / (n + 1)


def enumerate_bounds(n: int, g: Callable[[int], float]) -> tuple[float, float]:
    """(least, largest) AOPC by trying all n! orderings (a reference for tests; n ≤ 8)."""
    vals = [aopc([g(m) for m in prefix_masks(p)]) for p in itertools.permutations(range(n))]
    return min(vals), max(vals)


def beam_bounds(n: int, batch: BatchFn, width: int) -> tuple[float, float, int]:
    """(least, largest) AOPC found by two beam searches over orderings, and the masks asked for.

    Each beam grows orderings one token at a time and keeps the ``width`` partial orderings with
    the largest (resp. least) running sum of g; partial orderings that reached the same set are
    merged (the future depends only on the set), so a width of C(n, ⌊n/2⌋) is exact. Every level's
    new sets go to ``batch`` in one call. The largest found is a lower bound of the true maximum
    and the least an upper bound of the true minimum.
    """
    asked: list[int] = []

    def fetch(masks: Sequence[int]) -> None:
        vals.update(zip(masks, (float(v) for v in batch(masks)), strict=True))
        asked.append(len(masks))

    vals: dict[int, float] = {}
    ((lo, hi),) = beam_bounds_lockstep(n, width, fetch, [(vals.__getitem__, lambda m: m)])
    return lo, hi, sum(asked)


#: One curve for :func:`beam_bounds_lockstep`: its gain g(S), and the mask whose target value g(S) needs.
Curve = tuple[Callable[[int], float], Callable[[int], int]]


def beam_bounds_lockstep(n: int, width: int, fetch: Callable[[Sequence[int]], None], curves: Sequence[Curve]) -> list[tuple[float, float]]:
    """:func:`beam_bounds` for several curves at once (deletion and insertion, every target):
    each level's sets of every curve are fetched in one call before any gain is read."""
    fetch(sorted({need(0) for _, need in curves}))
    beams = [({0: gain(0)}, {0: gain(0)}) for gain, _ in curves]
    for _ in range(n):
        cands = [(_expand(hi, n), _expand(lo, n)) for hi, lo in beams]
        fetch(sorted({need(m) for (_, need), (ch, cl) in zip(curves, cands, strict=True) for m in (*ch, *cl)}))
        nxt = []
        for (gain, _), (ch, cl) in zip(curves, cands, strict=True):
            hi_next = {m: max(acc) + gain(m) for m, acc in ch.items()}
            lo_next = {m: min(acc) + gain(m) for m, acc in cl.items()}
            nxt.append(
                (
                    dict(sorted(hi_next.items(), key=lambda kv: (-kv[1], kv[0]))[:width]),
                    dict(sorted(lo_next.items(), key=lambda kv: (kv[1], kv[0]))[:width]),
                )
            )
        beams = nxt
    full = full_mask(n)
    return [(lo[full] / (n + 1), hi[full] / (n + 1)) for hi, lo in beams]


def beam_cost(n: int, width: int, curves: int) -> int:
    """An upper bound on the sets a lockstep beam search asks for (two beams per curve)."""
    return 1 + curves * 2 * sum(min(width, math.comb(n, k)) * (n - k) for k in range(n))


def _expand(beam: dict[int, float], n: int) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for mask, acc in beam.items():
        for i in range(n):
            if not mask >> i & 1:
                out.setdefault(mask | 1 << i, []).append(acc)
    return out


# --------------------------------------------------------------------------- infidelity


def infidelity(
    importance: Sequence[float] | FloatArray, masks: Sequence[int], drops: Sequence[float]
) -> tuple[float | None, float | None, float | None]:
    """(normalised infidelity, raw infidelity, β) of an attribution over random subsets.

    The attribution predicts the drop after perturbing S as Σ_{i∈S} φ_i; β ≥ 0 is the scale that
    fits the observed drops best (least squares; Yeh et al.'s optimal scaling, kept non-negative so
    that attributions pointing the wrong way are not rescued by flipping them). Raw infidelity is
    the mean squared error in nats²; the normalised one divides it by the mean squared drop.
    """
    phi = np.asarray(importance, dtype=np.float64)
    if not len(masks) or not np.all(np.isfinite(phi)):
        return None, None, None
    n = len(phi)
    sel = np.array([[m >> i & 1 for i in range(n)] for m in masks], dtype=np.float64)
    pred = sel @ phi
    d = np.asarray(drops, dtype=np.float64)
    pp = float(pred @ pred)
    beta = max(0.0, float(pred @ d) / pp) if pp > 0 else 0.0
    raw = float(np.mean((beta * pred - d) ** 2))
    scale = float(np.mean(d**2))
    return (raw / scale if scale > 1e-12 else None), raw, beta


def random_subsets(n: int, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` random non-empty subsets: a size uniform in 1..n, then the members uniformly."""
    out = []
    for _ in range(count):
        size = int(rng.integers(1, n + 1))
        out.append(mask_of(rng.choice(n, size=size, replace=False)))
    return out


# --------------------------------------------------------------------------- ERASER


def top_k_counts(n: int, percents: Sequence[float]) -> list[int]:
    """How many tokens k% of n is (rounded up, at least 1, at most n)."""
    return [min(n, max(1, math.ceil(p / 100.0 * n - 1e-9))) for p in percents]


# --------------------------------------------------------------------------- agreement and concentration


def rank_agreement(a: Sequence[float] | FloatArray, b: Sequence[float] | FloatArray) -> tuple[float | None, float | None]:
    """(Spearman's ρ, Kendall's τ_b) between two rankings' keys; None when either is constant."""
    from scipy.stats import kendalltau, spearmanr

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    rho = float(spearmanr(x, y).statistic)
    tau = float(kendalltau(x, y).statistic)
    return (rho if math.isfinite(rho) else None), (tau if math.isfinite(tau) else None)


def gini(values: Sequence[float] | FloatArray) -> float | None:
    """Gini coefficient of |values|: 0 when every token matters equally, → 1 when one token holds it all."""
    v = np.sort(np.abs(np.asarray(values, dtype=np.float64)))
    v = v[np.isfinite(v)]
    n = len(v)
    total = float(v.sum())
    if n == 0 or total <= 0:
        return None
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * v) / (n * total))


def normalised_entropy(values: Sequence[float] | FloatArray) -> float | None:
    """Entropy of |values| / Σ|values| divided by log n: 1 when spread evenly, 0 on one token."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    n = len(v)
    total = float(v.sum())
    if n < 2 or total <= 0:
        return None
    p = v[v > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(n))


# --------------------------------------------------------------------------- over prompts


#: Fewest prompts for a bootstrap interval: resampling one or two values only restates them.
MIN_INTERVAL_N = 3


def bootstrap_indices(n: int, resamples: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """``resamples`` × n prompt indices drawn with replacement (shared by every method: paired)."""
    return rng.integers(0, n, size=(resamples, n)) if n and resamples else np.zeros((0, n), dtype=np.int64)


def mean_interval(
    values: Sequence[float | None], idx: npt.NDArray[np.int64], level: float = 0.95, min_n: int = MIN_INTERVAL_N
) -> tuple[float | None, float | None, float | None, int]:
    """(mean, lo, hi, n) of per-prompt values; the interval is the bootstrap percentile interval
    over prompts (None with fewer than ``min_n`` prompts, where resampling says nothing, or
    without resamples)."""
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
    have = np.isfinite(v)
    n = int(have.sum())
    if n == 0:
        return None, None, None, 0
    mean = float(v[have].mean())
    if n < max(2, min_n) or idx.shape[0] == 0:
        return mean, None, None, n
    sample = v[idx]
    if have.all():
        means = sample.mean(axis=1)
    else:  # a resample of prompts the method has no value on has no mean
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(sample, axis=1)
    means = means[np.isfinite(means)]
    if not len(means):
        return mean, None, None, n
    a = (1 - level) / 2
    return mean, float(np.quantile(means, a)), float(np.quantile(means, 1 - a)), n


def interpolate_curve(steps: Sequence[float], values: Sequence[float | None], grid: Sequence[float]) -> list[float | None]:
    """A curve given at ``steps`` (fractions of tokens) read at ``grid`` (linear in between)."""
    pts = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None and math.isfinite(v)]
    if len(pts) < 2:
        return [None] * len(grid)
    xs = np.array([p[0] for p in pts], dtype=np.float64)
    ys = np.array([p[1] for p in pts], dtype=np.float64)
    return [float(np.interp(g, xs, ys)) if xs[0] - 1e-9 <= g <= xs[-1] + 1e-9 else None for g in grid]
