"""Cached draws: every sampled response is cached under (sampler, prompt, seed, draw index, settings).

A rerun after an interruption or an HTTP fault asks the sampler only for what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from typing_extensions import TypeIs

from reportgen.cache import Cache, content_key
from reportgen.errors import SamplerError
from reportgen.plugin_api import Sampler

SAMPLES_NAMESPACE = "samples"

#: What a sampler is asked to answer: a text, chat messages, or exact token ids (open models).
Prompt = str | list[dict[str, str]] | list[int]


@runtime_checkable
class IdSampler(Protocol):
    """A sampler that answers exact token ids (the host's ``LocalSampler``)."""

    def sample_ids(self, input_ids: list[int], n: int, *, seed: int, max_new_tokens: int, temperature: float = 1.0) -> list[str]: ...


@runtime_checkable
class IndexedSampler(Protocol):
    """A sampler that draws numbered responses and reports each as it arrives (HTTP samplers)."""

    def sample_indices(
        self,
        prompt: str | list[dict[str, str]],
        indices: list[int],
        *,
        seed: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        on_draw: Callable[[int, str], None] | None = None,
    ) -> dict[int, str]: ...


@runtime_checkable
class CappedSampler(Protocol):
    """A sampler with a request budget (HTTP samplers with ``max_requests``)."""

    def requests_left(self) -> int | None: ...


def derive_seed(*parts: Any) -> int:
    """A 32-bit seed derived from JSON-able parts (stable across runs and machines)."""
    return int(content_key(*parts)[:8], 16)


def sample_cache_key(sampler: Sampler, prompt: Prompt, seed: int, index: int, settings: dict[str, Any]) -> str:
    return content_key(sampler.id, prompt, seed, index, settings)


def _settings(max_new_tokens: int, temperature: float) -> dict[str, Any]:
    return {"max_new_tokens": max_new_tokens, "temperature": temperature}


def count_uncached(
    sampler: Sampler, prompts: list[tuple[Prompt, int]], n: int, *, max_new_tokens: int, temperature: float, cache: Cache
) -> int:
    """How many of ``n`` draws per (prompt, seed) are not in the cache yet."""
    settings = _settings(max_new_tokens, temperature)
    return sum(
        cache.get(SAMPLES_NAMESPACE, sample_cache_key(sampler, prompt, seed, i, settings)) is None
        for prompt, seed in prompts
        for i in range(n)
    )


def requests_left(sampler: Sampler) -> int | None:
    """How many requests the sampler may still send (None: no cap)."""
    return sampler.requests_left() if isinstance(sampler, CappedSampler) else None


def draw_samples(
    sampler: Sampler,
    prompt: Prompt,
    n: int,
    *,
    seed: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    cache: Cache | None = None,
) -> tuple[list[str], int]:
    """``n`` responses, each cached under (sampler id, prompt, seed, draw index, settings).

    ``prompt`` may be a list of token ids for an :class:`IdSampler` (exact input). An
    :class:`IndexedSampler` (HTTP) caches each draw the moment it arrives, so a rerun after a
    fault asks only for what is missing. Returns (responses, draws made now).
    """
    settings = _settings(max_new_tokens, temperature)
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

    if _is_ids(prompt):
        if not isinstance(sampler, IdSampler):
            raise SamplerError(f"{type(sampler).__name__} cannot sample from token ids")
        texts = sampler.sample_ids(prompt, n, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature)
        for i in missing:
            store(i, texts[i])
    elif isinstance(sampler, IndexedSampler):
        sampler.sample_indices(prompt, missing, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature, on_draw=store)
    else:
        texts = sampler.sample(prompt, n, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature)
        for i in missing:
            store(i, texts[i])
    return [out[i] for i in range(n)], len(missing)


def _is_ids(prompt: Prompt) -> TypeIs[list[int]]:
    return isinstance(prompt, list) and (not prompt or isinstance(prompt[0], int))
