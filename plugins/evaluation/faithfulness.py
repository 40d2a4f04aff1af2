"""The ``faithfulness`` evaluator: which attribution method reflects what the model does?

For every (model, prompt) it perturbs the user's tokens (never template or special tokens) and
measures the teacher-forced log-probability of the stored response, f. Every method is scored
on the same perturbed prompts: the same random subsets for infidelity, the same operator, the
same seed. Per method and prompt it reports deletion (AOPC and NAOPC, Edin et al. 2025),
insertion, infidelity (Yeh et al. 2019, optimal scaling), comprehensiveness and sufficiency
(DeYoung et al. 2020) at k % of the user tokens, agreement between methods and concentration;
over prompts, means with paired bootstrap intervals; and one recommendation, or the reason there
is none. The metric functions are in :mod:`~reportgen_plugins.evaluation.metrics`.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from reportgen.aggregate import token_importance
from reportgen.data import (
    AgreementMatrix,
    AttributionResult,
    Estimate,
    Evaluation,
    Generation,
    MethodScore,
    MetricInfo,
    PromptMetrics,
    Recommendation,
)
from reportgen.plugin_api import (
    EvaluationContext,
    EvaluationSettings,
    Evaluator,
    LoadedModel,
    Options,
)
from reportgen_plugins.evaluation import metrics as M
from reportgen_plugins.evaluation import perturb
from reportgen_plugins.evaluation.scorer import Scorer, scorer_for

FAMILIES = ("infidelity", "deletion", "insertion", "comprehensiveness", "sufficiency", "agreement", "concentration")
#: Score vectors used when a method has no matrix, in order (as the report colours tokens).
PRIMARY_SCORES = ("attribution_score", "importance", "score")
#: Fractions of the user tokens at which mean curves are given.
CURVE_GRID = tuple(i / 10 for i in range(11))
RANDOM = "random order (reference)"


class FaithfulnessOptions(Options):
    beam_width: int = Field(5, ge=1, le=1024, description="Beam width of the search for the NAOPC bounds.")
    exact_up_to: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Prompts with at most this many user tokens get exact NAOPC bounds (all 2^n subsets scored). "
        "Default: exact whenever that takes no more forwards than the beam search would.",
    )
    max_tokens: int = Field(
        24,
        ge=2,
        le=1024,
        description="Deletion/insertion curves at every step and NAOPC bounds for prompts with at most this many user "
        "tokens; longer prompts get curves on this many steps and no NAOPC.",
    )
    batch_size: int | None = Field(None, ge=1, le=4096, description="Perturbed prompts per forward (default: by memory).")
    min_prompts: int = Field(3, ge=1, description="Fewest scored prompts for a recommendation.")
    random_reference: bool = Field(True, description="Score a seeded random token order as a reference row.")


def _metric_infos(settings: EvaluationSettings) -> tuple[MetricInfo, ...]:
    ks = ", ".join(f"{k:g}" for k in settings.k_percent)
    what = "the response's log-probability" if settings.target == "response" else "each response token's log-probability"
    infos: list[MetricInfo] = []
    if settings.wants("deletion"):
        infos += [
            MetricInfo(
                "naopc",
                "Deletion score",
                "higher",
                "The method's most important tokens are perturbed first, one after another, and the drop in "
                f"{what} is averaged over the steps; then placed between the worst (0) and the best (1) any "
                "order of the same tokens achieves on this prompt.",
            ),
            MetricInfo("aopc", "Deletion drop", "higher", f"The average drop in {what} along the deletion curve.", "nats", False),
        ]
    if settings.wants("insertion"):
        infos += [
            MetricInfo(
                "insertion_norm",
                "Insertion score",
                "higher",
                "Starting from a prompt with every user token perturbed, the method's most important tokens are "
                f"restored first; the average recovery of {what}, placed between the worst (0) and best (1) order.",
            ),
            MetricInfo(
                "insertion_auc", "Insertion gain", "higher", f"The average recovery of {what} along the insertion curve.", "nats", False
            ),
        ]
    if settings.wants("infidelity"):
        infos += [
            MetricInfo(
                "infidelity",
                "Infidelity",
                "lower",
                f"Random groups of tokens are perturbed ({settings.perturbations} draws, the same for every method); "
                "the method's scores, best rescaled, predict each drop. 0: every drop predicted; 1: no better than "
                "predicting no change.",
            ),
            MetricInfo("infidelity_raw", "Infidelity (nats²)", "lower", "Mean squared error of the predicted drops.", "nats²", False),
            MetricInfo("infidelity_scale", "Best rescaling", "none", "The factor that made the scores predict the drops best.", "", False),
        ]
    if settings.wants("comprehensiveness"):
        infos.append(
            MetricInfo(
                "comprehensiveness",
                "Comprehensiveness",
                "higher",
                f"Drop in {what} when the method's top tokens ({ks} % of the user's tokens) are perturbed, averaged "
                "over those sizes: the tokens it names are needed.",
                "nats",
            )
        )
        infos += [
            MetricInfo(f"comprehensiveness@{k:g}", f"Comprehensiveness at {k:g} %", "higher", "", "nats", False) for k in settings.k_percent
        ]
    if settings.wants("sufficiency"):
        infos.append(
            MetricInfo(
                "sufficiency",
                "Sufficiency",
                "lower",
                f"Drop in {what} when only the method's top tokens ({ks} %) are kept and every other user token is "
                "perturbed: small means the tokens it names are enough on their own.",
                "nats",
            )
        )
        infos += [MetricInfo(f"sufficiency@{k:g}", f"Sufficiency at {k:g} %", "lower", "", "nats", False) for k in settings.k_percent]
    if settings.wants("concentration"):
        infos += [
            MetricInfo(
                "gini",
                "Concentration",
                "none",
                "How concentrated the method's importance is (Gini of the sizes): 0 spread evenly, near 1 on one "
                "token. Neither is better; it says how to read the colours.",
            ),
            MetricInfo("entropy", "Spread", "none", "Entropy of the sizes, divided by its largest possible value.", "", False),
        ]
    return tuple(infos)


RANKING_NOTE = (
    "Signed methods (whose scores can be negative) are ranked by value: the token they say supports the response most "
    "comes first, and a negative token is one they say works against it. Unsigned methods give sizes only (how much a "
    "token matters, not in which direction) and are ranked by size. Every method is judged against the same thing: "
    "how the response's log-probability changes, so an unsigned method that ranks a token working against the "
    "response high is marked down for it."
)


@dataclass
class _Method:
    label: str
    signed: bool
    reference: bool
    targets: list[np.ndarray]  # per target: ranking keys over the user tokens (-inf: no score)
    response: np.ndarray  # response-level importance (agreement, concentration)
    note: str = ""


@dataclass
class _Prompt:
    metrics: list[PromptMetrics] = field(default_factory=list)
    agreement: AgreementMatrix | None = None
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # run-dependent: kept out of details (results.json's details are reproducible)


class FaithfulnessEvaluator(Evaluator):
    name = "faithfulness"
    description = "Deletion/NAOPC, insertion, infidelity, comprehensiveness, sufficiency, agreement and concentration of every method."
    options_model = FaithfulnessOptions
    metrics = FAMILIES
    version = "1"

    def __init__(self, scorer_factory: Callable[[LoadedModel, Generation, int | None], Scorer] | None = None) -> None:
        self.scorer_factory = scorer_factory or (lambda model, g, bs: scorer_for(model.model, g.input_ids, g.output_ids, batch_size=bs))

    def unavailable_reason(self, model: LoadedModel) -> str | None:
        if model.open_weights:
            return None
        return f"the faithfulness scorecard needs the model's log-probabilities; {model.source} is a black-box sampler"

    def evaluate(self, ctx: EvaluationContext) -> Evaluation:
        t_start = time.perf_counter()
        s, opts = ctx.settings, ctx.options
        model_id = ctx.model.id
        infos = _metric_infos(s)
        per_prompt: list[_Prompt] = []
        description = ""
        ctx.progress(0, len(ctx.generations))
        for i, g in enumerate(ctx.generations):
            results = [r for r in ctx.results if r.model_id == g.model_id and r.prompt_id == g.prompt_id]
            if s.methods:
                results = [r for r in results if r.display_name in s.methods]
            pr, description = self._prompt(ctx, g, results, description)
            per_prompt.append(pr)
            ctx.progress(i + 1, len(ctx.generations))
        prompts = [m for p in per_prompt for m in p.metrics]
        order = _method_order(prompts)
        prompt_ids = [g.prompt_id for g in ctx.generations]
        rng = np.random.default_rng([s.seed, 7, _crc(model_id)])
        idx = M.bootstrap_indices(len(prompt_ids), s.bootstrap, rng)
        scores = tuple(_method_score(label, prompts, prompt_ids, infos, idx) for label in order)
        agreement = tuple(p.agreement for p in per_prompt if p.agreement is not None)
        pooled = _pool_agreement(agreement)
        if pooled is not None:
            agreement = (*agreement, pooled)
        rec = recommend(model_id, scores, prompts, prompt_ids, infos, pooled, opts.min_prompts, idx)
        seconds = time.perf_counter() - t_start
        return Evaluation(
            evaluator=self.name,
            model_id=model_id,
            settings={**s.to_json(), "options": opts.model_dump()},
            perturbation=description,
            ranking=RANKING_NOTE,
            metrics=infos,
            prompts=tuple(prompts),
            scores=scores,
            agreement=agreement,
            curve_grid=CURVE_GRID,
            recommendation=rec,
            timings={"seconds": seconds, **{f"prompt:{g.prompt_id}": p.seconds for g, p in zip(ctx.generations, per_prompt, strict=True)}},
            details={
                "prompts": {g.prompt_id: p.details for g, p in zip(ctx.generations, per_prompt, strict=True)},
                "forwards": int(sum(int(p.details.get("forwards", 0)) for p in per_prompt)),
            },
        )

    # ----------------------------------------------------------------------------------- one prompt

    def _prompt(self, ctx: EvaluationContext, g: Generation, results: list[AttributionResult], description: str) -> tuple[_Prompt, str]:
        s, opts = ctx.settings, ctx.options
        out = _Prompt()
        user = list(g.user_positions)
        n = len(user)
        out.details = {"user_tokens": n}
        if n == 0 or g.t == 0:
            why = "the prompt has no user tokens to perturb" if n == 0 else "the response is empty"
            out.details["skipped"] = why
            out.metrics = [PromptMetrics(r.display_name, g.prompt_id, {}, note=why) for r in results]
            return out, description
        t0 = time.perf_counter()
        scorer = self.scorer_factory(ctx.model, g, opts.batch_size)
        try:
            pert = perturb.build(s.operator, s.replacement, ctx.model.tokenizer, g.input_ids, user, scorer)
        except perturb.PerturbationUnavailable as exc:
            out.details["skipped"] = str(exc)
            out.metrics = [PromptMetrics(r.display_name, g.prompt_id, {}, note=str(exc)) for r in results]
            return out, description
        description = description or perturb.describe(pert, ctx.model.tokenizer)
        n_targets = 1 if s.target == "response" else g.t
        methods, skipped = _methods(results, g, user, s, n_targets)
        if opts.random_reference:
            rr = np.random.default_rng([s.seed, 2, _crc(g.model_id), _crc(g.prompt_id)])
            key = rr.permutation(n).astype(np.float64)
            methods.append(_Method(RANDOM, True, True, [key] * n_targets, key))
        memo: dict[int, np.ndarray] = {0: np.asarray(scorer.base, dtype=np.float64)}

        def fetch(masks: Sequence[int]) -> None:
            missing = [m for m in dict.fromkeys(masks) if m not in memo]
            if missing:
                seqs = [pert.apply(g.input_ids, [user[i] for i in M.bits(m)]) for m in missing]
                vals = scorer.score(seqs)
                memo.update(zip(missing, (np.asarray(v, dtype=np.float64) for v in vals), strict=True))

        weights = [np.ones(g.t)] if s.target == "response" else [np.eye(g.t)[j] for j in range(g.t)]
        full = M.full_mask(n)
        steps = list(range(n + 1)) if n <= opts.max_tokens else sorted({round(x) for x in np.linspace(0, n, opts.max_tokens + 1)})
        counts = M.top_k_counts(n, s.k_percent)
        draws = M.random_subsets(n, s.perturbations, np.random.default_rng([s.seed, 1, _crc(g.model_id), _crc(g.prompt_id)]))
        need_bounds = (s.wants("deletion") or s.wants("insertion")) and n <= opts.max_tokens
        n_curves = len(weights) * (int(s.wants("deletion")) + int(s.wants("insertion")))
        limit = opts.exact_up_to
        exact = need_bounds and ((1 << n) - 1 <= M.beam_cost(n, opts.beam_width, n_curves) if limit is None else n <= limit)
        # Every mask known up front, in one batched call.
        wanted: list[int] = [full]
        if exact:
            wanted += list(range(1 << n))
        if s.wants("infidelity"):
            wanted += draws
        orders: dict[str, list[list[int]]] = {}
        for m in methods:
            orders[m.label] = [M.order_from_key(key) for key in m.targets]
            for order in orders[m.label]:
                pm = M.prefix_masks(order)
                for k in steps:
                    wanted += [pm[k], full ^ pm[k]]
                for c in counts:
                    wanted += [pm[c], full ^ pm[c]]
        fetch(wanted)
        # Bounds over orderings, per target: exact, or every curve's beams in lockstep (one batch per level).
        bounds: list[dict[str, tuple[float, float] | None]] = [{"deletion": None, "insertion": None} for _ in weights]
        gains: list[tuple[int, str, Callable[[int], float], Callable[[int], int]]] = []
        for j, w in enumerate(weights):
            f0, fu = float(memo[0] @ w), float(memo[full] @ w)

            def g_del(m: int, w: np.ndarray = w, f0: float = f0) -> float:
                return f0 - float(memo[m] @ w)

            def g_ins(m: int, w: np.ndarray = w, fu: float = fu) -> float:
                return float(memo[full ^ m] @ w) - fu

            if s.wants("deletion"):
                gains.append((j, "deletion", g_del, lambda m: m))
            if s.wants("insertion"):
                gains.append((j, "insertion", g_ins, lambda m: full ^ m))
        if exact:
            for j, kind, gain, _need in gains:
                bounds[j][kind] = M.exact_bounds(n, gain)
            how = f"exact: every one of the 2^{n} subsets of the {n} user tokens scored"
        elif need_bounds:
            found = M.beam_bounds_lockstep(n, opts.beam_width, fetch, [(gain, need) for _, _, gain, need in gains])
            for (j, kind, _gain, _need), b in zip(gains, found, strict=True):
                bounds[j][kind] = b
            how = f"beam search of width {opts.beam_width} over orderings (widened by every scored method's order)"
        else:
            how = f"not computed: {n} user tokens exceed max_tokens = {opts.max_tokens}"
        # Metrics per method, averaged over targets.
        for m in methods:
            vals_t: list[dict[str, float | None]] = []
            del_curves: list[list[float]] = []
            ins_curves: list[list[float]] = []
            for j, w in enumerate(weights):
                order = orders[m.label][j]
                pm = M.prefix_masks(order)
                f0 = float(memo[0] @ w)
                fu = float(memo[full] @ w)
                v: dict[str, float | None] = {}
                d_curve = [float(memo[pm[k]] @ w) - f0 for k in steps]
                i_curve = [float(memo[full ^ pm[k]] @ w) - f0 for k in steps]
                del_curves.append(d_curve)
                ins_curves.append(i_curve)
                if s.wants("deletion"):
                    v["aopc"] = M.aopc([-x for x in d_curve])
                    v["naopc"] = _normalised(
                        v["aopc"],
                        bounds[j]["deletion"],
                        [M.aopc([f0 - float(memo[p] @ w) for p in _at(M.prefix_masks(o[j]), steps)]) for o in orders.values()],
                        exact,
                    )
                if s.wants("insertion"):
                    v["insertion_auc"] = M.aopc([x + f0 - fu for x in i_curve])
                    v["insertion_norm"] = _normalised(
                        v["insertion_auc"],
                        bounds[j]["insertion"],
                        [M.aopc([float(memo[full ^ p] @ w) - fu for p in _at(M.prefix_masks(o[j]), steps)]) for o in orders.values()],
                        exact,
                    )
                if s.wants("infidelity") and not m.reference:
                    drops = [f0 - float(memo[d] @ w) for d in draws]
                    v["infidelity"], v["infidelity_raw"], v["infidelity_scale"] = M.infidelity(_phi(m.targets[j]), draws, drops)
                comp = [f0 - float(memo[pm[c]] @ w) for c in counts]
                suff = [f0 - float(memo[full ^ pm[c]] @ w) for c in counts]
                if s.wants("comprehensiveness"):
                    v["comprehensiveness"] = float(np.mean(comp))
                    v.update({f"comprehensiveness@{k:g}": x for k, x in zip(s.k_percent, comp, strict=True)})
                if s.wants("sufficiency"):
                    v["sufficiency"] = float(np.mean(suff))
                    v.update({f"sufficiency@{k:g}": x for k, x in zip(s.k_percent, suff, strict=True)})
                vals_t.append(v)
            values = _mean_dicts(vals_t)
            if s.wants("concentration") and not m.reference:
                values["gini"] = M.gini(m.response)
                values["entropy"] = M.normalised_entropy(m.response)
            frac = tuple(k / n for k in steps)
            curves = {"deletion": tuple(np.mean(del_curves, axis=0).tolist()), "insertion": tuple(np.mean(ins_curves, axis=0).tolist())}
            out.metrics.append(PromptMetrics(m.label, g.prompt_id, values, curves, frac, m.signed, m.reference, m.note))
        for label, why in skipped:
            out.metrics.append(PromptMetrics(label, g.prompt_id, {}, note=why))
        if s.wants("agreement"):
            out.agreement = _agreement(g.prompt_id, [m for m in methods if not m.reference])
        out.seconds = time.perf_counter() - t0
        out.details.update(
            {
                "forwards": int(len(memo) - 1),
                "log_p_response": float(np.sum(memo[0])),
                "log_p_fully_perturbed": float(np.sum(memo[full])),
                "bounds": how,
                "aopc_bounds": [{k: (list(v) if v else None) for k, v in b.items()} for b in bounds] if s.target == "response" else None,
                "substitutes": perturb.token_texts(pert, ctx.model.tokenizer) if pert.replacement == "prior" else None,
            }
        )
        return out, description


# --------------------------------------------------------------------------- helpers


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _at(masks: list[int], steps: Sequence[int]) -> list[int]:
    return [masks[k] for k in steps]


def _normalised(value: float | None, bounds: tuple[float, float] | None, scored: list[float], exact: bool) -> float | None:
    """NAOPC-style normalisation; beam bounds are widened by every scored ordering (each is a valid order)."""
    if bounds is None or value is None:
        return None
    lo, hi = bounds
    if not exact and scored:
        lo, hi = min(lo, *scored), max(hi, *scored)
    return M.normalise(value, lo, hi)


def _mean_dicts(ds: list[dict[str, float | None]]) -> dict[str, float | None]:
    keys = list(dict.fromkeys(k for d in ds for k in d))
    out: dict[str, float | None] = {}
    for k in keys:
        xs = [d.get(k) for d in ds]
        fin = [float(x) for x in xs if x is not None and math.isfinite(x)]
        out[k] = float(np.mean(fin)) if fin else None
    return out


def _importance(r: AttributionResult, g: Generation, absolute: bool) -> tuple[np.ndarray | None, np.ndarray | None, bool, str]:
    """(response-level importance over the input, n × t matrix or None, signed, why not)."""
    signed = bool(r.signed) and not absolute
    if r.matrix is not None and np.shape(r.matrix) == (g.n, g.t):
        mat = np.asarray(r.matrix, dtype=np.float64)
        ix, _ = token_importance(mat, absolute=absolute)
        vec = np.array([np.nan if v is None else v for v in ix], dtype=np.float64)
        return vec, (np.abs(mat) if absolute else mat), signed, ""
    for name in PRIMARY_SCORES:
        sc = r.scores.get(name)
        if sc is not None and len(sc) == g.n:
            vec = np.array([np.nan if v is None else float(v) for v in sc], dtype=np.float64)
            return (np.abs(vec) if absolute else vec), None, signed, ""
    return None, None, signed, "it gives no per-token importance"


def _methods(
    results: list[AttributionResult], g: Generation, user: list[int], s: EvaluationSettings, n_targets: int
) -> tuple[list[_Method], list[tuple[str, str]]]:
    """Each scorable result as ranking keys over the user tokens (per target), and why the others are not scored."""
    absolute = s.token_importance == "abs_sum"
    methods: list[_Method] = []
    skipped: list[tuple[str, str]] = []
    for r in results:
        if r.status != "ok":
            skipped.append((r.display_name, f"not scored: the method {r.status} ({r.reason or 'no reason given'})"))
            continue
        vec, mat, signed, why = _importance(r, g, absolute)
        if vec is None:
            skipped.append((r.display_name, f"not scored: {why}"))
            continue
        resp = vec[user]
        missing = int(np.sum(~np.isfinite(resp)))
        note = f"{missing} of {len(user)} user tokens have no score: ranked last, counted as 0" if missing else ""
        if s.target == "response":
            keys = [M.ranking_key(resp.tolist(), signed)]
        elif mat is None:
            skipped.append((r.display_name, "not scored per response token: it gives one score per input token, not a matrix"))
            continue
        else:
            keys = [M.ranking_key(mat[user, j].tolist(), signed) for j in range(n_targets)]
        methods.append(_Method(r.display_name, signed, False, keys, np.nan_to_num(resp), note))
    return methods, skipped


def _phi(key: np.ndarray) -> np.ndarray:
    """What a ranking key predicts for infidelity: the signed value or the size; a missing score is 0."""
    return np.where(np.isfinite(key), key, 0.0)


def _agreement(prompt_id: str, methods: list[_Method]) -> AgreementMatrix | None:
    if not methods:
        return None
    labels = tuple(m.label for m in methods)
    keys = [M.ranking_key(m.response.tolist(), m.signed) for m in methods]
    rho: list[list[float | None]] = [[None] * len(keys) for _ in keys]
    tau: list[list[float | None]] = [[None] * len(keys) for _ in keys]
    for a in range(len(keys)):
        for b in range(a, len(keys)):
            r, t = M.rank_agreement(keys[a], keys[b])
            rho[a][b] = rho[b][a] = r
            tau[a][b] = tau[b][a] = t
    return AgreementMatrix(prompt_id, labels, tuple(tuple(r) for r in rho), tuple(tuple(r) for r in tau), 1)


def _pool_agreement(per_prompt: Sequence[AgreementMatrix]) -> AgreementMatrix | None:
    """Each pair's coefficients averaged over the prompts where both methods were scored."""
    if not per_prompt:
        return None
    labels = tuple(dict.fromkeys(m for a in per_prompt for m in a.methods))

    def mean(kind: str, a: str, b: str) -> float | None:
        vals = [a_m.value(a, b, kind) for a_m in per_prompt]  # type: ignore[arg-type]
        fin = [v for v in vals if v is not None]
        return float(np.mean(fin)) if fin else None

    rho = tuple(tuple(mean("spearman", a, b) for b in labels) for a in labels)
    tau = tuple(tuple(mean("kendall", a, b) for b in labels) for a in labels)
    return AgreementMatrix(None, labels, rho, tau, len(per_prompt))


def _method_order(prompts: list[PromptMetrics]) -> list[str]:
    labels = list(dict.fromkeys(p.method for p in prompts if not p.reference))
    labels += list(dict.fromkeys(p.method for p in prompts if p.reference))
    return labels


def _method_score(
    label: str, prompts: list[PromptMetrics], prompt_ids: list[str], infos: Sequence[MetricInfo], idx: np.ndarray
) -> MethodScore:
    mine = {p.prompt_id: p for p in prompts if p.method == label}
    values: dict[str, Estimate] = {}
    for info in infos:
        per = [mine[pid].values.get(info.name) if pid in mine else None for pid in prompt_ids]
        if all(v is None for v in per):
            continue
        mean, lo, hi, n = M.mean_interval(per, idx)
        values[info.name] = Estimate(mean, lo, hi, n)
    curves: dict[str, tuple[float | None, ...]] = {}
    for name in ("deletion", "insertion"):
        rows = [M.interpolate_curve(p.steps, p.curves[name], CURVE_GRID) for p in mine.values() if name in p.curves]
        if rows:
            arr = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64)
            with np.errstate(all="ignore"):
                col = np.nanmean(arr, axis=0) if np.isfinite(arr).any() else arr[0]
            curves[name] = tuple(None if not math.isfinite(x) else float(x) for x in col)
    first = next(iter(mine.values()), None)
    return MethodScore(label, values, curves, bool(first.signed) if first else False, bool(first.reference) if first else False)


# --------------------------------------------------------------------------- recommendation


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _est(e: Estimate) -> str:
    if e.lo is None or e.hi is None:
        return _fmt(e.value)
    return f"{_fmt(e.value)} [{_fmt(e.lo)}, {_fmt(e.hi)}]"


def _paired(
    a: str, b: str, metric: str, prompts: list[PromptMetrics], prompt_ids: list[str], idx: np.ndarray
) -> tuple[float | None, float | None, float | None, int]:
    """Mean difference a − b over the prompts where both have the metric, with a paired bootstrap interval."""
    va = {p.prompt_id: p.values.get(metric) for p in prompts if p.method == a}
    vb = {p.prompt_id: p.values.get(metric) for p in prompts if p.method == b}
    diffs: list[float | None] = []
    for pid in prompt_ids:
        x, y = va.get(pid), vb.get(pid)
        diffs.append(None if x is None or y is None else x - y)
    return M.mean_interval(diffs, idx)


def recommend(
    model_id: str,
    scores: Sequence[MethodScore],
    prompts: list[PromptMetrics],
    prompt_ids: list[str],
    infos: Sequence[MetricInfo],
    pooled: AgreementMatrix | None,
    min_prompts: int,
    idx: np.ndarray,
) -> Recommendation:
    """One plain-language conclusion about which method to trust on this model, with its evidence."""
    by_name = {i.name: i for i in infos}
    primary = next(
        (
            name
            for name in ("naopc", "insertion_norm", "infidelity")
            if name in by_name and any(not s.reference and s.values.get(name, Estimate(None)).value is not None for s in scores)
        ),
        None,
    )
    if primary is None:
        return Recommendation("none", None, f"No attribution method could be scored for faithfulness on {model_id}.")
    info = by_name[primary]
    sign = -1.0 if info.better == "higher" else 1.0
    cands = sorted(
        (s for s in scores if not s.reference and s.values.get(primary, Estimate(None)).value is not None),
        key=lambda s: sign * float(s.values[primary].value or 0.0),
    )
    ref = next((s for s in scores if s.reference and primary in s.values), None)
    best = cands[0]
    e = best.values[primary]
    what = info.label.lower()
    evidence = [f"{s.method}: {what} {_est(s.values[primary])}, over {s.values[primary].n} prompt(s)" for s in cands]
    if ref is not None:
        evidence.append(f"A random token order: {what} {_est(ref.values[primary])}.")
    second = cands[1] if len(cands) > 1 else None
    tau = pooled.value(best.method, second.method, "kendall") if (pooled is not None and second is not None) else None
    agree = f"; {second.method} agrees with its ranking at Kendall τ = {tau:.2f}" if (second is not None and tau is not None) else ""
    if tau is not None and second is not None:
        evidence.append(f"Rank agreement of {best.method} and {second.method}: Kendall τ = {tau:.2f} (1 = same order, 0 = unrelated).")
    if e.n < min_prompts:
        return Recommendation(
            "too_thin",
            None,
            f"Too little evidence to recommend a method on {model_id}: {e.n} prompt(s) were scored and at least "
            f"{min_prompts} are needed for an interval that means something. On these prompts {best.method} ranked "
            f"tokens most faithfully ({what} {_fmt(e.value)}){agree}.",
            tuple(evidence),
        )
    if second is not None:
        d, lo, hi, n = _paired(best.method, second.method, primary, prompts, prompt_ids, idx)
        if d is not None:
            evidence.append(f"{best.method} minus {second.method}: {_est(Estimate(d, lo, hi, n))} over {n} prompt(s).")
        if lo is None or hi is None or (lo <= 0 <= hi):
            return Recommendation(
                "no_clear_winner",
                None,
                f"No method is clearly the most faithful on {model_id}: {best.method} leads ({what} {_est(e)}), but "
                f"{second.method} ({_fmt(second.values[primary].value)}) is within the uncertainty{agree}.",
                tuple(evidence),
            )
    if ref is not None:
        d, lo, hi, _n = _paired(best.method, ref.method, primary, prompts, prompt_ids, idx)
        beats = lo is not None and hi is not None and (lo > 0 if info.better == "higher" else hi < 0)
        if not beats:
            return Recommendation(
                "no_clear_winner",
                None,
                f"No method ranks tokens clearly better than a random order on {model_id}: the best, {best.method}, "
                f"scores {what} {_est(e)} against {_fmt(ref.values[primary].value)} for a random order.",
                tuple(evidence),
            )
    return Recommendation(
        "recommend",
        best.method,
        f"On {model_id} and these {e.n} prompts, {best.method} ranks tokens most faithfully: {what} {_est(e)}{agree}.",
        tuple(evidence),
    )
