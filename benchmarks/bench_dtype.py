"""Precision and error: every built-in method in bfloat16 / float16 against float32 on SmolLM2-135M-Instruct.

One short chat prompt is generated greedily in float32; the same stored generation is then
explained by the model loaded in each dtype (the loader's ``dtype``). Per method and dtype (the
time columns are wall seconds of the float32 and the half-precision run):

* max |Δ|: the largest absolute difference of the token importances from the float32 ones;
* rel: max |Δ| / max |float32 importance|;
* Spearman ρ of the token importances against float32 (user-content tokens).

Token importance: PAS's attribution score; for matrix methods the sum of the input token's row
of the attribution matrix over the response tokens. Methods (``CASES``): the three Jacobian
scopes, PAS (fast mode) and the gradient and perturbation methods of inseq that run on the
model's default SDPA attention (integrated gradients with 8 steps); not here: inseq's attention
and value_zeroing (eager attention), lime, reagent, dummy and discretized IG (see their
unavailable reasons), and layer IG, layer DeepLIFT, sequential IG and gradient SHAP (CPU time).
DBSA is not compared: its scores come from
sampled responses, and a half-precision model samples other responses, so differences measure
sampling noise, not precision. Run (``OMP_NUM_THREADS=1`` on a shared, oversubscribed machine: with
two threads per process there, every parallel region waits for the other thread's timeslice, and
saliency took 405 s instead of 16 s)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dtype.py [--tokens 8] [--dtypes bfloat16 float16] [--only LABEL ...] [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
from device_args import add_device_argument, checked_device, describe
from scipy.stats import spearmanr

from reportgen.cache import Cache
from reportgen.data import AttributionResult, Generation
from reportgen.generate import generate
from reportgen.plugin_api import AttributionContext, LoadedModel
from reportgen_plugins.inseq.methods import InseqMethod
from reportgen_plugins.jacobian.scopes import FisherScope, SemanticScope, TemperatureScope
from reportgen_plugins.models.loaders import EmbeddedLoader
from reportgen_plugins.pas.method import ProbabilisticMethod

CASES: list[tuple[str, Any, dict[str, Any]]] = [  # cheapest first: each row is printed as soon as it is measured
    ("jacobian.semantic", SemanticScope, {}),
    ("jacobian.temperature", TemperatureScope, {}),
    ("jacobian.fisher low_rank", FisherScope, {"fisher_mode": "low_rank", "rank": 4}),
    ("probabilistic fast", ProbabilisticMethod, {"mode": "fast", "max_candidates": 32, "tail_samples": 0, "neighbours": 8}),
    ("inseq.input_x_gradient", lambda: InseqMethod("input_x_gradient"), {}),
    ("inseq.saliency", lambda: InseqMethod("saliency"), {}),
    ("inseq.layer_gradient_x_activation", lambda: InseqMethod("layer_gradient_x_activation"), {}),
    ("inseq.deeplift", lambda: InseqMethod("deeplift"), {}),
    ("inseq.occlusion", lambda: InseqMethod("occlusion"), {}),
    ("inseq.integrated_gradients", lambda: InseqMethod("integrated_gradients"), {"n_steps": 8}),
]


def load(dtype: str, device: str) -> LoadedModel:
    spec = SimpleNamespace(
        id="smollm2", source="embedded:smollm2-135m-instruct", dtype=dtype, attn_implementation="sdpa", chat_template="auto"
    )
    return EmbeddedLoader().load(spec, base_dir=".", device=device)


def importance(r: AttributionResult, gen: Generation) -> np.ndarray:
    user = gen.user_positions
    if r.method == "probabilistic":
        v = r.scores["attribution_score"]
        return np.array([np.nan if v[k] is None else v[k] for k in user], dtype=np.float64)
    return np.nansum(np.asarray(r.matrix, dtype=np.float64)[user], axis=1)


def run(
    loaded: LoadedModel,
    gen: Generation,
    cases: list[tuple[str, Any, dict[str, Any]]],
    ref: dict[str, tuple[np.ndarray, float]] | None = None,
) -> dict[str, tuple[np.ndarray, float]]:
    """Every case on ``gen``; with ``ref`` (the float32 run), print each one's error row as soon as it is done."""
    out: dict[str, tuple[np.ndarray, float]] = {}
    dtype = str(next(loaded.model.parameters()).dtype).replace("torch.", "")
    for label, make, opts in cases:
        m = make()
        ctx = AttributionContext(model=loaded, generation=gen, options=m.options_model(**opts), seed=0, cache=Cache(None))
        t0 = time.perf_counter()
        res = m.attribute(ctx)
        out[label] = (importance(res, gen), time.perf_counter() - t0)
        if ref is not None:
            a, s = out[label]
            r, s_ref = ref[label]
            ok = np.isfinite(a) & np.isfinite(r)
            d = float(np.max(np.abs(a[ok] - r[ok])))
            rel = d / max(float(np.max(np.abs(r[ok]))), 1e-300)
            rho = float(spearmanr(a[ok], r[ok]).statistic)
            print(f"{label:34s} {dtype:9s} {d:10.3g} {rel:8.2%} {rho:9.3f} {s_ref:9.1f} {s:7.1f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"])
    ap.add_argument("--only", nargs="*", default=[], help="substrings of the method labels to run (default: all)")
    add_device_argument(ap)
    args = ap.parse_args()
    device = checked_device(args.device, ap.prog)
    print(describe(device), flush=True)
    cases = [c for c in CASES if not args.only or any(o in c[0] for o in args.only)]
    ref_model = load("float32", str(device))
    prompt = SimpleNamespace(id="capital", text="What is the capital of France?", messages=None)
    settings = SimpleNamespace(
        max_new_tokens=args.tokens, do_sample=False, temperature=1.0, top_p=1.0, model_dump=lambda: {"max_new_tokens": args.tokens}
    )
    gen = generate(ref_model, prompt, settings, seed=0)
    print(f"prompt tokens n={gen.n} (user {len(gen.user_positions)}), response t={gen.t}: {gen.response_text!r}", flush=True)
    ref = run(ref_model, gen, cases)
    del ref_model
    print(f"{'method':34s} {'dtype':9s} {'max |Δ|':>10s} {'rel':>8s} {'Spearman':>9s} {'s (fp32)':>9s} {'s':>7s}")
    for dtype in args.dtypes:
        try:
            run(load(dtype, str(device)), gen, cases, ref)
        except RuntimeError as exc:  # a kernel missing for this dtype on this device
            print(f"{dtype}: not run on {device} ({str(exc).splitlines()[0]})")


if __name__ == "__main__":
    main()
