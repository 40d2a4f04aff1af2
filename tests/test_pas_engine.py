"""PAS prefix scorer against full forwards: ``score_fillers`` (the original filler's factors come from
the base forward, the others from teacher-forced forwards on the prefix cache) and ``sample_fillers``
(one-token steps on a pre-sized prefix cache) on tiny random Llama (untied head), GPT-2 (tied head)
and Gemma 3 (sliding-window and full-attention layers) models.

Oracle: each filler's sequence x_{<k} w x_{≥k+L} y through the model in one plain forward (no cache),
its log-probabilities summed by hand; ancestral sampling with a plain forward per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import transformers

from reportgen_plugins.pas.engine import PrefixScorer
from tests.conftest import tiny_gemma3
from tests.test_probabilistic import tiny_llama

V = 12
X = [0, 5, 9, 3, 11, 7, 2, 8, 4, 6]  # n = 10: longer than the Gemma model's sliding window


def tiny_gpt2() -> Any:
    torch.manual_seed(1)
    cfg = transformers.GPT2Config(vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=64, initializer_range=0.4)
    return transformers.GPT2LMHeadModel(cfg).eval()  # type: ignore[no-untyped-call]  # tied head: the input embedding


MODELS = {"llama": lambda: tiny_llama(V, seed=5, init=0.5), "gpt2": tiny_gpt2, "gemma3": tiny_gemma3}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> Any:
    m = MODELS[request.param]()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@torch.no_grad()
def full_forward_ell(model: Any, x: list[int], y: list[int], k: int, w: list[int]) -> np.ndarray:
    """ℓ_q, ℓ_den, ℓ^(1..t) of filler w at x_k..x_{k+L−1} from one plain forward over the whole sequence."""
    L, n = len(w), len(x)
    seq = x[:k] + w + x[k + L :] + y
    logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), dim=-1)
    lp = logp[:-1].gather(1, torch.tensor(seq[1:])[:, None])[:, 0].numpy()  # lp[i] = log P(seq_{i+1} | seq_{≤i})
    q = lp[k - 1 : k - 1 + L].sum()
    den = q + lp[k - 1 + L : n - 1].sum()
    return np.concatenate([[q, den], den + np.cumsum(lp[n - 1 :])])


def fillers_with_originals(x: list[int], k: int, L: int, seed: int) -> np.ndarray:
    """Random fillers with the original at row 0, again in the middle and at the end."""
    rng = np.random.default_rng(seed)
    orig = np.array(x[k : k + L])
    rows = [orig, *rng.integers(0, V, size=(3, L)), orig, *rng.integers(0, V, size=(2, L)), orig]
    return np.array(rows, dtype=np.int64)


# units at the start, the middle and the end of the prompt (and a 1-token unit on the last prompt token)
UNITS = [(1, 2), (4, 3), (7, 3), (9, 1)]


@pytest.mark.parametrize("t", [0, 1, 3])
def test_score_fillers_equals_full_forwards(model: Any, t: int) -> None:
    y = [3, 10, 1][:t]
    sc = PrefixScorer(model, X, y)
    for k, L in UNITS:
        fillers = fillers_with_originals(X, k, L, seed=k)
        want = np.stack([full_forward_ell(model, X, y, k, row) for row in fillers.tolist()])
        for bs in (1, 2, 3, 4, None):  # 3 and 4 do not divide the 6 fillers that need a forward
            got = sc.score_fillers(k, fillers, bs)
            assert got.shape == (len(fillers), t + 2)
            np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"k={k} L={L} batch={bs}")


def test_token_scores_equal_the_naive_forward_for_every_candidate(model: Any) -> None:
    sc = PrefixScorer(model, X, [3, 10])
    for k in (1, 5, 9):
        np.testing.assert_allclose(sc.score(k, np.arange(V), batch_size=5), sc.score_naive(k, np.arange(V)), atol=2e-5)


def test_the_original_filler_takes_no_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_llama(V, seed=5, init=0.5)
    sc = PrefixScorer(model, X, [3, 10])
    rows: list[int] = []
    forward = model.forward

    def counting(ids: torch.Tensor, **kw: Any) -> Any:
        rows.append(ids.shape[0])
        return forward(ids, **kw)

    monkeypatch.setattr(model, "forward", counting)
    fillers = fillers_with_originals(X, 4, 3, seed=0)  # 3 originals, 5 others
    sc.score_fillers(4, fillers, batch_size=2)
    assert sorted(rows) == [1, 2, 2]
    rows.clear()
    got = sc.score_fillers(4, np.array([X[4:7]] * 2))
    assert rows == []
    np.testing.assert_allclose(got, [full_forward_ell(model, X, [3, 10], 4, X[4:7])] * 2, atol=2e-5)


@torch.no_grad()
def reference_sample(model: Any, x: list[int], k: int, length: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Ancestral sampling with one plain forward over x_{<k} w_{<i} per step, drawing as the scorer does."""
    out = np.empty((m, length), dtype=np.int64)
    for i in range(length):
        seqs = torch.tensor([x[:k] + row[:i] for row in out.tolist()])
        p = torch.softmax(model(seqs).logits[:, -1].double(), dim=-1).numpy()
        cdf = np.cumsum(p, axis=1)
        u = rng.random((m, 1)) * cdf[:, -1:]
        out[:, i] = np.minimum((cdf < u).sum(axis=1), V - 1)
    return out


@pytest.mark.parametrize(("k", "length"), [(1, 1), (2, 4), (8, 6)])
def test_sample_fillers_equal_plain_ancestral_sampling(model: Any, k: int, length: int) -> None:
    sc = PrefixScorer(model, X, [3])
    got = sc.sample_fillers(k, length, 7, np.random.default_rng(k))
    want = reference_sample(model, X, k, length, 7, np.random.default_rng(k))
    assert np.array_equal(got, want)


def test_the_sampling_cache_writes_full_attention_layers_in_place() -> None:
    sc = PrefixScorer(tiny_gemma3(), X, [3])
    cache = sc._cache(8, 4, room=3)
    sliding, full = cache.layers
    assert type(full).__name__ == "_PresizedLayer" and type(sliding).__name__ == "DynamicSlidingWindowLayer"

    def filled(layer: Any) -> tuple[int, int]:
        return int(layer.keys.shape[-2]), int(layer.keys.untyped_storage().data_ptr())

    length, storage = filled(full)
    with torch.no_grad():
        for _ in range(3):
            sc.model(torch.zeros((4, 1), dtype=torch.long), past_key_values=cache, use_cache=True)
    assert length == 8 and filled(full) == (11, storage)
    assert cache.get_seq_length() == 11


def test_original_factors_across_the_256_row_chunks_of_the_base_forward() -> None:
    model = tiny_llama(V, seed=5, init=0.5)
    x = np.random.default_rng(0).integers(0, V, size=300).tolist()
    sc = PrefixScorer(model, x, [3, 10])
    for k in (200, 255, 256, 297):
        fillers = np.array([x[k : k + 3], [1, 2, 3]])
        want = [full_forward_ell(model, x, [3, 10], k, row) for row in fillers.tolist()]
        np.testing.assert_allclose(sc.score_fillers(k, fillers), want, atol=2e-5)
