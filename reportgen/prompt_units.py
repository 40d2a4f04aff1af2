"""Coarse prompt units for perturbation methods (PAS, DBSA; public plugin API): word, sentence or named spans.

A unit is a contiguous run of user-content input tokens. Tokens are placed through the text
their display forms spell (byte marks left out): a token belongs to the unit holding its first
non-whitespace character; a token of white space only joins the unit of the next token (the
previous one at the end of a run). Units never cross a template/special token.

* ``word`` and ``sentence``: the words and sentences of :mod:`reportgen.granularity`
  (:func:`~reportgen.granularity.word_spans`, :func:`~reportgen.granularity.sentence_spans`),
  the same units the report aggregates attributions to;
* ``spans``: the spec's spans, each a substring (every occurrence in user content) or a
  ``[start, end)`` character range of the prompt text; tokens outside every span form no unit.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reportgen.granularity import char_spans, plain_text, sentence_spans, word_spans

UnitsKind = Literal["token", "word", "sentence", "spans"]
#: A spec span: a substring of the prompt, or a [start, end) character range of the prompt text.
SpanSpec = str | tuple[int, int]


@dataclass(frozen=True)
class PromptUnit:
    """One unit: its text (the tokens' text concatenated) and its input-token positions (contiguous)."""

    text: str
    positions: tuple[int, ...]
    start: int  # character offsets of the tokens' text in the prompt text
    end: int


def check_spans(units: str, spans: Sequence[SpanSpec], option: str = "units") -> None:
    """Raise ValueError unless ``spans`` fits the unit option ``option`` = ``units`` (the options' validators)."""
    if units == "spans" and not spans:
        raise ValueError(f"{option}: spans needs a non-empty spans list (substrings or [start, end] character ranges)")
    if units != "spans" and spans:
        raise ValueError(f"spans are only read with {option}: spans ({option} is {units!r})")
    for s in spans:
        if isinstance(s, str) and not s.strip():
            raise ValueError("a span substring must contain a non-whitespace character")
        if not isinstance(s, str) and not 0 <= s[0] < s[1]:
            raise ValueError(f"span {list(s)} is not a character range [start, end) with 0 <= start < end")


def _span_cores(text: str, user: list[bool], spans: Sequence[SpanSpec]) -> list[tuple[int, int]]:
    cores: list[tuple[int, int]] = []
    for s in spans:
        if isinstance(s, str):
            found = [(m.start(), m.end()) for m in re.finditer(re.escape(s), text) if any(user[m.start() : m.end()])]
            if not found:
                raise ValueError(f"span {s!r} does not occur in the prompt's user content")
            cores += found
        else:
            if s[1] > len(text):
                raise ValueError(f"span {list(s)} ends after the prompt text ({len(text)} characters)")
            cores.append((int(s[0]), int(s[1])))
    cores.sort()
    for (_, b), (a, _) in itertools.pairwise(cores):
        if a < b:
            raise ValueError("spans overlap; each token can belong to one unit only")
    return cores


def prompt_units(tokens: Sequence[str], special: Sequence[bool], kind: UnitsKind, spans: Sequence[SpanSpec] = ()) -> list[PromptUnit]:
    """The units of kind ``kind`` over the user-content display tokens (``token``: one unit per token)."""
    return text_units(plain_text(tokens), char_spans(tokens), special, kind, spans)


def text_units(
    text: str, offsets: Sequence[tuple[int, int]], special: Sequence[bool], kind: UnitsKind, spans: Sequence[SpanSpec] = ()
) -> list[PromptUnit]:
    """The units of ``text`` whose token i covers ``text[offsets[i][0]:offsets[i][1]]`` (rules in the module doc)."""
    n = len(offsets)
    user = [False] * len(text)
    for (a, b), sp in zip(offsets, special, strict=True):
        if not sp:
            user[a:b] = [True] * (b - a)
    if kind == "token":
        return [PromptUnit(text[a:b], (i,), a, b) for i, (a, b) in enumerate(offsets) if not special[i]]
    if kind == "word":
        cores = word_spans(text)
    elif kind == "sentence":
        cores = sentence_spans(text)
    else:
        cores = _span_cores(text, user, spans)
    # each token → the core holding its first non-whitespace character (None: white space only, or no core)
    owner: list[int | None] = []
    for i, (a0, b0) in enumerate(offsets):
        p = text[a0:b0]
        c = a0 + len(p) - len(p.lstrip())
        hit = None if not p.strip() else next((u for u, (a, b) in enumerate(cores) if a <= c < b), None)
        owner.append(None if special[i] else hit)
    if kind != "spans":  # white-space tokens join the next token's unit in their run (the previous one at its end)
        for i in range(n - 1, -1, -1):
            if owner[i] is None and not special[i]:
                owner[i] = owner[i + 1] if i + 1 < n and not special[i + 1] else None
        for i in range(1, n):
            if owner[i] is None and not special[i] and not special[i - 1]:
                owner[i] = owner[i - 1]
    units: list[PromptUnit] = []
    i = 0
    while i < n:
        if owner[i] is None:
            i += 1
            continue
        j = i
        while j + 1 < n and owner[j + 1] == owner[i] and not special[j + 1]:
            j += 1
        a, b = offsets[i][0], offsets[j][1]
        units.append(PromptUnit(text[a:b], tuple(range(i, j + 1)), a, b))
        i = j + 1
    return units
