"""Probabilistic Attribution Score (PAS, seed 003; methods.md §1) as a reportgen method.

For every scored prompt position k of the stored generation (x = the full model input, chat
template included; y = the stored response), over the vocabulary V:

* π_k = softmax_v ℓ_den(v), the prior of the token at k given the rest of the prompt;
* ρ_k = softmax_v ℓ_num(v), the posterior given the response as well;
* AS_k = log P(y|x) − log Σ_v π_k(v) P(y|x^(v)) = log ρ_k(x_k) − log π_k(x_k);
* H(π_k), H(ρ_k) (nats), KL(ρ‖π), KL(π‖ρ), the top candidates under π_k and ρ_k;
* the matrix A[k, j] = log ρ_k^(j)(x_k) − log ρ_k^(j−1)(x_k) (ρ^(0) = π), whose rows
  telescope to AS_k exactly;
* optionally the replacement entropy and the share of candidates that regenerate the
  original response (methods.md §1.3).

Two modes:

``exact``: every v in V is evaluated, one teacher-forced forward per candidate batch on top of
the shared prefix cache (see ``engine``). n·V·(n−k+t) token-forwards: minutes per
position on a CPU for a 49k vocabulary, seconds on a GPU.

``fast`` (default): certified truncation (methods.md §1.5(c)). u(v) = P(v|x_{<k})·P(x_{k+1}|x_{<k},v)
(for k = n−1, or outside the one-step pool, u(v) = P(v|x_{<k})) bounds exp ℓ_den(v) ≥ exp ℓ_num(v).
The one-step factor costs a one-token forward per candidate, so it is computed for a pool of the
top candidates by prior (``bound_pool``); with ``adaptive`` it starts empty and, once S is evaluated,
grows (256, 512, …) for as long as that can narrow the interval enough to show a clearly negative AS
(``estimators.pool_growth_pays``).
The original token, its ``neighbours`` nearest input-embedding neighbours and then the top
candidates by u form the evaluation order; the set S is evaluated exactly, growing in batches until the den and num tail
bounds are below ``tolerance`` or ``max_candidates`` is reached; AS then lies in a certified
interval (``estimators.certified_as_interval``). When that interval is wider than
2·``tolerance`` (typical: the numerator's tail bound is loose, because every term is smaller
than its bound by about P(y|x)):

* a tail of at most ``tail_samples`` candidates is evaluated whole, and AS is exact;
* otherwise the tail v ∉ S is importance-sampled, i.i.d. draws from q ∝ u, in blocks (8, 16, …
  distinct candidates, up to ``tail_samples``; a repeated draw costs no evaluation, up to
  ``MAX_DRAWS_PER_SAMPLE``·``tail_samples`` draws). Each draw's ratios e_den(v)/u(v) and
  e_num(v)/u(v) lie in [0, 1], which is all the confidence interval uses
  (``estimators.betting_as_interval``: a test-by-betting confidence sequence on the ratio
  N/D = e^{c − AS}, valid whatever the unevaluated values are and at any stopping time).
  Sampling stops early when the interval is at most 2·``tolerance`` wide, or when, projected to
  the largest sample the budget allows, it could not halve the certified interval (futility).
  The estimate and its 95 % interval are reported (kind ``estimate``) only when the interval is
  at most half as wide as the certified one; otherwise the position is reported as ``certified``
  with the certified interval. An estimate interval is never of zero width.

The point estimate is the importance-weighted sum (S with weight 1, each distinct draw with
weight count/(draws·q(v))), unbiased for both tail sums at a fixed number of draws (the adaptive
stop adds a bias far below its sampling error in tests/test_probabilistic.py). Each position says
which kind it got in ``PasPayload.interval_kind``; ``PasPayload.certified_interval`` always holds
the certified interval. In fast mode the entropies, KLs and the A matrix are computed over the
same weighted support (S exactly, plus the weighted tail sample when there is one).

Why not a bootstrap or a normal interval of the draws: on the coverage study
(benchmarks/bench_pas_coverage.py) the unevaluated ratios vary over many orders of magnitude,
so a few rarely drawn candidates can carry most of a tail sum; intervals built from the spread of
the draws seen then covered the exact AS only 60–86 % of the time. The betting interval pays for
its guarantee with width: it is reported only where it is informative, and otherwise the
certified bounds are.

Position 0 is never scored: a causal model gives no distribution for the first token.
Natural next-token distributions are used (no EOS renormalisation; the paper's code
renormalised without EOS because it forced ``min_new_tokens``, while our stored response
may end with EOS).

Everything beyond scores, matrix and intervals (candidates, interval kinds, replacement counts,
...) is handed to the detectors and views as a :class:`~reportgen_plugins.pas.payload.PasPayload`
in ``AttributionResult.details``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field, model_validator

from reportgen.cache import content_key
from reportgen.data import AttributionResult, Generation
from reportgen.generate import no_grad
from reportgen.plugin_api import AttributionContext, AttributionMethod, Options
from reportgen.prompt_units import PromptUnit, SpanSpec, UnitsKind, check_spans, prompt_units
from reportgen_plugins.pas.estimators import (
    FloatArray,
    PositionStats,
    betting_as_interval,
    certified_as_interval,
    logsumexp,
    nucleus,
    pool_growth_pays,
    position_stats,
    response_entropy,
)
from reportgen_plugins.pas.payload import (
    Candidate,
    CandidateLists,
    IntervalKind,
    PasPayload,
    ReplacementStats,
    ResponseSample,
)
from reportgen_plugins.pas.units import UnitSupport, exact_unit, sampled_unit

if TYPE_CHECKING:
    from reportgen_plugins.pas.engine import PrefixScorer

IntArray = npt.NDArray[np.int64]
#: Fast mode: at most this many tail draws per allowed distinct tail evaluation (repeats are free).
MAX_DRAWS_PER_SAMPLE = 64
#: Fast mode: the first look at the tail sample is after this many distinct candidates (then doubling).
FIRST_BLOCK = 8
#: Fast mode: an estimate is reported only when its interval is at most this share of the certified one.
HONEST_FRACTION = 0.5
#: Fast mode, ``bound_pool: adaptive``: the first pool where one pays (then doubling up to ``bound_pool_max``).
FIRST_POOL = 256
MATRIX_LABEL = "Δ log posterior of the prompt token per response token (nats)"
#: The scores every scored position gets (from :func:`position_stats`), in results.json order.
STAT_SCORES = (
    "attribution_score",
    "entropy_prompt",
    "entropy_prompt_response",
    "kl_posterior_prior",
    "kl_prior_posterior",
    "log_prior_original",
    "log_posterior_original",
)


class PASOptions(Options):
    """Options of the ``probabilistic`` method."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    mode: Literal["exact", "fast"] = "fast"
    """``exact`` evaluates every vocabulary item; ``fast`` evaluates a top set with a certified
    (or, when that is loose, an importance-sampled) interval on AS."""
    tolerance: float = Field(0.01, gt=0)
    """Fast mode: stop growing S when both tail bounds are below this (nats); the AS interval is
    reported as certified when its width is at most twice this."""
    max_candidates: int = Field(64, ge=1)
    """Fast mode: at most this many top candidates per position are evaluated exactly."""
    tail_samples: int = Field(32, ge=0)
    """Fast mode: when the certified interval is loose, at most this many distinct candidates beyond the top
    set are evaluated: the whole rest of the vocabulary when it is that small (AS is then exact), otherwise a
    random sample of it for an estimate with a 95 % confidence interval (0 = never)."""
    bound_pool: int | Literal["auto", "all", "adaptive"] = "auto"
    """Fast mode: for how many top-prior candidates the one-step bound P(v|x_<k)·P(x_k+1|x_<k,v) is
    computed (the rest use P(v|x_<k)). ``all`` = the whole vocabulary (one batched one-token step,
    as methods.md §1.5c); ``auto`` = ``all`` on a GPU, 0 on a CPU (where a one-token step over 49k
    candidates takes minutes); ``adaptive`` = none while the top set is chosen and evaluated, then the
    top 256, 512, … (up to ``bound_pool_max``) for as long as that narrows the certified interval and
    its upper end could fall below −``bound_target`` (``estimators.pool_growth_pays``): the one-step
    bounds are spent where they can show that the response makes a token clearly less likely, not on
    every token."""
    bound_pool_max: int = Field(4096, ge=1)
    """Fast mode, ``bound_pool: adaptive``: the largest pool."""
    bound_target: float = Field(0.5, ge=0)
    """Fast mode, ``bound_pool: adaptive``: grow the pool only where the AS interval's upper end could
    still fall below −``bound_target`` nats (default: the ``preferred_replacement`` detector's default
    threshold, so the bounds go where they can turn its 'uncertain' note into a finding)."""
    neighbours: int = Field(16, ge=0)
    """Fast mode: also evaluate this many nearest neighbours of the original token in the model's
    input-embedding space (cosine; within ``max_candidates``). They are the candidates most likely to
    explain the rest of the prompt as well as x_k does (case and leading-space variants) while having a
    small next-token prior, i.e. the tail terms an importance sample with q ∝ u is likely to miss."""
    batch_size: int | None = Field(None, ge=1)
    """Candidates per forward; default computed from free memory and sequence length."""
    positions: Literal["user", "all"] | list[int] = "user"
    """Scored positions: user content (input_special False), all, or explicit indices (0 is skipped)."""
    vocabulary: Literal["full", "no_special"] = "full"
    """Candidate vocabulary; ``no_special`` drops the tokenizer's special tokens (the original
    token is always kept)."""
    top_candidates: int = Field(5, ge=0)
    """How many top candidates under π_k and ρ_k to list per position."""
    replacement_entropy: bool = False
    """Also regenerate with each nucleus candidate substituted (costly; methods.md §1.3). Responses are
    regenerated greedily with the stored generation's ``max_new_tokens`` (cut after the first EOS) and
    cached in ``ctx.cache``; a response counts as the original when its token ids equal the stored ones."""
    replacement_top_p: float = Field(0.9, gt=0, le=1)
    """Nucleus mass of the candidate set for the replacement entropy."""
    replacement_max_candidates: int = Field(16, ge=1)
    """At most this many candidates per position are regenerated."""
    replacement_posterior: Literal["prior", "posterior"] = "prior"
    """Take the nucleus of π_k (``prior``, the paper's P_I_PERC files) or of ρ_k (``posterior``)."""
    units: UnitsKind = "token"
    """What is replaced at once: a token, or a whole ``word``, ``sentence`` or named ``spans`` of the user
    content. A unit's score AS_U = log ρ_U(x_U) − log π_U(x_U) is the token score with the unit's fillers
    V^L in place of V; every token of the unit shows the unit's score (see the methods docs)."""
    spans: list[SpanSpec] = Field(default_factory=list)
    """``units: spans``: substrings of the prompt (every occurrence in user content) or [start, end)
    character ranges of the prompt text; tokens outside every span are not scored."""
    unit_samples: int = Field(64, ge=1)
    """Fast mode, units of 2+ tokens: fillers drawn from the model's left-to-right proposal P(w | x_<k)."""

    @model_validator(mode="after")
    def _coarse_units(self) -> PASOptions:
        check_spans(self.units, self.spans)
        if self.units != "token" and self.positions != "user":
            raise ValueError(f"units: {self.units} scores the units of the user content; leave positions at 'user'")
        if self.units != "token" and self.replacement_entropy:
            raise ValueError("replacement_entropy is computed per token; it needs units: token")
        return self


@dataclass(frozen=True)
class Support:
    """The candidates evaluated at one position: their ℓ values, weights and the AS interval."""

    ids: IntArray  # vocabulary ids, one per row of l_cum
    l_cum: FloatArray  # (m, t+1): ℓ_den, then ℓ^(1..t)
    logw: FloatArray | None  # log weights (None: all ones)
    kind: IntervalKind
    evaluated: int  # candidates evaluated exactly (tail draws included)
    interval: tuple[float, float] | None = None  # AS interval (fast mode)
    certified: tuple[float, float] | None = None  # certified AS interval (fast mode)


class ProbabilisticMethod(AttributionMethod):
    """PAS: how much the response raises the posterior of each prompt token (seed 003)."""

    name = "probabilistic"
    description = (
        "Probabilistic Attribution Score: log posterior/prior ratio of each prompt token given the "
        "response, with contextual entropies, KL and replacement entropy (exact or certified fast mode); with "
        "units word/sentence/spans, AS_U = log ρ_U(x_U) − log π_U(x_U) of replacing the whole unit by any filler "
        "of its length, shown on every token of the unit"
    )
    options_model = PASOptions
    requires = "weights"

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def vocabulary_ids(tokenizer: Any, logits_size: int, which: str) -> IntArray:
        """Candidate ids: the tokenizer's vocabulary (within the output layer), optionally without specials."""
        size = logits_size
        if tokenizer is not None:
            with contextlib.suppress(TypeError):
                size = min(size, len(tokenizer))
        ids = np.arange(size, dtype=np.int64)
        if which == "no_special" and tokenizer is not None:
            special = set(getattr(tokenizer, "all_special_ids", []) or [])
            added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
            special |= {int(i) for i, tok in added.items() if getattr(tok, "special", False)}
            ids = np.array([i for i in ids if i not in special], dtype=np.int64)
        return ids

    @staticmethod
    def scored_positions(gen: Generation, which: Literal["user", "all"] | list[int]) -> tuple[list[int], dict[int, str]]:
        skipped: dict[int, str] = {}
        if which == "user":
            pos = gen.user_positions
        elif which == "all":
            pos = list(range(gen.n))
        else:
            pos = sorted({int(p) for p in which})
            for p in pos:
                if not 0 <= p < gen.n:
                    raise ValueError(f"probabilistic: position {p} is outside the input (n = {gen.n})")
        if 0 in pos:
            skipped[0] = "position 0 has no preceding token, so its prior P(x_0) is undefined"
            pos = [p for p in pos if p != 0]
        return pos, skipped

    # ------------------------------------------------------------------ one position
    @staticmethod
    def _exact(scorer: PrefixScorer, k: int, vocab: IntArray, bs: int | None) -> Support:
        return Support(ids=vocab, l_cum=scorer.score(k, vocab, bs), logw=None, kind="exact", evaluated=len(vocab))

    def _fast(
        self,
        scorer: PrefixScorer,
        k: int,
        vocab: IntArray,
        opts: PASOptions,
        rng: np.random.Generator,
        timings: dict[str, float],
    ) -> Support:
        orig = scorer.x[k]
        logu = scorer.prior_logp(k)[vocab].astype(np.float64)
        by_prior = np.argsort(-logu, kind="stable")
        n_pool, pool_max = _pool_sizes(opts.bound_pool, opts.bound_pool_max, scorer.device.type, len(vocab))
        if k == scorer.n - 1:  # no next prompt token: the prior is the bound
            n_pool = pool_max = 0
        bounded = np.zeros(len(vocab), dtype=bool)
        _add_bounds(scorer, k, vocab, logu, bounded, by_prior[:n_pool], opts.batch_size, timings)
        order = np.argsort(-logu, kind="stable")
        o_idx = int(np.nonzero(vocab == orig)[0][0])
        first = [o_idx]
        if opts.neighbours > 0:
            sim = np.nan_to_num(scorer.embedding_similarity(orig, vocab), nan=-2.0)
            near = [int(i) for i in np.argsort(-sim, kind="stable") if int(i) != o_idx]
            first += near[: opts.neighbours]
        mask = np.ones(len(vocab), dtype=bool)
        mask[first] = False
        order = np.concatenate([np.array(first, dtype=np.int64), order[mask[order]]])
        cap = min(opts.max_candidates, len(vocab))
        bs = opts.batch_size or scorer.default_batch_size(k)
        step = max(1, min(bs, cap))
        done = 0
        rows: list[FloatArray] = []
        d_s = n_s = log_tail = -math.inf
        while done < cap:
            take = order[done : min(done + step, cap)]
            rows.append(scorer.score(k, vocab[take], bs))
            done += len(take)
            l_cum = np.concatenate(rows)
            d_s = float(logsumexp(l_cum[:, 0]))
            n_s = float(logsumexp(l_cum[:, -1]))
            rest = order[done:]
            log_tail = float(logsumexp(logu[rest])) if len(rest) else -math.inf
            den_w = math.log1p(math.exp(min(log_tail - d_s, 700.0))) if len(rest) else 0.0
            num_w = math.log1p(math.exp(min(log_tail - n_s, 700.0))) if len(rest) else 0.0
            if den_w <= opts.tolerance and num_w <= opts.tolerance:
                break
        l_cum = np.concatenate(rows)
        s_idx = order[:done]
        rest = order[done:]
        as_top = float(l_cum[0, -1] - l_cum[0, 0]) + d_s - n_s
        while n_pool < pool_max and pool_growth_pays(
            as_top, d_s, _lse(logu[rest[bounded[rest]]]), _lse(logu[rest[~bounded[rest]]]), opts.tolerance, opts.bound_target
        ):
            grown = min(max(FIRST_POOL, 2 * n_pool), pool_max)
            new = by_prior[n_pool:grown]
            _add_bounds(scorer, k, vocab, logu, bounded, new[~np.isin(new, s_idx)], opts.batch_size, timings)
            n_pool = grown
            log_tail = _lse(logu[rest])
        c = float(l_cum[0, -1] - l_cum[0, 0])
        cert = certified_as_interval(c, d_s, n_s, log_tail)
        tail = order[done:]
        if len(tail) == 0:  # S is the whole vocabulary: AS is exact
            return Support(ids=vocab[s_idx], l_cum=l_cum, logw=None, kind="exact", evaluated=done, certified=cert)
        if cert[1] - cert[0] <= 2 * opts.tolerance or opts.tail_samples == 0:
            return Support(ids=vocab[s_idx], l_cum=l_cum, logw=None, kind="certified", evaluated=done, interval=cert, certified=cert)
        if len(tail) <= opts.tail_samples:  # the whole tail fits the sampling budget: evaluate it, AS is exact
            l_all = np.concatenate([l_cum, scorer.score(k, vocab[tail], bs)])
            return Support(ids=vocab[order], l_cum=l_all, logw=None, kind="exact", evaluated=len(order), certified=cert)
        return self._sample_tail(scorer, k, vocab, s_idx, l_cum, tail, logu, cert, opts, rng, bs, timings)

    @staticmethod
    def _sample_tail(
        scorer: PrefixScorer,
        k: int,
        vocab: IntArray,
        s_idx: IntArray,
        l_cum: FloatArray,
        tail: IntArray,
        logu: FloatArray,
        cert: tuple[float, float],
        opts: PASOptions,
        rng: np.random.Generator,
        bs: int,
        timings: dict[str, float],
    ) -> Support:
        """Importance-sample the tail (q ∝ u, i.i.d. draws) and put an anytime-valid 95 % interval on AS.

        Draws are taken in doubling blocks; only draws of candidates not seen before cost a model
        evaluation, so repeated draws of a heavy candidate are free. Sampling stops when the interval
        is at most 2·``tolerance`` wide, when ``tail_samples`` distinct candidates have been evaluated,
        or after ``MAX_DRAWS_PER_SAMPLE``·``tail_samples`` draws. The interval
        (:func:`~reportgen_plugins.pas.estimators.betting_as_interval`) holds at any stopping time.
        When it does not at least halve the certified interval, the certified interval is reported.
        """
        d_s = float(logsumexp(l_cum[:, 0]))
        n_s = float(logsumexp(l_cum[:, -1]))
        c = float(l_cum[0, -1] - l_cum[0, 0])
        log_tail = float(logsumexp(logu[tail]))
        logq = logu[tail] - log_tail
        q = np.exp(logq - logsumexp(logq))
        max_draws = MAX_DRAWS_PER_SAMPLE * opts.tail_samples
        draws = rng.choice(len(tail), size=max_draws, replace=True, p=q)
        uniq, first = np.unique(draws, return_index=True)
        by_first = np.argsort(first, kind="stable")
        uniq, first = uniq[by_first], first[by_first]  # distinct tail indices in order of first draw

        def stop_before(distinct: int) -> int:
            """Draws taken before the (distinct + 1)-th distinct candidate would need an evaluation."""
            return int(first[distinct]) if len(uniq) > distinct else max_draws

        n_max = stop_before(opts.tail_samples)
        checks = sorted({stop_before(FIRST_BLOCK << i) for i in range(32) if FIRST_BLOCK << i < opts.tail_samples} | {n_max})
        cert_w = cert[1] - cert[0]
        rows: dict[int, FloatArray] = {}
        ci: tuple[float, float] | None = None
        n = 0
        for n in checks:
            new = [int(j) for j in uniq[first < n] if int(j) not in rows]
            if new:
                for j, row in zip(new, scorer.score(k, vocab[tail[new]], bs), strict=True):
                    rows[j] = row
            d = draws[:n]
            l_d = np.stack([rows[int(j)] for j in d])
            r_den = np.exp(np.minimum(l_d[:, 0] - logu[tail[d]], 0.0))
            r_num = np.exp(np.minimum(l_d[:, -1] - logu[tail[d]], 0.0))
            t0 = time.perf_counter()
            ci = betting_as_interval(c, d_s, n_s, log_tail, r_den, r_num, cert)
            futile = False
            if n < n_max and not (ci is not None and ci[1] - ci[0] <= 2 * opts.tolerance):
                # futility: would n_max draws like these give an interval worth reporting?
                reps = -(-n_max // n)
                proj = betting_as_interval(c, d_s, n_s, log_tail, np.tile(r_den, reps)[:n_max], np.tile(r_num, reps)[:n_max], cert)
                futile = proj is None or proj[1] - proj[0] > HONEST_FRACTION * cert_w
            timings["tail_interval"] = timings.get("tail_interval", 0.0) + time.perf_counter() - t0
            if futile or (ci is not None and ci[1] - ci[0] <= 2 * opts.tolerance):
                break
        seen = np.array(sorted(rows), dtype=np.int64)
        counts = np.bincount(draws[:n], minlength=len(tail))[seen]
        keep = counts > 0
        seen, counts = seen[keep], counts[keep]
        logw = np.log(counts) - math.log(n) - logq[seen]
        width = None if ci is None else ci[1] - ci[0]
        honest = width is not None and 0.0 < width <= HONEST_FRACTION * cert_w
        return Support(
            ids=np.concatenate([vocab[s_idx], vocab[tail[seen]]]),
            l_cum=np.concatenate([l_cum, np.stack([rows[int(j)] for j in seen])]),
            logw=np.concatenate([np.zeros(len(s_idx)), logw]),
            kind="estimate" if honest else "certified",
            evaluated=len(s_idx) + len(rows),
            interval=ci if honest else cert,
            certified=cert,
        )

    # ------------------------------------------------------------------ coarse units
    @staticmethod
    def units_of(gen: Generation, opts: PASOptions, positions: list[int]) -> list[PromptUnit]:
        """The scored units: one per scored position (``units: token``), else the coarse units without position 0."""
        if opts.units == "token":
            return [PromptUnit(gen.input_tokens[k], (k,), 0, 0) for k in positions]
        return [u for u in prompt_units(gen.input_tokens, gen.input_special, opts.units, opts.spans) if 0 not in u.positions]

    @staticmethod
    def _unit(
        scorer: PrefixScorer,
        unit: PromptUnit,
        vocab: IntArray,
        opts: PASOptions,
        rng: np.random.Generator,
        dec: Callable[[Sequence[int]], str],
        rows: list[dict[str, Any]],
        candidates: dict[int, CandidateLists],
    ) -> PositionStats:
        """AS_U and the other statistics of a unit of 2+ tokens (:mod:`.units`); its table row and fillers."""
        k, length = unit.positions[0], len(unit.positions)
        if opts.mode == "exact":
            sup: UnitSupport = exact_unit(scorer, k, length, vocab, opts.batch_size)
        else:
            sup = sampled_unit(scorer, k, length, opts.unit_samples, rng, opts.batch_size)
        st = position_stats(sup.l_cum, 0, sup.logw)
        texts = [dec(row) for row in sup.fillers.tolist()]
        lists = CandidateLists(
            prior=_top_texts(texts, st.log_prior, opts.top_candidates),
            posterior=_top_texts(texts, st.log_posterior, opts.top_candidates),
        )
        for pos in unit.positions:
            candidates[pos] = lists
        rows.append({**_unit_row(unit, st, sup.estimate, len(sup.fillers)), "draws": sup.draws})
        return st

    # ------------------------------------------------------------------ replacement entropy
    @no_grad
    def _regenerate(self, ctx: AttributionContext, k: int, cands: list[int], max_new: int) -> list[tuple[int, ...]]:
        """Greedy responses with x_k replaced by each candidate (cached per candidate)."""
        import torch

        loaded, gen = ctx.model, ctx.generation
        model = loaded.model
        tag = [loaded.id, loaded.source, loaded.info.get("sha256"), "greedy", max_new]
        keys = []
        for v in cands:
            xv = list(gen.input_ids)
            xv[k] = int(v)
            keys.append(content_key("pas-regen-v1", tag, xv))
        found: dict[int, tuple[int, ...]] = {}
        for i, key in enumerate(keys):
            hit = ctx.cache.get("probabilistic", key)
            if hit is not None:
                found[i] = tuple(int(t) for t in hit)
        todo = [i for i in range(len(cands)) if i not in found]
        if todo:
            eos = model.generation_config.eos_token_id
            eos_set = set(eos if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else []))
            tok = loaded.tokenizer
            pad = getattr(tok, "pad_token_id", None) if tok is not None else None
            pad = pad if pad is not None else (min(eos_set) if eos_set else 0)
            rows = []
            for i in todo:
                xv = list(gen.input_ids)
                xv[k] = int(cands[i])
                rows.append(xv)
            dev = next(model.parameters()).device
            inp = torch.tensor(rows, device=dev)
            out = model.generate(
                inp,
                attention_mask=torch.ones_like(inp),
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                max_new_tokens=max_new,
                pad_token_id=pad,
            )[:, inp.shape[1] :].tolist()
            for i, row in zip(todo, out, strict=True):
                cut: list[int] = []
                for tid in row:
                    cut.append(int(tid))
                    if tid in eos_set:
                        break
                found[i] = tuple(cut)
                ctx.cache.set("probabilistic", keys[i], list(cut))
        return [found[i] for i in range(len(cands))]

    def _replacement(
        self, ctx: AttributionContext, k: int, st: PositionStats, ids: IntArray, opts: PASOptions
    ) -> tuple[ReplacementStats, float, float]:
        """Counts at position k, the replacement entropy and the original-response share (%)."""
        gen = ctx.generation
        logp = st.log_prior if opts.replacement_posterior == "prior" else st.log_posterior
        sel = nucleus(np.exp(logp), opts.replacement_top_p, opts.replacement_max_candidates)
        cands = [int(ids[i]) for i in sel]
        settings = {**(gen.settings or {}), **(ctx.generation_settings or {})}
        max_new = int(settings.get("max_new_tokens") or max(gen.t, 1))
        responses = self._regenerate(ctx, k, cands, max_new)
        dec = _decoder(ctx.model.tokenizer)
        orig_str = dec([gen.input_ids[k]])
        original = tuple(int(t) for t in gen.output_ids)
        ori_resp = sum(1 for r in responses if r == original)
        stats = ReplacementStats(
            count=len(cands),
            original_token_count=sum(1 for v in cands if dec([v]) == orig_str),
            original_response_count=ori_resp,
            distinct_responses=len(set(responses)),
            responses=tuple(ResponseSample(dec([v]), dec(r)) for v, r in list(zip(cands, responses, strict=True))[:10]),
        )
        return stats, response_entropy(responses), 100.0 * ori_resp / len(cands)

    # ------------------------------------------------------------------ main
    def attribute(self, ctx: AttributionContext) -> AttributionResult:
        from reportgen_plugins.pas.engine import PrefixScorer

        t_start = time.perf_counter()
        opts: PASOptions = ctx.options if isinstance(ctx.options, PASOptions) else PASOptions(**(ctx.options or {}))
        gen = ctx.generation
        n, t = gen.n, gen.t
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        scorer = PrefixScorer(ctx.model.model, gen.input_ids, gen.output_ids)
        timings["base_forward"] = time.perf_counter() - t0
        vocab_all = self.vocabulary_ids(ctx.model.tokenizer, scorer.vocab_logits, opts.vocabulary)
        positions, skipped = self.scored_positions(gen, opts.positions)
        units = self.units_of(gen, opts, positions)

        names = list(STAT_SCORES) + (["replacement_entropy", "original_response_pct"] if opts.replacement_entropy else [])
        scores: dict[str, list[float | None]] = {nm: [None] * n for nm in names}
        intervals: list[list[float | None] | None] = [None] * n
        matrix = np.full((n, t), np.nan)
        candidates: dict[int, CandidateLists] = {}
        kinds: dict[int, IntervalKind] = {}
        evaluated: dict[int, int] = {}
        certified: dict[int, tuple[float, float]] = {}
        replacement: dict[int, ReplacementStats] = {}
        dec = _decoder(ctx.model.tokenizer)
        unit_rows: list[dict[str, Any]] = []
        ctx.progress(0, len(units))
        for done_pos, unit in enumerate(units, start=1):
            k = unit.positions[0]
            rng = np.random.default_rng([int(ctx.seed) & 0xFFFFFFFF, k])
            t0 = time.perf_counter()
            if len(unit.positions) > 1:
                st = self._unit(scorer, unit, vocab_all, opts, rng, dec, unit_rows, candidates)
            else:
                orig = gen.input_ids[k]
                vocab = vocab_all if np.any(vocab_all == orig) else np.sort(np.append(vocab_all, orig))
                sup = (
                    self._exact(scorer, k, vocab, opts.batch_size)
                    if opts.mode == "exact"
                    else self._fast(scorer, k, vocab, opts, rng, timings)
                )
                st = position_stats(sup.l_cum, int(np.nonzero(sup.ids == orig)[0][0]), sup.logw)
                a = st.attribution_score
                lo, hi = sup.interval or (a, a)
                intervals[k] = [min(lo, a), max(hi, a)]
                kinds[k] = sup.kind
                evaluated[k] = int(sup.evaluated)
                if sup.certified is not None:
                    certified[k] = sup.certified
                candidates[k] = CandidateLists(
                    prior=_top(sup.ids, st.log_prior, opts.top_candidates, dec),
                    posterior=_top(sup.ids, st.log_posterior, opts.top_candidates, dec),
                )
                if opts.units != "token":
                    unit_rows.append(_unit_row(unit, st, kinds[k], int(sup.evaluated)))
            timings["candidates"] = timings.get("candidates", 0.0) + time.perf_counter() - t0
            for pos in unit.positions:  # every token of a unit shows the unit's scores
                for nm in STAT_SCORES:
                    scores[nm][pos] = float(getattr(st, nm))
                matrix[pos] = st.matrix_row
            if opts.replacement_entropy:
                t0 = time.perf_counter()
                replacement[k], scores["replacement_entropy"][k], scores["original_response_pct"][k] = self._replacement(
                    ctx, k, st, sup.ids, opts
                )
                timings["replacement"] = timings.get("replacement", 0.0) + time.perf_counter() - t0
            ctx.progress(done_pos, len(positions))

        payload = PasPayload(
            mode=opts.mode,
            positions=tuple(p for u in units for p in u.positions),
            log_p_response=scorer.log_p_response,
            candidates=candidates,
            interval_kind=kinds,
            evaluated_candidates=evaluated,
            vocabulary_size=len(vocab_all),
            replacement=replacement if opts.replacement_entropy else None,
            certified_interval=certified,
            skipped=skipped,
        )
        timings["seconds"] = time.perf_counter() - t_start
        details = payload.to_json()
        if opts.units != "token":
            details["units"] = {"kind": opts.units, "rows": unit_rows}
        return AttributionResult.for_generation(
            gen,
            self.name,
            opts,
            matrix=matrix,
            matrix_label=MATRIX_LABEL if opts.units == "token" else f"{MATRIX_LABEL}; per {UNIT_NAMES[opts.units]}: {UNIT_CAPTION}",
            signed=True,
            scores=scores,
            intervals={"attribution_score": intervals},
            details=details,
            timings=timings,
            label=ctx.label,
        )


def _pool_sizes(pool: int | str, pool_max: int, device: str, vocab: int) -> tuple[int, int]:
    """The first and the largest one-step bound pool of ``bound_pool`` (see :class:`PASOptions`)."""
    if pool == "adaptive":
        return 0, min(pool_max, vocab)
    if pool == "auto":
        pool = "all" if device == "cuda" else 0
    n = vocab if pool == "all" else min(int(pool), vocab)
    return n, n


def _add_bounds(
    scorer: PrefixScorer,
    k: int,
    vocab: IntArray,
    logu: FloatArray,
    bounded: npt.NDArray[np.bool_],
    idx: IntArray,
    batch_size: int | None,
    timings: dict[str, float],
) -> None:
    """Tighten u(v) = P(v|x_<k) to P(v|x_<k)·P(x_k+1|x_<k,v) for the candidates ``idx`` (in place)."""
    if len(idx) == 0:
        return
    t0 = time.perf_counter()
    logu[idx] += scorer.next_token_logp(k, vocab[idx], batch_size)
    bounded[idx] = True
    timings["bound"] = timings.get("bound", 0.0) + time.perf_counter() - t0


def _lse(a: FloatArray) -> float:
    """log Σ exp(a); −∞ for an empty array."""
    return float(logsumexp(a)) if len(a) else -math.inf


def _decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """Token ids → text (the tokenizer's, specials kept; without a tokenizer, the ids as text)."""
    if tokenizer is None:
        return lambda ids: " ".join(str(int(i)) for i in ids)
    return lambda ids: str(tokenizer.decode([int(i) for i in ids], skip_special_tokens=False))


#: How the heatmap caption names a coarse unit, and what it says about the tokens' shared score.
UNIT_NAMES = {"word": "word", "sentence": "sentence", "spans": "span"}
UNIT_CAPTION = "every token of a unit shows the unit's score (AS of replacing the whole unit)"


def _unit_row(unit: PromptUnit, st: PositionStats, estimate: str, fillers: int) -> dict[str, Any]:
    """One row of the unit-level table kept in ``details["units"]``."""
    return {
        "text": unit.text,
        "positions": list(unit.positions),
        "estimate": estimate,
        "fillers": fillers,
        "attribution_score": st.attribution_score,
        "log_prior_original": st.log_prior_original,
        "log_posterior_original": st.log_posterior_original,
        "entropy_prompt": st.entropy_prompt,
        "entropy_prompt_response": st.entropy_prompt_response,
    }


def _top_texts(texts: list[str], logp: FloatArray, top: int) -> tuple[Candidate, ...]:
    """The ``top`` most probable fillers of a unit (decoded; probabilities clipped to 1)."""
    return tuple(Candidate(token=texts[i], id=None, p=min(1.0, float(math.exp(logp[i])))) for i in np.argsort(-logp, kind="stable")[:top])


def _top(ids: IntArray, logp: FloatArray, top: int, dec: Callable[[Sequence[int]], str]) -> tuple[Candidate, ...]:
    """The ``top`` most probable candidates (probabilities clipped to 1: fast-mode estimates may exceed it)."""
    return tuple(
        Candidate(token=dec([int(ids[i])]), id=int(ids[i]), p=min(1.0, float(math.exp(logp[i]))))
        for i in np.argsort(-logp, kind="stable")[:top]
    )
