"""Model loaders: ``embedded:``, ``hf:``, ``gguf:`` (open weights) and ``openai:`` (black-box HTTP)."""

from __future__ import annotations

from typing import Any

from reportgen import hookimpl
from reportgen_plugins.models.loaders import EmbeddedLoader, GGUFLoader, HFLoader
from reportgen_plugins.models.openai import OpenAILoader


@hookimpl
def reportgen_register_model_loaders(register: Any) -> None:
    register(EmbeddedLoader())
    register(GGUFLoader())
    register(HFLoader())
    register(OpenAILoader())
