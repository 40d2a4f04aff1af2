"""inseq methods through reportgen: exact token alignment, an autograd oracle, reasons when unavailable."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest
import torch

from reportgen.cache import Cache
from reportgen.generate import generate
from reportgen.plugin_api import AttributionContext, LoadedModel
from reportgen.spec import GenerationSpec, PromptSpec
from reportgen_plugins.inseq.methods import InseqMethod, available_methods
from tests.conftest import tiny_llama

# Methods cheap enough to run on a tiny model in the unit suite; the rest are checked for a reason or a run elsewhere.
FAST = ["saliency", "input_x_gradient", "attention", "integrated_gradients", "occlusion", "deeplift", "layer_gradient_x_activation"]


@pytest.fixture(scope="module")
def setup(smollm_tokenizer: Any) -> tuple[LoadedModel, Any]:
    model = tiny_llama(len(smollm_tokenizer), seed=2)
    loaded = LoadedModel(
        id="tiny", source="tiny:2", model=model, tokenizer=smollm_tokenizer, chat_template=True, info={"attn_implementation": "eager"}
    )
    prompt = PromptSpec(id="p", messages=[{"role": "user", "content": "Translate to French: the cat sleeps."}])
    gen = generate(loaded, prompt, GenerationSpec(max_new_tokens=4), seed=0)
    return loaded, gen


def run_method(name: str, loaded: LoadedModel, gen: Any, **options: Any) -> Any:
    """``inseq.<name>`` on ``gen`` with ``options``: its result, or its unavailable reason."""
    m = InseqMethod(name)
    reason = m.unavailable_reason(loaded)
    if reason:
        return reason
    ctx = AttributionContext(
        model=loaded,
        generation=gen,
        options=m.options_model.model_validate(options),
        seed=0,
        cache=Cache(None),
        generation_settings={"dimension": "l2"},
    )
    return m.attribute(ctx)


def test_every_inseq_method_is_registered() -> None:
    import inseq

    assert available_methods() == sorted(inseq.list_feature_attribution_methods())


@pytest.mark.parametrize("name", FAST)
def test_fast_methods_align_with_the_stored_generation(name: str, setup: Any) -> None:
    loaded, gen = setup
    res = run_method(name, loaded, gen, **({"n_steps": 4} if name == "integrated_gradients" else {}))
    assert not isinstance(res, str), res
    assert res.matrix.shape == (gen.n, gen.t)
    assert np.isfinite(res.matrix).all()
    assert res.input_tokens == list(gen.input_tokens) and res.output_tokens == list(gen.output_tokens)


def test_saliency_equals_an_autograd_oracle(setup: Any) -> None:
    loaded, gen = setup
    res = run_method("saliency", loaded, gen)
    model = loaded.model
    full = list(gen.input_ids) + list(gen.output_ids)
    n = gen.n
    for j in range(gen.t):
        ids = torch.tensor([full[: n + j]])
        emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        with torch.enable_grad():
            p = torch.softmax(model(inputs_embeds=emb).logits[0, -1].float(), -1)[full[n + j]]
            (g,) = torch.autograd.grad(p, emb)
        expected = g[0, :n].abs().norm(dim=-1).numpy()
        np.testing.assert_allclose(res.matrix[:, j], expected, rtol=1e-3, atol=1e-8)


def test_unavailable_methods_say_why(setup: Any) -> None:
    loaded, _ = setup
    sdpa = LoadedModel(id="x", source="tiny", model=tiny_llama(64, attn="sdpa"), tokenizer=loaded.tokenizer)
    assert "eager" in (InseqMethod("attention").unavailable_reason(sdpa) or "")
    api = LoadedModel(id="api", source="openai:x")
    assert "API-only" in (InseqMethod("saliency").unavailable_reason(api) or "")
    assert "placeholder" in (InseqMethod("dummy").unavailable_reason(loaded) or "")
    assert "transformers 5" in (InseqMethod("value_zeroing").unavailable_reason(loaded) or "")


def test_reagent_needs_nltk_stopwords(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both branches, whatever this machine has: no nltk, nltk without the data, nltk with it."""
    loaded, _ = setup
    reagent = InseqMethod("reagent")
    monkeypatch.setitem(sys.modules, "nltk", None)  # import nltk → ImportError
    assert "nltk" in (reagent.unavailable_reason(loaded) or "")

    def find(resource: str) -> str:
        if resource != "corpora/stopwords":
            raise AssertionError(resource)
        if not have_data:
            raise LookupError(resource)
        return "/fake/nltk_data/corpora/stopwords"

    fake = types.ModuleType("nltk")
    fake.data = types.SimpleNamespace(find=find)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nltk", fake)
    have_data = False
    assert "stopwords" in (reagent.unavailable_reason(loaded) or "")
    have_data = True
    assert reagent.unavailable_reason(loaded) is None
