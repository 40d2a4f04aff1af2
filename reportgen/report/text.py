"""How tokens, numbers and nested evidence are written in a report (plain text, escaped later)."""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from reportgen.data import Generation
from reportgen.figures import token_colours
from reportgen.render import fmt_number
from reportgen.report.model import Tok
from reportgen.unicode import make_visible

#: Tokens of user content shown on each side of a finding's tokens.
CONTEXT_WIDTH = 8


def exact(x: float | None) -> str:
    """The exact score shown on hover (9 significant digits)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "not scored"
    return f"{float(x):.9g}"


def display_token(tok: str) -> str:
    """A token as page text: newlines, tabs and invisible characters made visible (the newline
    still breaks the line)."""
    t = make_visible(tok.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "⇥"))
    if t == "":
        return "∅"
    return t.replace("\n", "⏎\n")


def one_line(text: str) -> str:
    """Plain text on one line: newlines and tabs become visible marks."""
    return text.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", "⇥")


def flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as sorted ``a.b.c → value`` rows; lists and scalars as compact JSON/text."""
    rows: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k in sorted(d, key=str):
            rows.extend(flatten(d[k], f"{prefix}.{k}" if prefix else str(k)))
        return rows
    if isinstance(d, float):
        return [(prefix, fmt_number(d, 6))]
    if isinstance(d, (list, tuple)) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) or x is None for x in d
    ):
        return [(prefix, "[" + ", ".join(fmt_number(x, 6) for x in d) + "]")]
    if isinstance(d, (list, tuple)):
        try:
            return [(prefix, json.dumps(d, ensure_ascii=False, sort_keys=True, default=str))]
        except (TypeError, ValueError):
            return [(prefix, str(d))]
    return [(prefix, "" if d is None else str(d))]


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
    specials = {t for t, sp in zip(g.input_tokens, g.input_special) if sp and t.strip()}
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
        title = f"{side}#{i} {tok!r}"
        if special[i]:
            title += " · template/special token"
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
    left = "".join(tokens[i] for i in before[-width:])
    right = "".join(tokens[i] for i in after[:width])
    return (
        ("…" if len(before) > width else "") + one_line(left),
        one_line("".join(tokens[lo : hi + 1])),
        one_line(right) + ("…" if len(after) > width else ""),
    )
