"""Characters that change how text around them is shown are made visible, never obeyed.

A report prints prompt and response text as data. Bidirectional controls (U+202E reverses a
whole line), other format characters (zero-width spaces, joiners, the byte-order mark) and C0/C1
control characters are shown as a visible ``⟨U+XXXX⟩`` mark:

- :func:`neutralise` (every string a template prints): bidi controls and control characters;
- :func:`make_visible` (token views, figure labels): also every other invisible format
  character, so a token that is only a zero-width space is seen as one.
"""

from __future__ import annotations

import unicodedata

#: Embeddings, overrides, isolates and marks of the Unicode bidirectional algorithm.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Layout characters a report keeps as they are (callers make newlines and tabs visible).
KEEP = frozenset("\n\r\t")


def mark(ch: str) -> str:
    return f"⟨U+{ord(ch):04X}⟩"


def neutralise(text: str) -> str:
    """``text`` with bidi controls and control characters (but newline and tab) as marks."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(mark(c) if c in BIDI_CONTROLS or (unicodedata.category(c) == "Cc" and c not in KEEP) else c for c in text)


def make_visible(text: str) -> str:
    """Like :func:`neutralise`, and every other invisible format character (Cf) marked too."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(mark(c) if c not in KEEP and unicodedata.category(c) in ("Cc", "Cf") else c for c in text)
