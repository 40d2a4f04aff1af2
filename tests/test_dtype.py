"""Every built-in method in bfloat16 and float16 on CPU: finite, float results, close to float32.

The same tiny random Llama (SmolLM2 tokenizer) is cast to each dtype; the stored generation is
the float32 one, so every dtype explains the same tokens. The tolerances were measured on this
model (see ``TOLERANCE``): half precision rounds activations to 8 (bf16) or 11 (fp16) mantissa
bits, so token scores move by a few per cent of their spread, not more. ``run_all`` is shared
with tests/test_gpu.py, which compares cuda with cpu.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from reportgen.cache import Cache
from reportgen.data import AttributionResult, Evaluation, Generation
from reportgen.generate import LocalSampler, generate
from reportgen.plugin_api import AttributionContext, EvaluationContext, EvaluationSettings, LoadedModel
from reportgen_plugins.dbsa.method import DBSA
from reportgen_plugins.evaluation.faithfulness import FaithfulnessEvaluator
from reportgen_plugins.inseq.methods import InseqMethod
from reportgen_plugins.jacobian.scopes import FisherScope, SemanticScope, TemperatureScope
from reportgen_plugins.pas.method import ProbabilisticMethod
from tests.conftest import tiny_llama

#: Method → (options, the score vector compared across dtypes/devices).
METHODS: dict[str, tuple[dict[str, Any], str | None]] = {
    "inseq.saliency": ({}, None),
    "inseq.input_x_gradient": ({}, None),
    "probabilistic": ({"mode": "fast", "max_candidates": 8, "tail_samples": 0, "neighbours": 2}, "attribution_score"),
    "jacobian.semantic": ({}, "semantic_first_token"),
    "jacobian.temperature": ({}, "temperature_first_token"),
    "jacobian.fisher": ({"fisher_mode": "low_rank", "rank": 2}, "fisher_first_token"),
    "dbsa": ({"samples": 4, "neighbours": 1, "permutations": 100, "max_new_tokens": 3}, "effect_size"),
}
#: Max |score − float32 score| / (spread of the float32 scores), about twice what this model measured
#: (bf16 / fp16: saliency 0.004 / 0.028, input_x_gradient 0.002 / 0.026, semantic 0.002 / 0.0001,
#: temperature 0.39 / 0.004, fisher 0.0006 / 0.0001). The random model's PAS scores spread over only
#: 0.003 nats, so PAS is held to an absolute error in nats instead (measured 0.0017 / 0.0003).
#: DBSA is excluded: half-precision sampling draws other responses, so its scores are not comparable.
TOLERANCE = {
    "bfloat16": {
        "inseq.saliency": 0.02,
        "inseq.input_x_gradient": 0.02,
        "jacobian.semantic": 0.01,
        "jacobian.temperature": 0.8,
        "jacobian.fisher": 0.01,
    },
    "float16": {
        "inseq.saliency": 0.06,
        "inseq.input_x_gradient": 0.06,
        "jacobian.semantic": 0.005,
        "jacobian.temperature": 0.02,
        "jacobian.fisher": 0.005,
    },
}
PAS_ATOL_NATS = {"bfloat16": 0.005, "float16": 0.001}


def hash_embed(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in for MiniLM: unit vectors from the text's hash (tests need no download)."""
    rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8).astype(np.float64) - 127.5 for t in texts]
    out = np.array(rows).reshape(len(texts), 32)
    norms: np.ndarray = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def method(name: str) -> Any:
    if name.startswith("inseq."):
        return InseqMethod(name.split(".", 1)[1])
    return {
        "probabilistic": ProbabilisticMethod,
        "jacobian.semantic": SemanticScope,
        "jacobian.temperature": TemperatureScope,
        "jacobian.fisher": FisherScope,
        "dbsa": lambda: DBSA(embed=hash_embed),
    }[name]()


def tiny_loaded(tokenizer: Any, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 5) -> LoadedModel:
    model = tiny_llama(len(tokenizer), seed=seed).to(device=device, dtype=dtype)
    loaded = LoadedModel(
        id="tiny", source=f"tiny:{seed}", model=model, tokenizer=tokenizer, chat_template=True, device=device, info={"dtype": str(dtype)}
    )
    loaded.sampler = LocalSampler(loaded)
    return loaded


def tiny_generation(loaded: LoadedModel) -> Generation:
    prompt = SimpleNamespace(id="p", text="Name a colour, please.", messages=None)
    settings = SimpleNamespace(max_new_tokens=3, do_sample=False, temperature=1.0, top_p=1.0, model_dump=lambda: {"max_new_tokens": 3})
    return generate(loaded, prompt, settings, seed=0)


def run_all(loaded: LoadedModel, gen: Generation) -> tuple[dict[str, AttributionResult], Evaluation]:
    """Every built-in method on ``gen``, then the faithfulness evaluator over their results."""
    results: dict[str, AttributionResult] = {}
    for name, (opts, _) in METHODS.items():
        m = method(name)
        ctx = AttributionContext(
            model=loaded,
            generation=gen,
            options=m.options_model(**opts),
            seed=0,
            cache=Cache(None),
            generation_settings={"max_new_tokens": 3},
        )
        results[name] = m.attribute(ctx)
        results[name].label = name
    ev = FaithfulnessEvaluator()
    ectx = EvaluationContext(
        model=loaded,
        generations=[gen],
        results=[r for n, r in results.items() if n != "dbsa"],
        settings=EvaluationSettings(perturbations=4, bootstrap=50),
        options=ev.options_model(),
        cache=Cache(None),
    )
    return results, ev.evaluate(ectx)


def compared(r: AttributionResult, key: str | None) -> np.ndarray:
    """The compared numbers of a result: a score vector, or the input × output matrix."""
    if key is None:
        return np.asarray(r.matrix, dtype=np.float64)
    return np.array([np.nan if v is None else v for v in r.scores[key]], dtype=np.float64)


def assert_float_results(results: dict[str, AttributionResult]) -> None:
    for name, r in results.items():
        assert r.status == "ok", (name, r.reason)
        mat = np.asarray(r.matrix)
        assert mat.dtype in (np.float64, np.float32), name
        assert not np.isinf(mat).any(), name
        for key, vec in r.scores.items():
            assert all(v is None or (isinstance(v, float) and np.isfinite(v)) for v in vec), (name, key)
        r.to_json()  # JSON-able: no tensors, no bfloat16


def relative_error(a: np.ndarray, ref: np.ndarray) -> float:
    ok = np.isfinite(ref) & np.isfinite(a)
    spread = float(np.ptp(ref[ok])) if ok.any() else 0.0
    return float(np.max(np.abs(a[ok] - ref[ok])) / max(spread, 1e-12)) if ok.any() else 0.0


@pytest.fixture(scope="module")
def float32_run(smollm_tokenizer: Any) -> tuple[Generation, dict[str, AttributionResult]]:
    loaded = tiny_loaded(smollm_tokenizer)
    gen = tiny_generation(loaded)
    results, _ = run_all(loaded, gen)
    return gen, results


def cpu_supports(dtype: torch.dtype) -> bool:
    try:
        torch.nn.functional.linear(torch.ones(2, 2, dtype=dtype), torch.ones(2, 2, dtype=dtype))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_half_precision_on_cpu(smollm_tokenizer: Any, float32_run: Any, dtype_name: str) -> None:
    dtype = getattr(torch, dtype_name)
    if not cpu_supports(dtype):
        pytest.skip(f"this torch build has no CPU {dtype_name} matmul")
    gen, ref = float32_run
    loaded = tiny_loaded(smollm_tokenizer, dtype)
    results, ev = run_all(loaded, gen)
    assert_float_results(results)
    assert ev.scores and all(s.method for s in ev.scores)
    for name, tol in TOLERANCE[dtype_name].items():
        key = METHODS[name][1]
        err = relative_error(compared(results[name], key), compared(ref[name], key))
        assert err <= tol, (name, dtype_name, err)
    a, r = compared(results["probabilistic"], "attribution_score"), compared(ref["probabilistic"], "attribution_score")
    assert np.nanmax(np.abs(a - r)) <= PAS_ATOL_NATS[dtype_name]
