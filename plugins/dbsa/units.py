"""Perturbed units (word occurrences or tokens), their input-token positions, and perturbed prompts.

* API models: every word pseudo-token of the user's messages (the host's
  :func:`~reportgen.generate.pseudo_tokens`); a perturbed prompt replaces the word in its message.
* Open models, ``word``: the DBSA word regex over the user-content character regions of the
  rendered prompt; a unit's positions are every non-special token overlapping the word, and a
  perturbed prompt is the text with the word replaced, re-tokenised.
* Open models, ``token``: every user-content token; a perturbed prompt swaps one token id.
* ``sentence`` / ``spans`` (coarse units, :mod:`reportgen.prompt_units`): on open models
  over the input tokens, on API models over the word pseudo-tokens of each message; a perturbed
  prompt replaces the unit's characters by its neighbour text (re-tokenised on open models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from reportgen.data import Generation
from reportgen.errors import MethodUnavailable
from reportgen.generate import MESSAGE_SEPARATOR, WORD_RE, pseudo_tokens
from reportgen.plugin_api import LoadedModel
from reportgen.prompt_units import SpanSpec, prompt_units, text_units
from reportgen_plugins.dbsa.payload import UnitKind
from reportgen_plugins.dbsa.sampling import Prompt


@dataclass(frozen=True)
class Unit:
    """One perturbed unit and, once assigned, its neighbours (or why it is skipped)."""

    text: str
    positions: tuple[int, ...]  # input-token indices (every token of a multi-token word)
    kind: UnitKind
    token_id: int | None = None  # token units
    span: tuple[int, int] | None = None  # word units: character span in the target's text
    message: int | None = None  # API word units: index of the message holding the word
    neighbours: tuple[str, ...] = ()
    neighbour_ids: tuple[int, ...] = ()  # token units: the neighbours' token ids
    skipped: str | None = None


class Target(Protocol):
    """Builds the sampler's input for the original prompt and for a unit replaced by its k-th neighbour."""

    def baseline(self) -> Prompt: ...

    def perturbed(self, unit: Unit, k: int) -> Prompt: ...


class MessagesTarget:
    """API models: the Generation's messages, words replaced in their message's content."""

    def __init__(self, messages: list[dict[str, str]], chat: bool) -> None:
        self.messages = messages
        self.chat = chat

    def _prompt(self, msgs: list[dict[str, str]]) -> Prompt:
        return msgs if self.chat else MESSAGE_SEPARATOR.join(m["content"] for m in msgs)

    def baseline(self) -> Prompt:
        return self._prompt(self.messages)

    def perturbed(self, unit: Unit, k: int) -> Prompt:
        assert unit.span is not None and unit.message is not None
        a, b = unit.span
        msgs = [dict(m) for m in self.messages]
        c = msgs[unit.message]["content"]
        msgs[unit.message]["content"] = c[:a] + unit.neighbours[k] + c[b:]
        return self._prompt(msgs)


class TokenTarget:
    """Open models, token units: the exact input ids with one id swapped."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def baseline(self) -> Prompt:
        return list(self.ids)

    def perturbed(self, unit: Unit, k: int) -> Prompt:
        ids = list(self.ids)
        ids[unit.positions[0]] = unit.neighbour_ids[k]
        return ids


class TextTarget:
    """Open models, word units: the rendered prompt text with a word replaced, re-tokenised."""

    def __init__(self, tokenizer: Any, text: str, ids: list[int], add_special_tokens: bool) -> None:
        self.tok = tokenizer
        self.text = text
        self.ids = ids
        self.add_special = add_special_tokens

    def baseline(self) -> Prompt:
        return list(self.ids)

    def perturbed(self, unit: Unit, k: int) -> Prompt:
        assert unit.span is not None
        a, b = unit.span
        text = self.text[:a] + unit.neighbours[k] + self.text[b:]
        return [int(i) for i in self.tok(text, add_special_tokens=self.add_special)["input_ids"]]


def api_units(gen: Generation, chat: bool = True) -> tuple[list[Unit], Target]:
    """Word units of a black-box Generation (built by :func:`reportgen.generate.generate_via_sampler`)."""
    messages = gen.settings.get("messages")
    if not isinstance(messages, list):
        raise MethodUnavailable("dbsa: this black-box Generation has no messages (not built by generate_via_sampler)")
    units: list[Unit] = []
    for pos, (_, special, k, a, b) in enumerate(pseudo_tokens(messages)):
        if special or k is None or b <= a:
            continue
        units.append(Unit(text=messages[k]["content"][a:b], positions=(pos,), kind="word", span=(a, b), message=k))
    return units, MessagesTarget(messages, chat=chat)


def _token_offsets(loaded: LoadedModel, gen: Generation) -> list[tuple[int, int]]:
    enc = loaded.tokenizer(gen.prompt_text, add_special_tokens=not loaded.chat_template, return_offsets_mapping=True)
    if list(enc["input_ids"]) != list(gen.input_ids):
        raise MethodUnavailable("dbsa: re-tokenising the prompt does not reproduce the Generation's ids; use unit: token")
    return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def open_word_units(loaded: LoadedModel, gen: Generation) -> tuple[list[Unit], Target]:
    """Word units inside the user-content character regions of an open model's input."""
    offsets = _token_offsets(loaded, gen)
    regions: list[list[int]] = []
    for i, (a, b) in enumerate(offsets):
        if gen.input_special[i] or b <= a:
            continue
        if regions and a <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], b)
        else:
            regions.append([a, b])
    units: list[Unit] = []
    for ra, rb in regions:
        for m in WORD_RE.finditer(gen.prompt_text, ra, rb):
            a, b = m.span()
            pos = tuple(i for i, (x, y) in enumerate(offsets) if y > x and x < b and y > a and not gen.input_special[i])
            if pos:
                units.append(Unit(text=m.group(), positions=pos, kind="word", span=(a, b)))
    target = TextTarget(loaded.tokenizer, gen.prompt_text, list(gen.input_ids), not loaded.chat_template)
    return units, target


def open_token_units(gen: Generation) -> tuple[list[Unit], Target]:
    """One unit per user-content token of an open model's input."""
    units = [Unit(text=gen.input_tokens[i], positions=(i,), kind="token", token_id=int(gen.input_ids[i])) for i in gen.user_positions]
    return units, TokenTarget(list(gen.input_ids))


def open_coarse_units(loaded: LoadedModel, gen: Generation, kind: UnitKind, spans: list[SpanSpec]) -> tuple[list[Unit], Target]:
    """Sentence or span units over an open model's input tokens (through the tokenizer's character offsets)."""
    offsets = _token_offsets(loaded, gen)
    units = []
    for u in text_units(gen.prompt_text, offsets, gen.input_special, "sentence" if kind == "sentence" else "spans", spans):
        a = u.start + len(u.text) - len(u.text.lstrip())
        b = u.end - (len(u.text) - len(u.text.rstrip()))
        if b > a:
            units.append(Unit(text=gen.prompt_text[a:b], positions=u.positions, kind=kind, span=(a, b)))
    target = TextTarget(loaded.tokenizer, gen.prompt_text, list(gen.input_ids), not loaded.chat_template)
    return units, target


def api_coarse_units(gen: Generation, kind: UnitKind, spans: list[SpanSpec], chat: bool) -> tuple[list[Unit], Target]:
    """Sentence or span units of a black-box Generation, grouped from its word pseudo-tokens (never across messages)."""
    _, target = api_units(gen, chat)
    assert isinstance(target, MessagesTarget)
    toks = pseudo_tokens(target.messages)
    units = []
    special = [s or k is None for _, s, k, _, _ in toks]
    for u in prompt_units([t for t, *_ in toks], special, "sentence" if kind == "sentence" else "spans", spans):
        first, last = toks[u.positions[0]], toks[u.positions[-1]]
        a = first[3]  # the first word's start (its leading white space stays)
        units.append(Unit(text=u.text.strip(), positions=u.positions, kind=kind, span=(a, last[4]), message=first[2]))
    return units, target


def units_for(loaded: LoadedModel, gen: Generation, kind: UnitKind, spans: list[SpanSpec] | None = None) -> tuple[list[Unit], Target]:
    """The units of ``kind`` in ``gen`` and the target that perturbs them."""
    chat = bool(getattr(loaded.sampler, "chat", True))
    if kind in ("sentence", "span"):
        if loaded.open_weights:
            return open_coarse_units(loaded, gen, kind, spans or [])
        return api_coarse_units(gen, kind, spans or [], chat)
    if not loaded.open_weights:
        return api_units(gen, chat=chat)
    if kind == "token":
        return open_token_units(gen)
    return open_word_units(loaded, gen)
