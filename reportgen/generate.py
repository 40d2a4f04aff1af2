"""Build the model input (chat template, token roles) and generate the response once."""

from __future__ import annotations

import time
from typing import Any

import torch

from reportgen.data import Generation


def _message_list(prompt: Any) -> list[dict[str, str]] | None:
    msgs = getattr(prompt, "messages", None)
    if msgs:
        return [{"role": m.role, "content": m.content} for m in msgs]
    return None


def render_prompt(tokenizer: Any, prompt: Any, use_chat_template: bool) -> tuple[str, list[tuple[int, int]]]:
    """Return the text the model sees and the character spans of user-supplied content.

    Instruct models (a tokenizer with a chat template) get their template applied with a
    generation prompt; a model without one sees the plain text (single-turn) or the
    messages joined by blank lines.
    """
    messages = _message_list(prompt)
    if messages is None:
        messages = [{"role": "user", "content": prompt.text}]
    if use_chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(m["content"] for m in messages)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for m in messages:
        start = text.find(m["content"], cursor)
        if start < 0:  # template rewrote the content: fall back to a global search
            start = text.find(m["content"])
        if start >= 0:
            spans.append((start, start + len(m["content"])))
            cursor = start + len(m["content"])
    return text, spans


def tokenize_with_roles(
    tokenizer: Any, text: str, spans: list[tuple[int, int]], add_special_tokens: bool
) -> tuple[list[int], list[str], list[bool]]:
    """Token ids, display strings and a template/special flag per token."""
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    tokens: list[str] = []
    special: list[bool] = []
    for tid, (a, b) in zip(ids, offsets):
        is_special_id = tid in special_ids
        inside = b > a and any(a >= s and b <= e for s, e in spans)
        overlaps = b > a and any(a < e and b > s for s, e in spans)
        special.append(is_special_id or not (inside or overlaps))
        if b > a and not is_special_id:
            tokens.append(text[a:b])
        else:
            tokens.append(tokenizer.decode([tid], skip_special_tokens=False))
    return ids, tokens, special


def decode_incremental(tokenizer: Any, ids: list[int]) -> list[str]:
    """Per-token display strings that concatenate to the decoded text (multi-byte safe).

    A token that ends in the middle of a UTF-8 character shows as "" and the token that
    completes the character carries it (no replacement characters in the report).
    """
    out: list[str] = []
    prev = ""
    for j in range(len(ids)):
        cur = tokenizer.decode(ids[: j + 1], skip_special_tokens=False)
        if j < len(ids) - 1:
            cur = cur.rstrip("\ufffd")
        if cur.startswith(prev):
            out.append(cur[len(prev):])
            prev = cur
        else:  # a tokenizer that rewrites earlier text (rare): fall back to the token alone
            out.append(tokenizer.decode([ids[j]], skip_special_tokens=False))
            prev = cur
    return out


@torch.no_grad()
def teacher_forced_step_scores(model: Any, input_ids: list[int], output_ids: list[int]) -> dict[str, list[float]]:
    """Probability and entropy (nats) of each output token under forced decoding."""
    if not output_ids:
        return {"probability": [], "entropy": []}
    full = torch.tensor([list(input_ids) + list(output_ids)], device=model.device)
    logits = model(full).logits[0, len(input_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    tgt = torch.tensor(output_ids, device=logits.device)
    p = logp.gather(1, tgt[:, None])[:, 0].exp()
    ent = -(logp.exp() * logp).sum(-1)
    return {"probability": p.tolist(), "entropy": ent.tolist()}


@torch.no_grad()
def generate(
    loaded: Any,
    prompt: Any,
    settings: Any,
    *,
    seed: int,
) -> Generation:
    """Generate one response (greedy by default; sampling with ``seed``)."""
    t0 = time.perf_counter()
    tok, model = loaded.tokenizer, loaded.model
    text, spans = render_prompt(tok, prompt, loaded.chat_template)
    # A chat template already writes its special tokens; plain text gets the tokenizer's BOS.
    ids, tokens, special = tokenize_with_roles(tok, text, spans, add_special_tokens=not loaded.chat_template)
    inp = torch.tensor([ids], device=model.device)
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "attention_mask": torch.ones_like(inp),
        "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    }
    if settings.do_sample:
        gen_kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    torch.manual_seed(seed)
    out = model.generate(inp, **gen_kwargs)
    out_ids = out[0, len(ids):].tolist()
    step = teacher_forced_step_scores(model, ids, out_ids)
    return Generation(
        model_id=loaded.id,
        prompt_id=prompt.id,
        input_ids=tuple(ids),
        input_tokens=tuple(tokens),
        input_special=tuple(special),
        output_ids=tuple(out_ids),
        output_tokens=tuple(decode_incremental(tok, out_ids)),
        prompt_text=text,
        response_text=tok.decode(out_ids, skip_special_tokens=True),
        step_scores={k: tuple(v) for k, v in step.items()},
        settings={**settings.model_dump(), "seed": seed},
        seconds=time.perf_counter() - t0,
    )
