"""Faithfulness evaluation: every metric against a closed form or brute force.

The oracle is a model whose log-probability is additive in token presence: each response
token's log-probability is a constant plus Σ c_v · w_j over the token ids v present in the
prompt. Its true attribution A_ij = c_{x_i} · w_j must score infidelity 0, deletion and
insertion scores 1, and the reversed attribution 0; bounds by beam search must equal the exact
ones; a method agrees with itself at 1; batched perturbed forwards equal naive ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from reportgen.cache import Cache
from reportgen.data import AttributionResult, Evaluation, Generation
from reportgen.plugin_api import EvaluationContext, EvaluationSettings, LoadedModel
from reportgen_plugins.evaluation import metrics as M
from reportgen_plugins.evaluation.faithfulness import RANDOM, FaithfulnessEvaluator, FaithfulnessOptions
from reportgen_plugins.evaluation.perturb import Perturbation
from reportgen_plugins.evaluation.scorer import PrefixBatchScorer

SPACE, UNK, PAD = 1, 2, 3
TEMPLATE_IDS = (10, 11)  # chat-template tokens around the user text
BOS = 9


class FakeTokenizer:
    """What the perturbation operators ask of a tokenizer."""

    unk_token_id = UNK
    unk_token = "<unk>"
    pad_token_id = PAD
    pad_token = "<pad>"
    all_special_ids = (BOS, *TEMPLATE_IDS, UNK, PAD)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        assert text == " "
        return [SPACE]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(f"t{i}" for i in ids)


class AdditiveModel:
    """log P(y_j | x̃, y_<j) = −3 + w_j · Σ_{v ∈ x̃} c_v: additive in the presence of each token."""

    def __init__(self, contrib: dict[int, float], weights: Sequence[float] | np.ndarray) -> None:
        self.c = contrib
        self.w = np.asarray(weights, dtype=np.float64)
        self.calls: list[int] = []

    def score_responses(self, inputs: Sequence[Sequence[int]], output_ids: Sequence[int]) -> np.ndarray:
        self.calls.append(len(inputs))
        total = np.array([sum(self.c.get(int(v), 0.0) for v in x) for x in inputs])
        return -3.0 + total[:, None] * self.w[None, :]


def _generation(user_ids: Sequence[int], t: int, prompt_id: str = "p") -> Generation:
    ids = (BOS, TEMPLATE_IDS[0], *user_ids, TEMPLATE_IDS[1])
    special = (True, True, *([False] * len(user_ids)), True)
    return Generation(
        model_id="fake",
        prompt_id=prompt_id,
        input_ids=ids,
        input_tokens=tuple(f"t{i}" for i in ids),
        input_special=special,
        output_ids=tuple(range(100, 100 + t)),
        output_tokens=tuple(f"o{j}" for j in range(t)),
        prompt_text="",
        response_text="",
    )


def _result(g: Generation, label: str, matrix: np.ndarray, signed: bool = True) -> AttributionResult:
    return AttributionResult.for_generation(g, "oracle", {}, matrix=matrix, signed=signed, label=label)


def _oracle_setup(
    n_user: int, t: int = 3, seed: int = 0, prompts: int = 1
) -> tuple[LoadedModel, list[Generation], list[AttributionResult]]:
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, t)
    gens, results = [], []
    contrib: dict[int, float] = {}
    for p in range(prompts):
        user = [200 + 50 * p + i for i in range(n_user)]
        c = rng.normal(0.0, 1.0, n_user)
        contrib.update(zip(user, c.tolist(), strict=True))
        g = _generation(user, t, prompt_id=f"p{p}")
        true = np.zeros((g.n, t))
        for v in user:
            true[g.input_ids.index(v)] = contrib[v] * weights
        gens.append(g)
        results += [
            _result(g, "true", true),
            _result(g, "reversed", -true),
            _result(g, "unsigned", np.abs(true), signed=False),
            _result(g, "noise", rng.normal(size=true.shape)),
        ]
    model = LoadedModel(id="fake", source="fake:additive", model=AdditiveModel(contrib, weights), tokenizer=FakeTokenizer())
    return model, gens, results


def _evaluate(model: LoadedModel, gens: list[Generation], results: list[AttributionResult], **settings: Any) -> Evaluation:
    opts = FaithfulnessOptions(**settings.pop("options", {}))
    ctx = EvaluationContext(
        model=model, generations=gens, results=results, settings=EvaluationSettings(**settings), options=opts, cache=Cache(None)
    )
    return FaithfulnessEvaluator().evaluate(ctx)


def _prompt_value(ev: Evaluation, method: str, metric: str, prompt: str = "p0") -> float | None:
    (pm,) = [p for p in ev.prompts if p.method == method and p.prompt_id == prompt]
    return pm.values.get(metric)


# --------------------------------------------------------------------------- the oracle, end to end


@pytest.mark.parametrize("operator", ["replace", "mask", "delete"])
@pytest.mark.parametrize("target", ["response", "token"])
def test_additive_oracle_true_attribution_is_perfect(operator: str, target: str) -> None:
    model, gens, results = _oracle_setup(n_user=6, t=3)
    ev = _evaluate(model, gens, results, operator=operator, target=target, perturbations=40)
    assert ev.status == "ok"
    assert _prompt_value(ev, "true", "infidelity") == pytest.approx(0.0, abs=1e-12)
    assert _prompt_value(ev, "true", "infidelity_scale") == pytest.approx(1.0)
    assert _prompt_value(ev, "true", "naopc") == pytest.approx(1.0)
    assert _prompt_value(ev, "true", "insertion_norm") == pytest.approx(1.0)
    assert _prompt_value(ev, "reversed", "naopc") == pytest.approx(0.0, abs=1e-12)
    assert _prompt_value(ev, "reversed", "insertion_norm") == pytest.approx(0.0, abs=1e-12)
    # infidelity with β ≥ 0: the reversed attribution predicts nothing (normalised infidelity 1)
    assert _prompt_value(ev, "reversed", "infidelity") == pytest.approx(1.0)
    noise = _prompt_value(ev, "noise", "naopc")
    assert noise is not None and 0.0 < noise < 1.0
    assert ev.details["prompts"]["p0"]["bounds"].startswith("exact")


def test_additive_oracle_comprehensiveness_and_sufficiency_closed_form() -> None:
    model, gens, results = _oracle_setup(n_user=6, t=3)
    ev = _evaluate(model, gens, results, k_percent=(10.0, 50.0), perturbations=5)
    g = gens[0]
    am = model.model
    user = [g.input_ids[i] for i in g.user_positions]
    c = np.array([am.c[v] for v in user]) * float(np.sum(am.w))
    order = np.argsort(-c, kind="stable")
    comp = [float(np.sum(c[order[:k]])) for k in (1, 3)]  # ⌈10 % of 6⌉ = 1, 50 % = 3
    suff = [float(np.sum(c) - np.sum(c[order[:k]])) for k in (1, 3)]
    assert _prompt_value(ev, "true", "comprehensiveness@10") == pytest.approx(comp[0])
    assert _prompt_value(ev, "true", "comprehensiveness@50") == pytest.approx(comp[1])
    assert _prompt_value(ev, "true", "sufficiency@50") == pytest.approx(suff[1])
    assert _prompt_value(ev, "true", "comprehensiveness") == pytest.approx(np.mean(comp))
    assert _prompt_value(ev, "true", "sufficiency") == pytest.approx(np.mean(suff))
    # the deletion AOPC in nats: the mean of the cumulative drops along the true order, k = 0..n
    assert _prompt_value(ev, "true", "aopc") == pytest.approx(np.mean([0.0, *np.cumsum(c[order])]))


def test_additive_oracle_beam_bounds_on_longer_prompts() -> None:
    """Above exact_up_to the bounds come from beam search; on an additive model greedy is optimal."""
    model, gens, results = _oracle_setup(n_user=9, t=2)
    ev = _evaluate(model, gens, results, perturbations=10, options={"exact_up_to": 4, "beam_width": 2})
    assert ev.details["prompts"]["p0"]["bounds"].startswith("beam search")
    assert _prompt_value(ev, "true", "naopc") == pytest.approx(1.0)
    assert _prompt_value(ev, "reversed", "naopc") == pytest.approx(0.0, abs=1e-12)


def test_agreement_self_is_one_and_reversed_minus_one() -> None:
    model, gens, results = _oracle_setup(n_user=6)
    ev = _evaluate(model, gens, results, perturbations=5)
    pooled = ev.pooled_agreement()
    assert pooled is not None and RANDOM not in pooled.methods
    for m in pooled.methods:
        assert pooled.value(m, m, "kendall") == pytest.approx(1.0)
        assert pooled.value(m, m, "spearman") == pytest.approx(1.0)
    assert pooled.value("true", "reversed", "kendall") == pytest.approx(-1.0)
    assert pooled.value("true", "reversed", "spearman") == pytest.approx(-1.0)


def test_every_method_is_scored_on_the_same_perturbations() -> None:
    """One scoring call per prompt for every method's fixed masks (beam levels aside): shared, memoised."""
    model, gens, results = _oracle_setup(n_user=5)
    ev = _evaluate(model, gens, results, perturbations=20)
    calls = model.model.calls
    assert calls[0] == 1  # the unperturbed prompt
    assert len(calls) == 2 and calls[1] == 2**5 - 1  # every non-empty subset once (exact), nothing twice
    assert ev.details["forwards"] == 2**5 - 1


def test_scores_over_prompts_have_intervals_and_n() -> None:
    model, gens, results = _oracle_setup(n_user=5, prompts=4, seed=3)
    ev = _evaluate(model, gens, results, perturbations=12, bootstrap=200)
    (true,) = [s for s in ev.scores if s.method == "true"]
    e = true.values["naopc"]
    assert e.n == 4 and e.value == pytest.approx(1.0) and e.lo == pytest.approx(1.0) and e.hi == pytest.approx(1.0)
    noise = next(s for s in ev.scores if s.method == "noise").values["naopc"]
    assert noise.lo is not None and noise.hi is not None and noise.lo <= noise.value <= noise.hi  # type: ignore[operator]
    assert ev.recommendation is not None and ev.recommendation.verdict == "recommend"
    assert ev.recommendation.method == "true" and "true ranks tokens most faithfully" in ev.recommendation.headline
    assert true.curves["deletion"][0] == pytest.approx(0.0) and len(true.curves["deletion"]) == len(ev.curve_grid)
    # the reference row is there and never recommended
    assert any(s.reference and s.method == RANDOM for s in ev.scores)


def test_recommendation_says_when_evidence_is_too_thin() -> None:
    model, gens, results = _oracle_setup(n_user=5, prompts=2)
    ev = _evaluate(model, gens, results, perturbations=5)
    assert ev.recommendation is not None and ev.recommendation.verdict == "too_thin"
    assert ev.recommendation.method is None and "2 prompt(s) were scored" in ev.recommendation.headline


def test_evaluation_round_trips_through_json() -> None:
    model, gens, results = _oracle_setup(n_user=5, prompts=2)
    ev = _evaluate(model, gens, results, perturbations=5)
    import json

    again = Evaluation.from_json(json.loads(json.dumps(ev.to_json())))
    assert again.to_json() == ev.to_json()
    assert again.scores[0].values["naopc"].n == 2


def test_methods_without_results_are_listed_not_scored() -> None:
    model, gens, results = _oracle_setup(n_user=4)
    g = gens[0]
    results.append(AttributionResult.for_generation(g, "broken", {}, status="failed", reason="boom", label="broken"))
    ev = _evaluate(model, gens, results, perturbations=5)
    (pm,) = [p for p in ev.prompts if p.method == "broken"]
    assert not pm.values and "boom" in pm.note


def test_template_tokens_are_never_perturbed() -> None:
    model, gens, results = _oracle_setup(n_user=4)
    seen: list[Sequence[int]] = []
    am = model.model
    orig = am.score_responses

    def spy(inputs: Sequence[Sequence[int]], out: Sequence[int]) -> np.ndarray:
        seen.extend(inputs)
        return np.asarray(orig(inputs, out))

    am.score_responses = spy
    _evaluate(model, gens, results, perturbations=5, operator="delete")
    g = gens[0]
    for s in seen:
        assert tuple(s[:2]) == g.input_ids[:2] and s[-1] == g.input_ids[-1]


# --------------------------------------------------------------------------- metrics, closed forms


def _random_set_function(n: int, seed: int) -> dict[int, float]:
    rng = np.random.default_rng(seed)
    return {m: (0.0 if m == 0 else float(rng.normal())) for m in range(1 << n)}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_exact_bounds_equal_enumeration_of_every_ordering(n: int) -> None:
    g = _random_set_function(n, seed=n)
    lo, hi = M.exact_bounds(n, g.__getitem__)
    elo, ehi = M.enumerate_bounds(n, g.__getitem__)
    assert lo == pytest.approx(elo) and hi == pytest.approx(ehi)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_beam_bounds_equal_enumeration_when_wide_enough(n: int) -> None:
    """Partial orderings reaching the same set are merged, so a width of C(n, ⌊n/2⌋) is exact."""
    g = _random_set_function(n, seed=10 + n)
    elo, ehi = M.enumerate_bounds(n, g.__getitem__)
    lo, hi, _ = M.beam_bounds(n, lambda ms: [g[m] for m in ms], width=math.comb(n, n // 2))
    assert lo == pytest.approx(elo) and hi == pytest.approx(ehi)
    lo1, hi1, _ = M.beam_bounds(n, lambda ms: [g[m] for m in ms], width=1)  # greedy: inside the true bounds
    assert elo - 1e-12 <= lo1 and hi1 <= ehi + 1e-12


def test_additive_gain_bounds_are_the_sorted_orders() -> None:
    c = np.array([0.5, -1.0, 2.0, 0.1, -0.3])
    n = len(c)

    def g(m: int) -> float:
        return float(sum(c[i] for i in M.bits(m)))

    hi = M.aopc([g(m) for m in M.prefix_masks(M.order_from_key(c))])
    lo = M.aopc([g(m) for m in M.prefix_masks(M.order_from_key(-c))])
    assert M.exact_bounds(n, g) == pytest.approx((lo, hi))
    assert M.beam_bounds(n, lambda ms: [g(m) for m in ms], width=1)[:2] == pytest.approx((lo, hi))


def test_infidelity_closed_form() -> None:
    phi = np.array([1.0, 2.0, -1.0])
    masks = [0b001, 0b011, 0b111, 0b100]
    drops = [2.0 * float(phi @ [(m >> i) & 1 for i in range(3)]) for m in masks]  # exactly twice the attribution
    norm, raw, beta = M.infidelity(phi, masks, drops)
    assert norm == pytest.approx(0.0) and raw == pytest.approx(0.0) and beta == pytest.approx(2.0)
    norm, raw, beta = M.infidelity(-phi, masks, drops)  # pointing the wrong way: β clipped at 0
    assert beta == 0.0 and norm == pytest.approx(1.0)
    noisy = [d + e for d, e in zip(drops, [0.1, -0.2, 0.3, 0.0], strict=True)]
    norm, raw, beta = M.infidelity(phi, masks, noisy)
    pred = np.array([phi @ [(m >> i) & 1 for i in range(3)] for m in masks])
    b = float(pred @ noisy / (pred @ pred))
    assert beta == pytest.approx(b) and raw == pytest.approx(np.mean((b * pred - noisy) ** 2))
    assert raw is not None and norm == pytest.approx(raw / np.mean(np.square(noisy)))


def test_agreement_and_concentration_closed_forms() -> None:
    x = [0.3, 1.0, -2.0, 0.5]
    assert M.rank_agreement(x, x) == pytest.approx((1.0, 1.0))
    assert M.rank_agreement(x, [-v for v in x]) == pytest.approx((-1.0, -1.0))
    assert M.rank_agreement(x, [1.0] * 4) == (None, None)
    assert M.gini([0, 0, 0, 5]) == pytest.approx(3 / 4)
    assert M.gini([2, 2, 2, 2]) == pytest.approx(0.0)
    assert M.normalised_entropy([1, 1, 1, 1]) == pytest.approx(1.0)
    assert M.normalised_entropy([0, 0, 3, 0]) == pytest.approx(0.0)
    assert M.gini([0, 0]) is None


def test_top_k_counts_and_rankings() -> None:
    assert M.top_k_counts(7, [1, 5, 10, 20, 50]) == [1, 1, 1, 2, 4]
    assert M.top_k_counts(200, [1, 5, 10, 20, 50]) == [2, 10, 20, 40, 100]
    assert M.top_k_counts(3, [100]) == [3]
    # signed: by value; unsigned: by size; missing last; ties by position
    assert M.order_from_key(M.ranking_key([0.5, -2.0, None, 1.0], signed=True)) == [3, 0, 1, 2]
    assert M.order_from_key(M.ranking_key([0.5, -2.0, None, 1.0], signed=False)) == [1, 3, 0, 2]
    assert M.order_from_key([1.0, 1.0, 2.0]) == [2, 0, 1]


def test_bootstrap_interval_over_prompts() -> None:
    idx = M.bootstrap_indices(5, 500, np.random.default_rng(0))
    assert M.mean_interval([0.4] * 5, idx) == pytest.approx((0.4, 0.4, 0.4, 5))
    mean, lo, hi, n = M.mean_interval([0.1, 0.2, None, 0.9, 0.5], idx)
    assert n == 4 and mean == pytest.approx(0.425)
    assert mean is not None and lo is not None and hi is not None and lo < mean < hi
    assert M.mean_interval([0.3], idx[:, :1]) == (0.3, None, None, 1)


def test_interpolated_curve() -> None:
    assert M.interpolate_curve([0, 0.5, 1], [0, -1, -3], [0, 0.25, 0.75, 1]) == pytest.approx([0, -0.5, -2, -3])


# --------------------------------------------------------------------------- batched forwards


def test_batched_perturbed_forwards_equal_naive_forwards() -> None:
    from tests.conftest import tiny_llama

    model = tiny_llama(400, seed=5)
    rng = np.random.default_rng(1)
    x = rng.integers(10, 400, 14).tolist()
    y = rng.integers(10, 400, 5).tolist()
    user = list(range(3, 13))
    ops = [
        Perturbation("replace", "neutral", dict.fromkeys(user, 7)),
        Perturbation("mask", "", dict.fromkeys(user, 3)),
        Perturbation("delete", "", dict.fromkeys(user)),
    ]
    seqs = [list(x)]
    for op in ops:
        for size in (1, 2, 4, 10):
            for _ in range(3):
                seqs.append(op.apply(x, sorted(rng.choice(user, size=size, replace=False).tolist())))
        seqs.append(op.apply(x, [12]))  # only the last prompt token
        seqs.append(op.apply(x, [3]))  # only the first user token
    for bs in (1, 4, None):
        sc = PrefixBatchScorer(model, x, y, batch_size=bs)
        batched = sc.score(seqs)
        naive = sc.score_naive(seqs)
        np.testing.assert_allclose(batched, naive, atol=2e-5, rtol=0)
        np.testing.assert_allclose(sc.base, naive[0], atol=2e-5, rtol=0)
        assert sc.forwards == len(seqs) and (bs is None or sc.batches >= math.ceil(len(seqs) / bs))


def test_prior_replacement_is_the_models_top_other_token() -> None:
    from tests.conftest import tiny_llama

    model = tiny_llama(300, seed=2)
    x = [5, 17, 42, 99, 7]
    sc = PrefixBatchScorer(model, x, [11, 12])
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([x])).logits[0]
    for k in range(1, len(x)):
        row = logits[k - 1].clone()
        row[x[k]] = -float("inf")
        row[5] = -float("inf")
        assert sc.prior_top(k, {x[k], 5}) == int(row.argmax())
    assert sc.prior_top(0, set()) is None


def test_all_subsets_helper() -> None:
    assert sorted(M.bits(0b1011)) == [0, 1, 3] and M.mask_of([0, 1, 3]) == 0b1011
    assert M.prefix_masks([2, 0]) == [0, 0b100, 0b101]
    assert list(itertools.islice(M.random_subsets(4, 50, np.random.default_rng(0)), 50)) and all(
        0 < m < 16 for m in M.random_subsets(4, 50, np.random.default_rng(0))
    )


def test_lockstep_beams_equal_separate_beams_within_their_cost() -> None:
    n, width = 7, 3
    g1, g2 = _random_set_function(n, 21), _random_set_function(n, 22)
    full = M.full_mask(n)
    fetched: list[list[int]] = []
    both = M.beam_bounds_lockstep(
        n, width, lambda ms: fetched.append(list(ms)), [(g1.__getitem__, lambda m: m), (g2.__getitem__, lambda m: full ^ m)]
    )
    for g, found in zip((g1, g2), both, strict=True):
        assert found == pytest.approx(M.beam_bounds(n, lambda ms, g=g: [g[m] for m in ms], width)[:2])
    assert len(fetched) == n + 1, "one batch per level for every curve together"
    assert sum(len(f) for f in fetched) <= M.beam_cost(n, width, 2)


def test_exact_bounds_chosen_when_no_dearer_than_the_beam() -> None:
    model, gens, results = _oracle_setup(n_user=9, t=2)
    ev = _evaluate(model, gens, results, perturbations=4)
    assert ev.details["prompts"]["p0"]["bounds"].startswith("exact")  # 511 subsets ≤ the beam's ~1800
    model, gens, results = _oracle_setup(n_user=12, t=2)
    ev = _evaluate(model, gens, results, perturbations=4)
    assert ev.details["prompts"]["p0"]["bounds"].startswith("beam search")  # 4095 subsets > the beam's ~1400
    assert _prompt_value(ev, "true", "naopc") == pytest.approx(1.0) and _prompt_value(ev, "reversed", "naopc") == pytest.approx(
        0.0, abs=1e-12
    )
    assert ev.details["forwards"] < 1500
