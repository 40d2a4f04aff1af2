"""Attributions per word or per sentence: the ``granularity`` aggregation (token | word | sentence).

Tokens are mapped to units through character spans. A token's display form (see
:class:`reportgen.data.TokenText`) is the characters it covers with byte marks (``⟨F0 9F⟩``) in
place of bytes of a character that a later token completes; leaving the marks out, the display
forms concatenate to the text the model saw, so each token covers a (start, end) character span of
that text (:func:`char_spans`).

The rules (also in README, "Word-level comparison"):

* **Units.** Template/special tokens are never merged: each forms a unit of its own (marked
  special, so views mute them as they mute the tokens). Every run of consecutive user-content
  tokens is segmented on its own, so no unit crosses a template token. Words (:func:`word_spans`):
  runs of letters, digits, combining marks and connector punctuation (Unicode-aware, ``\\w``-like);
  each other visible character is a unit of its own (punctuation, symbols), with the marks,
  variation selectors, skin-tone modifiers and zero-width-joined characters that extend it (one
  emoji, one unit); each Han, kana or other spaceless-script character is a unit of its own.
  Sentences (:func:`sentence_spans`): split after sentence-final punctuation (``. ! ? … 。 ！ ？``
  and closing quotes or brackets after it) that is followed by white space or ends the text
  (``。！？`` need no space), and at line breaks.
* **Whitespace** belongs to no word; for the mapping, each whitespace character counts toward
  the next unit of its run (the last one at the end), so a unit's ``text`` includes the white
  space before it and the units' texts concatenate back to the run's text.
* **Shares.** A token is split across the units it covers in proportion to the non-whitespace
  characters it covers in each (a token that covers only white space: in proportion to those). A
  byte mark counts as one character of the character it is a byte of (the text position where the
  mark stands: the character a later token completes; at the very end, the last character). A
  token that covers no character at all goes with the unit of the next character. Each token's
  shares sum to 1 (:attr:`Units.shares` rows).
* **Sum, not mean.** ``A_units = Wᵢₙᵀ · A · Wₒᵤₜ``: attributions are additive contributions
  (eq. 6 sums them into token importance), so a word's is the sum of its pieces'. A mean would
  make a word's score depend on how many pieces its tokenizer cut it into, and the totals
  ``Σ A`` and ``I(x)``/``I(y)`` summed over units would no longer match the token-level ones;
  with the sum they do, exactly. NaN cells do not count (a unit cell is NaN only when every
  token cell behind it is).
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

Granularity = Literal["token", "word", "sentence"]
GRANULARITIES: tuple[Granularity, ...] = ("token", "word", "sentence")

#: Scripts written without spaces between words: one unit per character.
_SPACELESS = (
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B–G
)
_SENTENCE_END = frozenset(".!?…‼⁇⁈⁉")
_SENTENCE_END_WIDE = frozenset("。！？｡")  # no space follows them
_CLOSERS = frozenset("\"'”’»)]}」』】）")
_ZWJ = "\u200d"


def _spaceless(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _SPACELESS)


def _word_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return (cat[0] in "LNM" or cat == "Pc") and not _spaceless(ch)


def _extends(ch: str) -> bool:
    """Characters that belong to the one before them: combining marks, variation selectors, skin tones."""
    return unicodedata.category(ch)[0] == "M" or 0x1F3FB <= ord(ch) <= 0x1F3FF


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each word unit of ``text`` (white space is in none)."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        j = i + 1
        if _word_char(ch):
            while j < n and (_word_char(text[j]) or (unicodedata.category(text[j])[0] == "M")):
                j += 1
        else:  # one character (CJK, punctuation, a symbol or an emoji sequence) and what extends it
            while j < n and (_extends(text[j]) or text[j] == _ZWJ or (text[j - 1] == _ZWJ and not text[j].isspace())):
                j += 1
        out.append((i, j))
        i = j
    return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, white space around it left out."""
    cuts = [0]
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\n\r\u2028\u2029":
            cuts.append(i + 1)
        elif ch in _SENTENCE_END or ch in _SENTENCE_END_WIDE:
            j = i + 1
            while j < n and (text[j] in _SENTENCE_END or text[j] in _SENTENCE_END_WIDE or text[j] in _CLOSERS):
                j += 1
            if j == n or text[j].isspace() or ch in _SENTENCE_END_WIDE:
                cuts.append(j)
            i = j
            continue
        i += 1
    cuts.append(n)
    out = []
    for a, b in itertools.pairwise(cuts):
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        core = piece.strip()
        if core:
            out.append((a + lead, a + lead + len(core)))
    return out


def _mark_free(tok: str) -> tuple[str, list[int]]:
    """A display token's text without its byte marks, and where each mark stands in that text."""
    spans: Sequence[tuple[int, int]] = getattr(tok, "byte_spans", ())
    text, anchors, at = "", [], 0
    for a, b in spans:
        text += tok[at:a]
        anchors.append(len(text))
        at = b
    return text + tok[at:], anchors


def char_spans(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Each token's (start, end) character offsets into the text its display forms spell (byte marks left out)."""
    out, at = [], 0
    for tok in tokens:
        n = len(_mark_free(tok)[0])
        out.append((at, at + n))
        at += n
    return out


def plain_text(tokens: Sequence[str]) -> str:
    """The text the display tokens spell (byte marks left out)."""
    return "".join(_mark_free(t)[0] for t in tokens)


@dataclass(frozen=True)
class Unit:
    """One word, sentence or template/special token.

    ``text``: its characters with the white space before it (units of a run concatenate to the
    run's text); ``core``: the unit itself (what comparisons match on); ``start``/``end``: the
    core's character offsets into the whole text; ``tokens``: the tokens that have a share in it.
    """

    text: str
    core: str
    start: int
    end: int
    special: bool
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Units:
    """The units of a token sequence and ``shares`` (sparse, tokens × units): each token's share of each unit."""

    granularity: Granularity
    units: tuple[Unit, ...]
    shares: sparse.csr_array

    @property
    def weights(self) -> np.ndarray:
        """``shares`` as a dense array (for inspection; the aggregations use the sparse form)."""
        return np.asarray(self.shares.toarray())

    @property
    def n_tokens(self) -> int:
        return int(self.shares.shape[0])

    @property
    def texts(self) -> list[str]:
        return [u.text for u in self.units]

    @property
    def special(self) -> list[bool]:
        return [u.special for u in self.units]


def _segment(text: str, granularity: Granularity) -> list[tuple[int, int]]:
    return word_spans(text) if granularity == "word" else sentence_spans(text)


def _run_units(tokens: Sequence[str], offset: int, granularity: Granularity) -> tuple[list[tuple[int, int, str]], sparse.csr_array]:
    """Units of one run of user tokens: (core start, core end, text) each, and the run's token × unit shares."""
    from scipy import sparse

    pieces = [_mark_free(t) for t in tokens]
    text = "".join(p for p, _ in pieces)
    cores = _segment(text, granularity) or [(0, len(text))]  # only white space (or nothing): one unit
    starts = np.array([a for a, _ in cores])
    ends = np.array([b for _, b in cores])
    chars = np.arange(len(text))
    u = np.searchsorted(starts, chars, side="right") - 1
    inside = (u >= 0) & (chars < ends[np.maximum(u, 0)])
    owner = np.where(inside, u, np.minimum(u + 1, len(cores) - 1))  # white space → the next unit (the last at the end)
    lengths = np.array([len(p) for p, _ in pieces], dtype=np.intp)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.intp)
    token_of = np.repeat(np.arange(len(tokens)), lengths)
    solid = np.fromiter((not ch.isspace() for ch in text), dtype=bool, count=len(text))
    last = max(len(text) - 1, 0)
    marks = [(k, int(owner[min(first[k] + a, last)]) if text else 0) for k, (_, anchors) in enumerate(pieces) for a in anchors]
    rows = [token_of[solid], np.array([k for k, _ in marks], dtype=np.intp)]
    cols = [owner[solid], np.array([c for _, c in marks], dtype=np.intp)]
    counted = np.zeros(len(tokens), dtype=bool)
    counted[np.concatenate(rows)] = True
    blank = ~counted[token_of]  # characters of tokens that cover only white space count as themselves
    rows.append(token_of[blank])
    cols.append(owner[blank])
    empty = [k for k in range(len(tokens)) if lengths[k] == 0 and not counted[k]]  # the unit of the next character
    rows.append(np.array(empty, dtype=np.intp))
    cols.append(np.array([owner[min(first[k], last)] if text else 0 for k in empty], dtype=np.intp))
    r, c = np.concatenate(rows), np.concatenate(cols)
    shares = sparse.csr_array((np.ones(len(r)), (r, c)), shape=(len(tokens), len(cores)))  # duplicates add up
    shares = sparse.csr_array(sparse.diags_array(1.0 / np.asarray(shares.sum(axis=1)).ravel()) @ shares)
    bounds = [int(x) for x in np.searchsorted(owner, np.arange(len(cores)))] + [len(text)]
    units = [(offset + a, offset + b, text[bounds[k] : bounds[k + 1]]) for k, (a, b) in enumerate(cores)]
    return units, shares


def units(tokens: Sequence[str], special: Sequence[bool], granularity: Granularity) -> Units:
    """The units of ``tokens`` at ``granularity`` and each token's share of each (see the module's rules).

    ``token`` granularity gives one unit per token and the identity as shares.
    """
    from scipy import sparse

    n = len(tokens)
    spans = char_spans(tokens)
    text = plain_text(tokens)
    if granularity == "token":
        triples = enumerate(zip(tokens, special, spans, strict=True))
        per_token = tuple(Unit(t, text[a:b], a, b, bool(s), (i,)) for i, (t, s, (a, b)) in triples)
        return Units("token", per_token, sparse.csr_array(sparse.identity(n, format="csr")))
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose token, word or sentence")
    all_units: list[Unit] = []
    blocks: list[sparse.csr_array] = []  # (tokens of the block) × (units of the block), along the diagonal
    i = 0
    while i < n:
        if special[i]:
            a, b = spans[i]
            all_units.append(Unit(tokens[i], text[a:b], a, b, True, (i,)))
            blocks.append(sparse.csr_array(np.ones((1, 1))))
            i += 1
            continue
        j = i
        while j < n and not special[j]:
            j += 1
        raw, w = _run_units(tokens[i:j], spans[i][0], granularity)
        by_unit = w.tocsc()
        for k, (a, b, t) in enumerate(raw):
            members = tuple(i + int(x) for x in by_unit.indices[by_unit.indptr[k] : by_unit.indptr[k + 1]])
            all_units.append(Unit(t, text[a:b], a, b, False, tuple(sorted(members))))
        blocks.append(w)
        i = j
    shares = sparse.block_diag(blocks, format="csr") if blocks else sparse.csr_array((0, 0))
    return Units(granularity, tuple(all_units), sparse.csr_array(shares))


def aggregate_matrix(a: np.ndarray, rows: Units, cols: Units) -> np.ndarray:
    """``A`` (tokens × tokens) as units × units: ``Wᵢₙᵀ A Wₒᵤₜ`` with NaN cells left out.

    A unit cell is NaN only when every token cell with a share in it is NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.shape != (rows.n_tokens, cols.n_tokens):
        raise ValueError(f"matrix shape {a.shape} does not match the tokens ({rows.n_tokens}×{cols.n_tokens})")
    known = np.isfinite(a)
    total = rows.shares.T @ (cols.shares.T @ np.where(known, a, 0.0).T).T
    rin, rout = (rows.shares > 0).astype(np.float64), (cols.shares > 0).astype(np.float64)
    support = rin.T @ (rout.T @ known.astype(np.float64).T).T
    return np.asarray(np.where(support > 0, total, np.nan))


def aggregate_vector(v: Sequence[float | None], units_: Units) -> list[float | None]:
    """A per-token vector (e.g. token importance) as per-unit sums (None where every token behind a unit is None)."""
    x = np.array([np.nan if e is None else float(e) for e in v], dtype=np.float64)
    known = np.isfinite(x)
    total = units_.shares.T @ np.where(known, x, 0.0)
    support = (units_.shares > 0).astype(np.float64).T @ known.astype(np.float64)
    return [float(t) if s > 0 else None for t, s in zip(total, support, strict=True)]
