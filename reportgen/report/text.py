"""How tokens, numbers and nested evidence are written in a report (plain text, escaped later)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from markupsafe import Markup, escape

from reportgen.data import Generation
from reportgen.figures import token_colours
from reportgen.render import fmt_number
from reportgen.report.model import Tok
from reportgen.unicode import make_visible, neutralise

#: Tokens of user content shown on each side of a finding's tokens.
CONTEXT_WIDTH = 8
#: What a byte mark (``⟨F0 9F⟩``) in a token means, for hover titles.
BYTE_MARK_NOTE = "⟨..⟩ are bytes of a character that a later token completes (or bytes that are no UTF-8)"


def exact(x: float | None) -> str:
    """The exact score shown on hover (9 significant digits)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "not scored"
    return f"{float(x):.9g}"


def token_segments(tok: str) -> list[tuple[str, bool]]:
    """A token's display form as (text, is byte mark) parts (see :class:`reportgen.data.TokenText`)."""
    spans: Sequence[tuple[int, int]] = getattr(tok, "byte_spans", ())
    if not spans:
        return [(str(tok), False)]
    out: list[tuple[str, bool]] = []
    at = 0
    for a, b in spans:
        if a > at:
            out.append((tok[at:a], False))
        out.append((tok[a:b], True))
        at = b
    if at < len(tok):
        out.append((tok[at:], False))
    return out


def has_byte_marks(tok: str) -> bool:
    return bool(getattr(tok, "byte_spans", ()))


def _styled(parts: Sequence[tuple[str, bool]], text: Callable[[str], str]) -> str:
    """Plain text when no part is a byte mark; otherwise Markup: ``text`` of each text part,
    escaped, and each byte mark in ``<span class="tok-bytes">`` (styled apart from typed text)."""
    if not any(is_bytes for _, is_bytes in parts):
        return "".join(text(p) for p, _ in parts)
    return Markup("").join(Markup('<span class="tok-bytes">{}</span>').format(p) if is_bytes else escape(text(p)) for p, is_bytes in parts)


def _visible(tok: str) -> str:
    t = make_visible(tok.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "⇥"))
    return t.replace("\n", "⏎\n")


def display_token(tok: str) -> str:
    """A token as page text: newlines, tabs and invisible characters made visible (the newline
    still breaks the line). A token with byte marks comes back as Markup, its marks styled."""
    if _visible(tok) == "":
        return "∅"
    return _styled(token_segments(tok), _visible)


#: How a space is shown in a token printed on its own (a table cell, a finding): a leading
#: space would vanish at the start of a cell, in HTML and PDF alike. The templates say what it means.
SPACE_MARK = "\u2423"  # ␣


def standalone_token(tok: str) -> str:
    """A token printed on its own (score tables, findings): :func:`display_token` with every
    space shown as ``␣``, so ``" Paris"`` reads ``␣Paris`` on screen and on paper."""
    if _visible(tok) == "":
        return "∅"
    return _styled(token_segments(tok), lambda part: _visible(part).replace(" ", SPACE_MARK))


def one_line(text: str) -> str:
    """Plain text on one line: newlines and tabs become visible marks."""
    return text.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", "⇥")


def _one_line_neutral(text: str) -> str:
    return neutralise(one_line(text))  # what the template does to a plain string


def joined_tokens(tokens: Sequence[str]) -> str:
    """Tokens run together on one line (a finding's context): plain text, or Markup with
    their byte marks styled when any has one."""
    parts = [part for tok in tokens for part in token_segments(tok)]
    if not any(is_bytes for _, is_bytes in parts):
        return one_line("".join(tokens))
    return _styled(parts, _one_line_neutral)


def flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as sorted ``a.b.c → value`` rows; lists and scalars as compact JSON/text."""
    rows: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k in sorted(d, key=str):
            rows.extend(flatten(d[k], f"{prefix}.{k}" if prefix else str(k)))
        return rows
    if isinstance(d, float):
        return [(prefix, fmt_number(d, 6))]
    if isinstance(d, (list, tuple)) and all((isinstance(x, (int, float)) and not isinstance(x, bool)) or x is None for x in d):
        return [(prefix, "[" + ", ".join(fmt_number(x, 6) for x in d) + "]")]
    if isinstance(d, (list, tuple)) and d and all(isinstance(x, dict) for x in d):  # e.g. candidate tokens with p
        return [(prefix, "; ".join(", ".join(f"{k} {_item(x[k])}" for k in sorted(x, key=str)) for x in d))]
    if isinstance(d, (list, tuple)):
        try:
            return [(prefix, json.dumps(d, ensure_ascii=False, sort_keys=True, default=str))]
        except (TypeError, ValueError):
            return [(prefix, str(d))]
    return [(prefix, "" if d is None else str(d))]


def _item(v: Any) -> str:
    """One field of a record in an evidence list: numbers to 6 significant digits, text quoted
    with its spaces shown (``“␣France”``)."""
    if isinstance(v, float):
        return fmt_number(v, 6)
    if isinstance(v, str):
        return f"“{one_line(v).replace(' ', SPACE_MARK)}”"
    return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


def fmt_seconds(s: Any) -> str:
    try:
        f = float(s)
    except (TypeError, ValueError):
        return str(s)
    if f < 1:
        return f"{f * 1000:.0f} ms"
    if f < 120:
        return f"{f:.1f} s"
    return f"{f / 60:.1f} min"


def options_text(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, ensure_ascii=False, default=str) if options else "defaults"


def output_special(g: Generation, tokens: Sequence[str] | None = None) -> list[bool]:
    """Output tokens to mute: those spelled like a template/special token of the input
    (e.g. a generated ``<|im_end|>``); whitespace-only tokens never count."""
    specials = {t for t, sp in zip(g.input_tokens, g.input_special, strict=True) if sp and t.strip()}
    return [t in specials for t in (g.output_tokens if tokens is None else tokens)]


def token_views(
    tokens: Sequence[str],
    special: Sequence[bool],
    values: Sequence[float | None] | None,
    signed: bool,
    what: str,
    side: str,
) -> tuple[Tok, ...]:
    """Tokens with their colour and hover title; template/special tokens stay muted."""
    colours = token_colours(values, special, signed) if values is not None else None
    out = []
    for i, tok in enumerate(tokens):
        title = f"{side}#{i} {str(tok)!r}"
        if special[i]:
            title += " · template/special token"
        if has_byte_marks(tok):
            title += f" · {BYTE_MARK_NOTE}"
        css = ""
        if values is not None and colours is not None:
            title += f" · {what} = {exact(values[i] if i < len(values) else None)}"
            css = colours[i].css if i < len(colours) and not special[i] else ""
        out.append(Tok(i, display_token(tok), bool(special[i]), css, title))
    return tuple(out)


def finding_context(g: Generation | None, positions: Sequence[int], width: int = CONTEXT_WIDTH) -> tuple[str, str, str]:
    """(before, marked, after): the finding's input tokens in their user-content context.

    One contiguous span is shown inside up to ``width`` user tokens on each side (template
    tokens are left out unless marked). Positions that are not one span are listed as
    ``'token' (position)``; positions outside the input give an empty context.
    """
    if g is None or not positions or any(not 0 <= p < g.n for p in positions):
        return "", "", ""
    tokens, special = g.input_tokens, g.input_special
    ps = sorted(set(positions))
    if ps != list(range(ps[0], ps[-1] + 1)):
        listed = ", ".join(f"{one_line(tokens[p])!r} ({p})" for p in ps[:12])
        return "", listed + (", …" if len(ps) > 12 else ""), ""
    lo, hi = ps[0], ps[-1]
    before = [i for i in range(lo) if not special[i]]
    after = [i for i in range(hi + 1, g.n) if not special[i]]
    return (
        ("…" if len(before) > width else "") + joined_tokens([tokens[i] for i in before[-width:]]),
        joined_tokens(tokens[lo : hi + 1]),
        joined_tokens([tokens[i] for i in after[:width]]) + ("…" if len(after) > width else ""),
    )
