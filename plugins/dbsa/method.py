"""DBSA: distribution-based sensitivity analysis (Rauba, Wei, van der Schaar; methods.md §3).

Black-box: only sampled responses are used, so it runs on open models (through the host's
:class:`~reportgen.generate.LocalSampler`) and on ``openai:`` models alike.

For every unit (a word occurrence, or a user-content token of an open model; :mod:`.units`):

1. draw N responses to the original prompt (the baseline, shared by every comparison) and N
   responses to each of M perturbed prompts, the unit replaced by one of its M neighbours
   (:mod:`.neighbours`; every draw cached, :mod:`.sampling`);
2. embed each response with all-MiniLM-L6-v2 (unit norm) and compute the V-statistic energy
   distance E with cosine distance between baseline and perturbed responses
   (= ‖mean X − mean Y‖², :mod:`.stats`);
3. permutation p-value with B relabellings and the +1 correction, p = (1 + #{E_b ≥ E})/(B + 1);
4. effect = mean E over the neighbours; the neighbours' p-values are combined
   (``fisher`` by default; it assumes independence, and the neighbours share the baseline
   sample, so it is anti-conservative; ``mean`` (2·mean p) and ``min_bonferroni`` are
   valid under any dependence); Benjamini–Hochberg across units gives q.

With N = 3 (the paper's default) p ≥ 0.1 always (only C(6,3) = 20 splits, E symmetric):
``samples`` below 10 are allowed but flagged in the payload's ``warnings``.
The result's ``details`` is a :class:`~.payload.DbsaPayload`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from reportgen.data import AttributionResult
from reportgen.errors import SamplerError
from reportgen.plugin_api import AttributionContext, AttributionMethod, LoadedModel, Sampler
from reportgen_plugins.dbsa.embeddings import MINILM_NAME, embed_minilm
from reportgen_plugins.dbsa.neighbours import assign_neighbours
from reportgen_plugins.dbsa.options import DBSAOptions
from reportgen_plugins.dbsa.payload import METHOD, DbsaPayload, Examples, NeighbourTest, UnitKind, UnitResult, finite
from reportgen_plugins.dbsa.sampling import Prompt, count_uncached, derive_seed, draw_samples, requests_left
from reportgen_plugins.dbsa.stats import benjamini_hochberg, combine_pvalues, permutation_test
from reportgen_plugins.dbsa.units import Target, Unit, units_for

MATRIX_LABEL = "energy distance of the response distribution (response-level, same for every output token)"

Embedder = Callable[[list[str]], NDArray[np.float64]]


@dataclass(frozen=True)
class Draw:
    """One prompt to sample N responses from: the baseline (``unit`` None) or a unit's k-th neighbour."""

    prompt: Prompt
    seed: int
    unit: int | None = None
    neighbour: int = 0


def plan_draws(units: list[Unit], target: Target, seed: int) -> list[Draw]:
    draws = [Draw(target.baseline(), derive_seed(seed, "dbsa-baseline"))]
    for ui, u in enumerate(units):
        if u.skipped:
            continue
        for k, alt in enumerate(u.neighbours):
            draws.append(Draw(target.perturbed(u, k), derive_seed(seed, "dbsa", ui, u.positions, alt), ui, k))
    return draws


def _check_cap(draws: list[Draw], sampler: Sampler, opts: DBSAOptions, max_new: int, ctx: AttributionContext) -> None:
    """Refuse before any draw when the uncached draws exceed ``max_requests`` or the sampler's budget."""
    N = opts.samples
    caps = [c for c in (opts.max_requests, requests_left(sampler)) if c is not None]
    if not caps:
        return
    uncached = count_uncached(
        sampler, [(d.prompt, d.seed) for d in draws], N, max_new_tokens=max_new, temperature=opts.temperature, cache=ctx.cache
    )
    if uncached > min(caps):
        raise SamplerError(
            f"dbsa needs {uncached} more draws ({len(draws)} prompts: 1 baseline + {len(draws) - 1} perturbations, "
            f"× {N} samples, {N * len(draws) - uncached} cached) but the cap allows {min(caps)}: raise max_requests "
            "or lower samples/neighbours"
        )


def _embed_groups(embed: Embedder, responses: list[list[str]]) -> list[NDArray[np.float64]]:
    """One embedding matrix per draw; empty responses are dropped, as in the DBSA code."""
    flat = [r for rs in responses for r in rs if r.strip()]
    vecs = embed(flat) if flat else np.zeros((0, 1))
    out: list[NDArray[np.float64]] = []
    c = 0
    for rs in responses:
        k = sum(1 for r in rs if r.strip())
        out.append(np.asarray(vecs[c : c + k], dtype=np.float64))
        c += k
    return out


def _neighbour_tests(
    draws: list[Draw], embs: list[NDArray[np.float64]], units: list[Unit], opts: DBSAOptions
) -> dict[int, list[tuple[NeighbourTest, int]]]:
    """Per unit: each neighbour's energy distance and permutation p-value against the baseline, with its draw index."""
    base = embs[0]
    out: dict[int, list[tuple[NeighbourTest, int]]] = {}
    for di, d in enumerate(draws[1:], start=1):
        assert d.unit is not None
        y = embs[di]
        e: float | None = None
        p: float | None = None
        if len(base) and len(y):
            e, p = permutation_test(base, y, permutations=opts.permutations, rng=np.random.default_rng(d.seed), metric=opts.metric)
        test = NeighbourTest(units[d.unit].neighbours[d.neighbour], finite(e), finite(p), opts.samples - len(y))
        out.setdefault(d.unit, []).append((test, di))
    return out


def _warnings(opts: DBSAOptions) -> tuple[str, ...]:
    N = opts.samples
    out: list[str] = []
    if N < 10:
        out.append(
            f"samples={N} < 10: with few samples the permutation test has few distinct splits "
            f"(C({2 * N},{N}) = {math.comb(2 * N, N)}); with N=3, p ≥ 0.1 always, so small q-values may be impossible"
        )
    if opts.combine == "fisher" and opts.neighbours > 1:
        out.append(
            "fisher combination assumes independent tests; the neighbours share the baseline sample, so combined p-values are optimistic"
        )
    return tuple(out)


def _unit_results(
    units: list[Unit], tests: dict[int, list[tuple[NeighbourTest, int]]], responses: list[list[str]], opts: DBSAOptions
) -> tuple[UnitResult, ...]:
    """Effect (mean E), combined p, BH q across units, and example responses for significant units."""
    effects = np.full(len(units), np.nan)
    pvals = np.full(len(units), np.nan)
    for ui, rows in tests.items():
        es = [t.energy for t, _ in rows if t.energy is not None]
        effects[ui] = float(np.mean(es)) if es else np.nan
        pvals[ui] = combine_pvalues([t.p_value for t, _ in rows], opts.combine)
    qvals = benjamini_hochberg(pvals)
    out: list[UnitResult] = []
    for ui, u in enumerate(units):
        rows = tests.get(ui, [])
        q = finite(float(qvals[ui]))
        significant = q is not None and q < opts.alpha
        examples = None
        if significant and opts.examples and rows:
            best, di = max(rows, key=lambda r: r[0].energy if r[0].energy is not None else -1.0)
            examples = Examples(best.text, tuple(responses[0][: opts.examples]), tuple(responses[di][: opts.examples]))
        out.append(
            UnitResult(
                text=u.text,
                kind=u.kind,
                positions=u.positions,
                neighbours=tuple(t for t, _ in rows),
                effect=finite(float(effects[ui])),
                p_value=finite(float(pvals[ui])),
                q_value=q,
                significant=significant,
                skipped=u.skipped,
                examples=examples,
            )
        )
    return tuple(out)


def score_vectors(units: tuple[UnitResult, ...], n: int) -> dict[str, list[float | None]]:
    """Effect, p and q per input token; a token inside two units keeps the one with the larger effect."""
    eff: list[float | None] = [None] * n
    p: list[float | None] = [None] * n
    q: list[float | None] = [None] * n
    for u in units:
        if u.effect is None:
            continue
        for pos in u.positions:
            cur = eff[pos]
            if cur is None or u.effect > cur:
                eff[pos], p[pos], q[pos] = u.effect, u.p_value, u.q_value
    return {"effect_size": eff, "p_value": p, "q_value": q}


def _cache_dir(ctx: AttributionContext) -> str:
    root = ctx.cache.root
    return str(root if root is not None else Path(os.environ.get("REPORTGEN_CACHE", Path.home() / ".cache" / "reportgen")))


def _unit_kind(unit: str, open_weights: bool) -> UnitKind:
    """Tokens only for open models (``auto`` or ``token``); API pseudo-tokens are words; sentences and spans on both."""
    if unit in ("sentence", "spans"):
        return "sentence" if unit == "sentence" else "span"
    return "token" if open_weights and unit in ("auto", "token") else "word"


class DBSA(AttributionMethod):
    name = METHOD
    description = (
        "Distribution-based sensitivity analysis: energy distance between sampled response distributions "
        "under neighbour substitution, permutation p-values, BH q-values (black-box)"
    )
    options_model = DBSAOptions
    requires = "sampler"

    def __init__(self, embed: Embedder | None = None) -> None:
        self.embed: Embedder = embed or embed_minilm

    def unavailable_reason(self, model: LoadedModel) -> str | None:
        if model.sampler is None:
            return f"dbsa needs a sampler; {model.source} has none"
        return None

    def attribute(self, ctx: AttributionContext) -> AttributionResult:
        t_start = time.perf_counter()
        opts: DBSAOptions = ctx.options
        loaded, gen = ctx.model, ctx.generation
        sampler = loaded.sampler
        assert sampler is not None
        kind = _unit_kind(opts.unit, loaded.open_weights)
        N = opts.samples
        max_new = opts.max_new_tokens or int(ctx.generation_settings.get("max_new_tokens") or gen.settings.get("max_new_tokens") or 20)
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        raw_units, target = units_for(loaded, gen, kind, opts.spans)
        units = assign_neighbours(raw_units, loaded, opts, _cache_dir(ctx))
        timings["neighbours"] = time.perf_counter() - t0

        draws = plan_draws(units, target, ctx.seed)
        _check_cap(draws, sampler, opts, max_new, ctx)

        t0 = time.perf_counter()
        responses: list[list[str]] = []
        drawn = 0
        for di, d in enumerate(draws):
            out, fresh = draw_samples(
                sampler, d.prompt, N, seed=d.seed, max_new_tokens=max_new, temperature=opts.temperature, cache=ctx.cache
            )
            responses.append(out)
            drawn += fresh
            ctx.progress(di + 1, len(draws) + 1)
        timings["sampling"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        embs = _embed_groups(self.embed, responses)
        timings["embedding"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        results = _unit_results(units, _neighbour_tests(draws, embs, units, opts), responses, opts)
        timings["tests"] = time.perf_counter() - t0
        ctx.progress(len(draws) + 1, len(draws) + 1)

        payload = DbsaPayload(
            unit=kind,
            units=results,
            samples=N,
            permutations=opts.permutations,
            neighbours_per_unit=opts.neighbours,
            combine=opts.combine,
            metric=opts.metric,
            temperature=opts.temperature,
            max_new_tokens=max_new,
            alpha=opts.alpha,
            baseline_examples=tuple(responses[0][: max(opts.examples, 1)]),
            draws_total=N * len(draws),
            draws_now=drawn,
            embedding_model=MINILM_NAME if self.embed is embed_minilm else getattr(self.embed, "__name__", "custom"),
            sampler=sampler.describe(),
            warnings=_warnings(opts),
        )
        scores = score_vectors(results, gen.n)
        matrix = np.full((gen.n, gen.t), np.nan)
        for pos, e in enumerate(scores["effect_size"]):
            if e is not None:
                matrix[pos, :] = e
        timings["total"] = time.perf_counter() - t_start
        return AttributionResult.for_generation(
            gen,
            METHOD,
            opts,
            matrix=matrix,
            matrix_label=MATRIX_LABEL,
            signed=False,
            scores=scores,
            details=payload.to_json(),
            timings=timings,
            label=ctx.label,
        )
