"""Comparing methods in one token view (seed 001 §4.4) and the multi-method mean (A.3, eq. 10).

Each method with a matrix gets a colour from Paul Tol's "bright" qualitative palette, designed to
stay distinct for colour-blind readers (red and blue first, as in the seed). A token's intensity
under one method is the one its own view shows: eq. 7 (min–max over the user's tokens) of I(x) or
I(y) for an unsigned method, |I| / max |I| for a signed one. With several methods toggled on, a
token's colour is the intensity-weighted mean of the active methods' colours, so two methods that
agree give the mixed hue (red + blue → purple) and one that dominates keeps its own; its opacity is
``MAX_ALPHA`` × the largest active intensity. The browser computes the same blend (report.js,
``blendRgba``); :func:`blend_rgba` is the reference.

The eq. 10 view is the mean of the methods toggled on (F′), whichever they are: eq. 10 averages the
min–max-scaled matrices cell by cell over the methods with a finite value there, so the page gets,
for each set of methods that are finite together somewhere, their row and column sums over those
cells (:func:`mean_parts`; one part when no cell is NaN) and sums the parts for F′ (report.js
``meanOf``; :func:`mean_of` is the reference, equal to eq. 10 computed directly).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reportgen.aggregate import intensity, token_importance
from reportgen.report.model import BlendMethod, BlendView, CategoryRow, Intensities, LingView, MeanPart, MeanView, Tok

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
SUM_DIGITS = 6  # the eq. 10 parts' row and column sums are embedded to this many decimals


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
    parts = mean_parts([m.matrix for m in mats])
    cx, cy = mean_of(parts, [True] * len(mats), mats[0].matrix.shape)  # every method: the linguistic categories' mean column
    mean = MeanView(MEAN_COLOUR[1], _hex(MEAN_COLOUR[1]), parts)
    mean_in, mean_out = view_intensities(cx, mats[0].in_special, False), view_intensities(cy, mats[0].out_special, False)
    per_in = [list(m.input_s) for m in methods] + [mean_in]
    per_out = [list(m.output_s) for m in methods] + [mean_out]
    cats = categories(labels, per_in, per_out) if labels else ()
    on = [m.on for m in methods]
    ins = painted(input_toks, [m.input_s for m in methods], [m.rgb for m in methods], on)
    outs = painted(output_toks, [m.output_s for m in methods], [m.rgb for m in methods], on)
    return BlendView(tuple(methods), ins, outs, mean, cats)


def mean_parts(mats: Sequence[np.ndarray]) -> tuple[MeanPart, ...]:
    """Eq. 10's parts: cells grouped by which methods are finite there, each method's row and column
    sums of its min–max-scaled matrix over a group (rounded to :data:`SUM_DIGITS`)."""
    scaled = np.stack([intensity(m) for m in mats])
    code = np.tensordot(1 << np.arange(len(mats)), np.isfinite(scaled), axes=1)  # bit f: method f finite there
    parts = []
    for c in sorted({int(x) for x in np.unique(code)} - {0}):
        cells = code == c
        members = tuple(f for f in range(len(mats)) if c >> f & 1)
        masked = [np.where(cells, scaled[f], 0.0) for f in members]
        parts.append(
            MeanPart(
                members,
                tuple(_sums(a.sum(axis=1), cells.any(axis=1)) for a in masked),
                tuple(_sums(a.sum(axis=0), cells.any(axis=0)) for a in masked),
            )
        )
    return tuple(parts)


def _sums(total: np.ndarray, has: np.ndarray) -> Intensities:
    return tuple(round(float(v), SUM_DIGITS) if h else None for v, h in zip(total, has, strict=True))


def mean_of(parts: Sequence[MeanPart], on: Sequence[bool], shape: tuple[int, int]) -> tuple[list[float | None], list[float | None]]:
    """I(x), I(y) (eq. 6) of eq. 10 over the methods ``on`` for an n × t ``shape``: in each part, the
    mean over those of its methods that are on (all finite on its cells), summed over the parts;
    None for a token with no cell where a method that is on is finite."""

    def side(length: int, get: str) -> list[float | None]:
        out: list[float | None] = [None] * length
        for q in parts:
            active = [k for k, f in enumerate(q.methods) if on[f]]
            vectors = getattr(q, get)
            for i in range(length) if active else ():
                vals = [vectors[k][i] for k in active]
                if vals[0] is not None:
                    out[i] = (out[i] or 0.0) + sum(v for v in vals if v is not None) / len(active)
        return out

    return side(shape[0], "input_sums"), side(shape[1], "output_sums")


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
