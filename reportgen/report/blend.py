"""Comparing methods in one token view (seed 001 §4.4) and the multi-method mean (A.3, eq. 10).

Each method with a matrix gets a colour from Paul Tol's "bright" qualitative palette, designed to
stay distinct for colour-blind readers (red and blue first, as in the seed). A token's intensity
under one method is the one its own view shows: eq. 7 (min–max over the user's tokens) of I(x) or
I(y) for an unsigned method, |I| / max |I| for a signed one. With several methods toggled on, a
token's colour is the intensity-weighted mean of the active methods' colours, so two methods that
agree give the mixed hue (red + blue → purple) and one that dominates keeps its own; its opacity is
``MAX_ALPHA`` × the largest active intensity. The browser computes the same blend (report.js,
``blendRgba``); :func:`blend_rgba` is the reference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reportgen.aggregate import multi_method_mean, token_importance
from reportgen.report.model import BlendMethod, BlendView, CategoryRow, Intensities, LingView, MeanView, Tok

#: Paul Tol's "bright" scheme: red, blue, green, yellow, cyan, purple, grey (cycled beyond seven).
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (0xEE, 0x66, 0x77)),
    ("blue", (0x44, 0x77, 0xAA)),
    ("green", (0x22, 0x88, 0x33)),
    ("yellow", (0xCC, 0xBB, 0x44)),
    ("cyan", (0x66, 0xCC, 0xEE)),
    ("purple", (0xAA, 0x33, 0x77)),
    ("grey", (0xBB, 0xBB, 0xBB)),
)
#: The eq. 10 view's single hue (Tol "muted" teal, apart from the bright scheme's hues).
MEAN_COLOUR = ("teal", (0x44, 0xAA, 0x99))
MAX_ALPHA = 0.85
INITIALLY_ON = 2  # the first two methods are toggled on when the page opens
DIGITS = 4  # intensities embedded in the page (and used for the blend) are rounded to this


def _half_up(x: float) -> int:
    return math.floor(x + 0.5)  # as JavaScript's Math.round


def view_intensities(values: Sequence[float | None], special: Sequence[bool], signed: bool) -> list[float | None]:
    """Per token intensity in [0, 1] as the method's own view colours it (None: not coloured)."""
    ref = [abs(v) if signed else v for v, sp in zip(values, special, strict=True) if v is not None and math.isfinite(v) and not sp]
    out: list[float | None] = []
    lo, hi = (min(ref), max(ref)) if ref else (0.0, 0.0)
    for v, sp in zip(values, special, strict=True):
        if sp or v is None or not math.isfinite(v) or not ref:
            out.append(None)
        elif signed:
            out.append(round(abs(v) / hi, DIGITS) if hi > 0 else 0.0)
        else:
            out.append(round((v - lo) / (hi - lo), DIGITS) if hi > lo else 0.0)
    return out


def blend_rgba(intensities: Sequence[float | None], colours: Sequence[tuple[int, int, int]]) -> tuple[int, int, int, float] | None:
    """The blended colour of one token: the intensity-weighted mean colour, opacity from the largest intensity."""
    pairs = [(s, c) for s, c in zip(intensities, colours, strict=True) if s is not None and s > 0]
    total = sum(s for s, _ in pairs)
    if total <= 0:
        return None
    rgb = [_half_up(sum(s * c[k] for s, c in pairs) / total) for k in range(3)]
    alpha = _half_up(MAX_ALPHA * max(s for s, _ in pairs) * 1000) / 1000
    return rgb[0], rgb[1], rgb[2], alpha


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


@dataclass(frozen=True)
class MethodMatrix:
    """One method's matrix at the report's granularity, with the tokens or units it spans."""

    key: str
    label: str
    signed: bool
    matrix: np.ndarray
    in_special: list[bool]
    out_special: list[bool]


def build(
    mats: Sequence[MethodMatrix],
    input_toks: tuple[Tok, ...],
    output_toks: tuple[Tok, ...],
    absolute: bool,
    labels: dict[str, list[str | None]] | None,
) -> BlendView | None:
    """The comparison view of two or more methods with same-shaped matrices (None otherwise)."""
    shape = mats[0].matrix.shape if mats else None
    mats = [m for m in mats if m.matrix.shape == shape]
    if len(mats) < 2:
        return None
    methods = []
    for i, mm in enumerate(mats):
        name, rgb = PALETTE[i % len(PALETTE)]
        signed = mm.signed and not absolute
        ix, iy = token_importance(mm.matrix, absolute=absolute)
        s_in, s_out = view_intensities(ix, mm.in_special, signed), view_intensities(iy, mm.out_special, signed)
        methods.append(BlendMethod(mm.key, mm.label, name, _hex(rgb), rgb, signed, i < INITIALLY_ON, tuple(s_in), tuple(s_out)))
    cx, cy = token_importance(multi_method_mean([m.matrix for m in mats]))
    mean = MeanView(
        MEAN_COLOUR[1],
        _hex(MEAN_COLOUR[1]),
        tuple(None if v is None else round(v, 6) for v in cx),
        tuple(None if v is None else round(v, 6) for v in cy),
        tuple(view_intensities(cx, mats[0].in_special, False)),
        tuple(view_intensities(cy, mats[0].out_special, False)),
    )
    per_in = [list(m.input_s) for m in methods] + [list(mean.input_s)]
    per_out = [list(m.output_s) for m in methods] + [list(mean.output_s)]
    cats = categories(labels, per_in, per_out) if labels else ()
    on = [m.on for m in methods]
    ins = painted(input_toks, [m.input_s for m in methods], [m.rgb for m in methods], on)
    outs = painted(output_toks, [m.output_s for m in methods], [m.rgb for m in methods], on)
    return BlendView(tuple(methods), ins, outs, mean, cats)


def css(rgba: tuple[int, int, int, float] | None) -> str:
    """As report.js writes it (``rgba(r,g,b,a)``); empty for no colour."""
    return "" if rgba is None else f"rgba({rgba[0]},{rgba[1]},{rgba[2]},{rgba[3]:g})"


def painted(toks: tuple[Tok, ...], per_method: list[Intensities], colours: list[tuple[int, int, int]], on: list[bool]) -> tuple[Tok, ...]:
    """The tokens coloured by the blend of the methods that are ``on`` (the page's state at load)."""
    out = []
    for t in toks:
        ss = [s[t.index] if active and t.index < len(s) else None for s, active in zip(per_method, on, strict=True)]
        out.append(dataclasses.replace(t, css=css(blend_rgba(ss, colours))))
    return tuple(out)


def ling_view(labels: dict[str, list[str | None]]) -> LingView:
    """The filter control's view of a generation's labels (token granularity)."""

    def present(kind: str) -> tuple[str, ...]:
        return tuple(sorted({t for side in ("input", "output") for t in labels.get(f"{side}_{kind}", []) if t}))

    def pairs(side: str) -> tuple[tuple[str | None, str | None], ...]:
        return tuple(zip(labels[f"{side}_pos"], labels[f"{side}_ent"], strict=True))

    return LingView(present("pos"), present("ent"), pairs("input"), pairs("output"))


def categories(
    labels: dict[str, list[str | None]], per_in: list[list[float | None]], per_out: list[list[float | None]]
) -> tuple[CategoryRow, ...]:
    """Mean intensity per part of speech and entity type over the labelled input and response tokens."""
    rows = []
    for kind in ("pos", "ent"):
        tags = labels.get(f"input_{kind}", []) + labels.get(f"output_{kind}", [])
        cols = [a + b for a, b in zip(per_in, per_out, strict=True)]
        for tag in sorted({t for t in tags if t}):
            idx = [i for i, t in enumerate(tags) if t == tag]
            means = []
            for col in cols:
                vals = [col[i] for i in idx if i < len(col) and col[i] is not None]
                means.append(round(sum(v for v in vals if v is not None) / len(vals), 3) if vals else math.nan)
            if any(not math.isnan(m) for m in means):
                rows.append(CategoryRow(kind, tag, len(idx), tuple(means)))
    return tuple(rows)
