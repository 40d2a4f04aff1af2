"""Prefix KV caches on sliding-window models: the faithfulness evaluator's batched scorer and the sampler's
shared prefill, on tiny random Llama (full attention) and Gemma 3 (a sliding-window layer of 3 positions and
a full-attention layer), with prompts longer than the window.

A sliding-window layer of a cache built from the model's config keeps only its last window of positions, so a
prefix sliced from it by absolute position (``keys[:, :, :p]``) holds the wrong positions.

Oracles: one plain forward (no cache) over [x̃, y] per perturbed prompt, its log-probabilities taken by hand;
``generate`` on n copies of the prompt (each row prefilled by itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from reportgen.generate import shared_prefill
from reportgen_plugins.evaluation.scorer import PrefixBatchScorer
from tests.conftest import tiny_gemma3, tiny_llama

V = 12
X = [2, 5, 9, 3, 11, 7, 4, 8, 10, 6, 5, 3, 9, 7]  # n = 14: longer than Gemma's window of 3
Y = [4, 8, 6, 10]
MODELS: dict[str, Callable[[], Any]] = {"llama": lambda: tiny_llama(V, seed=5), "gemma3": tiny_gemma3}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> Any:
    return MODELS[request.param]()


def replaced(x: list[int], positions: list[int], token: int = 0) -> list[int]:
    return [token if i in positions else t for i, t in enumerate(x)]


def deleted(x: list[int], positions: list[int]) -> list[int]:
    return [t for i, t in enumerate(x) if i not in positions]


#: perturbations at the start, the middle and the end of the prompt, of one and several tokens, that keep
#: or shorten its length; 11 prompts (no batch size below divides 11)
PROMPTS = [
    X,
    replaced(X, [0]),
    replaced(X, [1], 1),
    deleted(X, [0, 1]),
    replaced(X, [6]),
    replaced(X, [5, 6, 7, 8], 1),
    deleted(X, [7]),
    deleted(X, [4, 9, 10]),
    replaced(X, [13]),
    deleted(X, [13]),
    replaced(X, [2, 12], 1),
]


@torch.no_grad()
def plain_logprobs(model: Any, prompt: list[int], y: list[int]) -> np.ndarray:
    """log P(y_j | prompt, y_{<j}) from one forward over [prompt, y] without a cache."""
    logits = model(torch.tensor([prompt + y])).logits[0].double()
    rows = torch.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(y)], dim=-1)
    out: np.ndarray = rows[torch.arange(len(y)), torch.tensor(y)].numpy()
    return out


@pytest.fixture(scope="module")
def want(model: Any) -> np.ndarray:
    return np.stack([plain_logprobs(model, p, Y) for p in PROMPTS])


@pytest.mark.parametrize("batch_size", [1, 2, 4, 5, None])
def test_batched_scores_equal_one_plain_forward_per_prompt(model: Any, want: np.ndarray, batch_size: int | None) -> None:
    sc = PrefixBatchScorer(model, X, Y, batch_size=batch_size)
    np.testing.assert_allclose(sc.score(PROMPTS), want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(sc.base, want[0], atol=1e-5, rtol=0)
    assert sc.forwards == len(PROMPTS)


def test_the_prefix_cache_keeps_every_position_of_the_prompt() -> None:
    sc = PrefixBatchScorer(tiny_gemma3(), X, Y)
    assert all(k.shape[-2] == len(X) + len(Y) for k, _ in sc._layers)


@pytest.mark.parametrize("sampling", [{"do_sample": False}, {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}])
def test_shared_prefill_generates_what_n_separate_prefills_generate(sampling: dict[str, Any]) -> None:
    model = tiny_gemma3(40, seed=4)
    ids = torch.tensor([[2, 17, 5, 30, 9, 22, 13, 8, 35, 11, 27, 6]])  # 12 tokens: 4 windows
    n, steps = 5, 6
    common = {"attention_mask": torch.ones(n, ids.shape[1], dtype=torch.long), "max_new_tokens": steps, "pad_token_id": 0}
    common |= {"eos_token_id": None, **sampling}
    prefill = shared_prefill(model, ids, n)
    assert prefill, "the prompt's cache is shared"
    torch.manual_seed(3)
    got = model.generate(ids.repeat(n, 1), **prefill, **common)
    torch.manual_seed(3)
    want = model.generate(ids.repeat(n, 1), **common)
    assert got.shape == (n, ids.shape[1] + steps)
    assert torch.equal(got, want)
    if sampling["do_sample"]:
        assert len({tuple(r) for r in got[:, ids.shape[1] :].tolist()}) > 1  # the rows did sample
