"""Known-answer tests of the Probabilistic Attribution Score (methods.md §1.6), both modes.

Oracles: brute-force enumeration of every sequence of a tiny random Llama (V = 6), a naive
per-candidate full forward, closed forms for a model that ignores all but the last token.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pydantic
import pytest
import torch
import transformers

from reportgen.cache import Cache
from reportgen.data import AttributionResult, Generation
from reportgen.plugin_api import AttributionContext, LoadedModel
from reportgen_plugins.pas.engine import PrefixScorer
from reportgen_plugins.pas.estimators import (
    betting_as_interval,
    certified_as_interval,
    logsumexp,
    nucleus,
    pool_growth_pays,
    position_stats,
    response_entropy,
)
from reportgen_plugins.pas.method import MATRIX_LABEL, PASOptions, ProbabilisticMethod
from reportgen_plugins.pas.payload import (
    Candidate,
    CandidateLists,
    PasPayload,
    ReplacementStats,
    ResponseSample,
)

SCORE_NAMES = [
    "attribution_score",
    "entropy_prompt",
    "entropy_prompt_response",
    "kl_posterior_prior",
    "kl_prior_posterior",
    "log_prior_original",
    "log_posterior_original",
]


def tiny_llama(vocab: int = 16, seed: int = 0, init: float = 0.4, ignore_context: bool = False) -> torch.nn.Module:
    """A tiny random LlamaForCausalLM; ``ignore_context`` zeroes attention outputs so each
    position's prediction depends only on its own (the last) token."""
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        max_position_embeddings=64,
        initializer_range=init,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    if ignore_context:
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def make_generation(x: list[int], y: list[int], special: list[bool] | None = None) -> Generation:
    return Generation(
        model_id="toy",
        prompt_id="p",
        input_ids=tuple(x),
        input_tokens=tuple(str(i) for i in x),
        input_special=tuple(special if special is not None else [True] + [False] * (len(x) - 1)),
        output_ids=tuple(y),
        output_tokens=tuple(str(i) for i in y),
        prompt_text="",
        response_text="",
        settings={"max_new_tokens": len(y), "do_sample": False},
    )


def run(model, gen, seed: int = 0, cache: Cache | None = None, **opts):
    loaded = LoadedModel(id="toy", source="toy:", model=model, tokenizer=None)
    ctx = AttributionContext(model=loaded, generation=gen, options=PASOptions(**opts), seed=seed, cache=cache or Cache(None))
    return ProbabilisticMethod().attribute(ctx)


X, Y = [0, 5, 9, 3, 12, 7], [4, 11, 2]


@pytest.fixture(scope="module")
def llama16():
    return tiny_llama(16, seed=1)


@pytest.fixture(scope="module")
def exact16(llama16):
    return run(llama16, make_generation(X, Y), mode="exact")


# ---------------------------------------------------------------- 1, 2: normalisation, identities
def test_exact_normalisation_and_identities(llama16):
    sc = PrefixScorer(llama16, X, Y)
    vocab = np.arange(16)
    for k in range(1, len(X)):
        l_cum = sc.score(k, vocab)
        st = position_stats(l_cum, X[k])
        assert np.exp(st.log_prior).sum() == pytest.approx(1.0, abs=1e-12)
        assert np.exp(st.log_posterior).sum() == pytest.approx(1.0, abs=1e-12)
        p_y = np.exp(l_cum[:, -1] - l_cum[:, 0])  # P(y | x^(v))
        d = st.d_num - st.d_den
        assert np.sum(np.exp(st.log_prior) * p_y) == pytest.approx(math.exp(d), rel=1e-9)
        a_num = sc.log_p_response
        assert st.attribution_score == pytest.approx(a_num - d, abs=1e-5)
        assert st.attribution_score == pytest.approx(st.log_posterior_original - st.log_prior_original, abs=1e-12)
        # KL(ρ‖π) = E_ρ[ln P(y|x^(v))] − D
        kl = np.sum(np.exp(st.log_posterior) * np.log(p_y)) - d
        assert st.kl_posterior_prior == pytest.approx(kl, abs=1e-9)


def test_result_contract(exact16):
    r = exact16
    n, t = len(X), len(Y)
    assert r.method == "probabilistic" and r.signed is True and r.matrix_label == MATRIX_LABEL
    assert r.matrix.shape == (n, t) and np.all(np.isnan(r.matrix[0]))
    for nm in SCORE_NAMES:
        assert len(r.scores[nm]) == n and r.scores[nm][0] is None
        assert all(isinstance(v, float) for v in r.scores[nm][1:])
    d = PasPayload.of(r)
    assert d.mode == "exact" and d.positions == (1, 2, 3, 4, 5) and d.vocabulary_size == 16
    assert set(d.candidates) == {1, 2, 3, 4, 5}
    assert all(d.interval_kind[k] == "exact" for k in d.positions)
    assert all(d.evaluated_candidates[k] == 16 for k in d.positions)
    c = d.candidates[2]
    assert len(c.prior) == 5 and len(c.posterior) == 5 and c.prior[0].id is not None
    assert c.prior[0].p >= c.prior[1].p
    assert d.replacement is None and not d.certified_interval and not d.skipped
    for k in d.positions:
        lo, hi = r.intervals["attribution_score"][k]
        assert lo == hi == r.scores["attribution_score"][k]
        assert r.scores["attribution_score"][k] == pytest.approx(
            r.scores["log_posterior_original"][k] - r.scores["log_prior_original"][k], abs=1e-12
        )
    assert r.intervals["attribution_score"][0] is None
    assert "seconds" in r.timings
    assert "replacement_entropy" not in r.scores
    r.to_json()  # JSON-able


# ---------------------------------------------------------------- 8: telescoping matrix
def test_matrix_rows_sum_to_as(exact16):
    for k in PasPayload.of(exact16).positions:
        assert np.nansum(exact16.matrix[k]) == pytest.approx(exact16.scores["attribution_score"][k], abs=1e-10)


# ---------------------------------------------------------------- 4: brute force enumeration
def _joint_log_probs(model, x0: int, vocab: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """log P(s_1..s_{L-1} | s_0 = x0) for every sequence (full enumeration)."""
    seqs = np.array([(x0, *s) for s in itertools.product(range(vocab), repeat=length - 1)])
    with torch.no_grad():
        logits = model(torch.tensor(seqs)).logits[:, :-1].double()
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(seqs[:, 1:])[..., None])[..., 0]
    return seqs, lp.sum(1).numpy()


def test_brute_force_enumeration():
    vocab = 6
    model = tiny_llama(vocab, seed=3, init=0.6)
    x, y = [0, 4, 2, 5], [3, 1, 4]
    n = len(x)
    seqs, logp = _joint_log_probs(model, x[0], vocab, n + len(y))
    r = run(model, make_generation(x, y), mode="exact")
    sc = PrefixScorer(model, x, y)
    for k in range(1, n):
        others = [i for i in range(1, n) if i != k]
        m_prompt = np.all(seqs[:, others] == np.array(x)[others], axis=1)
        m_full = m_prompt & np.all(seqs[:, n:] == np.array(y), axis=1)
        d_brute = logsumexp(logp[m_full]) - logsumexp(logp[m_prompt])  # log P(x_-k, y)/P(x_-k)
        st = position_stats(sc.score(k, np.arange(vocab)), x[k])
        assert st.d_num - st.d_den == pytest.approx(d_brute, abs=1e-6)
        # AS = log P(y|x) − D, with log P(y|x) by enumeration too
        m_x = np.all(seqs[:, 1:n] == np.array(x)[1:], axis=1)
        a_num = logsumexp(logp[m_x & m_full]) - logsumexp(logp[m_x])
        assert r.scores["attribution_score"][k] == pytest.approx(a_num - d_brute, abs=1e-6)
        # the prior π_k(v) = P(x_k = v | x_-k) by enumeration
        pri = [logsumexp(logp[m_prompt & (seqs[:, k] == v)]) - logsumexp(logp[m_prompt]) for v in range(vocab)]
        assert np.allclose(st.log_prior, pri, atol=1e-6)


# ---------------------------------------------------------------- 3: ignored tokens
def test_ignored_token_model():
    model = tiny_llama(16, seed=2, ignore_context=True)
    r = run(model, make_generation(X, Y), mode="exact")
    for k in range(1, len(X) - 1):  # the response depends only on the last prompt token
        s = {nm: r.scores[nm][k] for nm in SCORE_NAMES}
        assert s["attribution_score"] == pytest.approx(0.0, abs=1e-5)
        assert s["entropy_prompt_response"] == pytest.approx(s["entropy_prompt"], abs=1e-5)
        assert s["kl_posterior_prior"] == pytest.approx(0.0, abs=1e-5)
        assert s["kl_prior_posterior"] == pytest.approx(0.0, abs=1e-5)
        c = PasPayload.of(r).candidates[k]
        assert [e.id for e in c.prior] == [e.id for e in c.posterior]
        assert np.allclose(r.matrix[k], 0.0, atol=1e-5)
    # the last prompt token does matter
    assert abs(r.scores["attribution_score"][len(X) - 1]) > 1e-3


# ---------------------------------------------------------------- 7: shared KV cache vs naive
def test_shared_prefix_equals_naive_forward(llama16):
    sc = PrefixScorer(llama16, X, Y)
    for k in range(1, len(X)):
        fast = sc.score(k, np.arange(16), batch_size=5)  # uneven last batch
        naive = sc.score_naive(k, np.arange(16))
        assert np.allclose(fast, naive, atol=1e-5)
        # the one-step bound factor equals the naive next-token log-prob
        if k < len(X) - 1:
            nt = sc.next_token_logp(k, np.arange(16), batch_size=7)
            prior = sc.prior_logp(k)[:16]
            assert np.all(prior + nt >= fast[:, 0] - 1e-5)  # u(v) ≥ exp ℓ_den(v)
            if k == len(X) - 2:  # then u(v) is exactly exp ℓ_den(v)
                assert np.allclose(prior + nt, fast[:, 0], atol=1e-5)


# ---------------------------------------------------------------- 6: fast mode
def test_fast_full_vocab_equals_exact(llama16, exact16):
    r = run(llama16, make_generation(X, Y), mode="fast", max_candidates=16, batch_size=4)
    for nm in SCORE_NAMES:
        assert np.allclose(np.array(r.scores[nm][1:]), np.array(exact16.scores[nm][1:]), atol=1e-9)
    assert np.allclose(r.matrix[1:], exact16.matrix[1:], atol=1e-9)
    assert set(PasPayload.of(r).interval_kind.values()) <= {"exact", "certified"}


@pytest.mark.parametrize("pool", [0, "all", 5])
def test_fast_certified_interval_contains_exact(llama16, exact16, pool):
    r = run(llama16, make_generation(X, Y), mode="fast", max_candidates=6, tail_samples=0, batch_size=3, bound_pool=pool)
    p = PasPayload.of(r)
    for k in p.positions:
        lo, hi = r.intervals["attribution_score"][k]
        ex = exact16.scores["attribution_score"][k]
        assert lo <= ex + 1e-9 and ex <= hi + 1e-9 and lo <= hi
        assert lo <= r.scores["attribution_score"][k] <= hi
        assert p.interval_kind[k] in ("certified", "exact")
        assert p.evaluated_candidates[k] <= 6
        assert np.nansum(r.matrix[k]) == pytest.approx(r.scores["attribution_score"][k], abs=1e-10)


def test_certified_interval_is_tight_when_extremes():
    # U → 0 gives a point; the bounds are attained at the documented extremes
    c, d_s, n_s = 0.3, -2.0, -5.0
    assert certified_as_interval(c, d_s, n_s, -math.inf) == (c - n_s + d_s, c - n_s + d_s)
    u = -4.0
    lo, hi = certified_as_interval(c, d_s, n_s, u)

    def f(nt: float, dt: float) -> float:
        return c - math.log(math.exp(n_s) + nt) + math.log(math.exp(d_s) + dt)

    grid = np.linspace(0, math.exp(u), 41)
    vals = [f(nt, dt) for dt in grid for nt in grid if nt <= dt]
    assert min(vals) == pytest.approx(lo, abs=1e-12) and max(vals) == pytest.approx(hi, abs=1e-12)


def test_pool_growth_pays_closed_form():
    # D_S = 1: slack log(1 + U), U = B + R; more bounds can remove log(1 + B + R) − log(1 + B) of it
    assert pool_growth_pays(-1.0, 0.0, -math.inf, 0.0, 0.01, 0.5)  # all of log 2 is removable, −1 + 0 < −0.5
    assert pool_growth_pays(-1.0, 0.0, math.log(0.5), math.log(2.0), 0.01, 0.5)  # −1 + log 1.5 < −0.5
    assert not pool_growth_pays(-1.0, 0.0, math.log(0.5), math.log(2.0), 0.01, 0.7)  # −1 + log 1.5 > −0.7
    assert not pool_growth_pays(-0.3, 0.0, math.log(0.5), math.log(2.0), 0.01, 0.0)  # −0.3 + log 1.5 > 0
    assert not pool_growth_pays(0.2, 0.0, -math.inf, 0.0, 0.01, 0.0)  # a positive top-set AS stays positive
    assert not pool_growth_pays(-1.0, 0.0, -math.inf, math.log(0.005), 0.01, 0.5)  # log 1.005 ≤ tolerance
    assert not pool_growth_pays(-1.0, 0.0, math.log(0.5), -math.inf, 0.01, 0.5)  # nothing left unbounded
    # the slack scales with D_S: the same tail against a 100× larger top set is negligible
    assert not pool_growth_pays(-1.0, math.log(100.0), -math.inf, 0.0, 0.01, 0.5)


def test_fast_small_tail_is_evaluated_whole(llama16, exact16):
    """A tail no larger than the sampling budget is evaluated, not sampled: AS is exact."""
    r = run(llama16, make_generation(X, Y), mode="fast", max_candidates=4, tail_samples=64, batch_size=4, tolerance=1e-4, neighbours=0)
    p = PasPayload.of(r)
    assert set(p.interval_kind.values()) == {"exact"} and set(p.evaluated_candidates.values()) == {16}
    for nm in SCORE_NAMES:
        assert np.allclose(np.array(r.scores[nm][1:]), np.array(exact16.scores[nm][1:]), atol=1e-9)
    assert set(p.certified_interval) == set(p.positions)  # the top set's certified interval is kept


XE, YE = [0, 13, 10, 9, 5, 6], [5, 9, 3]  # a prompt and the greedy response of tiny_llama(16, 100, 1.0)


def test_fast_estimate_mode():
    model = tiny_llama(16, seed=100, init=1.0)
    exact = run(model, make_generation(XE, YE), mode="exact")
    r = run(model, make_generation(XE, YE), mode="fast", max_candidates=4, tail_samples=8, batch_size=4, neighbours=0)
    p = PasPayload.of(r)
    kinds = p.interval_kind
    assert set(kinds.values()) == {"certified", "estimate"}
    for k in p.positions:
        lo, hi = r.intervals["attribution_score"][k]
        clo, chi = p.certified_interval[k]
        est = r.scores["attribution_score"][k]
        ex = exact.scores["attribution_score"][k]
        assert clo - 1e-9 <= lo <= est <= hi <= chi + 1e-9
        assert lo - 1e-9 <= ex <= hi + 1e-9
        assert 4 < p.evaluated_candidates[k] <= 4 + 8
        assert np.nansum(r.matrix[k]) == pytest.approx(est, abs=1e-10)
        # listed probabilities are individual estimates exp(ℓ(v) − D̂), clipped to [0, 1]
        assert all(0.0 <= e.p <= 1.0 for e in p.candidates[k].prior)
        if kinds[k] == "estimate":  # never zero width, at most half the certified width
            assert 0.0 < hi - lo <= 0.5 * (chi - clo)
            assert abs(est - ex) < 0.25 * (chi - clo)
        else:  # the sample could not halve the certified interval: that interval is reported
            assert (lo, hi) == pytest.approx((min(clo, est), max(chi, est)))


def test_betting_interval_covers_a_hidden_heavy_candidate():
    """The estimate interval's promise, checked on a synthetic tail built to break intervals that
    trust the spread of the draws seen: 200 candidates of which one, drawn with probability 0.2 %,
    carries most of the numerator (a normal interval from the draws covers the exact AS about a third of
    the time here). Coverage over seeds must reach 95 % (2 points of slack)."""
    rng = np.random.default_rng(0)
    m = 200
    u = rng.dirichlet(np.ones(m)) * 0.5  # tail bound mass U = 0.5
    u[0] = 0.001
    u /= u.sum() / 0.5
    r_den = rng.uniform(0.0, 0.2, m)
    r_num = r_den * rng.uniform(0.0, 0.01, m)
    r_den[0], r_num[0] = 1.0, 1.0  # the hidden heavy candidate: e_num = e_den = u
    e_den, e_num = u * r_den, u * r_num
    c, d_s, n_s = -1.0, math.log(0.05), math.log(0.05) - 5.0  # top set: N_S = D_S·e^{−5}, below the hidden e_num
    exact = c + math.log(math.exp(d_s) + e_den.sum()) - math.log(math.exp(n_s) + e_num.sum())
    cert = certified_as_interval(c, d_s, n_s, math.log(u.sum()))
    q = u / u.sum()
    hits = runs = 0
    for seed in range(200):
        d = np.random.default_rng(seed).choice(m, size=256, p=q)
        ci = betting_as_interval(c, d_s, n_s, math.log(u.sum()), r_den[d], r_num[d], cert)
        assert ci is None or cert[0] <= ci[0] < ci[1] <= cert[1]
        if ci is not None:
            runs += 1
            hits += ci[0] <= exact <= ci[1]
    assert runs >= 190 and hits / runs >= 0.93


def test_betting_interval_shrinks_with_draws_and_keeps_the_truth():
    """With the tail known (every draw gives the same ratios), more draws narrow the interval
    around the true AS; it always lies inside the certified interval."""
    c, d_s, n_s, log_tail = -0.5, 0.0, -1.0, math.log(0.3)
    r_den, r_num = 0.4, 0.1
    exact = c + math.log(1.0 + 0.3 * r_den) - math.log(math.exp(n_s) + 0.3 * r_num)
    cert = certified_as_interval(c, d_s, n_s, log_tail)
    widths = []
    for n in (16, 64, 256, 1024):
        ci = betting_as_interval(c, d_s, n_s, log_tail, np.full(n, r_den), np.full(n, r_num), cert)
        assert ci is not None and cert[0] <= ci[0] <= exact <= ci[1] <= cert[1]
        widths.append(ci[1] - ci[0])
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.1 * (cert[1] - cert[0])
    assert betting_as_interval(c, d_s, n_s, log_tail, np.empty(0), np.empty(0), cert) is None


def test_estimate_is_unbiased_for_tail_sums(llama16):
    """Average of independent estimates ≈ exact (the tail weights are unbiased)."""
    sc = PrefixScorer(llama16, X, Y)
    k = 2
    l_all = sc.score(k, np.arange(16))

    class Lookup:  # the real scorer's values, served from a table (fast repeated draws)
        x, n, device = sc.x, sc.n, sc.device

        def prior_logp(self, k_):
            return sc.prior_logp(k_)

        def default_batch_size(self, k_):
            return 16

        def score(self, k_, cands, bs=None):
            return l_all[np.asarray(cands)]

    meth = ProbabilisticMethod()
    opts = PASOptions(mode="fast", max_candidates=3, tail_samples=8, bound_pool=0, tolerance=1e-6, neighbours=0)
    for col in (0, -1):
        exact = np.exp(l_all[:, col]).sum()
        ests = []
        for seed in range(1000):
            sup = meth._fast(Lookup(), k, np.arange(16), opts, np.random.default_rng(seed), {})
            assert sup.kind in ("estimate", "certified") and sup.logw is not None  # a weighted tail sample
            w = np.exp(sup.logw)
            ests.append(np.sum(w * np.exp(sup.l_cum[:, col])))
        assert np.mean(ests) == pytest.approx(exact, rel=0.03)


class TableScorer:
    """A real :class:`PrefixScorer` whose candidate values are computed once per position and then
    served from a table (the method sees exactly the model's numbers; repeated seeded runs are cheap)."""

    def __init__(self, sc: PrefixScorer, vocab: int) -> None:
        self.sc, self.x, self.n, self.device = sc, sc.x, sc.n, sc.device
        self.ids = np.arange(vocab)
        self.rows: dict[int, np.ndarray] = {}
        self.next: dict[int, np.ndarray] = {}

    def prior_logp(self, k: int) -> np.ndarray:
        return self.sc.prior_logp(k)

    def default_batch_size(self, k: int) -> int:
        return 64

    def score(self, k: int, cands: Any, bs: int | None = None) -> np.ndarray:
        if k not in self.rows:
            self.rows[k] = self.sc.score(k, self.ids, 64)
        return self.rows[k][np.asarray(cands, dtype=np.int64)]

    def next_token_logp(self, k: int, cands: Any, bs: int | None = None) -> np.ndarray:
        if k not in self.next:
            self.next[k] = self.sc.next_token_logp(k, self.ids, 64)
        return self.next[k][np.asarray(cands, dtype=np.int64)]


@torch.no_grad()
def coverage_cases(vocab: int, init: float, prompts: int, n: int, seed: int) -> list[tuple[TableScorer, int, float]]:
    """Scored positions of random prompts (one tiny Llama each, greedy 3-token responses) with their exact AS."""
    rng = np.random.default_rng(seed)
    cases = []
    for p in range(prompts):
        model = tiny_llama(vocab, seed=100 * seed + p, init=init)
        x = [0] + [int(v) for v in rng.integers(2, vocab, size=n - 1)]
        seq = list(x)
        for _ in range(3):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        tab = TableScorer(PrefixScorer(model, x, seq[n:]), vocab)
        cases += [(tab, k, position_stats(tab.score(k, np.arange(vocab)), x[k]).attribution_score) for k in range(1, n)]
    return cases


def test_estimate_intervals_keep_their_coverage():
    """Seeded coverage study on enumerable tiny models (exact AS = brute force, see above): the
    fast-mode estimate intervals contain the exact AS at least as often as promised (95 %, with
    2 points of slack), none has zero width, and every certified interval contains it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny forwards: threads only add contention
    try:
        meth = ProbabilisticMethod()
        runs = covered = certified = 0
        widths = []
        for vocab, init, cap, m, pool, seed in ((16, 1.0, 4, 8, 0, 1), (64, 0.6, 8, 32, "all", 2)):
            opts = PASOptions(mode="fast", max_candidates=cap, neighbours=0, tail_samples=m, bound_pool=pool)
            for tab, k, exact in coverage_cases(vocab, init, prompts=4, n=6, seed=seed):
                for s in range(8):
                    sup = meth._fast(tab, k, np.arange(vocab), opts, np.random.default_rng([s, k]), {})
                    lo, hi = sup.interval or (math.nan, math.nan)
                    if sup.kind == "certified":
                        certified += 1
                        assert lo - 1e-9 <= exact <= hi + 1e-9
                    elif sup.kind == "estimate":
                        assert sup.certified is not None
                        assert sup.certified[0] - 1e-9 <= lo < hi <= sup.certified[1] + 1e-9
                        runs += 1
                        covered += lo - 1e-9 <= exact <= hi + 1e-9
                        widths.append(hi - lo)
        assert runs >= 60 and certified >= 60  # enough estimates for the coverage to mean something
        assert covered / runs >= 0.93, f"coverage {covered}/{runs} below 95 % − 2 points"
        assert min(widths) > 1e-6  # never a zero-width estimate interval
    finally:
        torch.set_num_threads(threads)


class CountingScorer(TableScorer):
    """A :class:`TableScorer` that records which candidates got a one-step bound, per position."""

    def __init__(self, tab: TableScorer) -> None:
        self.__dict__.update(tab.__dict__)
        self.bounded: dict[int, list[int]] = {}

    def next_token_logp(self, k: int, cands: Any, bs: int | None = None) -> np.ndarray:
        self.bounded.setdefault(k, []).extend(int(c) for c in cands)
        return super().next_token_logp(k, cands, bs)


def test_adaptive_pool_narrows_within_the_certified_guarantee(monkeypatch):
    """``bound_pool: adaptive`` (first pool 2 here, V = 64) picks the same top set as no pool at all, only
    ever lowers the tail bound, so its certified interval lies inside that one's and still holds the exact
    AS (brute force); it bounds candidates where that pays, never one of the top set nor the last prompt token."""
    monkeypatch.setattr("reportgen_plugins.pas.method.FIRST_POOL", 2)
    meth = ProbabilisticMethod()
    common: dict[str, Any] = {"mode": "fast", "max_candidates": 4, "neighbours": 0, "tail_samples": 0, "tolerance": 1e-3}
    fixed = PASOptions(**common, bound_pool=0)
    adaptive = PASOptions(**common, bound_pool="adaptive", bound_pool_max=64, bound_target=0.0)
    narrower = grew = 0
    for tab, k, exact in coverage_cases(64, 0.6, prompts=8, n=6, seed=2):
        a_sc = CountingScorer(tab)
        f = meth._fast(tab, k, np.arange(64), fixed, np.random.default_rng(0), {})
        a = meth._fast(a_sc, k, np.arange(64), adaptive, np.random.default_rng(0), {})
        assert list(a.ids) == list(f.ids) and f.interval is not None and a.interval is not None
        assert f.interval[0] - 1e-12 <= a.interval[0] <= exact + 1e-9 and exact - 1e-9 <= a.interval[1] <= f.interval[1] + 1e-12
        pooled = a_sc.bounded.get(k, [])
        assert len(pooled) == len(set(pooled)) and not set(pooled) & set(a.ids.tolist())  # none twice, none of S after S
        if k == tab.n - 1:
            assert pooled == []
        grew += len(pooled) > 0
        narrower += a.interval[1] - a.interval[0] < f.interval[1] - f.interval[0] - 1e-9
    assert grew >= 1 and narrower >= 1


class DesignedScorer:
    """Position 1 of a made-up model, V = 64: prior 0.1 for candidates 0–3 and 0.01 for the other 60; the
    next prompt token (the last) follows 0–3 with probability 1/2 and the rest with 10⁻⁴; P(y | x^(v)) is
    0.1 for the original token 0, 0.9 for 1 and 0.5 otherwise."""

    x, n, device = [7, 0, 5], 3, torch.device("cpu")

    def __init__(self) -> None:
        self.step = np.log(np.where(np.arange(64) < 4, 0.5, 1e-4))
        self.resp = np.log(np.where(np.arange(64) == 0, 0.1, np.where(np.arange(64) == 1, 0.9, 0.5)))
        self.bounded: list[int] = []

    def prior_logp(self, k: int) -> np.ndarray:
        return np.log(np.where(np.arange(64) < 4, 0.1, 0.01))

    def default_batch_size(self, k: int) -> int:
        return 64

    def next_token_logp(self, k: int, cands: Any, bs: int | None = None) -> np.ndarray:
        self.bounded += [int(c) for c in cands]
        return self.step[np.asarray(cands)]

    def score(self, k: int, cands: Any, bs: int | None = None) -> np.ndarray:
        den = self.prior_logp(k)[np.asarray(cands)] + self.step[np.asarray(cands)]
        return np.stack([den, den + self.resp[np.asarray(cands)]], axis=1)


def test_adaptive_pool_closed_form(monkeypatch):
    """The top set {0, 1, 2, 3} has AS_S = log(0.1/2 / ¼) = log 0.2 < 0 and the 60 prior-bounded candidates
    (U/D_S = 0.6/0.2) make the slack, so the pool grows 2 → 64 and the interval closes in on the exact AS
    (from the whole table), while a fixed pool of 2 leaves its upper end at log 0.2 + log 4 ≈ −0.22; a top
    set with a positive AS gets no one-step bound at all."""
    monkeypatch.setattr("reportgen_plugins.pas.method.FIRST_POOL", 2)
    meth, sc = ProbabilisticMethod(), DesignedScorer()
    exact = position_stats(sc.score(1, np.arange(64)), 0).attribution_score
    common: dict[str, Any] = {"mode": "fast", "max_candidates": 4, "neighbours": 0, "tail_samples": 0, "tolerance": 1e-3}
    fixed = meth._fast(DesignedScorer(), 1, np.arange(64), PASOptions(**common, bound_pool=2), np.random.default_rng(0), {})
    grow = PASOptions(**common, bound_pool="adaptive", bound_pool_max=64)
    adaptive = meth._fast(sc, 1, np.arange(64), grow, np.random.default_rng(0), {})
    assert sorted(sc.bounded) == list(range(4, 64))  # every tail candidate once, none of the top set
    assert fixed.interval is not None and adaptive.interval is not None
    lo, hi = adaptive.interval
    assert lo <= exact <= hi and hi - exact < 0.01 < fixed.interval[1] - exact
    assert sorted(adaptive.ids.tolist()) == [0, 1, 2, 3]
    assert fixed.interval[1] == pytest.approx(math.log(0.2) + math.log(4), abs=1e-3)
    assert hi < -1.0 < fixed.interval[1]  # certified negative only with the grown pool
    sc.resp = np.log(np.where(np.arange(64) == 0, 0.9, 0.1))  # the original now explains the response best
    sc.bounded = []
    meth._fast(sc, 1, np.arange(64), grow, np.random.default_rng(0), {})
    assert sc.bounded == []


# ---------------------------------------------------------------- 5: replacement entropy
def test_response_entropy_known_answer():
    resp = [(1,), (1,), (2,), (3,), (4,), (5,)]
    assert response_entropy(resp) == pytest.approx(1.5607, abs=1e-4)  # GPT-2 prompt 6, pos 1
    assert response_entropy([(1, 2)] * 4) == 0.0
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    assert list(nucleus(probs, 0.9, 10)) == [0, 1, 2]
    assert list(nucleus(probs, 0.9, 2)) == [0, 1]
    assert list(nucleus(probs, 0.5, 10)) == [0]


def test_replacement_entropy_bounds(llama16, tmp_path):
    gen0 = make_generation(X, [])
    # generate y greedily so the stored response is the model's own
    with torch.no_grad():
        out = llama16.generate(
            torch.tensor([X]), attention_mask=torch.ones(1, len(X), dtype=torch.long), do_sample=False, max_new_tokens=3, pad_token_id=1
        )
    y = out[0, len(X) :].tolist()
    gen = make_generation(X, y)
    assert gen0.t == 0
    cache = Cache(tmp_path)
    r = run(llama16, gen, cache=cache, mode="exact", replacement_entropy=True, replacement_max_candidates=6)
    p = PasPayload.of(r)
    assert p.replacement is not None
    for k in p.positions:
        e = r.scores["replacement_entropy"][k]
        d = p.replacement[k]
        assert 1 <= d.count <= 6
        assert 0.0 <= e <= math.log(d.count) + 1e-12
        assert (e == 0.0) == (d.distinct_responses == 1)
        pct = r.scores["original_response_pct"][k]
        assert pct == pytest.approx(100.0 * d.original_response_count / d.count)
        assert (pct == 100.0) == (d.original_response_count == d.count)
        assert d.original_token_count in (0, 1)
        assert len(d.responses) == min(10, d.count)
        # candidates that keep the original token reproduce the original greedy response
        if d.original_token_count == 1:
            assert d.original_response_count >= 1
    # the second run is served from the cache and gives the same numbers
    hits = cache.hits
    r2 = run(llama16, gen, cache=cache, mode="exact", replacement_entropy=True, replacement_max_candidates=6)
    assert cache.hits > hits
    assert r2.scores["replacement_entropy"] == r.scores["replacement_entropy"]


# ---------------------------------------------------------------- options and positions
def test_options_and_positions(llama16):
    with pytest.raises(pydantic.ValidationError):
        PASOptions(nonsense=1)
    with pytest.raises(pydantic.ValidationError):
        PASOptions(mode="slow")
    r = run(llama16, make_generation(X, Y), mode="exact", positions=[0, 3])
    p = PasPayload.of(r)
    assert p.positions == (3,) and 0 in p.skipped
    assert all(v is None for i, v in enumerate(r.scores["attribution_score"]) if i != 3)
    assert np.all(np.isnan(np.delete(r.matrix, 3, axis=0)))
    with pytest.raises(ValueError):
        run(llama16, make_generation(X, Y), positions=[99])


def test_plugin_registers():
    from reportgen_plugins import pas

    got: list[Any] = []
    pas.reportgen_register_attribution_methods(got.append)
    assert [m.name for m in got] == ["probabilistic"] and got[0].options_model is PASOptions


# ---------------------------------------------------------------- the typed payload
def full_payload() -> PasPayload:
    """A hand-made payload with every field set (non-ASCII and markup tokens, a missing id)."""
    return PasPayload(
        mode="fast",
        positions=(2, 5),
        log_p_response=-3.25,
        candidates={
            2: CandidateLists(prior=(Candidate("café", 7, 0.5), Candidate("<b>", None, 0.25)), posterior=(Candidate("\n", 3, 0.75),)),
            5: CandidateLists(),
        },
        interval_kind={2: "estimate", 5: "certified"},
        evaluated_candidates={2: 12, 5: 64},
        vocabulary_size=49152,
        replacement={
            2: ReplacementStats(3, 1, 2, 2, (ResponseSample(" café", " 1997."), ResponseSample("x", ""))),
            5: ReplacementStats(1, 1, 1, 1),
        },
        certified_interval={2: (-0.5, 0.25), 5: (1.0, 1.0)},
        skipped={0: "position 0 has no preceding token"},
    )


def test_payload_round_trip() -> None:
    p = full_payload()
    assert PasPayload.from_json(p.to_json()) == p
    assert PasPayload.from_json(json.loads(json.dumps(p.to_json()))) == p  # through results.json
    empty = PasPayload()
    assert PasPayload.from_json(empty.to_json()) == empty
    assert PasPayload.from_json({}) == empty  # a hand-made result without details
    assert PasPayload.from_json({**p.to_json(), "from_cache": True}) == p  # the runner's flag is not PAS's
    assert PasPayload(replacement={}).to_json()["replacement"] == {}  # computed for no position ≠ not computed
    assert "replacement" not in empty.to_json()
    with pytest.raises(ValueError, match="interval kind"):
        PasPayload.from_json({"interval_kind": {"2": "guess"}})


def test_details_json_layout(exact16):
    """results.json keeps the layout it had before the payload was typed (cached results, golden HTML)."""
    d = exact16.details
    assert list(d) == ["mode", "positions", "log_p_response", "candidates", "interval_kind", "evaluated_candidates", "vocabulary_size"]
    assert d["positions"] == [1, 2, 3, 4, 5] and list(d["candidates"]) == ["1", "2", "3", "4", "5"]
    assert list(d["candidates"]["2"]) == ["prior", "posterior"]
    assert list(d["candidates"]["2"]["prior"][0]) == ["token", "id", "p"]
    assert d["interval_kind"]["1"] == "exact" and d["evaluated_candidates"]["1"] == 16
    p = full_payload().to_json()
    assert list(p)[-3:] == ["replacement", "certified_interval", "skipped"]
    assert p["replacement"]["2"] == {
        "count": 3,
        "original_token_count": 1,
        "original_response_count": 2,
        "distinct_responses": 2,
        "responses": [{"candidate": " café", "response": " 1997."}, {"candidate": "x", "response": ""}],
    }
    assert p["certified_interval"] == {"2": [-0.5, 0.25], "5": [1.0, 1.0]} and p["skipped"] == {"0": p["skipped"]["0"]}


def test_payload_of_a_real_result(smollm_tokenizer):
    """The method's payload on conftest's tiny model (real tokenizer: real token strings) survives
    to_json/from_json and a trip through results.json."""
    from conftest import tiny_llama as conftest_tiny_llama

    tok = smollm_tokenizer
    model = conftest_tiny_llama(len(tok), seed=4)
    x = tok("Où est le café? <b>&amp;</b>", add_special_tokens=False).input_ids
    gen = make_generation(x, [17, 907, 2])
    loaded = LoadedModel(id="tiny", source="tiny:4", model=model, tokenizer=tok)
    opts = PASOptions(
        mode="fast", max_candidates=6, tail_samples=4, neighbours=2, batch_size=8, replacement_entropy=True, replacement_max_candidates=3
    )
    r = ProbabilisticMethod().attribute(AttributionContext(model=loaded, generation=gen, options=opts, seed=0, cache=Cache(None)))
    p = PasPayload.of(r)
    assert r.details == p.to_json()  # the method writes exactly its payload
    assert PasPayload.from_json(p.to_json()) == p
    assert p.positions == tuple(range(1, len(x))) and p.vocabulary_size == len(tok)
    assert p.replacement is not None and set(p.replacement) == set(p.positions) == set(p.certified_interval)
    assert any(c.token.strip() for c in p.candidates[1].prior)  # decoded strings, not ids
    back = AttributionResult.from_json(json.loads(json.dumps(r.to_json())))
    assert PasPayload.of(back) == p


# ---------------------------------------------------------------- real model (slow)
@pytest.mark.slow
def test_smollm2_fast_mode():
    from reportgen_plugins.models.loaders import embedded_file

    gguf = embedded_file("smollm2-135m-instruct")
    folder, fn = str(gguf.parent), gguf.name
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=fn)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=fn, dtype=torch.float32).eval()
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What year did Einstein visit Mars?"}], tokenize=False, add_generation_prompt=True
    )
    x = tok(text, add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(
            torch.tensor([x]),
            attention_mask=torch.ones(1, len(x), dtype=torch.long),
            do_sample=False,
            max_new_tokens=5,
            pad_token_id=tok.eos_token_id,
        )
    y = out[0, len(x) :].tolist()
    gen = make_generation(x, y, special=[True] * len(x))
    positions = [len(x) - 9, len(x) - 7]  # "Einstein", "Mars"-ish user tokens
    loaded = LoadedModel(id="smol", source="embedded:smollm2-135m-instruct", model=model, tokenizer=tok)
    ctx = AttributionContext(
        model=loaded,
        generation=gen,
        seed=0,
        cache=Cache(None),
        options=PASOptions(positions=positions, max_candidates=16, tail_samples=8, batch_size=16),
    )
    r = ProbabilisticMethod().attribute(ctx)
    p = PasPayload.of(r)
    assert p.vocabulary_size == 49152
    for k in positions:
        vals = [r.scores[nm][k] for nm in SCORE_NAMES]
        assert all(math.isfinite(v) for v in vals)
        assert r.scores["attribution_score"][k] == pytest.approx(
            r.scores["log_posterior_original"][k] - r.scores["log_prior_original"][k], abs=1e-9
        )
        lo, hi = r.intervals["attribution_score"][k]
        assert lo <= r.scores["attribution_score"][k] <= hi
        clo, chi = p.certified_interval[k]
        assert clo <= lo and hi <= chi
        assert np.nansum(r.matrix[k]) == pytest.approx(r.scores["attribution_score"][k], abs=1e-8)
