"""inseq path methods: the automatic internal batch (memory estimate, budget, what is recorded, same results)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from reportgen.generate import generate
from reportgen.plugin_api import LoadedModel
from reportgen.spec import GenerationSpec, PromptSpec
from reportgen_plugins.inseq import batching
from reportgen_plugins.inseq.batching import auto_internal_batch_size, memory_budget, row_bytes
from tests.conftest import tiny_llama
from tests.test_inseq_methods import run_method


@pytest.fixture(scope="module")
def setup(smollm_tokenizer: Any) -> tuple[LoadedModel, Any]:
    model = tiny_llama(len(smollm_tokenizer), seed=3)
    loaded = LoadedModel(id="tiny", source="tiny:3", model=model, tokenizer=smollm_tokenizer, chat_template=False)
    prompt = PromptSpec(id="p", text="Name a colour of the sea.")  # short: sequential IG runs IG per prompt token
    return loaded, generate(loaded, prompt, GenerationSpec(max_new_tokens=2), seed=0)


def _attribute(name: str, loaded: LoadedModel, gen: Any, **options: Any) -> tuple[Any, list[int]]:
    """The result and the batch size of every forward the model ran."""
    rows: list[int] = []

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        rows.append(int(next(kwargs[k] for k in ("inputs_embeds", "input_ids") if kwargs.get(k) is not None).shape[0]))

    hook = loaded.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        return run_method(name, loaded, gen, **options), rows
    finally:
        hook.remove()


def _fake_memory(monkeypatch: pytest.MonkeyPatch, loaded: LoadedModel, gen: Any, rows: float) -> None:
    """Available RAM such that the CPU budget (a quarter of it) holds ``rows`` path points."""
    per = row_bytes(loaded.model.config, gen.n + gen.t)
    monkeypatch.setattr(batching, "available_memory_bytes", lambda device: int(4 * rows * per))


@pytest.mark.parametrize("name", ["integrated_gradients", "layer_integrated_gradients", "sequential_integrated_gradients"])
def test_the_automatic_batch_bounds_each_forward_and_is_recorded(name: str, setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, gen = setup
    _fake_memory(monkeypatch, loaded, gen, 2.5)
    res, rows = _attribute(name, loaded, gen, n_steps=3)
    assert res.options["internal_batch_size"] == 2
    assert max(rows) == 2 and 1 in rows  # 3 steps: 2 + 1 per target (per target and token for the sequential one)


def test_a_given_batch_is_used_as_is(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, gen = setup
    _fake_memory(monkeypatch, loaded, gen, 0.01)  # the automatic batch would be 1
    res, rows = _attribute("integrated_gradients", loaded, gen, n_steps=5, internal_batch_size=4)
    assert res.options["internal_batch_size"] == 4 and max(rows) == 4


def test_integrated_gradients_are_the_same_whatever_the_batch(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, gen = setup
    one, rows1 = _attribute("integrated_gradients", loaded, gen, n_steps=7, internal_batch_size=1)
    three, rows3 = _attribute("integrated_gradients", loaded, gen, n_steps=7, internal_batch_size=3)
    auto, rows_auto = _attribute("integrated_gradients", loaded, gen, n_steps=7)  # plenty of memory: all 7 at once
    assert (max(rows1), max(rows3), max(rows_auto)) == (1, 3, 7) and auto.options["internal_batch_size"] == 7
    for res in (three, auto):
        np.testing.assert_allclose(res.matrix, one.matrix, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(res.details["output_matrix"], one.details["output_matrix"], rtol=1e-5, atol=1e-9)
    assert np.abs(one.matrix).max() > 0


def _config(**kw: Any) -> LlamaConfig:
    base: dict[str, Any] = {
        "vocab_size": 96,
        "hidden_size": 32,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "attn_implementation": "eager",
    }
    return LlamaConfig(**{**base, **kw})


def _measured_row_bytes(cfg: LlamaConfig, seq_len: int) -> int:
    """Oracle: the bytes autograd saves in one row's forward (parameters excluded), plus the logits and their gradient."""
    torch.manual_seed(0)
    model: Any = LlamaForCausalLM(cfg)
    model.eval().requires_grad_(False)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    emb = torch.randn(1, seq_len, cfg.hidden_size, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(inputs_embeds=emb, attention_mask=torch.ones(1, seq_len, dtype=torch.long)).logits
    return sum(saved.values()) + 2 * int(logits.numel()) * int(logits.element_size())


@pytest.mark.parametrize(
    "cfg",
    [
        _config(),
        _config(attn_implementation="sdpa"),
        _config(num_hidden_layers=5, num_attention_heads=8, num_key_value_heads=8),
        _config(vocab_size=4000, intermediate_size=200),
    ],
    ids=["eager", "sdpa", "more-layers-heads", "bigger-vocab-mlp"],
)
@pytest.mark.parametrize("seq_len", [16, 96])
def test_the_row_estimate_covers_what_autograd_keeps_without_gross_excess(cfg: LlamaConfig, seq_len: int) -> None:
    measured = _measured_row_bytes(cfg, seq_len)
    estimate = row_bytes(cfg, seq_len)
    assert measured <= estimate <= 2 * measured


def test_the_row_estimate_reads_the_config_and_grows_with_the_sequence() -> None:
    base = row_bytes(_config(), 100)
    assert row_bytes(_config(), 200) > 2 * base - 1  # at least linear in L
    assert row_bytes(_config(), 200) > 2 * base  # eager: the L² attention probabilities
    assert row_bytes(_config(attn_implementation="sdpa"), 200) == 2 * row_bytes(_config(attn_implementation="sdpa"), 100)
    for changed in ({"num_hidden_layers": 3}, {"num_attention_heads": 8}, {"vocab_size": 200}, {"intermediate_size": 81}):
        assert row_bytes(_config(**changed), 100) > base, changed
    sdpa = _config(attn_implementation="sdpa")
    assert 2 * row_bytes(sdpa, 100, elem_bytes=2) == row_bytes(sdpa, 100)  # half precision: half the bytes


def _model(cfg: LlamaConfig) -> Any:
    return SimpleNamespace(config=cfg, parameters=lambda: iter([torch.zeros(1)]))


def test_the_automatic_batch_fits_the_budget_shrinks_with_the_sequence_and_is_at_least_one(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config()
    available = 10 * row_bytes(cfg, 300) * 4 + 123  # a CPU budget of 10 rows at L = 300
    monkeypatch.setattr(batching, "available_memory_bytes", lambda device: available)
    budget = memory_budget(torch.device("cpu"))
    assert budget == available // 4
    sizes = [auto_internal_batch_size(_model(cfg), seq_len, 1000) for seq_len in (30, 300, 600, 30000)]
    assert sizes[1] == 10 and sizes[0] > sizes[1] > sizes[2] > sizes[3]
    assert sizes[-1] == 1 and row_bytes(cfg, 30000) > budget  # one row is over the budget: still one path point at a time
    for seq_len, size in zip((30, 300, 600), sizes, strict=False):
        per = row_bytes(cfg, seq_len)
        assert size * per <= budget < (size + 1) * per
    assert auto_internal_batch_size(_model(cfg), 30, 7) == 7  # never more than the steps
    monkeypatch.setattr(batching, "available_memory_bytes", lambda device: 1 << 50)
    assert memory_budget(torch.device("cpu")) == batching.CPU_CAP
    assert memory_budget(SimpleNamespace(type="cuda")) == 1 << 49  # a GPU: half its free memory


def test_gradient_shap_samples_in_runs_average_to_the_one_batch_result(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of 2 + 1 samples give the sample-weighted mean: with the path points Captum draws fixed (α by run size:
    {0.2, 0.6} for a run of 2, {0.9} for 1, all three for one run of 3), it equals one run of all three samples."""
    loaded, gen = setup
    alphas = {1: [0.9], 2: [0.2, 0.6], 3: [0.2, 0.6, 0.9]}
    monkeypatch.setattr(np.random, "uniform", lambda low, high, size: np.array(alphas[int(size)]))
    whole, rows_whole = _attribute("gradient_shap", loaded, gen, n_samples=3, internal_batch_size=3)
    runs, rows_runs = _attribute("gradient_shap", loaded, gen, n_samples=3, internal_batch_size=2)
    assert (max(rows_whole), max(rows_runs), runs.options["internal_batch_size"]) == (3, 2, 2)
    np.testing.assert_allclose(runs.matrix, whole.matrix, rtol=1e-5, atol=1e-9)
    _fake_memory(monkeypatch, loaded, gen, 1.5)
    auto, rows_auto = _attribute("gradient_shap", loaded, gen, n_samples=3)
    assert auto.options["internal_batch_size"] == 1 and max(rows_auto) == 1 and auto.options["n_samples"] == 3
