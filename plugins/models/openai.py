"""Model loader ``openai:<model name>``: a black-box model behind an OpenAI-compatible HTTP API.

The loaded model has no weights and no tokenizer (``model=None``): only methods with
``requires = "sampler"`` (for example ``dbsa``) run on it, and the runner builds its
reference Generation with :func:`reportgen.samplers.generate_via_sampler`.

Spec fields used (``models[]``): ``base_url``, ``api_key_env`` (the name of the environment
variable holding the key; the key itself is never written anywhere), ``timeout_s``,
``max_retries``, ``concurrency``, ``max_requests``; ``chat_template: off`` sends plain
``/completions`` requests instead of ``/chat/completions``.
"""

from __future__ import annotations

from typing import Any

from reportgen.errors import ModelLoadError
from reportgen.plugin_api import LoadedModel, ModelLoader
from reportgen.samplers import OpenAISampler


class OpenAILoader(ModelLoader):
    scheme = "openai"
    description = "A black-box model behind an OpenAI-compatible HTTP endpoint (sampling only)"

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> LoadedModel:
        name = model_spec.source.split(":", 1)[1]
        if not getattr(model_spec, "base_url", None):
            raise ModelLoadError(f"model {model_spec.id!r}: an openai: model needs base_url")
        chat = getattr(model_spec, "chat_template", "auto") != "off"
        sampler = OpenAISampler(
            model_spec.base_url,
            name,
            api_key_env=model_spec.api_key_env,
            timeout_s=model_spec.timeout_s,
            max_retries=model_spec.max_retries,
            concurrency=model_spec.concurrency,
            max_requests=model_spec.max_requests,
            chat=chat,
        )
        info = {"kind": "openai", "endpoint": sampler.endpoint, "model": name, "api_key_env": model_spec.api_key_env}
        return LoadedModel(
            id=model_spec.id,
            source=model_spec.source,
            model=None,
            tokenizer=None,
            sampler=sampler,
            chat_template=chat,
            device="remote",
            info=info,
        )
