"""Wall time of the Jacobian Scopes on SmolLM2-135M-Instruct, batched vs per-token loop.

Quickstart-like case: the chat prompt "What is the capital of France?" with the chat
template, greedy, ``--tokens`` (default 12) generated tokens. For each scope the batched
implementation (one forward over [x, y], VJPs stacked ``vjp_batch`` at a time with
``is_grads_batched``) is timed against the per-token loop baseline measured in the same run
(one forward per output token over its own prefix, one plain backward per cotangent), and the
two score arrays are compared. Run::

    .venv/bin/python benchmarks/bench_jacobian.py [--tokens 12] [--probes 2] [--full] [--threads N]

``--full`` also times ``fisher_mode=full`` (d = 576 VJPs per output token) on the first
output token only, and extrapolates.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import torch

from reportgen.cache import Cache
from reportgen.generate import generate
from reportgen.plugin_api import AttributionContext
from reportgen_plugins.jacobian import scopes as jac
from reportgen_plugins.models.loaders import EmbeddedLoader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--vjp-batch", type=int, default=16)
    ap.add_argument("--probes", type=int, default=2, help="Hutchinson probes (cost: (n + t - 1) x probes JVPs)")
    ap.add_argument("--full", action="store_true", help="also time fisher_mode=full on the first token")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    spec = SimpleNamespace(
        id="smollm2", source="embedded:smollm2-135m-instruct", dtype="float32", attn_implementation="sdpa", chat_template="auto"
    )
    loaded = EmbeddedLoader().load(spec, base_dir=".", device="cpu")
    print(f"load: {time.perf_counter() - t0:.1f} s, torch threads {torch.get_num_threads()}")
    prompt = SimpleNamespace(id="capital", text="What is the capital of France?", messages=None)
    settings = SimpleNamespace(
        max_new_tokens=args.tokens, do_sample=False, temperature=1.0, top_p=1.0, model_dump=lambda: {"max_new_tokens": args.tokens}
    )
    gen = generate(loaded, prompt, settings, seed=0)
    n, t = gen.n, gen.t
    print(f"prompt tokens n={n}, generated t={t}: {gen.response_text!r}")

    ids = list(gen.input_ids) + list(gen.output_ids[:-1])
    positions = [n - 1 + j for j in range(t)]
    problem = jac.problem_from_model(loaded.model, ids, positions, list(gen.output_ids))
    # warm-up (first backward pays one-off kernel set-up)
    jac.compute_scope(jac.ScopeProblem(problem.hidden_fn, problem.embeds, problem.weight, positions[:1], problem.targets[:1]), "semantic")

    cases = [
        ("jacobian.semantic", jac.SemanticScope(), {}, {"scope": "semantic"}),
        ("jacobian.temperature", jac.TemperatureScope(), {}, {"scope": "temperature"}),
        ("jacobian.fisher low_rank k=8", jac.FisherScope(), {"rank": 8}, {"scope": "fisher", "fisher_mode": "low_rank", "rank": 8}),
        (f"jacobian.fisher hutchinson {args.probes} probes", jac.FisherScope(), {"fisher_mode": "hutchinson", "probes": args.probes}, None),
    ]
    for label, method, opts, loop_kw in cases:
        ctx = AttributionContext(
            model=loaded, generation=gen, options=method.options_model(vjp_batch=args.vjp_batch, **opts), seed=0, cache=Cache(None)
        )
        t1 = time.perf_counter()
        res = method.attribute(ctx)
        batched_s = time.perf_counter() - t1
        loop_s = float("nan")
        agree = ""
        if loop_kw is not None:
            t1 = time.perf_counter()
            ref = jac.compute_scope_loop(problem, **loop_kw)
            loop_s = time.perf_counter() - t1
            A_ref = ref[:, :n].T
            rel = np.abs(res.matrix - A_ref).max() / np.abs(A_ref).max()
            agree = f"max|Δ|/max = {rel:.1e}"
        print(
            f"{label:38s} batched {batched_s:7.2f} s   loop {loop_s:7.2f} s   loop/batched {loop_s / batched_s:5.2f}x   {agree}", flush=True
        )
        print("    timings:", {k: round(v, 2) for k, v in res.timings.items()}, flush=True)

    if args.full:
        first = jac.ScopeProblem(problem.hidden_fn, problem.embeds[:, :n], problem.weight, positions[:1], problem.targets[:1])
        t1 = time.perf_counter()
        out = jac.compute_scope(first, "fisher", fisher_mode="full", vjp_batch=args.vjp_batch)
        full_s = time.perf_counter() - t1
        low = jac.compute_scope(first, "fisher", fisher_mode="low_rank", rank=8).scores
        corr = np.corrcoef(out.scores[0], low[0])[0, 1]
        print(
            f"{'jacobian.fisher full (first token only)':38s} {full_s:7.2f} s  "
            f"(≈ {full_s * t:.0f} s for all {t} tokens); low_rank k=8 captures "
            f"{low[0].sum() / out.scores[0].sum():.3f} of the full trace, Pearson r = {corr:.3f}"
        )


if __name__ == "__main__":
    main()
