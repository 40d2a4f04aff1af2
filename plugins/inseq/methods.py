"""inseq attribution methods, each registered as ``inseq.<method>``.

Every method ``inseq.list_feature_attribution_methods()`` offers is registered. Each
explains the stored generation by forced decoding of its exact token ids; the host
checks that inseq attributed exactly those ids and fails the job otherwise (never a
silently misaligned matrix).

Known quirks handled here:
- inseq drops tokens equal to the pad token from its output, and a tokenizer without
  a pad token pads with EOS (``<|im_end|>`` for chat models): a chat prompt would lose
  its template tokens. We point inseq's pad token at a token absent from the sequence.
- ``attention`` and ``value_zeroing`` need the model loaded with eager attention.
- ``lime`` needs scikit-learn; ``reagent`` needs nltk data (not downloadable here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import time
from typing import Annotated, Any, ClassVar

import numpy as np
from packaging.version import Version
from pydantic import ConfigDict, Field, ValidationInfo, create_model, field_validator

from reportgen.data import AttributionResult
from reportgen.plugin_api import AttributionContext, AttributionMethod, LoadedModel, Options
from reportgen_plugins.inseq.batching import BATCHED, SPLIT_SAMPLES, auto_internal_batch_size

# Options each method forwards to Captum/inseq (name → (type, default, description)); the
# constraints are in the types, so `reportgen validate` rejects `n_steps: -3` before any model loads.
Steps = Annotated[int, Field(ge=1, le=100_000)]
Batch = Annotated[int, Field(ge=1)]
Samples = Annotated[int, Field(ge=1, le=100_000)]
_COMMON: dict[str, tuple[Any, Any, str]] = {
    "dimension": (
        str | None,
        None,
        "Override the spec's dimensional aggregation: l2, sum, mean or a registered plugin aggregation's name.",
    ),
}
_BATCH_DOC = (
    "Path points per forward (≥ 1). Default: as many as fit the free memory (on a CPU min(4 GiB, 25 % of available "
    "RAM), on a GPU half its free memory) at this sequence's length, at most n_steps; the value used is recorded."
)
_PER_METHOD: dict[str, dict[str, tuple[Any, Any, str]]] = {
    "integrated_gradients": {
        "n_steps": (Steps, 50, "Riemann steps along the path (≥ 1)."),
        "internal_batch_size": (Batch | None, None, _BATCH_DOC),
    },
    "layer_integrated_gradients": {
        "n_steps": (Steps, 50, "Riemann steps along the path (≥ 1)."),
        "internal_batch_size": (Batch | None, None, _BATCH_DOC),
    },
    "sequential_integrated_gradients": {
        "n_steps": (Steps, 50, "Steps per token path (≥ 1)."),
        "internal_batch_size": (Batch | None, None, _BATCH_DOC),
    },
    "discretized_integrated_gradients": {
        "n_steps": (Steps, 50, "Interpolation steps (≥ 1)."),
        "internal_batch_size": (Batch | None, None, _BATCH_DOC),
    },
    "gradient_shap": {
        "n_samples": (Samples, 5, "Random baselines per input (≥ 1)."),
        "internal_batch_size": (Batch | None, None, _BATCH_DOC.replace("Path points", "Samples").replace("n_steps", "n_samples")),
        "stdevs": (Annotated[float, Field(ge=0, allow_inf_nan=False)], 0.0, "Gaussian noise added to each sample (≥ 0)."),
    },
    "saliency": {"abs": (bool, True, "Absolute value of the gradient.")},
    "lime": {"n_samples": (Samples, 50, "Perturbed samples for the surrogate (≥ 1).")},
    "occlusion": {},
    "value_zeroing": {},
    "attention": {},
    "input_x_gradient": {},
    "deeplift": {},
    "layer_deeplift": {},
    "layer_gradient_x_activation": {},
    "reagent": {},
    "dummy": {},
}
_DEFAULT_DIMENSION = {"attention": "mean", "value_zeroing": "mean", "dummy": "sum"}
_DESCRIPTIONS = {
    "saliency": "Gradient magnitude of the target log-probability w.r.t. input embeddings (Simonyan et al.).",
    "input_x_gradient": "Gradient × input embedding.",
    "integrated_gradients": "Path-integrated gradients from a baseline (Sundararajan et al.).",
    "occlusion": "Change in the target when each token is occluded (perturbation).",
    "attention": "Attention weights (mean over layers and heads by default).",
    "lime": "Local linear surrogate over token masks (needs scikit-learn).",
    "gradient_shap": "Expected gradients over noisy baselines (SHAP approximation).",
    "deeplift": "DeepLIFT rescale rule.",
    "value_zeroing": "Change in representations when each token's value vectors are zeroed.",
    "reagent": "Replacing tokens with a masked language model (needs nltk data).",
}


def _registered_dimension(value: str | None, info: ValidationInfo) -> str | None:
    """``dimension`` names a registered dimensional aggregation.

    The host validates options with the context key ``dimension_aggregation`` (name → the
    aggregation or None) and ``dimension_aggregations`` (the registered names); without a
    context (a model built by hand) any name passes and the run's lookup decides.
    """
    context = info.context if isinstance(info.context, dict) else {}
    lookup = context.get("dimension_aggregation")
    if value is None or lookup is None or lookup(value) is not None:
        return value
    names = sorted(n.removeprefix("dimension.") for n in context.get("dimension_aggregations", ()))
    raise ValueError(f"unknown dimensional aggregation {value!r}; valid choices: {', '.join(names) or '(none installed)'}")


def _options_model(method: str) -> type[Options]:
    fields: dict[str, Any] = {}
    for name, (typ, default, desc) in {**_COMMON, **_PER_METHOD.get(method, {})}.items():
        fields[name] = (typ, Field(default, description=desc))
    # Unknown (newer) inseq methods accept any option and pass it through to inseq.
    config = ConfigDict(extra="forbid" if method in _PER_METHOD else "allow", frozen=True)
    validators = {"registered_dimension": field_validator("dimension")(_registered_dimension)}
    return create_model(  # type: ignore[no-any-return]
        f"Inseq_{method}_Options", __config__=config, __validators__=validators, **fields
    )


class _ExactIds:
    """Tokenizer proxy: the texts inseq re-tokenizes map back to the stored token ids.

    inseq takes text; re-tokenizing decoded text may not reproduce the ids the model
    generated (a model can emit a non-canonical split). During the call inseq sees
    this proxy, which answers the two known texts with the exact stored ids.
    """

    def __init__(self, tok: Any, table: dict[str, list[int]]) -> None:
        self._tok = tok
        self._table = table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    def __len__(self) -> int:
        return len(self._tok)

    def __call__(self, text: Any = None, text_target: Any = None, **kwargs: Any) -> Any:
        import torch
        from transformers import BatchEncoding

        texts = [text] if isinstance(text, str) else text
        if text_target is None and isinstance(texts, list) and texts and all(t in self._table for t in texts):
            rows = [self._table[t] for t in texts]
            if len({len(r) for r in rows}) == 1:
                ids = torch.tensor(rows, dtype=torch.long)
                return BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        return self._tok(text=text, text_target=text_target, **kwargs)


def _unused_token(tokenizer: Any, used: set[int]) -> str:
    """A vocabulary token string absent from ``used`` (special tokens first)."""
    for tid in list(getattr(tokenizer, "all_special_ids", [])) + list(range(len(tokenizer))):
        if tid not in used:
            return str(tokenizer.convert_ids_to_tokens(tid))
    raise RuntimeError("no unused token in the vocabulary")


class InseqMethod(AttributionMethod):
    requires: ClassVar[str] = "weights"

    def __init__(self, inseq_name: str) -> None:
        self.inseq_name = inseq_name
        self.name = f"inseq.{inseq_name}"  # type: ignore[misc]
        self.description = describe(self.name)  # type: ignore[misc]
        self.options_model = _options_model(inseq_name)  # type: ignore[misc]
        self._wrapped: dict[int, Any] = {}

    def unavailable_reason(self, model: LoadedModel) -> str | None:
        base = super().unavailable_reason(model)
        if base:
            return base
        name = self.inseq_name
        attn = getattr(model.model.config, "_attn_implementation", None)
        if name in ("attention", "value_zeroing") and attn != "eager":
            return f"{name} needs eager attention; this model uses {attn!r} (set attn_implementation: eager on the model)"
        if name == "lime" and importlib.util.find_spec("sklearn") is None:
            return "lime needs scikit-learn (pip install 'reportgen[lime]')"
        if name == "reagent":
            try:
                import nltk

                nltk.data.find("corpora/stopwords")
            except (ImportError, LookupError):
                return "reagent needs nltk and its 'stopwords' data, which cannot be downloaded here"
        if name == "value_zeroing" and _major("transformers") >= 5 and Version(_inseq_version()) <= Version("0.7.1"):
            return (
                "value_zeroing in inseq 0.7.1 expects decoder layers to return tuples; transformers 5 "
                "returns tensors (TypeError inside inseq); not run"
            )
        if name == "dummy":
            return "dummy is inseq's placeholder method (it computes no attribution); not run"
        if name == "discretized_integrated_gradients":
            return (
                "discretized_integrated_gradients builds a k-NN graph over the whole vocabulary "
                "(sklearn + hours of CPU for a 49k vocabulary); not run"
            )
        return None

    def _inseq_model(self, loaded: LoadedModel) -> Any:
        import inseq

        key = id(loaded.model)
        if key not in self._wrapped:
            self._wrapped.clear()  # one model at a time: never keep freed weights alive
            with contextlib.redirect_stdout(io.StringIO()):
                self._wrapped[key] = inseq.load_model(loaded.model, self.inseq_name, tokenizer=loaded.tokenizer)
        return self._wrapped[key]

    def release(self, model: LoadedModel) -> None:
        self._wrapped.pop(id(model.model), None)

    def attribute(self, ctx: AttributionContext) -> AttributionResult:
        gen, loaded, opts = ctx.generation, ctx.model, ctx.options
        tok = loaded.tokenizer
        t0 = time.perf_counter()
        im = self._inseq_model(loaded)
        full_ids = list(gen.input_ids) + list(gen.output_ids)
        im.pad_token = _unused_token(tok, set(full_ids))
        kwargs = {k: v for k, v in opts.model_dump().items() if k != "dimension" and v is not None}
        copies = BATCHED.get(self.inseq_name)
        if copies and "internal_batch_size" not in kwargs:
            kwargs["internal_batch_size"] = auto_internal_batch_size(loaded.model, len(full_ids), kwargs[copies])
        logging.getLogger("inseq").setLevel(logging.ERROR)
        src_text = tok.decode(list(gen.input_ids), skip_special_tokens=False)
        full_text = tok.decode(full_ids, skip_special_tokens=False)
        im.tokenizer = _ExactIds(tok, {src_text: list(gen.input_ids), full_text: full_ids})
        t1 = time.perf_counter()
        try:
            run = _mean_of_sample_runs if self.inseq_name in SPLIT_SAMPLES else _inseq_attributions
            arr = run(im, src_text, full_text, full_ids, kwargs)
        finally:
            im.tokenizer = tok
        t2 = time.perf_counter()
        chosen = opts.dimension or _DEFAULT_DIMENSION.get(self.inseq_name)
        how = chosen or str(ctx.generation_settings.get("dimension", "l2"))
        mat = ctx.reduce_dimension(arr, chosen)  # (n + t) × t
        n = gen.n
        matrix = np.asarray(mat[:n, :], dtype=np.float64)
        output_matrix = np.asarray(mat[n:, :], dtype=np.float64)
        reduced = "hidden dims" if arr.ndim > 2 else "cells"
        return AttributionResult.for_generation(
            gen,
            self.name,
            {**opts.model_dump(), **kwargs, "dimension": how},  # the batch actually used
            matrix=matrix,
            matrix_label=f"{self.inseq_name} ({how} over {reduced})",
            signed=bool(np.nanmin(matrix) < 0) if np.isfinite(matrix).any() else False,
            details={"output_matrix": output_matrix, "inseq_version": _inseq_version()},
            timings={"seconds": time.perf_counter() - t0, "inseq_attribute_seconds": t2 - t1},
        )


def _inseq_attributions(im: Any, src_text: str, full_text: str, full_ids: list[int], kwargs: dict[str, Any]) -> Any:
    """inseq's target attributions of the stored sequence, checked to be about exactly its token ids."""
    options = {k: v for k, v in kwargs.items() if v is not None}
    out = im.attribute(src_text, generated_texts=full_text, skip_special_tokens=False, show_progress=False, **options)
    seq = out.sequence_attributions[0]
    got = [t.id for t in seq.target]
    if got != full_ids:
        raise RuntimeError(
            "inseq attributed a different token sequence than the stored generation "
            f"({len(got)} vs {len(full_ids)} tokens); refusing a misaligned matrix"
        )
    tgt = seq.target_attributions
    return tgt.detach().float().cpu().numpy() if hasattr(tgt, "detach") else np.asarray(tgt, dtype=np.float64)


def _mean_of_sample_runs(im: Any, src_text: str, full_text: str, full_ids: list[int], kwargs: dict[str, Any]) -> Any:
    """GradientSHAP's ``n_samples`` in runs of ``internal_batch_size`` (Captum's GradientShap puts them all in one
    forward): the samples are independent draws averaged, so the sample-weighted mean of the runs is the same estimator."""
    n_samples, batch = kwargs["n_samples"], kwargs["internal_batch_size"]
    total: Any = 0.0
    for start in range(0, n_samples, batch):
        k = min(batch, n_samples - start)
        part = {**kwargs, "n_samples": k, "internal_batch_size": None}
        total = total + k * _inseq_attributions(im, src_text, full_text, full_ids, part).astype(np.float64)
    return total / n_samples


def _major(package: str) -> int:
    import importlib.metadata

    return int(importlib.metadata.version(package).split(".")[0])


def _inseq_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("inseq")


def describe(name: str) -> str:
    """The description of method ``inseq.<method>``, known without importing inseq."""
    method = name.removeprefix("inseq.")
    return _DESCRIPTIONS.get(method, f"inseq method {method!r}")


def available_methods() -> list[str]:
    """What the installed inseq offers (imports inseq, hence torch and transformers)."""
    try:
        import inseq
    except ImportError:  # pragma: no cover - inseq is a core dependency
        return sorted(_PER_METHOD)
    return sorted(inseq.list_feature_attribution_methods())
