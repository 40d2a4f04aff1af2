"""Model input construction: chat template, token roles, forced-decoding step scores."""

from __future__ import annotations

import math

import torch

from reportgen.generate import decode_incremental, generate, render_prompt, teacher_forced_step_scores, tokenize_with_roles
from reportgen.plugin_api import LoadedModel
from reportgen.spec import GenerationSpec, PromptSpec
from tests.conftest import tiny_llama


def test_chat_template_roles(smollm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompt = PromptSpec(id="p", text="What is the capital of France?")
    text, spans = render_prompt(smollm_tokenizer, prompt, True)
    ids, toks, special = tokenize_with_roles(smollm_tokenizer, text, spans, add_special_tokens=False)
    user = "".join(t for t, s in zip(toks, special, strict=True) if not s)
    assert user.strip() == "What is the capital of France?"
    assert special[0] is True  # <|im_start|>
    assert "".join(toks) == text  # display strings concatenate to what the model saw
    assert ids == smollm_tokenizer(text, add_special_tokens=False).input_ids


def test_system_message_is_user_content(smollm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompt = PromptSpec(id="p", messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi there"}])
    text, spans = render_prompt(smollm_tokenizer, prompt, True)
    _, toks, special = tokenize_with_roles(smollm_tokenizer, text, spans, add_special_tokens=False)
    user = "".join(t for t, s in zip(toks, special, strict=True) if not s)
    assert "Be terse." in user and "Hi there" in user and "assistant" not in user


def test_plain_completion_without_template(smollm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompt = PromptSpec(id="p", text="Once upon a time")
    text, spans = render_prompt(smollm_tokenizer, prompt, False)
    assert text == "Once upon a time" and spans == [(0, len(text))]
    _, _toks, special = tokenize_with_roles(smollm_tokenizer, text, spans, add_special_tokens=True)
    assert not any(special)


def test_decode_incremental_multibyte(smollm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids = smollm_tokenizer("Crème brûlée → ünïcode 日本", add_special_tokens=False).input_ids
    pieces = decode_incremental(smollm_tokenizer, ids)
    assert "".join(pieces) == smollm_tokenizer.decode(ids)
    assert len(pieces) == len(ids)


def test_generation_is_deterministic_and_scores_are_forced(smollm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model = tiny_llama(len(smollm_tokenizer), seed=1)
    loaded = LoadedModel(id="tiny", source="tiny:1", model=model, tokenizer=smollm_tokenizer, chat_template=True)
    prompt = PromptSpec(id="p", text="Name a colour.")
    settings = GenerationSpec(max_new_tokens=5)
    g1 = generate(loaded, prompt, settings, seed=0)
    g2 = generate(loaded, prompt, settings, seed=0)
    assert g1.output_ids == g2.output_ids and len(g1.output_ids) == 5
    assert len(g1.step_scores["probability"]) == 5
    # Step scores equal a manual forced-decoding computation.
    full = torch.tensor([list(g1.input_ids) + list(g1.output_ids)])
    logp = torch.log_softmax(model(full).logits[0].float(), -1)
    n = g1.n
    for j, y in enumerate(g1.output_ids):
        assert math.isclose(g1.step_scores["probability"][j], logp[n - 1 + j, y].exp().item(), rel_tol=1e-4)
    # Greedy: each output token is the argmax under forced decoding.
    assert [int(logp[n - 1 + j].argmax()) for j in range(len(g1.output_ids))] == list(g1.output_ids)
    sampled = generate(loaded, prompt, GenerationSpec(max_new_tokens=5, do_sample=True), seed=3)
    again = generate(loaded, prompt, GenerationSpec(max_new_tokens=5, do_sample=True), seed=3)
    assert sampled.output_ids == again.output_ids


def test_step_scores_empty_output() -> None:
    model = tiny_llama(32)
    assert teacher_forced_step_scores(model, [1, 2], []) == {"probability": [], "entropy": []}
