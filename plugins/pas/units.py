"""PAS over a coarse unit: the attribution score of replacing a whole word, sentence or span at once.

For a unit U = x_k..x_{k+L−1} and a filler w ∈ V^L (the unit replaced by w; methods docs, "Coarse
units"):

* ℓ_q(w) = log P(w | x_{<k}), ℓ_den(w) = log P(w, x_{≥k+L} | x_{<k}), ℓ_num(w) = ℓ_den(w) + log P(y | x^(w));
* π_U = softmax ℓ_den is the prior of the unit given the rest of the prompt, ρ_U = softmax ℓ_num the
  posterior given the response as well, and AS_U = log ρ_U(x_U) − log π_U(x_U)
  = log P(y|x) − log E_{w∼π_U} P(y | x^(w)), exactly the token score with V replaced by V^L
  (a 1-token unit is the token score).

``exact`` mode enumerates all V^L fillers (only when V^L ≤ :data:`MAX_ENUMERATION`). ``fast`` mode
draws ``unit_samples`` fillers from q(w) = P(w | x_{<k}) (the model's own left-to-right proposal),
rejecting the original, and weights each distinct filler by count·(1 − q(x_U))/(draws·q(w)): with
the original (weight 1) that is an unbiased estimate of both sums Σ_w e^{ℓ_den(w)} and
Σ_w e^{ℓ_num(w)}, and AS_U is their plug-in ratio (consistent; no interval is claimed).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from reportgen_plugins.pas.estimators import FloatArray

if TYPE_CHECKING:
    from reportgen_plugins.pas.engine import PrefixScorer

#: Exact mode enumerates the fillers of a multi-token unit only up to this many (V^L).
MAX_ENUMERATION = 1 << 16
#: Fast mode: at most this many draws per requested filler (originals are rejected).
MAX_DRAWS_PER_FILLER = 8

UnitEstimate = Literal["exact", "sampled"]


@dataclass(frozen=True)
class UnitSupport:
    """Fillers of one unit with their ℓ values (column 0 ℓ_den, then ℓ^(1..t)) and log weights."""

    fillers: npt.NDArray[np.int64]  # (m, L); row 0 is the original
    l_cum: FloatArray  # (m, t+1)
    logw: FloatArray | None
    estimate: UnitEstimate
    draws: int  # fast mode: draws taken (originals included)


def exact_unit(scorer: PrefixScorer, k: int, length: int, vocab: npt.NDArray[np.int64], batch_size: int | None) -> UnitSupport:
    """Every filler in vocab^L (the original first)."""
    if len(vocab) ** length > MAX_ENUMERATION:
        raise ValueError(
            f"probabilistic: exact mode would enumerate {len(vocab)}^{length} fillers for a {length}-token unit "
            f"(at most {MAX_ENUMERATION}); use mode: fast for coarse units"
        )
    orig = tuple(scorer.x[k : k + length])
    rest = [w for w in itertools.product(vocab.tolist(), repeat=length) if w != orig]
    fillers = np.array([orig, *rest], dtype=np.int64)
    l_all = scorer.score_fillers(k, fillers, batch_size)
    return UnitSupport(fillers, l_all[:, 1:], None, "exact", 0)


def sampled_unit(scorer: PrefixScorer, k: int, length: int, samples: int, rng: np.random.Generator, batch_size: int | None) -> UnitSupport:
    """The original plus ``samples`` non-original draws from q (importance weights as in the module doc)."""
    orig = np.array(scorer.x[k : k + length], dtype=np.int64)
    kept: list[npt.NDArray[np.int64]] = []
    draws = 0
    while sum(len(b) for b in kept) < samples and draws < MAX_DRAWS_PER_FILLER * samples:
        block = scorer.sample_fillers(k, length, samples, rng)
        draws += len(block)
        kept.append(block[~np.all(block == orig, axis=1)])
    taken = np.concatenate(kept)[:samples] if kept else np.empty((0, length), dtype=np.int64)
    uniq, counts = np.unique(taken, axis=0, return_counts=True)
    fillers = np.concatenate([orig[None, :], uniq])
    l_all = scorer.score_fillers(k, fillers, batch_size)
    log_q_orig = float(l_all[0, 0])
    logw = np.zeros(len(fillers))
    if len(taken):
        log_rest = math.log(-math.expm1(min(log_q_orig, -1e-300)))  # log(1 − q(x_U))
        logw[1:] = np.log(counts) - math.log(len(taken)) + log_rest - l_all[1:, 0]
    return UnitSupport(fillers, l_all[:, 1:], logw, "sampled", draws)
