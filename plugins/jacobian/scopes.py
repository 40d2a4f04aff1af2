"""Jacobian Scopes: ``jacobian.semantic``, ``jacobian.fisher``, ``jacobian.temperature``.

Gradient attributions of the final hidden state (Liu et al., arXiv 2601.16407; methods.md §2).
For output token y_j of the stored response the model is teacher-forced on [x, y_<j]; the
predicting position is ℓ_j = n − 1 + j and h = h_{ℓ_j} ∈ R^d is the final hidden state *after*
the final norm (``model.get_decoder()(...).last_hidden_state``; logits are z = W h [+ b]).
J_t = ∂h/∂e_t is the Jacobian with respect to the input embedding e_t of token t (the
embeddings are fed through ``inputs_embeds``, so RoPE/positions are untouched).

Scores for token t (one number per (input token, output token)):

- semantic:    s_t = ‖J_tᵀ w_y‖₂, w_y the unembedding row of the target y_j;
- temperature: s_t = ‖J_tᵀ ĥ‖₂, ĥ = h/‖h‖ (detached), i.e. ‖∇_{e_t} ‖h‖‖;
- fisher:      s_t = tr(J_tᵀ F J_t), F = Wᵀ(diag p − ppᵀ)W, p = softmax(z). F (d × d) is built
  in vocabulary chunks in the centred form Σ_v p_v (w_v − w̄)(w_v − w̄)ᵀ (no V × V matrix,
  no cancellation when p is peaked). Modes:
  ``low_rank`` (default): top-k eigenpairs (λ_i, u_i) of F, s_t ≈ Σ_{i≤k} λ_i ‖J_tᵀ u_i‖²
  (k VJPs per output token); ``full``: all d eigenpairs, the exact trace (d VJPs per output
  token); ``hutchinson``: s_t ≈ mean over Rademacher probes z of (J_t z)ᵀ F (J_t z), with
  J_t z computed *exactly* by forward-mode AD (``torch.func.jvp``, attention forced to the
  SDPA math kernel, which supports forward AD), not by finite differences. One JVP with the
  probe placed on token t gives J_{ℓ,t} z at every predicting position ℓ at once, so the
  cost is (#tokens × probes) JVPs for the whole response.

Efficiency: one forward over [x, y_<t] gives every predicting position (causal masking);
the VJPs of all (output token, cotangent) pairs are stacked and run ``vjp_batch`` at a time
through ``torch.autograd.grad(..., is_grads_batched=True)`` against that single graph.

Memory bound: the saved activations of ONE forward over the L = n + t − 1 tokens, plus
≈ ``vjp_batch`` × (activation-gradient buffers of one forward) during a batched VJP
(Hutchinson: ≈ ``vjp_batch`` × activations of one forward, the JVP tangents), plus
t × d² float64 for the Fisher matrices and a t × L score array. Nothing scales with
vocab × vocab or with the number of VJPs; lower ``vjp_batch`` for long prompts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from reportgen.data import AttributionResult
from reportgen.plugin_api import AttributionContext, AttributionMethod, LoadedModel, Options

if TYPE_CHECKING:
    import torch

    HiddenFn = Callable[[torch.Tensor], torch.Tensor]

Scope = Literal["semantic", "fisher", "temperature"]
FisherMode = Literal["low_rank", "full", "hutchinson"]

_VJP_BATCH_DOC = (
    "Cotangents (VJPs) or probe directions (JVPs) evaluated at once. Peak memory ≈ "
    "vjp_batch × the activations of one forward over prompt + response; lower it for long prompts."
)


class JacobianOptions(Options):
    """Options of the semantic and temperature scopes."""

    vjp_batch: int = Field(16, ge=1, le=4096, description=_VJP_BATCH_DOC)


class FisherOptions(JacobianOptions):
    """Options of the Fisher scope (see the module docstring for the three modes)."""

    fisher_mode: FisherMode = Field(
        "low_rank",
        description="low_rank: top-`rank` eigenpairs of F (rank VJPs per output token); "
        "full: exact trace (d VJPs per output token); hutchinson: Rademacher-probe estimate "
        "with exact forward-mode JVPs (#tokens × probes JVPs in all).",
    )
    rank: int = Field(8, ge=1, description="k for fisher_mode=low_rank (capped at d).")
    probes: int = Field(8, ge=1, description="Rademacher probes per token for fisher_mode=hutchinson.")
    seed: int | None = Field(None, ge=0, description="Seed of the Hutchinson probes (default: the run's seed).")
    vocab_chunk: int = Field(8192, ge=1, description="Vocabulary rows per chunk while building F (d × d).")


# ----------------------------------------------------------------------------------------
# Core: works on any differentiable map embeds (B, L, d_e) -> hidden (B, L, d).
# ----------------------------------------------------------------------------------------


@dataclass
class ScopeProblem:
    """What the core needs: a map e ↦ h, the input embeddings and the unembedding.

    ``hidden_fn`` maps (B, L, d_e) to (B, L, d) (B = 1 for VJPs, B > 1 for batched JVPs);
    ``positions[j]`` is the predicting position of output ``j`` and ``targets[j]`` its token.
    """

    hidden_fn: HiddenFn
    embeds: torch.Tensor  # (1, L, d_e)
    weight: torch.Tensor  # (V, d)
    positions: Sequence[int]
    targets: Sequence[int]
    bias: torch.Tensor | None = None


@dataclass
class ScopeOutput:
    """``scores[j, t]``: score of sequence token t for output j (exact 0 for t > ℓ_j)."""

    scores: np.ndarray  # (n_outputs, L) float64
    details: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def fisher_matrices(
    weight: torch.Tensor, hidden: torch.Tensor, bias: torch.Tensor | None = None, vocab_chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """F_j = Σ_v p_jv (w_v − w̄_j)(w_v − w̄_j)ᵀ for each row h_j of ``hidden`` (m × d).

    Returns (F as float64 (m, d, d), p as float64 (m, V)). Equals Wᵀ(diag p − ppᵀ)W.
    """
    import torch

    with torch.no_grad():
        logits = hidden.detach().to(weight.dtype) @ weight.T
        if bias is not None:
            logits = logits + bias
        p = torch.softmax(logits.double(), dim=-1)  # (m, V)
        w64 = weight.double()
        mean = p @ w64  # (m, d), w̄_j
        m, d = hidden.shape[0], weight.shape[1]
        F = torch.zeros(m, d, d, dtype=torch.float64, device=weight.device)
        for j in range(m):
            wbar = mean[j].to(weight.dtype)
            for c in range(0, weight.shape[0], vocab_chunk):
                sq = p[j, c : c + vocab_chunk].sqrt().to(weight.dtype)
                X = (weight[c : c + vocab_chunk] - wbar) * sq[:, None]
                F[j] += (X.T @ X).double()
        F = 0.5 * (F + F.transpose(1, 2))
    return F, p


def _batched_vjp_norms(
    h: torch.Tensor,
    embeds: torch.Tensor,
    positions: torch.Tensor,
    vectors: torch.Tensor,
    batch: int,
    progress: Callable[[int, int], None] | None = None,
    info: dict[str, Any] | None = None,
) -> torch.Tensor:
    """‖J_{ℓ_m,t}ᵀ v_m‖₂ for every cotangent m and token t: (M, L) float64.

    ``h`` (1, L, d) must carry the graph of ``embeds`` (1, L, d_e). Cotangent m is v_m placed
    at position ℓ_m; ``batch`` of them go through one vmapped backward (``is_grads_batched``).
    """
    import torch

    M, L = vectors.shape[0], embeds.shape[1]
    out = torch.zeros(M, L, dtype=torch.float64, device="cpu")  # the result: CPU, float64
    mode = "batched"
    for s in range(0, M, batch):
        e = min(M, s + batch)
        cot = torch.zeros((e - s, *h.shape), dtype=h.dtype, device=h.device)
        cot[torch.arange(e - s, device=h.device), 0, positions[s:e]] = vectors[s:e].to(h.device, h.dtype)
        try:
            g = torch.autograd.grad(h, embeds, cot, retain_graph=True, is_grads_batched=True)[0]
        except RuntimeError:  # an op without a batching rule: fall back to a loop
            mode = "loop"
            g = torch.stack([torch.autograd.grad(h, embeds, c, retain_graph=True)[0] for c in cot])
        out[s:e] = g[:, 0].double().norm(dim=-1).cpu()
        if progress is not None:
            progress(e, M)
    if info is not None:
        info["vjp"] = "is_grads_batched" if mode == "batched" else "loop (is_grads_batched failed)"
    return out


@contextlib.contextmanager
def _math_attention() -> Iterator[None]:
    """Force SDPA's math kernel: the fused CPU/GPU kernels have no forward-mode AD."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - old torch
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def _hutchinson_fisher(
    problem: ScopeProblem,
    F: torch.Tensor,
    probes: int,
    seed: int,
    batch: int,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """s[j, t] ≈ mean_r (J_{ℓ_j,t} z_r)ᵀ F_j (J_{ℓ_j,t} z_r), z_r Rademacher, JVPs exact."""
    import torch

    e0 = problem.embeds.detach()
    _, L, de = e0.shape
    pos = torch.as_tensor(list(problem.positions), device=e0.device)
    last = int(pos.max())
    gen = torch.Generator().manual_seed(int(seed))
    # One independent probe set per token; direction k = (token k // probes, probe k % probes).
    Z = torch.randint(0, 2, (last + 1, probes, de), generator=gen).to(e0.dtype).mul_(2).sub_(1)
    tok = torch.arange(last + 1, device="cpu").repeat_interleave(probes)  # indexes the CPU result
    Zflat = Z.reshape(-1, de).to(e0.device)
    Fd = F.to(e0.device)
    out = torch.zeros(len(pos), L, dtype=torch.float64, device="cpu")  # the result: CPU, float64
    K = Zflat.shape[0]
    for s in range(0, K, batch):
        e = min(K, s + batch)
        B = e - s
        tang = torch.zeros(B, L, de, dtype=e0.dtype, device=e0.device)
        tang[torch.arange(B, device=e0.device), tok[s:e].to(e0.device)] = Zflat[s:e]
        with torch.no_grad(), _math_attention():
            _, jz = torch.func.jvp(problem.hidden_fn, (e0.expand(B, L, de).contiguous(),), (tang,))[:2]
        q = jz[:, pos].double()  # (B, m, d): J_{ℓ_j, t_b} z_b
        val = torch.einsum("bjd,jde,bje->bj", q, Fd, q).cpu()
        out.index_put_((torch.arange(len(pos)).repeat(B), tok[s:e].repeat_interleave(len(pos))), val.reshape(-1) / probes, accumulate=True)
        if progress is not None:
            progress(e, K)
    return out.numpy()


def compute_scope(
    problem: ScopeProblem,
    scope: Scope,
    *,
    fisher_mode: FisherMode = "low_rank",
    rank: int = 8,
    probes: int = 8,
    seed: int = 0,
    vjp_batch: int = 16,
    vocab_chunk: int = 8192,
    progress: Callable[[int, int], None] | None = None,
) -> ScopeOutput:
    """Scores of every sequence token for every output (batched over outputs and cotangents)."""
    import torch

    timings: dict[str, float] = {}
    details: dict[str, Any] = {}
    t0 = time.perf_counter()
    with torch.enable_grad():
        embeds = problem.embeds.detach().clone().requires_grad_(True)
        need_graph = not (scope == "fisher" and fisher_mode == "hutchinson")
        if need_graph:
            h = problem.hidden_fn(embeds)  # (1, L, d)
        else:
            with torch.no_grad():
                h = problem.hidden_fn(embeds.detach())
        pos = torch.as_tensor(list(problem.positions), dtype=torch.long, device=h.device)
        hl = h[0, pos].detach()  # (m, d)
        timings["forward_s"] = time.perf_counter() - t0
        m = len(pos)
        if scope == "semantic":
            tgt = torch.as_tensor(list(problem.targets), dtype=torch.long, device=problem.weight.device)
            vec = problem.weight[tgt].detach()
            scores = _batched_vjp_norms(h, embeds, pos, vec, vjp_batch, progress, details).numpy()
        elif scope == "temperature":
            vec = hl / hl.norm(dim=-1, keepdim=True)
            scores = _batched_vjp_norms(h, embeds, pos, vec, vjp_batch, progress, details).numpy()
        elif scope == "fisher":
            t1 = time.perf_counter()
            F, _ = fisher_matrices(problem.weight, hl, problem.bias, vocab_chunk)
            timings["fisher_matrices_s"] = time.perf_counter() - t1
            trace_F = torch.diagonal(F, dim1=1, dim2=2).sum(-1)
            details["fisher_trace"] = trace_F.cpu().tolist()
            if fisher_mode == "hutchinson":
                scores = _hutchinson_fisher(problem, F, probes, seed, vjp_batch, progress)
                details["jvp"] = "forward-mode torch.func.jvp (exact, SDPA math kernel)"
                details["probes"] = probes
                details["seed"] = seed
            else:
                lam, U = torch.linalg.eigh(F)  # ascending
                lam = lam.clamp_min(0.0)
                d = F.shape[-1]
                k = d if fisher_mode == "full" else min(rank, d)
                lam_k, U_k = lam[:, -k:], U[:, :, -k:]  # (m, k), (m, d, k)
                details["rank"] = k
                details["trace_captured"] = (lam_k.sum(-1) / lam.sum(-1).clamp_min(1e-300)).cpu().tolist()
                vec = (U_k * lam_k.sqrt()[:, None, :]).transpose(1, 2).reshape(m * k, d)
                norms = _batched_vjp_norms(h, embeds, pos.repeat_interleave(k), vec.to(h.dtype), vjp_batch, progress, details)
                scores = (norms**2).reshape(m, k, -1).sum(1).numpy()
            details["fisher_mode"] = fisher_mode
        else:  # pragma: no cover - guarded by the registered names
            raise ValueError(f"unknown scope {scope!r}")
    timings["total_s"] = time.perf_counter() - t0
    return ScopeOutput(scores=np.asarray(scores, dtype=np.float64), details=details, timings=timings)


def compute_scope_loop(
    problem: ScopeProblem,
    scope: Scope,
    *,
    fisher_mode: FisherMode = "low_rank",
    rank: int = 8,
    vocab_chunk: int = 8192,
) -> np.ndarray:
    """Reference (and benchmark baseline): one forward per output token over its own prefix,
    one plain backward per cotangent. Same scores as :func:`compute_scope` (no Hutchinson)."""
    import torch

    L = problem.embeds.shape[1]
    out = np.zeros((len(problem.positions), L))
    for j, (ell, y) in enumerate(zip(problem.positions, problem.targets, strict=True)):
        with torch.enable_grad():
            e = problem.embeds[:, : ell + 1].detach().clone().requires_grad_(True)
            h = problem.hidden_fn(e)[0, ell]
            if scope == "semantic":
                vecs = [problem.weight[y].detach()]
            elif scope == "temperature":
                vecs = [(h / h.norm()).detach()]
            else:
                F, _ = fisher_matrices(problem.weight, h.detach()[None], problem.bias, vocab_chunk)
                lam, U = torch.linalg.eigh(F[0])
                k = F.shape[-1] if fisher_mode == "full" else min(rank, F.shape[-1])
                vecs = [(U[:, -i] * lam[-i].clamp_min(0).sqrt()).to(h.dtype) for i in range(1, k + 1)]
            for v in vecs:
                g = torch.autograd.grad(h, e, v, retain_graph=True)[0][0].double().norm(dim=-1).cpu().numpy()
                out[j, : ell + 1] += g if scope != "fisher" else g**2
    return out


# ----------------------------------------------------------------------------------------
# Glue: a transformers causal LM → ScopeProblem; the three registered methods.
# ----------------------------------------------------------------------------------------


def _decoder(model: Any) -> Any:
    dec = model.get_decoder() if hasattr(model, "get_decoder") else None
    if dec is None or dec is model:
        raise ValueError("the model exposes no base decoder (get_decoder()) with a post-norm last_hidden_state")
    return dec


def problem_from_model(model: Any, ids: Sequence[int], positions: Sequence[int], targets: Sequence[int]) -> ScopeProblem:
    """The map e ↦ final normed hidden state of a transformers causal LM, and its unembedding."""
    import torch

    dec = _decoder(model)
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    device = emb.weight.device
    with torch.no_grad():
        embeds = emb(torch.as_tensor([list(ids)], device=device)).detach()

    def hidden_fn(e: torch.Tensor) -> torch.Tensor:
        hidden: torch.Tensor = dec(inputs_embeds=e, use_cache=False).last_hidden_state
        return hidden

    bias = getattr(head, "bias", None)
    return ScopeProblem(
        hidden_fn=hidden_fn,
        embeds=embeds,
        weight=head.weight.detach(),
        positions=list(positions),
        targets=list(targets),
        bias=None if bias is None else bias.detach(),
    )


class _JacobianScope(AttributionMethod):
    scope: ClassVar[Scope]
    matrix_label: ClassVar[str]
    requires = "weights"

    def unavailable_reason(self, model: LoadedModel) -> str | None:
        base = super().unavailable_reason(model)
        if base is not None:
            return base
        m = model.model
        try:
            _decoder(m)
            emb = m.get_input_embeddings()
            head = m.get_output_embeddings()
        except Exception as exc:  # noqa: BLE001 - any failure means "not accessible"
            return f"{self.name} needs the input embeddings and the final hidden state: {exc}"
        if emb is None or getattr(emb, "weight", None) is None:
            return f"{self.name} needs the model's input embeddings; {model.source} does not expose them"
        if head is None or getattr(head, "weight", None) is None:
            return f"{self.name} needs the unembedding (lm_head) weight; {model.source} does not expose it"
        return None

    def _run_options(self, opts: Any, seed: int) -> dict[str, Any]:
        return {"vjp_batch": opts.vjp_batch}

    def attribute(self, ctx: AttributionContext) -> AttributionResult:
        gen = ctx.generation
        opts = ctx.options if ctx.options is not None else self.options_model()
        n, t = gen.n, gen.t
        result = AttributionResult.for_generation(
            gen,
            self.name,
            opts,
            matrix_label=self.matrix_label,
            signed=False,
            label=ctx.label,
        )
        if t == 0:
            result.status, result.reason = "unavailable", "the stored response is empty: nothing to attribute"
            return result
        t0 = time.perf_counter()
        ids = list(gen.input_ids) + list(gen.output_ids[:-1])
        positions = [n - 1 + j for j in range(t)]
        problem = problem_from_model(ctx.model.model, ids, positions, list(gen.output_ids))
        out = compute_scope(problem, self.scope, progress=ctx.progress, **self._run_options(opts, ctx.seed))
        S = out.scores  # (t, L), L = n + t − 1
        result.matrix = S[:, :n].T.copy()
        output_matrix = [[float(S[j, n + k]) if k < j else None for k in range(t)] for j in range(t)]
        result.scores = {f"{self.scope}_first_token": [float(v) for v in S[0, :n]]}
        fisher = self.scope == "fisher"
        result.details = {
            "scope": self.scope,
            "fisher_mode": getattr(opts, "fisher_mode", None) if fisher else None,
            "rank": out.details.get("rank") if fisher else None,
            "output_matrix": output_matrix,
            "output_matrix_layout": "row j = predicted output token y_j, column k = earlier output token y_k "
            "as context (k < j); None for k >= j (not in y_j's context)",
            "predicting_positions": positions,
            "hidden_state": "final layer after the final norm (decoder last_hidden_state)",
            **{k: v for k, v in out.details.items() if k != "rank"},
        }
        result.timings = {**out.timings, "attribute_s": time.perf_counter() - t0}
        return result


class SemanticScope(_JacobianScope):
    name = "jacobian.semantic"
    scope = "semantic"
    description = "Jacobian Semantic Scope: ‖J_tᵀ w_y‖, sensitivity of the target token's logit to each input embedding."
    options_model = JacobianOptions
    matrix_label = "‖J_tᵀ w_y‖ (semantic scope)"


class TemperatureScope(_JacobianScope):
    name = "jacobian.temperature"
    scope = "temperature"
    description = "Jacobian Temperature Scope: ‖J_tᵀ ĥ‖ = ‖∇_e ‖h‖‖, sensitivity of the model's confidence (inverse temperature)."
    options_model = JacobianOptions
    matrix_label = "‖J_tᵀ ĥ‖ (temperature scope)"


class FisherScope(_JacobianScope):
    name = "jacobian.fisher"
    scope = "fisher"
    description = "Jacobian Fisher Scope: tr(J_tᵀ F J_t), sensitivity of the whole next-token distribution (Fisher information)."
    options_model = FisherOptions
    matrix_label = "tr(J_tᵀ F J_t) (Fisher scope)"

    def _run_options(self, opts: Any, seed: int) -> dict[str, Any]:
        return {
            "vjp_batch": opts.vjp_batch,
            "fisher_mode": opts.fisher_mode,
            "rank": opts.rank,
            "probes": opts.probes,
            "seed": seed if opts.seed is None else opts.seed,
            "vocab_chunk": opts.vocab_chunk,
        }
