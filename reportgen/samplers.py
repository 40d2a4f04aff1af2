"""Samplers: draw responses only (black-box access) from a local model or an HTTP API."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable

import httpx
import torch

from reportgen.cache import Cache, content_key
from reportgen.data import Generation
from reportgen.errors import SamplerError
from reportgen.plugin_api import Sampler


class LocalSampler(Sampler):
    """Samples from an open-weights model loaded by transformers (temperature sampling)."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        # the weights' hash (when known) keys cached samples, so a changed file never reuses them
        weights = content_key(loaded.info.get("sha256")) if loaded.info.get("sha256") else loaded.id
        self.id = f"local:{loaded.source}:{weights[:16]}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "model": self.loaded.id}

    @torch.no_grad()
    def sample(
        self,
        prompt: str | list[dict[str, str]],
        n: int,
        *,
        seed: int,
        max_new_tokens: int,
        temperature: float = 1.0,
    ) -> list[str]:
        tok, model = self.loaded.tokenizer, self.loaded.model
        if isinstance(prompt, list):
            if self.loaded.chat_template:
                text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            else:
                text = "\n\n".join(m["content"] for m in prompt)
            ids = tok(text, add_special_tokens=not self.loaded.chat_template, return_tensors="pt").input_ids
        else:
            ids = tok(prompt, return_tensors="pt").input_ids
        ids = ids.to(model.device)
        torch.manual_seed(seed)
        out = model.generate(
            ids.repeat(n, 1),
            attention_mask=torch.ones_like(ids).repeat(n, 1),
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
        return [tok.decode(row[ids.shape[1]:], skip_special_tokens=True) for row in out]

    @torch.no_grad()
    def sample_ids(
        self,
        input_ids: list[int],
        n: int,
        *,
        seed: int,
        max_new_tokens: int,
        temperature: float = 1.0,
    ) -> list[str]:
        """Sample ``n`` responses to an exact token-id input (no re-tokenisation)."""
        tok, model = self.loaded.tokenizer, self.loaded.model
        ids = torch.tensor([list(input_ids)], device=model.device)
        torch.manual_seed(seed)
        kwargs: dict[str, Any] = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        if temperature <= 0:
            kwargs = {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
        out = model.generate(
            ids.repeat(n, 1),
            attention_mask=torch.ones_like(ids).repeat(n, 1),
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            **kwargs,
        )
        return [tok.decode(row[ids.shape[1]:], skip_special_tokens=True) for row in out]


# --------------------------------------------------------------------------- words

#: DBSA word units (methods.md §3.1): numbers with optional currency/decimals/percent,
#: runs of word characters, or one punctuation mark.
WORD_RE = re.compile(r"[$€£¥]?\d+(?:[.,]\d+)*%?|\w+|[^\w\s]")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the DBSA word units in ``text`` (each occurrence separately)."""
    return [m.span() for m in WORD_RE.finditer(text)]


def words_with_space(text: str) -> list[tuple[str, int, int]]:
    """Pseudo-tokens that concatenate back to ``text``: each word with the whitespace before it.

    Returns ``(token, word_start, word_end)``; trailing whitespace joins the last token.
    A text with no word is one whitespace token (span empty).
    """
    spans = word_spans(text)
    if not spans:
        return [(text, len(text), len(text))] if text else []
    out: list[tuple[str, int, int]] = []
    prev = 0
    for a, b in spans:
        out.append((text[prev:b], a, b))
        prev = b
    if prev < len(text):
        tok, a, b = out[-1]
        out[-1] = (tok + text[prev:], a, b)
    return out


# --------------------------------------------------------------------------- OpenAI-compatible HTTP


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
                raise SamplerError(
                    f"environment variable {self.api_key_env} (models[].api_key_env) is not set; "
                    "export the API key there"
                )
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

    def request(
        self, prompt: str | list[dict[str, str]], n: int, *, seed: int, max_new_tokens: int, temperature: float
    ) -> list[str]:
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

        kw = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        if len(todo) > 1 and self.supports_n is not False:
            texts = self.request(prompt, len(todo), seed=draw_seed(seed, todo[0]), **kw)
            if len(texts) >= len(todo):
                self.supports_n = True
                for i, t in zip(todo, texts):
                    keep(i, t)
                return got
            self.supports_n = False
            keep(todo[0], texts[0])
            todo = todo[1:]
        error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self.request, prompt, 1, seed=draw_seed(seed, i), **kw): i for i in todo}
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
        got = self.sample_indices(
            prompt, list(range(n)), seed=seed, max_new_tokens=max_new_tokens, temperature=temperature
        )
        return [got[i] for i in range(n)]


def _short(text: str, limit: int = 200) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[:limit] + "…"


# --------------------------------------------------------------------------- cached draws

SAMPLES_NAMESPACE = "samples"


def sample_cache_key(sampler: Sampler, prompt: Any, seed: int, index: int, settings: dict[str, Any]) -> str:
    return content_key(getattr(sampler, "id", type(sampler).__name__), prompt, seed, index, settings)


def draw_samples(
    sampler: Sampler,
    prompt: str | list[dict[str, str]] | list[int],
    n: int,
    *,
    seed: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    cache: Cache | None = None,
    key_extra: dict[str, Any] | None = None,
) -> tuple[list[str], int]:
    """``n`` responses, each cached under (sampler id, prompt, seed, draw index, settings).

    ``prompt`` may be a list of token ids for a :class:`LocalSampler` (exact input). A
    sampler with ``sample_indices`` (HTTP) caches each draw the moment it arrives, so a
    rerun after a fault asks only for what is missing. Returns (responses, draws made now).
    """
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, **(key_extra or {})}
    keys = [sample_cache_key(sampler, prompt, seed, i, settings) for i in range(n)]
    out: dict[int, str] = {}
    if cache is not None:
        for i, k in enumerate(keys):
            v = cache.get(SAMPLES_NAMESPACE, k)
            if isinstance(v, str):
                out[i] = v
    missing = [i for i in range(n) if i not in out]
    if not missing:
        return [out[i] for i in range(n)], 0

    def store(i: int, text: str) -> None:
        out[i] = text
        if cache is not None:
            cache.set(SAMPLES_NAMESPACE, keys[i], text)

    kw = {"seed": seed, "max_new_tokens": max_new_tokens, "temperature": temperature}
    is_ids = isinstance(prompt, list) and (not prompt or isinstance(prompt[0], int))
    if is_ids:
        if not hasattr(sampler, "sample_ids"):
            raise SamplerError(f"{type(sampler).__name__} cannot sample from token ids")
        texts = sampler.sample_ids(prompt, n, **kw)  # type: ignore[attr-defined]
        for i in missing:
            store(i, texts[i])
    elif hasattr(sampler, "sample_indices"):
        sampler.sample_indices(prompt, missing, on_draw=store, **kw)  # type: ignore[attr-defined]
    else:
        texts = sampler.sample(prompt, n, **kw)  # type: ignore[arg-type]
        for i in missing:
            store(i, texts[i])
    return [out[i] for i in range(n)], len(missing)


# --------------------------------------------------------------------------- Generation for API models


def _messages(prompt: Any) -> list[dict[str, str]]:
    msgs = getattr(prompt, "messages", None)
    if msgs:
        return [{"role": m.role, "content": m.content} for m in msgs]
    return [{"role": "user", "content": prompt.text}]


#: Pseudo-token placed between chat messages (marked special: it is not user content).
MESSAGE_SEPARATOR = "\n\n"


def pseudo_tokens(messages: list[dict[str, str]]) -> list[tuple[str, bool, int | None, int, int]]:
    """Word-level pseudo-tokens over the messages' contents.

    Each entry is (display string, special, message index or None, word start, word end);
    spans are character offsets in that message's content. Messages are joined by a
    special :data:`MESSAGE_SEPARATOR` token.
    """
    out: list[tuple[str, bool, int | None, int, int]] = []
    for k, m in enumerate(messages):
        if k:
            out.append((MESSAGE_SEPARATOR, True, None, 0, 0))
        out.extend((tok, False, k, a, b) for tok, a, b in words_with_space(m["content"]))
    return out


def generate_via_sampler(loaded: Any, prompt: Any, settings: Any, seed: int) -> Generation:
    """The reference response of a black-box model (``loaded.model is None``).

    Greedy (temperature 0) unless ``settings.do_sample``. Input and output tokens are
    word-level pseudo-tokens with whitespace kept (ids are a running index, no step scores);
    ``settings["messages"]`` keeps the messages so methods can perturb them.
    """
    t0 = time.perf_counter()
    sampler = loaded.sampler
    if sampler is None:
        raise SamplerError(f"model {loaded.id!r} has no sampler")
    messages = _messages(prompt)
    chat = getattr(sampler, "chat", True)
    payload: str | list[dict[str, str]] = messages if chat else MESSAGE_SEPARATOR.join(m["content"] for m in messages)
    temperature = settings.temperature if settings.do_sample else 0.0
    response = sampler.sample(payload, 1, seed=seed, max_new_tokens=settings.max_new_tokens, temperature=temperature)[0]
    toks = pseudo_tokens(messages)
    out_toks = [t for t, _, _ in words_with_space(response)]
    return Generation(
        model_id=loaded.id,
        prompt_id=prompt.id,
        input_ids=tuple(range(len(toks))),
        input_tokens=tuple(t[0] for t in toks),
        input_special=tuple(t[1] for t in toks),
        output_ids=tuple(range(len(out_toks))),
        output_tokens=tuple(out_toks),
        prompt_text="".join(t[0] for t in toks),
        response_text=response,
        step_scores={},
        settings={**settings.model_dump(), "seed": seed, "messages": messages, "tokens": "words"},
        seconds=time.perf_counter() - t0,
    )
