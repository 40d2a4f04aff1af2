"""Model loader ``openai:<model name>``: a black-box model behind an OpenAI-compatible HTTP API.

The loaded model has no weights and no tokenizer (``model=None``): only methods with
``requires = "sampler"`` (for example ``dbsa``) run on it, and the runner builds its
reference Generation with :func:`reportgen.generate.generate_via_sampler`. Its sampler is
:class:`OpenAISampler`.

Spec fields used (``models[]``): ``base_url``, ``api_key_env`` (the name of the environment
variable holding the key; the key itself is never written anywhere), ``timeout_s``,
``max_retries``, ``concurrency``, ``max_requests``; ``chat_template: off`` sends plain
``/completions`` requests instead of ``/chat/completions``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import httpx

from reportgen.errors import ModelLoadError, SamplerError
from reportgen.plugin_api import LoadedModel, ModelLoader, Sampler


def draw_seed(seed: int, index: int) -> int:
    """The request seed of draw ``index`` (stable, fits a signed 32-bit int)."""
    return (seed * 1_000_003 + index * 7919 + 12345) % (2**31 - 1)


class OpenAISampler(Sampler):
    """Draws responses from an OpenAI-compatible endpoint (``/chat/completions`` or ``/completions``).

    One request per draw (seed = :func:`draw_seed`), or ``n`` choices per request when the
    server honours ``n`` (detected on the first multi-draw request; llama.cpp's server ignores
    it). Connect errors, timeouts, 429 and 5xx are retried with exponential backoff and seeded
    jitter; other HTTP errors fail at once. ``max_requests`` caps every HTTP request sent
    (retries included). The API key is read from the environment variable ``api_key_env`` at
    request time and is never stored, logged or described.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 4,
        max_requests: int | None = None,
        chat: bool = True,
        backoff_s: float = 0.5,
        seed: int = 0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.concurrency = max(1, int(concurrency))
        self.max_requests = max_requests
        self.chat = chat
        self.backoff_s = backoff_s
        self.supports_n: bool | None = None
        self.requests_sent = 0
        self.id = f"openai:{self.base_url}#{model}#{'chat' if chat else 'completions'}"
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s), transport=transport)

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/{'chat/completions' if self.chat else 'completions'}"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "openai",
            "endpoint": self.endpoint,
            "model": self.model,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "concurrency": self.concurrency,
            "max_requests": self.max_requests,
            "requests_sent": self.requests_sent,
            "supports_n": self.supports_n,
            "api_key_env": self.api_key_env,  # the variable's name only, never its value
        }

    def close(self) -> None:
        self._client.close()

    def requests_left(self) -> int | None:
        return None if self.max_requests is None else max(0, self.max_requests - self.requests_sent)

    # -- one HTTP exchange with retries
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise SamplerError(f"environment variable {self.api_key_env} (models[].api_key_env) is not set; export the API key there")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _count_request(self) -> None:
        with self._lock:
            if self.max_requests is not None and self.requests_sent >= self.max_requests:
                raise SamplerError(
                    f"request cap reached: {self.requests_sent} of max_requests={self.max_requests} sent to "
                    f"{self.endpoint}; raise models[].max_requests or lower samples/neighbours "
                    "(samples already drawn are cached, a rerun resumes)"
                )
            self.requests_sent += 1

    def _backoff(self, attempt: int) -> None:
        with self._lock:
            jitter = self._rng.random()
        time.sleep(self.backoff_s * (2**attempt) * (1.0 + jitter))

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        url = self.endpoint
        headers = self._headers()
        attempts = self.max_retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                self._backoff(attempt - 1)
            self._count_request()
            try:
                resp = self._client.post(url, json=payload, headers=headers)
            except httpx.ConnectError:
                last = (
                    f"cannot connect to {url}: connection refused after {attempts} attempt(s); "
                    "is the server running? (check models[].base_url)"
                )
                continue
            except httpx.TimeoutException:
                last = f"request to {url} timed out after {attempts} attempt(s) ({self.timeout_s:g} s each)"
                continue
            except httpx.HTTPError as exc:
                last = f"request to {url} failed after {attempts} attempt(s): {type(exc).__name__}"
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"{url} answered HTTP {resp.status_code} after {attempts} attempt(s): {_short(resp.text)}"
                continue
            if resp.status_code >= 400:
                raise SamplerError(f"{url} answered HTTP {resp.status_code}: {_short(resp.text)}")
            try:
                data = resp.json()
            except ValueError:
                raise SamplerError(f"malformed reply from {url}: not JSON ({_short(resp.text)})") from None
            if not isinstance(data, dict):
                raise SamplerError(f"malformed reply from {url}: expected a JSON object, got {type(data).__name__}")
            return data
        raise SamplerError(last)

    def _texts(self, data: dict[str, Any]) -> list[str]:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SamplerError(f"malformed reply from {self.endpoint}: no 'choices' list")
        out: list[str] = []
        for k, ch in enumerate(choices):
            text = None
            if isinstance(ch, dict):
                text = (ch.get("message") or {}).get("content") if self.chat else ch.get("text")
            if not isinstance(text, str):
                what = "message.content" if self.chat else "text"
                raise SamplerError(f"malformed reply from {self.endpoint}: choice {k} has no string {what}")
            out.append(text)
        return out

    def request(self, prompt: str | list[dict[str, str]], n: int, *, seed: int, max_new_tokens: int, temperature: float) -> list[str]:
        """One request (``n`` choices asked for); returns the texts the server sent."""
        payload: dict[str, Any] = {
            "model": self.model,
            "temperature": temperature,
            "max_tokens": max_new_tokens,
            "seed": seed,
            "top_p": 1.0,
        }
        if n != 1:
            payload["n"] = n
        if self.chat:
            payload["messages"] = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt if isinstance(prompt, str) else "\n\n".join(m["content"] for m in prompt)
        return self._texts(self._post(payload))

    # -- many draws
    def sample_indices(
        self,
        prompt: str | list[dict[str, str]],
        indices: list[int],
        *,
        seed: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        on_draw: Callable[[int, str], None] | None = None,
    ) -> dict[int, str]:
        """Draw the responses numbered ``indices``; ``on_draw(i, text)`` runs as each arrives.

        When a request fails, draws that already arrived are kept (``on_draw`` was called
        for each) and the first error is raised.
        """
        todo = list(indices)
        got: dict[int, str] = {}

        def keep(i: int, text: str) -> None:
            got[i] = text
            if on_draw is not None:
                on_draw(i, text)

        def ask(n: int, index: int) -> list[str]:
            return self.request(prompt, n, seed=draw_seed(seed, index), max_new_tokens=max_new_tokens, temperature=temperature)

        if len(todo) > 1 and self.supports_n is not False:
            texts = ask(len(todo), todo[0])
            if len(texts) >= len(todo):
                self.supports_n = True
                for i, t in zip(todo, texts, strict=True):
                    keep(i, t)
                return got
            self.supports_n = False
            keep(todo[0], texts[0])
            todo = todo[1:]
        error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(ask, 1, i): i for i in todo}
            for fut in as_completed(futures):
                try:
                    keep(futures[fut], fut.result()[0])
                except BaseException as exc:  # noqa: BLE001 - re-raised below after keeping the others
                    if error is None:
                        error = exc
                        for f in futures:
                            f.cancel()
        if error is not None:
            raise error
        return got

    def sample(
        self,
        prompt: str | list[dict[str, str]],
        n: int,
        *,
        seed: int,
        max_new_tokens: int,
        temperature: float = 1.0,
    ) -> list[str]:
        got = self.sample_indices(prompt, list(range(n)), seed=seed, max_new_tokens=max_new_tokens, temperature=temperature)
        return [got[i] for i in range(n)]


def _short(text: str, limit: int = 200) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[:limit] + "…"


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
