"""Build the model input (chat template, token roles) and generate the response once.

Open-weights models: :func:`generate` (forced-decoding step scores included) and
:class:`LocalSampler` (every open model's sampler). API-only models: :func:`generate_via_sampler`,
whose tokens are word-level :func:`pseudo_tokens`.
"""

from __future__ import annotations

import re
import time
from typing import Any

import torch

from reportgen.cache import content_key
from reportgen.data import Generation
from reportgen.errors import SamplerError
from reportgen.plugin_api import LoadedModel, Sampler


def _messages(prompt: Any) -> list[dict[str, str]]:
    """The prompt's chat messages (a single-turn prompt is one user message)."""
    msgs = getattr(prompt, "messages", None)
    if msgs:
        return [{"role": m.role, "content": m.content} for m in msgs]
    return [{"role": "user", "content": prompt.text}]


def render_prompt(tokenizer: Any, prompt: Any, use_chat_template: bool) -> tuple[str, list[tuple[int, int]]]:
    """Return the text the model sees and the character spans of user-supplied content.

    Instruct models (a tokenizer with a chat template) get their template applied with a
    generation prompt; a model without one sees the plain text (single-turn) or the
    messages joined by blank lines.
    """
    messages = _messages(prompt)
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


# --------------------------------------------------------------------------- sampling (open models)


def _pad_id(tok: Any) -> int:
    return int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)


class LocalSampler(Sampler):
    """Samples from an open-weights model loaded by transformers (temperature sampling)."""

    def __init__(self, loaded: LoadedModel) -> None:
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
            pad_token_id=_pad_id(tok),
        )
        return [str(tok.decode(row[ids.shape[1]:], skip_special_tokens=True)) for row in out]

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
            pad_token_id=_pad_id(tok),
            **kwargs,
        )
        return [str(tok.decode(row[ids.shape[1]:], skip_special_tokens=True)) for row in out]


# --------------------------------------------------------------------------- API-only models

#: DBSA word units (methods.md §3.1): numbers with optional currency/decimals/percent,
#: runs of word characters, or one punctuation mark.
WORD_RE = re.compile(r"[$€£¥]?\d+(?:[.,]\d+)*%?|\w+|[^\w\s]")

#: Pseudo-token placed between chat messages (marked special: it is not user content).
MESSAGE_SEPARATOR = "\n\n"


def words_with_space(text: str) -> list[tuple[str, int, int]]:
    """Pseudo-tokens that concatenate back to ``text``: each :data:`WORD_RE` word with the whitespace before it.

    Returns ``(token, word_start, word_end)``; trailing whitespace joins the last token.
    A text with no word is one whitespace token (span empty).
    """
    spans = [m.span() for m in WORD_RE.finditer(text)]
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


def generate_via_sampler(loaded: LoadedModel, prompt: Any, settings: Any, seed: int) -> Generation:
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
