"""Known-answer tests of the Jacobian Scopes plugin (methods.md §2.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import transformers
from pydantic import ValidationError

from reportgen.cache import Cache
from reportgen.data import Generation
from reportgen.plugin_api import AttributionContext, LoadedModel
from reportgen_plugins.jacobian import scopes as jac

D = 6  # hidden size of the linear toy (= embedding size)
V = 9


# ---------------------------------------------------------------- linear toy: h_ℓ = Σ_t A[ℓ,t] e_t


def linear_problem(A: torch.Tensor, e: torch.Tensor, W: torch.Tensor, positions, targets) -> jac.ScopeProblem:
    """A: (L, L, d, d_e) with J_{ℓ,t} = A[ℓ, t]; e: (1, L, d_e)."""

    def hidden_fn(x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ltde,bte->bld", A, x)

    return jac.ScopeProblem(hidden_fn=hidden_fn, embeds=e, weight=W, positions=positions, targets=targets)


def brute_fisher(W: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F = E_{y~p}[g gᵀ], g = Wᵀ(e_y − p): the definition, one vocabulary entry at a time."""
    z = W @ h
    p = np.exp(z - z.max())
    p /= p.sum()
    F = np.zeros((W.shape[1], W.shape[1]))
    for y in range(W.shape[0]):
        onehot = np.zeros(W.shape[0])
        onehot[y] = 1.0
        g = W.T @ (onehot - p)
        F += p[y] * np.outer(g, g)
    return F, p


@pytest.fixture
def toy() -> dict:
    g = torch.Generator().manual_seed(0)
    L = 4
    A = torch.randn(L, L, D, D, generator=g, dtype=torch.float64)
    A = A * torch.tril(torch.ones(L, L, dtype=torch.float64))[:, :, None, None]  # causal
    e = torch.randn(1, L, D, generator=g, dtype=torch.float64)
    W = torch.randn(V, D, generator=g, dtype=torch.float64)
    return {"A": A, "e": e, "W": W, "L": L}


def test_linear_toy_closed_forms(toy: dict) -> None:
    A, e, W, L = toy["A"], toy["e"], toy["W"], toy["L"]
    ell, y = L - 1, 3
    prob = linear_problem(A, e, W, [ell], [y])
    h = torch.einsum("tde,te->d", A[ell], e[0]).numpy()
    Fb, _ = brute_fisher(W.numpy(), h)
    sem = jac.compute_scope(prob, "semantic").scores[0]
    tmp = jac.compute_scope(prob, "temperature").scores[0]
    fis = jac.compute_scope(prob, "fisher", fisher_mode="full").scores[0]
    hhat = h / np.linalg.norm(h)
    for t in range(L):
        At = A[ell, t].numpy()
        assert sem[t] == pytest.approx(np.linalg.norm(At.T @ W[y].numpy()), rel=1e-10)
        assert tmp[t] == pytest.approx(np.linalg.norm(At.T @ hhat), rel=1e-10)
        assert fis[t] == pytest.approx(np.trace(At.T @ Fb @ At), rel=1e-9)


def test_linear_toy_scaled_identity(toy: dict) -> None:
    """A_t = a_t I: Fisher = a_t² Σ_v p_v ‖w_v − w̄‖²; a_t = 0 → 0 for every scope."""
    e, W = toy["e"], toy["W"]
    a = torch.tensor([0.0, 0.5, -2.0, 1.0], dtype=torch.float64)
    L = len(a)
    A = torch.zeros(L, L, D, D, dtype=torch.float64)
    A[L - 1] = a[:, None, None] * torch.eye(D, dtype=torch.float64)
    prob = linear_problem(A, e, W, [L - 1], [1])
    h = (a[:, None] * e[0]).sum(0).numpy()
    _, p = brute_fisher(W.numpy(), h)
    wbar = p @ W.numpy()
    spread = float(sum(p[v] * np.sum((W.numpy()[v] - wbar) ** 2) for v in range(V)))
    for mode in ("full", "low_rank"):
        fis = jac.compute_scope(prob, "fisher", fisher_mode=mode, rank=D).scores[0]
        np.testing.assert_allclose(fis, a.numpy() ** 2 * spread, rtol=1e-9, atol=1e-14)
    for scope in ("semantic", "temperature", "fisher"):
        s = jac.compute_scope(prob, scope).scores[0]
        assert s[0] == 0.0


def test_low_rank_full_and_hutchinson(toy: dict) -> None:
    A, e, W = toy["A"], toy["e"], toy["W"]
    prob = linear_problem(A, e, W, [1, 2, 3], [0, 4, 2])
    full = jac.compute_scope(prob, "fisher", fisher_mode="full").scores
    kd = jac.compute_scope(prob, "fisher", fisher_mode="low_rank", rank=D).scores
    np.testing.assert_allclose(kd, full, rtol=1e-10, atol=1e-12)
    k2 = jac.compute_scope(prob, "fisher", fisher_mode="low_rank", rank=2).scores
    assert np.all(k2 <= full + 1e-12) and np.all(k2 >= 0)  # a truncated sum of non-negative terms
    hut = jac.compute_scope(prob, "fisher", fisher_mode="hutchinson", probes=4000, seed=1, vjp_batch=512).scores
    mask = full > 0
    rel = np.abs(hut[mask] - full[mask]) / full[mask]
    assert rel.max() < 0.15, rel  # Rademacher variance ≤ 2‖M‖_F²/probes: a few % here
    assert np.all(hut[~mask] == 0)
    hut2 = jac.compute_scope(prob, "fisher", fisher_mode="hutchinson", probes=8, seed=1).scores
    hut3 = jac.compute_scope(prob, "fisher", fisher_mode="hutchinson", probes=8, seed=1, vjp_batch=3).scores
    np.testing.assert_allclose(hut2, hut3, rtol=1e-12)  # seeded, independent of batching


def test_hutchinson_exact_for_one_probe_direction() -> None:
    """d_e = 1: every Rademacher probe gives the exact trace (z² = 1)."""
    g = torch.Generator().manual_seed(3)
    L = 3
    A = torch.randn(L, L, D, 1, generator=g, dtype=torch.float64)
    e = torch.randn(1, L, 1, generator=g, dtype=torch.float64)
    W = torch.randn(V, D, generator=g, dtype=torch.float64)
    prob = linear_problem(A, e, W, [2], [0])
    full = jac.compute_scope(prob, "fisher", fisher_mode="full").scores
    hut = jac.compute_scope(prob, "fisher", fisher_mode="hutchinson", probes=2).scores
    np.testing.assert_allclose(hut, full, rtol=1e-10)


# ---------------------------------------------------------------- F itself


def test_fisher_matrix_definition_and_psd() -> None:
    g = torch.Generator().manual_seed(1)
    W = torch.randn(V, D, generator=g, dtype=torch.float64)
    b = torch.randn(V, generator=g, dtype=torch.float64)
    H = torch.randn(3, D, generator=g, dtype=torch.float64)
    F, p = jac.fisher_matrices(W, H, vocab_chunk=4)  # chunking exercised
    for j in range(3):
        Fb, pb = brute_fisher(W.numpy(), H[j].numpy())
        np.testing.assert_allclose(F[j].numpy(), Fb, atol=1e-12)
        np.testing.assert_allclose(p[j].numpy(), pb, atol=1e-14)
        assert np.linalg.eigvalsh(F[j].numpy()).min() > -1e-12
    # a bias shifts the logits: same as brute force on augmented weights
    _Fbias, pbias = jac.fisher_matrices(W, H, b)
    z = H.numpy() @ W.numpy().T + b.numpy()
    pz = np.exp(z - z.max(1, keepdims=True))
    pz /= pz.sum(1, keepdims=True)
    np.testing.assert_allclose(pbias.numpy(), pz, atol=1e-14)


def test_equal_rows_give_zero_fisher(toy: dict) -> None:
    A, e, L = toy["A"], toy["e"], toy["L"]
    W = torch.randn(D, dtype=torch.float64).repeat(V, 1)
    F, _ = jac.fisher_matrices(W, torch.randn(2, D, dtype=torch.float64))
    assert float(F.abs().max()) < 1e-12
    prob = linear_problem(A, e, W, [L - 1], [0])
    for mode in ("full", "low_rank", "hutchinson"):
        s = jac.compute_scope(prob, "fisher", fisher_mode=mode).scores
        assert np.abs(s).max() < 1e-20
    assert jac.compute_scope(prob, "semantic").scores.max() > 0


# ---------------------------------------------------------------- tiny random Llama


@pytest.fixture(scope="module")
def tiny_llama() -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(cfg).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # LlamaRMSNorm computes in float32 even for a float64 model; keep float64 end to end so the
    # oracle comparisons can be tight (the temperature scope cancels strongly through the norm).
    for mod in model.modules():
        if type(mod).__name__ == "LlamaRMSNorm":
            mod.forward = _rms_norm_f64.__get__(mod)
    return model


def _rms_norm_f64(self, x: torch.Tensor) -> torch.Tensor:
    return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)


IDS = [1, 7, 3, 22, 9, 14]
N_PROMPT = 4  # first four are the "prompt", the last two are y_0, y_1; y_2 = 5
OUT = [22, 9, 14, 5]


def _problem(model):
    ids = IDS[:N_PROMPT] + OUT[:-1]
    positions = [N_PROMPT - 1 + j for j in range(len(OUT))]
    return jac.problem_from_model(model, ids, positions, OUT)


_BRUTE: dict[tuple[int, str], np.ndarray] = {}


def _brute_scores(model, scope: str) -> np.ndarray:
    """Per output token: explicit J via torch.autograd.functional.jacobian, then the formula."""
    key = (id(model), scope)
    if key not in _BRUTE:
        _BRUTE[key] = _brute_scores_uncached(model, scope)
    return _BRUTE[key]


def _brute_scores_uncached(model, scope: str) -> np.ndarray:
    prob = _problem(model)
    W = prob.weight.numpy()
    L = prob.embeds.shape[1]
    out = np.zeros((len(OUT), L))
    for j, (ell, y) in enumerate(zip(prob.positions, prob.targets, strict=True)):
        e = prob.embeds[:, : ell + 1].detach()
        h_of = lambda x, ell=ell: prob.hidden_fn(x)[0, ell]  # noqa: E731
        J = torch.autograd.functional.jacobian(h_of, e)[:, 0].numpy()  # (d, ℓ+1, d_e)
        h = h_of(e).detach().numpy()
        F, _ = brute_fisher(W, h)
        for t in range(ell + 1):
            Jt = J[:, t, :]
            if scope == "semantic":
                out[j, t] = np.linalg.norm(Jt.T @ W[y])
            elif scope == "temperature":
                out[j, t] = np.linalg.norm(Jt.T @ (h / np.linalg.norm(h)))
            else:
                out[j, t] = np.trace(Jt.T @ F @ Jt)
    return out


@pytest.mark.parametrize("scope,mode", [("semantic", None), ("temperature", None), ("fisher", "full"), ("fisher", "low_rank")])
def test_tiny_llama_matches_direct_autograd(tiny_llama, scope: str, mode: str | None) -> None:
    prob = _problem(tiny_llama)
    kw = {"fisher_mode": mode, "rank": 16} if mode else {}
    batched = jac.compute_scope(prob, scope, vjp_batch=5, **kw)
    brute = _brute_scores(tiny_llama, scope)
    np.testing.assert_allclose(batched.scores, brute, rtol=1e-8, atol=1e-12)
    loop = jac.compute_scope_loop(prob, scope, **kw)
    np.testing.assert_allclose(loop, brute, rtol=1e-8, atol=1e-12)
    if scope != "fisher":
        assert batched.details["vjp"] == "is_grads_batched"


def test_tiny_llama_hutchinson_and_low_rank(tiny_llama) -> None:
    prob = _problem(tiny_llama)
    full = _brute_scores(tiny_llama, "fisher")
    hut = jac.compute_scope(prob, "fisher", fisher_mode="hutchinson", probes=600, seed=0, vjp_batch=300).scores
    mask = full > 1e-8 * full.max()
    rel = np.abs(hut[mask] - full[mask]) / full[mask]
    assert np.median(rel) < 0.1 and rel.max() < 0.4, rel
    k4 = jac.compute_scope(prob, "fisher", fisher_mode="low_rank", rank=4).scores
    assert np.all(k4 <= full * (1 + 1e-9) + 1e-15)


def test_half_quadratic_form_matches_kl(tiny_llama) -> None:
    """KL(p(e) ‖ p(e + δ 1_t)) ≈ ½ δᵀ J_tᵀ F J_t δ for small δ."""
    prob = _problem(tiny_llama)
    ell, t = prob.positions[-1], 2
    e = prob.embeds.detach()
    W = prob.weight

    def logp(x):
        return torch.log_softmax(prob.hidden_fn(x)[0, ell] @ W.T, -1)

    J = torch.autograd.functional.jacobian(lambda x: prob.hidden_fn(x)[0, ell], e)[:, 0, t].numpy()
    F, _ = jac.fisher_matrices(W, prob.hidden_fn(e)[0, ell][None])
    delta = torch.randn(e.shape[-1], generator=torch.Generator().manual_seed(5), dtype=e.dtype) * 1e-4
    kls = []
    for sign in (1.0, -1.0):  # ± δ: the cubic terms of the expansion cancel in the mean
        ep = e.clone()
        ep[0, t] += sign * delta
        with torch.no_grad():
            lp, lq = logp(e), logp(ep)
            kls.append(float((lp.exp() * (lp - lq)).sum()))
    quad = 0.5 * float(delta.numpy() @ J.T @ F[0].numpy() @ J @ delta.numpy())
    assert kls[0] == pytest.approx(quad, rel=1e-2)  # one-sided: O(δ) relative error
    assert 0.5 * (kls[0] + kls[1]) == pytest.approx(quad, rel=1e-5)


def test_causality_zero_after_predicting_position(tiny_llama) -> None:
    prob = _problem(tiny_llama)
    for scope in ("semantic", "temperature", "fisher"):
        s = jac.compute_scope(prob, scope).scores
        for j, ell in enumerate(prob.positions):
            assert np.all(s[j, ell + 1 :] == 0.0), (scope, j)
            assert np.all(s[j, : ell + 1] > 0), (scope, j)
    s = jac.compute_scope(prob, "fisher", fisher_mode="hutchinson", probes=3).scores
    for j, ell in enumerate(prob.positions):
        assert np.all(s[j, ell + 1 :] == 0.0)


# ---------------------------------------------------------------- the registered plugin


def _generation() -> Generation:
    n = N_PROMPT
    return Generation(
        model_id="tiny",
        prompt_id="p1",
        input_ids=tuple(IDS[:n]),
        input_tokens=tuple(f"x{i}" for i in range(n)),
        input_special=(True, False, False, True),
        output_ids=tuple(OUT),
        output_tokens=tuple(f"y{j}" for j in range(len(OUT))),
        prompt_text="",
        response_text="",
    )


def _ctx(model, method, **opts) -> AttributionContext:
    loaded = LoadedModel(id="tiny", source="test:tiny", model=model)
    return AttributionContext(model=loaded, generation=_generation(), options=method.options_model(**opts), seed=0, cache=Cache(None))


def test_plugin_registration_and_results(tiny_llama) -> None:
    import reportgen_plugins.jacobian as family

    registered: list = []
    family.reportgen_register_attribution_methods(registered.append)
    names = {m.name: m for m in registered}
    assert set(names) == {"jacobian.semantic", "jacobian.fisher", "jacobian.temperature"}
    n, t = N_PROMPT, len(OUT)
    for m in names.values():
        scope = m.scope
        res = m.attribute(_ctx(tiny_llama, m))
        assert res.status == "ok" and res.matrix.shape == (n, t) and not res.signed
        brute = _brute_scores(tiny_llama, scope) if scope != "fisher" else None
        if brute is not None:
            np.testing.assert_allclose(res.matrix, brute[:, :n].T, rtol=1e-8)
        np.testing.assert_allclose(res.scores[f"{scope}_first_token"], res.matrix[:, 0])
        om = res.details["output_matrix"]
        assert len(om) == t and all(len(r) == t for r in om)
        for j in range(t):
            for k in range(t):
                assert (om[j][k] is None) == (k >= j)
                if brute is not None and k < j:
                    assert om[j][k] == pytest.approx(brute[j, n + k], rel=1e-8)
        assert res.details["scope"] == scope
        assert res.details["predicting_positions"] == [n - 1 + j for j in range(t)]
        import json

        back = json.loads(json.dumps(res.to_json(), allow_nan=False))  # JSON-able, NaN written as null
        assert back["method"] == m.name and len(back["attribution"]["raw"]) == n
    fis = names["jacobian.fisher"].attribute(_ctx(tiny_llama, names["jacobian.fisher"], fisher_mode="full"))
    np.testing.assert_allclose(fis.matrix, _brute_scores(tiny_llama, "fisher")[:, :n].T, rtol=1e-8)
    assert fis.details["fisher_mode"] == "full" and fis.details["rank"] == 16


def test_options_validation() -> None:
    with pytest.raises(ValidationError, match="fisher_mode"):
        jac.FisherOptions(fisher_mode="finite_diff")
    with pytest.raises(ValidationError, match="rank"):
        jac.JacobianOptions(rank=3)  # semantic/temperature take no Fisher options
    with pytest.raises(ValidationError, match="vjp_batch"):
        jac.JacobianOptions(vjp_batch=0)


def test_unavailable_reasons(tiny_llama) -> None:
    m = jac.SemanticScope()
    api = LoadedModel(id="api", source="openai:gpt", model=None)
    assert "API-only" in m.unavailable_reason(api)
    assert m.unavailable_reason(LoadedModel(id="t", source="x", model=tiny_llama)) is None

    class NoEmbeddings(torch.nn.Module):
        def get_input_embeddings(self):
            raise NotImplementedError("no embeddings")

    reason = m.unavailable_reason(LoadedModel(id="t", source="x", model=NoEmbeddings()))
    assert reason and "jacobian.semantic" in reason


def test_empty_response_is_unavailable(tiny_llama) -> None:
    m = jac.TemperatureScope()
    ctx = _ctx(tiny_llama, m)
    g = ctx.generation
    ctx.generation = Generation(**{**g.__dict__, "output_ids": (), "output_tokens": ()})
    res = m.attribute(ctx)
    assert res.status == "unavailable" and "empty" in res.reason


# ---------------------------------------------------------------- the real model


@pytest.mark.slow
def test_smollm2_short_prompt() -> None:
    from types import SimpleNamespace

    from reportgen.generate import generate
    from reportgen_plugins.models.loaders import EmbeddedLoader

    spec = SimpleNamespace(
        id="smol", source="embedded:smollm2-135m-instruct", dtype="float32", attn_implementation="sdpa", chat_template="auto"
    )
    loaded = EmbeddedLoader().load(spec, base_dir=".", device="cpu")
    prompt = SimpleNamespace(id="p", text="Capital of France?", messages=None)
    settings = SimpleNamespace(max_new_tokens=2, do_sample=False, temperature=1.0, top_p=1.0, model_dump=lambda: {"max_new_tokens": 2})
    gen = generate(loaded, prompt, settings, seed=0)
    n, t = gen.n, gen.t
    assert t >= 1
    for m, opts in ((jac.SemanticScope(), {}), (jac.TemperatureScope(), {}), (jac.FisherScope(), {"rank": 2})):
        assert m.unavailable_reason(loaded) is None
        ctx = AttributionContext(model=loaded, generation=gen, options=m.options_model(**opts), seed=0, cache=Cache(None))
        res = m.attribute(ctx)
        assert res.status == "ok"
        assert res.matrix.shape == (n, t)
        assert np.all(np.isfinite(res.matrix)) and np.all(res.matrix >= 0)
        assert res.matrix[:, 0].max() > 0
        assert len(res.scores[f"{m.scope}_first_token"]) == n
        assert not math.isnan(sum(res.scores[f"{m.scope}_first_token"]))
