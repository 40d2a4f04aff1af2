"""Build the model input (chat template, token roles) and generate the response once.

Open-weights models: :func:`generate` (forced-decoding step scores included) and
:class:`LocalSampler` (every open model's sampler). API-only models: :func:`generate_via_sampler`,
whose tokens are word-level :func:`pseudo_tokens`.

Tokens are shown as the text the model saw (:func:`token_texts`): the bytes each token id stands
for are read from the tokenizer's vocabulary (GPT-2 byte-level BPE, SentencePiece with byte
fallback), and each character is shown on the token where its last byte arrives; a token that
holds bytes of a character a later token completes shows them as a byte mark ``⟨F0 9F⟩``
(:func:`display_pieces`). The tokenizer's own token strings are kept beside them.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from reportgen.cache import content_key
from reportgen.conversation import chat_roles, message_turns
from reportgen.data import Generation, TokenText
from reportgen.errors import SamplerError, SpecError
from reportgen.plugin_api import LoadedModel, Sampler

if TYPE_CHECKING:
    import torch

#: Version of the token display forms (:func:`display_pieces`, the token fields of a Generation).
#: It is part of every cached generation's key: raise it when they change, so no old display is reused.
#: 3: tokens carry their chat role and conversation turn. 4: a system prompt the chat template writes is ``system``.
TOKEN_DISPLAY_VERSION = 4

_P = ParamSpec("_P")
_R = TypeVar("_R")


def no_grad(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` under ``torch.no_grad()``, with torch imported when ``fn`` is called, not when the
    module defining ``fn`` is: commands that load no model never import torch."""

    @functools.wraps(fn)
    def without_grad(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return without_grad


def _messages(prompt: Any) -> list[dict[str, str]]:
    """The prompt's chat messages (a single-turn prompt is one user message)."""
    msgs = getattr(prompt, "messages", None)
    if msgs:
        return [{"role": m.role, "content": m.content} for m in msgs]
    return [{"role": "user", "content": prompt.text}]


def message_records(messages: list[dict[str, str]]) -> tuple[dict[str, Any], ...]:
    """The messages as a Generation keeps them: role, content, turn, and ``generated`` (False; the
    runner marks a conversation's earlier replies)."""
    turns = message_turns([m["role"] for m in messages])
    return tuple({"role": m["role"], "content": m["content"], "turn": t, "generated": False} for m, t in zip(messages, turns, strict=True))


def input_roles(tokenizer: Any, text: str, messages: list[dict[str, str]], chat_template: bool) -> tuple[list[str], list[int]]:
    """(role, turn) of every token of ``text``, the rendered ``messages`` (:func:`reportgen.conversation.chat_roles`)."""
    enc = tokenizer(text, add_special_tokens=not chat_template, return_offsets_mapping=True)
    offsets = [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def render(msgs: list[dict[str, str]]) -> str:
        return str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))

    return chat_roles(offsets, text, messages, render if chat_template else None)


def render_prompt(tokenizer: Any, prompt: Any, use_chat_template: bool) -> tuple[str, list[tuple[int, int]]]:
    """Return the text the model sees and the character spans of user-supplied content.

    Instruct models (a tokenizer with a chat template) get their template applied with a
    generation prompt; a model without one sees the plain text (single-turn) or the
    messages joined by blank lines.
    """
    messages = _messages(prompt)
    if use_chat_template:
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - a template's own refusal (e.g. roles it does not know) is a spec problem
            roles = ", ".join(sorted({m["role"] for m in messages}))
            raise SpecError(
                f"prompt {prompt.id!r}: the model's chat template cannot render these messages (roles {roles}): {exc}"
            ) from None
        if any(m["role"] == "tool" and m["content"] not in text for m in messages):
            raise SpecError(
                f"prompt {prompt.id!r}: the model's chat template leaves out 'tool' messages; give the tool text in a user turn"
            )
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


# --------------------------------------------------------------------------- text as the model saw it

#: A SentencePiece byte-fallback token (``<0xE2>``): one byte.
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_mark(data: bytes) -> str:
    """Bytes shown as text: ``⟨F0 9F⟩`` (upper-case hex, one space between bytes)."""
    return "⟨" + " ".join(f"{b:02X}" for b in data) + "⟩"


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte starts (0: not a lead byte)."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def display_pieces(pieces: Sequence[bytes]) -> list[str]:
    """Display forms of consecutive tokens, given the bytes each one stands for.

    The rule: a character is shown on the token where its last byte arrives. A token holding
    bytes of a character that a later token completes shows those bytes as a mark
    (:func:`byte_mark`); so do bytes that are no UTF-8 at all (a response cut inside a
    character, a stray continuation byte). So the display forms, byte marks left out,
    concatenate to the decoded text and no character is shown twice. A token with marks is a
    :class:`~reportgen.data.TokenText` that knows where they are.
    """
    owner = [k for k, piece in enumerate(pieces) for _ in piece]
    data = b"".join(pieces)
    segments: list[list[tuple[str, bool]]] = [[] for _ in pieces]

    def add(k: int, text: str, is_bytes: bool) -> None:
        seg = segments[k]
        if seg and seg[-1][1] == is_bytes:
            seg[-1] = (seg[-1][0] + text, is_bytes)
        else:
            seg.append((text, is_bytes))

    def add_byte(q: int) -> None:
        seg = segments[owner[q]]
        if seg and seg[-1][1]:  # extend the open mark: ⟨F0⟩ + ⟨9F⟩ → ⟨F0 9F⟩
            seg[-1] = (seg[-1][0][:-1] + f" {data[q]:02X}⟩", True)
        else:
            seg.append((byte_mark(data[q : q + 1]), True))

    p = 0
    while p < len(data):
        size = _utf8_length(data[p])
        try:
            char = data[p : p + size].decode("utf-8") if size and p + size <= len(data) else ""
        except UnicodeDecodeError:
            char = ""
        if not char:  # not the start of a whole character: this byte is shown as a byte
            add_byte(p)
            p += 1
            continue
        last = owner[p + size - 1]
        for q in range(p, p + size):
            if owner[q] != last:
                add_byte(q)
        add(last, char, False)
        p += size
    out: list[str] = []
    for seg in segments:
        text, spans, at = "", [], 0
        for part, is_bytes in seg:
            if is_bytes:
                spans.append((at, at + len(part)))
            text += part
            at += len(part)
        out.append(TokenText(text, spans) if spans else text)
    return out


@dataclass(frozen=True)
class TokenScheme:
    """How a tokenizer's token strings spell bytes (read from its decoder)."""

    byte_level: bool = False  # GPT-2 byte-level BPE: each character of a token stands for one byte
    space: str = ""  # SentencePiece's word-boundary character (``▁``), which stands for a space
    byte_fallback: bool = False  # ``<0xE2>`` tokens are one byte
    strip_first_space: bool = False  # decoding drops the space the encoder put before the text


@functools.lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted (character → byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _decoder_steps(spec: Any) -> list[dict[str, Any]]:
    if not isinstance(spec, dict):
        return []
    steps = [spec]
    for inner in spec.get("decoders") or []:
        steps.extend(_decoder_steps(inner))
    return steps


def token_scheme(tokenizer: Any) -> TokenScheme | None:
    """How ``tokenizer`` spells bytes, from its decoder; None when it is neither byte-level
    BPE nor SentencePiece (its tokens then are shown from the text offsets or decoding)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        if isinstance(getattr(tokenizer, "byte_decoder", None), dict):  # a slow GPT-2 tokenizer
            return TokenScheme(byte_level=True)
        if getattr(tokenizer, "sp_model", None) is not None:  # a slow SentencePiece tokenizer
            return TokenScheme(space="\u2581", byte_fallback=True)
        return None
    try:
        steps = _decoder_steps(json.loads(decoder.__getstate__()))
    except (AttributeError, TypeError, ValueError):
        return None
    kinds = {str(s.get("type")) for s in steps}
    space, strip = "", False
    for s in steps:
        if s.get("type") == "Replace" and s.get("content") == " ":
            space = str((s.get("pattern") or {}).get("String") or "") or space
        elif s.get("type") == "Metaspace":
            space = str(s.get("replacement") or "\u2581")
            strip = strip or (s.get("prepend_scheme", "always") != "never" and s.get("add_prefix_space", True) is not False)
        elif s.get("type") == "Strip" and s.get("content") == " " and int(s.get("start") or 0) > 0:
            strip = True
    if "ByteLevel" in kinds:
        return TokenScheme(byte_level=True)
    if space:
        return TokenScheme(space=space, byte_fallback="ByteFallback" in kinds, strip_first_space=strip)
    return None


def raw_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The tokenizer's own token strings (``Ġthe``, ``▁the``, ``<0xE2>``, ``<|im_start|>``)."""
    raw = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    return [r if isinstance(r, str) else "" for r in raw]


def token_bytes(tokenizer: Any, ids: Sequence[int], raw: Sequence[str] | None = None) -> list[bytes] | None:
    """The bytes each token id stands for, read from the vocabulary; None for a tokenizer
    whose tokens are not spelled in bytes (see :func:`token_scheme`).

    Added tokens (``<|im_start|>``) stand for their own text. The space a SentencePiece
    encoder puts before the text is dropped from the first token, as its decoder does.
    """
    scheme = token_scheme(tokenizer)
    if scheme is None:
        return None
    raw = raw_tokens(tokenizer, ids) if raw is None else raw
    added = set(getattr(tokenizer, "added_tokens_decoder", None) or {})
    alphabet = _byte_level_alphabet()
    out: list[bytes] = []
    first = True
    for tid, tok in zip(ids, raw, strict=True):
        single = _BYTE_TOKEN.fullmatch(tok) if scheme.byte_fallback else None
        if single is not None:
            piece = bytes([int(single.group(1), 16)])
        elif int(tid) in added:
            out.append(tok.encode("utf-8"))
            continue
        elif scheme.byte_level and all(c in alphabet for c in tok):
            piece = bytes(alphabet[c] for c in tok)
        else:
            piece = (tok.replace(scheme.space, " ") if scheme.space else tok).encode("utf-8")
        if first and scheme.strip_first_space and piece.startswith(b" "):
            piece = piece[1:]
        first = False
        out.append(piece)
    return out


def token_texts(tokenizer: Any, ids: Sequence[int]) -> tuple[list[str], list[str] | None]:
    """(raw token strings, display forms) of ``ids``; display forms are None when the tokenizer's
    tokens are not spelled in bytes. See :func:`display_pieces` for the rule."""
    raw = raw_tokens(tokenizer, ids)
    pieces = token_bytes(tokenizer, ids, raw)
    return raw, (display_pieces(pieces) if pieces is not None else None)


def tokenize_with_roles(
    tokenizer: Any, text: str, spans: list[tuple[int, int]], add_special_tokens: bool
) -> tuple[list[int], list[str], list[bool]]:
    """Token ids, display forms (:func:`token_texts`) and a template/special flag per token.

    A tokenizer whose tokens are not spelled in bytes shows each token's text offsets.
    """
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    _, shown = token_texts(tokenizer, ids)
    tokens: list[str] = []
    special: list[bool] = []
    for k, (tid, (a, b)) in enumerate(zip(ids, offsets, strict=True)):
        is_special_id = tid in special_ids
        inside = b > a and any(a >= s and b <= e for s, e in spans)
        overlaps = b > a and any(a < e and b > s for s, e in spans)
        special.append(is_special_id or not (inside or overlaps))
        if shown is not None:
            tokens.append(shown[k])
        elif b > a and not is_special_id:
            tokens.append(text[a:b])
        else:
            tokens.append(tokenizer.decode([tid], skip_special_tokens=False))
    return ids, tokens, special


def output_texts(tokenizer: Any, ids: Sequence[int]) -> tuple[list[str], list[str]]:
    """(raw token strings, display forms) of generated ids (:func:`token_texts`, or
    :func:`decode_incremental` for a tokenizer whose tokens are not spelled in bytes)."""
    raw, shown = token_texts(tokenizer, ids)
    return raw, (shown if shown is not None else decode_incremental(tokenizer, list(ids)))


def decode_incremental(tokenizer: Any, ids: list[int]) -> list[str]:
    """Per-token display strings that concatenate to the decoded text (multi-byte safe).

    A token that ends in the middle of a UTF-8 character shows as "" and the token that
    completes the character carries it (no replacement characters in the report). Used for
    tokenizers whose tokens are not spelled in bytes (:func:`output_texts`).
    """
    out: list[str] = []
    prev = ""
    for j in range(len(ids)):
        cur = tokenizer.decode(ids[: j + 1], skip_special_tokens=False)
        if j < len(ids) - 1:
            cur = cur.rstrip("\ufffd")
        if cur.startswith(prev):
            out.append(cur[len(prev) :])
            prev = cur
        else:  # a tokenizer that rewrites earlier text (rare): fall back to the token alone
            out.append(tokenizer.decode([ids[j]], skip_special_tokens=False))
            prev = cur
    return out


@no_grad
def teacher_forced_step_scores(model: Any, input_ids: list[int], output_ids: list[int]) -> dict[str, list[float]]:
    """Probability and entropy (nats) of each output token under forced decoding."""
    import torch

    if not output_ids:
        return {"probability": [], "entropy": []}
    full = torch.tensor([list(input_ids) + list(output_ids)], device=model.device)
    logits = model(full).logits[0, len(input_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    tgt = torch.tensor(output_ids, device=logits.device)
    p = logp.gather(1, tgt[:, None])[:, 0].exp()
    ent = -(logp.exp() * logp).sum(-1)
    return {"probability": p.double().cpu().tolist(), "entropy": ent.double().cpu().tolist()}


@no_grad
def generate(
    loaded: Any,
    prompt: Any,
    settings: Any,
    *,
    seed: int,
) -> Generation:
    """Generate one response (greedy by default; sampling with ``seed``)."""
    import torch

    t0 = time.perf_counter()
    tok, model = loaded.tokenizer, loaded.model
    text, spans = render_prompt(tok, prompt, loaded.chat_template)
    # A chat template already writes its special tokens; plain text gets the tokenizer's BOS.
    ids, tokens, special = tokenize_with_roles(tok, text, spans, add_special_tokens=not loaded.chat_template)
    messages = _messages(prompt)
    roles, turns = input_roles(tok, text, messages, chat_template=loaded.chat_template)
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
    out_ids = out[0, len(ids) :].tolist()
    step = teacher_forced_step_scores(model, ids, out_ids)
    out_raw, out_tokens = output_texts(tok, out_ids)
    return Generation(
        model_id=loaded.id,
        prompt_id=prompt.id,
        input_ids=tuple(ids),
        input_tokens=tuple(tokens),
        input_special=tuple(special),
        output_ids=tuple(out_ids),
        output_tokens=tuple(out_tokens),
        prompt_text=text,
        response_text=tok.decode(out_ids, skip_special_tokens=True),
        step_scores={k: tuple(v) for k, v in step.items()},
        settings={**settings.model_dump(), "seed": seed},
        seconds=time.perf_counter() - t0,
        input_raw=tuple(raw_tokens(tok, ids)),
        output_raw=tuple(out_raw),
        input_roles=tuple(roles),
        input_turns=tuple(turns),
        messages=message_records(messages),
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

    @no_grad
    def sample(
        self,
        prompt: str | list[dict[str, str]],
        n: int,
        *,
        seed: int,
        max_new_tokens: int,
        temperature: float = 1.0,
    ) -> list[str]:
        import torch

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
            **shared_prefill(model, ids, n),
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=_pad_id(tok),
        )
        return [str(tok.decode(row[ids.shape[1] :], skip_special_tokens=True)) for row in out]

    @no_grad
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
        import torch

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
            **shared_prefill(model, ids, n),
            **kwargs,
        )
        return [str(tok.decode(row[ids.shape[1] :], skip_special_tokens=True)) for row in out]


def cache_keyword(model: Any) -> str:
    """The name under which ``model``'s forward takes and returns a KV cache: ``cache`` (transformers
    ≥ 5.2x, where ``past_key_values`` is deprecated) or ``past_key_values``."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def returned_cache(out: Any) -> Any:
    """The KV cache a forward returned, under either of its names (:func:`cache_keyword`)."""
    return out["cache"] if "cache" in out else out["past_key_values"]  # transformers 5.x renamed it


def token_logprobs(logits: Any, targets: Any) -> Any:
    """log softmax(logits)[target] in float64 without materialising a second (b, L, V) tensor."""
    lf = logits.float()
    picked = lf.gather(-1, targets[..., None])[..., 0].double()
    return picked - lf.logsumexp(-1).double()


def shared_prefill(model: Any, ids: torch.Tensor, n: int) -> dict[str, Any]:
    """``generate`` keywords that give ``n`` copies of the prompt ``ids`` (1, L) one prefill: the KV
    cache of ``ids[:, :-1]`` computed once and repeated for the rows (n identical prefills cost n
    times as much; on a 1,000-token prompt the prefill is most of a short response's cost).
    Empty (``generate`` prefills each row itself) for one row, a one-token prompt or a cache
    that cannot be repeated."""
    import torch

    if n < 2 or ids.shape[1] < 2:
        return {}
    with torch.no_grad():
        out = model(ids[:, :-1], use_cache=True)
    name = "cache" if "cache" in out else "past_key_values"  # the name generate takes it back under
    cache = out[name]
    if not hasattr(cache, "batch_repeat_interleave"):
        return {}
    cache.batch_repeat_interleave(n)
    return {name: cache}


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
    records = message_records(messages)
    owner: list[int] = []  # each token's message; the separator before message k belongs to message k
    for _tok, _special, m, _a, _b in toks:
        owner.append(m if m is not None else (owner[-1] if owner else 0) + 1)
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
        input_raw=tuple(t[0] for t in toks),  # pseudo-tokens are whole words: raw and shown alike
        output_raw=tuple(out_toks),
        input_roles=tuple(str(records[m]["role"]) for m in owner),
        input_turns=tuple(int(records[m]["turn"]) for m in owner),
        messages=records,
    )


def available_memory_bytes(device: Any) -> int:
    """Free accelerator memory, or MemAvailable on CPU (4 GiB when unknown): what a method may
    batch into."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30
