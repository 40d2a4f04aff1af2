"""Static vector (SVG) drawings of report figures for the PDF renderer; no browser needed.

:func:`figure_svg` draws a Plotly figure *from its data* when it is one of the shapes the
report uses (one heatmap here; bars / lines / markers in one row of panels in
:mod:`reportgen_plugins.renderers.svg_xy`) and returns ``None`` for anything else (several rows
of subplots, tables, 3-D ...), which the caller then exports another way or shows as a table.

Text in Plotly figures is HTML-escaped (:func:`reportgen.figures.esc`) and may carry Plotly's
few markup tags; :func:`plain` turns it back into plain text, and every string that enters the
SVG is XML-escaped here, so prompt text can never become markup. Output is deterministic.
"""

from __future__ import annotations

import functools
import html
import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Font stack of figure text in the PDF: DejaVu, then Noto for every other script (Debian
#: fonts-noto-core, fonts-noto-cjk), so no character is a blank box. Emoji come from
#: fonts-noto-color-emoji through fontconfig's fallback; naming it here would make WeasyPrint draw
#: digits from it (see templates/pdf/print.css).
FONT = (
    "DejaVu Sans, Liberation Sans, Noto Sans, Noto Sans Hebrew, Noto Sans Arabic, Noto Sans Devanagari, "
    "Noto Sans CJK SC, Noto Sans CJK JP, Noto Sans CJK KR, Arial, sans-serif"
)
INK = "#1f2933"
INK2 = "#52606d"
GRID = "#e4e7eb"
COLORWAY = ["#1f4e79", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"]
#: Width of every drawing in CSS px (the PDF stylesheet scales it to the text width).
WIDTH = 680

_TAG = re.compile(r"<\s*/?\s*(b|i|em|strong|sup|sub|span|a)(\s[^>]*)?>", re.IGNORECASE)
_BR = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)


def plain(text: Any) -> str:
    """Plotly text (escaped, may hold ``<br>``/``<b>``) as plain text."""
    if text is None:
        return ""
    s = _BR.sub(" ", str(text))
    s = _TAG.sub("", s)
    return html.unescape(s)


def x(text: Any) -> str:
    """XML-escape for SVG text and attributes."""
    return html.escape(str(text), quote=True)


# --------------------------------------------------------------------------- right-to-left text
# WeasyPrint lays SVG text out one character at a time, left to right: no bidirectional reordering
# and no shaping. Hebrew and Arabic labels would read backwards and Arabic letters unjoined, so
# :func:`visual` hands it right-to-left runs already in visual order, Arabic letters in their
# joined presentation forms. (Scripts that need shaping beyond that, Devanagari conjuncts or emoji
# ZWJ sequences, are drawn character by character; the token views in the page are shaped.)

_MIRROR = str.maketrans("()[]{}<>«»", ")(][}{><»«")
_ALEFS = {"\u0627": "", "\u0622": " WITH MADDA ABOVE", "\u0623": " WITH HAMZA ABOVE", "\u0625": " WITH HAMZA BELOW"}


@functools.lru_cache(maxsize=512)
def _arabic_form(ch: str, form: str) -> str | None:
    """``ch`` in one presentation form (``ISOLATED``, ``FINAL``, ``INITIAL``, ``MEDIAL``), if Unicode has it."""
    try:
        return unicodedata.lookup(f"{unicodedata.name(ch)} {form} FORM")
    except (KeyError, ValueError):
        return None


def _joins_back(ch: str) -> bool:
    return ch == "\u0640" or _arabic_form(ch, "FINAL") is not None


def _joins_on(ch: str) -> bool:
    return ch == "\u0640" or (_arabic_form(ch, "INITIAL") is not None and _arabic_form(ch, "MEDIAL") is not None)


def arabic_shaped(text: str) -> str:
    """Arabic letters in their contextual presentation forms, lam-alef as one ligature."""
    letters = [i for i, c in enumerate(text) if unicodedata.category(c) != "Mn"]  # marks are transparent
    nxt = dict(itertools.pairwise(letters))
    prv = {b: a for a, b in itertools.pairwise(letters)}
    out: list[str] = []
    skip = -1
    for i, c in enumerate(text):
        if i == skip:
            continue
        if unicodedata.category(c) == "Mn" or not ("\u0600" <= c <= "\u06ff" or "\u0750" <= c <= "\u077f"):
            out.append(c)
            continue
        back = i in prv and _joins_back(c) and _joins_on(text[prv[i]])
        j = nxt.get(i)
        if c == "\u0644" and j is not None and text[j] in _ALEFS:  # lam + alef: one ligature
            name = f"ARABIC LIGATURE LAM WITH ALEF{_ALEFS[text[j]]} {'FINAL' if back else 'ISOLATED'} FORM"
            try:
                out.append(unicodedata.lookup(name) + text[i + 1 : j])
                skip = j
                continue
            except KeyError:
                pass
        on = j is not None and _joins_on(c) and _joins_back(text[j])
        form = {(True, True): "MEDIAL", (True, False): "FINAL", (False, True): "INITIAL"}.get((back, on), "ISOLATED")
        out.append(_arabic_form(c, form) or c)
    return "".join(out)


def _units(run: str) -> list[str]:
    """A right-to-left run cut into what keeps its order: numbers (``3.5``, ``1,000``) and a
    letter with its combining marks."""
    kinds = [unicodedata.bidirectional(c) for c in run]
    units: list[str] = []
    k = 0
    while k < len(run):
        end = k + 1
        if kinds[k] in ("EN", "AN"):
            while end < len(run) and (
                kinds[end] in ("EN", "AN") or (kinds[end] in ("CS", "ES", "ET") and end + 1 < len(run) and kinds[end + 1] in ("EN", "AN"))
            ):
                end += 1
        while end < len(run) and kinds[end] == "NSM":
            end += 1
        units.append(run[k:end])
        k = end
    return units


def visual(text: str) -> str:
    """``text`` (a left-to-right line) with each right-to-left run in visual order, as WeasyPrint
    draws SVG text: letters reversed, numbers and combining marks kept, brackets mirrored, Arabic
    joined (:func:`arabic_shaped`). Text without right-to-left letters is returned unchanged."""
    if not any(unicodedata.bidirectional(c) in ("R", "AL") for c in text):
        return text
    text = arabic_shaped(text)
    out: list[str] = []
    i = 0
    while i < len(text):
        if unicodedata.bidirectional(text[i]) not in ("R", "AL"):
            out.append(text[i])
            i += 1
            continue
        last = j = i  # the run ends at its last right-to-left letter, number or mark before a left-to-right letter
        while j < len(text) and unicodedata.bidirectional(text[j]) != "L":
            if unicodedata.bidirectional(text[j]) in ("R", "AL", "EN", "AN", "NSM"):
                last = j
            j += 1
        out.extend(u.translate(_MIRROR) if len(u) == 1 else u for u in reversed(_units(text[i : last + 1])))
        i = last + 1
    return "".join(out)


def num(v: float) -> str:
    """A coordinate or length as SVG text: two decimals at most, no trailing zeros."""
    return f"{v:.2f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- text extents
# Layout reserves room for every label and title from these estimates, so nothing is cut at the
# drawing's edge or drawn over a neighbour: per character, at least DejaVu Sans' advance for Latin
# text (tests/test_pdf.py checks them against the font), one em for wide East Asian characters.

#: Characters about one em wide in DejaVu Sans; and those about 0.84 em (math signs, and the marks
#: token labels show for a space, a line break and a tab).
_WIDE = frozenset("mwMW@%…—∅")
_MID = frozenset("<>=+~#&^±×÷␣⏎⇥")
#: Longest token label (px at its font size) before it is shortened with an ellipsis.
LABEL_MAX = 190.0
#: Line height (px) of wrapped titles, per px of font size.
LEADING = 1.25


def text_width(s: str, size: float, bold: bool = False) -> float:
    """Estimated advance width of ``s`` at font ``size`` (px)."""
    em = 0.0
    for ch in s:
        if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        if ord(ch) >= 0x1F000:  # emoji (a colour font, wider than an em)
            em += 1.3
        elif unicodedata.east_asian_width(ch) in ("W", "F") or ch in _WIDE:
            em += 1.0
        elif ch in _MID:
            em += 0.84
        elif ch == " ":
            em += 0.32
        elif ch.isupper():
            em += 0.78
        elif ch.isdigit():
            em += 0.64
        else:
            em += 0.62
    return em * size * (1.1 if bold else 1.0)


def fit(s: str, size: float, max_w: float) -> str:
    """``s``, or its longest head that fits ``max_w`` with an ellipsis."""
    if text_width(s, size) <= max_w:
        return s
    while s and text_width(s + "…", size) > max_w:
        s = s[:-1]
    return s + "…"


def wrap(s: str, size: float, max_w: float, bold: bool = False) -> list[str]:
    """``s`` in lines no wider than ``max_w``: broken at spaces, a word too long for a line
    broken inside; nothing is dropped (the lines joined give ``s`` back, spaces aside)."""
    lines: list[str] = []
    for word in s.split():
        cand = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(cand, size, bold) <= max_w:
            lines[-1] = cand
            continue
        while text_width(word, size, bold) > max_w and len(word) > 1:
            k = next(k for k in range(len(word) - 1, 0, -1) if text_width(word[:k], size, bold) <= max_w or k == 1)
            lines.append(word[:k])
            word = word[k:]
        lines.append(word)
    return lines


# --------------------------------------------------------------------------- colours


def rgb(c: str) -> tuple[float, float, float]:
    """A Plotly colour (``#rrggbb`` or ``rgb(...)``) as its red, green and blue values."""
    c = c.strip()
    if c.startswith("#") and len(c) == 7:
        return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)
    m = re.match(r"rgba?\(([^)]*)\)", c)
    if m:
        parts = [float(p) for p in m.group(1).split(",")[:3]]
        return parts[0], parts[1], parts[2]
    return (128, 128, 128)


def colour_at(scale: Sequence[Sequence[Any]], s: float) -> str:
    """Linear interpolation in a Plotly colorscale ``[[pos, colour], ...]`` at ``s`` ∈ [0, 1]."""
    s = min(1.0, max(0.0, s))
    for (p0, c0), (p1, c1) in itertools.pairwise(scale):
        if s <= float(p1):
            f = 0.0 if float(p1) == float(p0) else (s - float(p0)) / (float(p1) - float(p0))
            a, b = rgb(c0), rgb(c1)
            r, g, bl = (round(a[k] + f * (b[k] - a[k])) for k in range(3))
            return f"#{r:02x}{g:02x}{bl:02x}"
    r, g, bl = (round(v) for v in rgb(scale[-1][1]))
    return f"#{r:02x}{g:02x}{bl:02x}"


def _scale(trace: Any) -> list[list[Any]]:
    cs = getattr(trace, "colorscale", None)
    if cs:
        return [[float(p), str(c)] for p, c in cs]
    return [[0.0, "#fff7ec"], [1.0, "#7f2704"]]


# --------------------------------------------------------------------------- ticks


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step - 1e-9) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return out


def fmt(v: float) -> str:
    """A tick or bar value as short text (scientific notation for very large or small magnitudes)."""
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.2g}"
    return f"{v:.4g}"


def svg_root(width: float, height: float, body: list[str]) -> str:
    """The ``<svg>`` element of one figure around its drawn ``body``."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(width)}" height="{num(height)}" '
        f'viewBox="0 0 {num(width)} {num(height)}" font-family="{x(FONT)}" font-size="10" fill="{INK}">' + "".join(body) + "</svg>"
    )


def text_el(
    px: float,
    py: float,
    s: str,
    *,
    size: float = 10,
    anchor: str = "start",
    fill: str = INK,
    rotate: float | None = None,
    weight: str = "normal",
) -> str:
    """A ``<text>`` element at (px, py): ``s`` escaped and in visual order (right-to-left runs reordered)."""
    tr = f' transform="rotate({num(rotate)} {num(px)} {num(py)})"' if rotate is not None else ""
    w = f' font-weight="{weight}"' if weight != "normal" else ""
    return f'<text x="{num(px)}" y="{num(py)}" font-size="{num(size)}" text-anchor="{anchor}" fill="{fill}"{w}{tr}>{x(visual(s))}</text>'


# --------------------------------------------------------------------------- heatmap

#: Hatched fill of undefined (NaN) heatmap cells: defined once per drawing.
NAN_PATTERN = (
    '<defs><pattern id="nan" width="4" height="4" patternUnits="userSpaceOnUse">'
    '<rect width="4" height="4" fill="#f2f4f7"/><path d="M0,4 L4,0" stroke="#9aa5b1" stroke-width="0.6"/></pattern></defs>'
)


def cell_paths(
    z: np.ndarray, scale: Sequence[Sequence[Any]], lo: float, span: float, left: float, top: float, cw: float, ch: float
) -> list[str]:
    """The heatmap's cells as one ``<path class="cells">`` per colour (NaN cells: one hatched path).

    Each path holds one ``M x,y h w v h h -w z`` rectangle per run of same-coloured cells in a
    row, so a PDF viewer paints a few hundred shapes instead of one per cell (WeasyPrint's paint
    time grows with the number of SVG elements and with every use of a pattern), with the same
    colours in the same places.
    """
    n, t = z.shape
    runs: dict[str, list[str]] = {}
    for i in range(n):
        fills = [colour_at(scale, 0.5 if span == 0 else (v - lo) / span) if math.isfinite(v) else "url(#nan)" for v in z[i]]
        j = 0
        while j < t:
            k = j + 1
            while k < t and fills[k] == fills[j]:
                k += 1
            w = (k - j) * cw
            runs.setdefault(fills[j], []).append(f"M{num(left + j * cw)},{num(top + i * ch)}h{num(w)}v{num(ch)}h{num(-w)}z")
            j = k
    out = [NAN_PATTERN] if "url(#nan)" in runs else []
    out.extend(f'<path class="cells" fill="{fill}" d="{"".join(d)}"/>' for fill, d in runs.items())
    return out


def colour_bar(scale: Sequence[Sequence[Any]], bx: float, by: float, bh: float, steps: int = 32) -> str:
    """The colour scale as a 10 px wide bar of ``steps`` bands (top: the maximum). (WeasyPrint 70
    does not draw SVG gradients on a bounding box, and draws them with stray marks in user space.)"""
    return "".join(
        f'<rect x="{num(bx)}" y="{num(by + k * bh / steps)}" width="10" height="{num(bh / steps + 0.3)}"'
        f' fill="{colour_at(scale, 1 - (k + 0.5) / steps)}"/>'
        for k in range(steps)
    )


def heatmap_svg(
    z: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    scale: Sequence[Sequence[Any]],
    zmin: float | None = None,
    zmax: float | None = None,
    title: str = "",
    value_label: str = "",
    x_title: str = "output token",
    y_title: str = "input token",
) -> str:
    """A heatmap as one ``<rect>`` per cell (NaN cells hatched grey), with a colour bar."""
    z = np.asarray(z, dtype=np.float64)
    n, t = z.shape
    fin = z[np.isfinite(z)]
    lo = float(zmin) if zmin is not None else (float(fin.min()) if fin.size else 0.0)
    hi = float(zmax) if zmax is not None else (float(fin.max()) if fin.size else 1.0)
    lab = 7.0 if max(n, t) > 40 else 8.0
    rl = [fit(plain(s), lab, LABEL_MAX) for s in row_labels]
    cl = [fit(plain(s), lab, LABEL_MAX) for s in col_labels]
    row_w = max((text_width(s, lab) for s in rl), default=0.0)
    col_w = max((text_width(s, lab) for s in cl), default=0.0)
    # row labels end 3 px left of the plot, right of the rotated y title; the column labels,
    # rotated by 60°, reach down sin 60° and left cos 60° of their width
    left = max(20 + row_w + 3, 0.5 * col_w + 4)
    bottom = 4 + 0.87 * col_w + 0.5 * lab + 20
    span = hi - lo
    ticks = nice_ticks(lo, hi, 4) if span else [lo]
    cbar = max(70.0, 23 + max(text_width(fmt(v), 7.5) for v in ticks))
    titles = wrap(plain(title), 11, WIDTH - left - 4, bold=True) if title else []
    top = 8 + 11 * LEADING * len(titles) + (4 if titles else 0)
    cw = min(28.0, (WIDTH - left - cbar - 10) / max(1, t))
    ch = min(16.0, max(4.0, cw if n * cw <= 700 else 700 / n))
    w_plot, h_plot = cw * t, ch * n
    width = WIDTH
    height = top + h_plot + bottom
    body: list[str] = []
    for k, line in enumerate(titles):
        body.append(text_el(left, 15 + 11 * LEADING * k, line, size=11, weight="bold"))
    body.extend(cell_paths(z, scale, lo, span, left, top, cw, ch))
    body.append(
        f'<rect x="{num(left)}" y="{num(top)}" width="{num(w_plot)}"'
        f' height="{num(h_plot)}" fill="none" stroke="#cbd2d9" stroke-width="0.5"/>'
    )
    show_rows = max(1, math.ceil(lab / ch)) if ch < lab else 1
    for i in range(0, n, show_rows):
        body.append(text_el(left - 3, top + (i + 0.5) * ch + lab * 0.35, rl[i], size=lab, anchor="end"))
    show_cols = max(1, math.ceil(lab / cw)) if cw < lab else 1
    for j in range(0, t, show_cols):
        px, py = left + (j + 0.5) * cw + lab * 0.35, top + h_plot + 4
        body.append(text_el(px, py, cl[j], size=lab, anchor="end", rotate=-60))
    body.append(text_el(left + w_plot / 2, height - 4, x_title, size=9, anchor="middle", fill=INK2))
    body.append(text_el(10, top + h_plot / 2, y_title, size=9, anchor="middle", fill=INK2, rotate=-90))
    # colour bar
    bx, by, bh = left + w_plot + 14, top, max(60.0, min(h_plot, 220.0))
    body.append(colour_bar(scale, bx, by, bh))
    body.append(f'<rect x="{num(bx)}" y="{num(by)}" width="10" height="{num(bh)}" fill="none" stroke="#cbd2d9" stroke-width="0.5"/>')
    for v in ticks:
        py = by + bh * (1 - (0.5 if span == 0 else (v - lo) / span))
        body.append(f'<line x1="{num(bx + 10)}" x2="{num(bx + 13)}" y1="{num(py)}" y2="{num(py)}" stroke="{INK2}" stroke-width="0.5"/>')
        body.append(text_el(bx + 15, py + 3, fmt(v), size=7.5, fill=INK2))
    # the colour bar's title, whole, in as many lines as the room right of the plot needs
    lines = wrap(plain(value_label), 8, WIDTH - bx - 4) if value_label else []
    for k, line in enumerate(lines):
        body.append(text_el(bx, by + bh + 12 + 8 * LEADING * k, line, size=8, fill=INK2))
    return svg_root(width, max(height, by + bh + 12 + 8 * LEADING * max(0, len(lines) - 1) + 6), body)


def figure_svg(fig: Any, max_cells: int = 2500) -> str | None:
    """SVG for the figure shapes the report draws; None when the figure is of another kind."""
    import plotly.graph_objects as go

    if not isinstance(fig, go.Figure):
        try:
            fig = go.Figure(fig)
        except Exception:  # noqa: BLE001 - not a figure we can read: the caller falls back
            return None
    traces = list(fig.data)
    if len(traces) == 1 and traces[0].type == "heatmap":
        tr = traces[0]
        if tr.z is None or int(np.prod(np.shape(tr.z))) > max_cells:
            return None
        z = np.array([[np.nan if v is None else float(v) for v in row] for row in list(tr.z)], dtype=np.float64)
        if z.ndim != 2 or z.size == 0:
            return None
        rows = [str(v) for v in (tr.y if tr.y is not None else range(z.shape[0]))]
        cols = [str(v) for v in (tr.x if tr.x is not None else range(z.shape[1]))]
        lay = fig.layout
        if not (lay.yaxis and lay.yaxis.autorange == "reversed"):  # Plotly draws row 0 at the bottom
            z, rows = z[::-1], rows[::-1]
        cb = tr.colorbar.title.text if tr.colorbar and tr.colorbar.title and tr.colorbar.title.text else ""
        return heatmap_svg(
            z,
            rows,
            cols,
            scale=_scale(tr),
            zmin=tr.zmin,
            zmax=tr.zmax,
            title=plain(lay.title.text) if lay.title and lay.title.text else "",
            value_label=cb,
            x_title=plain(lay.xaxis.title.text) if lay.xaxis and lay.xaxis.title and lay.xaxis.title.text else "",
            y_title=plain(lay.yaxis.title.text) if lay.yaxis and lay.yaxis.title and lay.yaxis.title.text else "",
        )
    from reportgen_plugins.renderers.svg_xy import xy_svg  # it draws with this module's helpers

    return xy_svg(fig)
