"""Generic report figures and token colours (seed 001 §3.3–3.4, §4.4–4.5).

Pure functions from numbers to Plotly figures or CSS colours; no HTML is built here.
Every token that reaches a figure passes through :func:`esc` first: Plotly interprets a
few tags (``<b>``, ``<br>``) in hover and tick text, so tokens are HTML-escaped and Plotly
decodes the entities back into literal text.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from reportgen.unicode import make_visible

#: Significant digits kept in figure data (smaller reports, byte-stable output).
DIGITS = 6
#: System font stack shared with report.css (nothing is fetched); the colour-emoji fonts last,
#: so emoji and skin-tone modifiers in tokens are drawn rather than boxed.
FONT = (
    '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif, '
    '"Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji"'
)
#: Colours: positive / negative attribution (diverging) and unsigned intensity.
POS_RGB = (178, 24, 43)
NEG_RGB = (33, 102, 172)
UNSIGNED_RGB = (217, 95, 2)
#: Maximum background alpha of a token at intensity 1 (text stays readable).
MAX_ALPHA = 0.85
DIVERGING = [[0.0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#f4a582"], [1.0, "#b2182b"]]
SEQUENTIAL = [[0.0, "#fff7ec"], [0.35, "#fdd49e"], [0.7, "#f16913"], [1.0, "#7f2704"]]

#: A small layout template (Plotly's default template adds ~5 KB of JSON per figure).
TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": FONT, "size": 12, "color": "#1f2933"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": ["#1f4e79", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"],
        "hoverlabel": {"font": {"family": FONT, "size": 12}, "align": "left"},
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "xaxis": {"automargin": True, "linecolor": "#cbd2d9", "ticks": "outside", "tickcolor": "#cbd2d9"},
        "yaxis": {"automargin": True, "linecolor": "#cbd2d9", "ticks": "outside", "tickcolor": "#cbd2d9"},
    }
)


def slug(text: str) -> str:
    """A stable, id-safe form of any id (``[A-Za-z0-9_.-]``, never empty)."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-")
    return s or "x"


def esc(token: str) -> str:
    """A token as safe Plotly text: HTML-escaped; newlines, tabs and invisible characters visible."""
    t = token.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", "⇥")
    return html.escape(make_visible(t), quote=False)


def label(i: int, token: str, width: int = 16) -> str:
    """A unique axis label ``"i: token"`` (the index keeps repeated tokens apart). Spaces show as
    ``␣``, as in the report's tables: a label's leading space would vanish (``"4: ␣is"``, not
    ``"4: is"``); line breaks and tabs as ``⏎`` and ``⇥``."""
    t = token.replace("\n", "⏎").replace("\t", "⇥").replace("\r", "⏎").replace(" ", "\u2423") or "∅"
    if len(t) > width:
        t = t[: width - 1] + "…"
    return esc(f"{i}: {t}")


def rnd(x: Any) -> float | None:
    """Round to DIGITS significant digits; None for missing/non-finite."""
    if x is None:
        return None
    f = float(x)
    if not math.isfinite(f):
        return None
    return float(f"{f:.{DIGITS}g}")


def rnd_matrix(a: np.ndarray) -> list[list[float | None]]:
    return [[rnd(v) for v in row] for row in np.asarray(a, dtype=np.float64)]


# --------------------------------------------------------------------------- token colours


@dataclass(frozen=True)
class TokenColour:
    """Background colour of one token and the 0–1 strength it encodes (sign kept)."""

    css: str
    strength: float


def token_colours(values: Sequence[float | None], special: Sequence[bool] | None = None, signed: bool = False) -> list[TokenColour]:
    """Colours for token importances I(x_i) or I(y_j) (seed 001 eqs. 6–7).

    Unsigned: eq. 7 intensity (min–max over the scored user-content tokens) as the alpha of
    one hue. Signed: red for positive, blue for negative, alpha = |v| / max |v| (so 0 stays
    white). Template/special tokens are left out of the scaling (they often dominate, e.g.
    attention sinks) and clipped into [0, 1]; missing values get no colour.
    """
    n = len(values)
    special = list(special) if special is not None else [False] * n
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
    v[~np.isfinite(v)] = np.nan
    ref_mask = np.array([not s for s in special]) & np.isfinite(v)
    if not ref_mask.any():
        ref_mask = np.isfinite(v)
    out: list[TokenColour] = []
    if signed:
        m = float(np.nanmax(np.abs(v[ref_mask]))) if ref_mask.any() else 0.0
        for x in v:
            if not math.isfinite(x) or m == 0:
                out.append(TokenColour("", 0.0))
                continue
            s = max(-1.0, min(1.0, x / m))
            rgb = POS_RGB if s >= 0 else NEG_RGB
            out.append(TokenColour(_rgba(rgb, abs(s)), round(s, 4)))
        return out
    ref = v[ref_mask]
    if ref.size == 0:
        return [TokenColour("", 0.0) for _ in v]
    lo, hi = float(ref.min()), float(ref.max())
    for x in v:
        if not math.isfinite(x):
            out.append(TokenColour("", 0.0))
            continue
        s = 0.0 if hi == lo else max(0.0, min(1.0, (x - lo) / (hi - lo)))
        out.append(TokenColour(_rgba(UNSIGNED_RGB, s), round(s, 4)))
    return out


def _rgba(rgb: tuple[int, int, int], s: float) -> str:
    a = round(MAX_ALPHA * s, 3)
    if a <= 0:
        return ""
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{a})"


# --------------------------------------------------------------------------- downsampling


@dataclass(frozen=True)
class Downsampled:
    """A matrix reduced to at most ``max_cells`` cells by block means, with block labels."""

    matrix: np.ndarray
    row_labels: list[str]
    col_labels: list[str]
    row_factor: int
    col_factor: int

    @property
    def reduced(self) -> bool:
        return self.row_factor > 1 or self.col_factor > 1


def block_factors(n: int, t: int, max_cells: int) -> tuple[int, int]:
    """Smallest block sizes (rows, cols) so that ⌈n/fr⌉·⌈t/fc⌉ ≤ max_cells (larger side first)."""
    fr = fc = 1
    while math.ceil(n / fr) * math.ceil(t / fc) > max_cells:
        if math.ceil(n / fr) >= math.ceil(t / fc):
            fr += 1
        else:
            fc += 1
    return fr, fc


def block_mean(a: np.ndarray, fr: int, fc: int) -> np.ndarray:
    """Mean over fr × fc blocks (NaN-aware; edge blocks may be smaller; all-NaN → NaN)."""
    a = np.asarray(a, dtype=np.float64)
    n, t = a.shape
    out = np.full((math.ceil(n / fr), math.ceil(t / fc)), np.nan)
    for bi in range(out.shape[0]):
        for bj in range(out.shape[1]):
            blk = a[bi * fr : (bi + 1) * fr, bj * fc : (bj + 1) * fc]
            fin = blk[np.isfinite(blk)]
            if fin.size:
                out[bi, bj] = fin.mean()
    return out


def _block_labels(tokens: Sequence[str], f: int) -> list[str]:
    if f == 1:
        return [label(i, tok) for i, tok in enumerate(tokens)]
    out = []
    for s in range(0, len(tokens), f):
        e = min(len(tokens), s + f) - 1
        out.append(esc(f"{s}–{e}: ") + label(s, tokens[s], 10).split(": ", 1)[1] + "…")
    return out


def downsample(a: np.ndarray, rows: Sequence[str], cols: Sequence[str], max_cells: int) -> Downsampled:
    n, t = np.asarray(a).shape
    fr, fc = block_factors(n, t, max_cells)
    m = np.asarray(a, dtype=np.float64) if (fr, fc) == (1, 1) else block_mean(a, fr, fc)
    return Downsampled(m, _block_labels(rows, fr), _block_labels(cols, fc), fr, fc)


# --------------------------------------------------------------------------- figures


def _height(rows: int) -> int:
    return int(min(900, max(260, 120 + 16 * rows)))


def heatmap(
    matrix: np.ndarray,
    input_tokens: Sequence[str],
    output_tokens: Sequence[str],
    *,
    signed: bool,
    value_label: str = "A",
    title: str = "",
    max_cells: int = 20000,
) -> tuple[go.Figure, Downsampled]:
    """Input × output attribution heatmap; hover shows both tokens and the value."""
    ds = downsample(matrix, input_tokens, output_tokens, max_cells)
    z = rnd_matrix(ds.matrix)
    vl = esc(value_label or "A")
    trace: dict[str, Any] = {
        "z": z,
        "x": ds.col_labels,
        "y": ds.row_labels,
        "colorscale": DIVERGING if signed else SEQUENTIAL,
        "hovertemplate": "input %{y}<br>output %{x}<br>" + vl + " = %{z:.4g}<extra></extra>",
        "hoverongaps": False,
        "colorbar": {"title": {"text": vl, "side": "right"}, "thickness": 12, "len": 0.8},
        "xgap": 0.5,
        "ygap": 0.5,
    }
    if signed:
        fin = ds.matrix[np.isfinite(ds.matrix)]
        m = float(np.abs(fin).max()) if fin.size else 1.0
        trace.update(zmid=0.0, zmin=-(m or 1.0), zmax=(m or 1.0))
    fig = go.Figure(go.Heatmap(**trace))
    note = ""
    if ds.reduced:
        note = f" (block means of {ds.row_factor}×{ds.col_factor} cells)"
        # read by report.js: which cell of the full matrix lies under the pointer (exact value on hover)
        fig.update_layout(meta={"blocks": [ds.row_factor, ds.col_factor], "shape": [int(n) for n in np.shape(matrix)]})
    fig.update_layout(
        template=TEMPLATE,
        title={"text": esc(title) + esc(note), "font": {"size": 13}},
        height=_height(len(ds.row_labels)),
        xaxis={"title": {"text": "output token"}, "type": "category", "tickangle": -45, "side": "bottom"},
        yaxis={"title": {"text": "input token"}, "type": "category", "autorange": "reversed"},
    )
    return fig, ds


def step_scores_figure(output_tokens: Sequence[str], step_scores: Mapping[str, Sequence[float]]) -> go.Figure | None:
    """Probability (bars, left axis) and entropy (line, right axis, nats) per output token."""
    prob = list(step_scores.get("probability", ()))
    ent = list(step_scores.get("entropy", ()))
    if not prob and not ent:
        return None
    x = [label(j, tok) for j, tok in enumerate(output_tokens)]
    fig = go.Figure()
    if prob:
        fig.add_trace(
            go.Bar(
                x=x[: len(prob)],
                y=[rnd(p) for p in prob],
                name="probability",
                marker_color="#1f4e79",
                opacity=0.85,
                hovertemplate="%{x}<br>p = %{y:.4f}<extra></extra>",
            )
        )
    if ent:
        fig.add_trace(
            go.Scatter(
                x=x[: len(ent)],
                y=[rnd(e) for e in ent],
                name="entropy (nats)",
                yaxis="y2",
                mode="lines+markers",
                line={"color": "#d95f02", "width": 2},
                hovertemplate="%{x}<br>H = %{y:.4f} nats<extra></extra>",
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        height=300,
        xaxis={"type": "category", "tickangle": -45},
        yaxis={"title": {"text": "probability"}, "range": [0, 1.02], "gridcolor": "#eef0f3"},
        yaxis2={"title": {"text": "entropy (nats)"}, "overlaying": "y", "side": "right", "rangemode": "tozero", "showgrid": False},
        legend={"orientation": "h", "y": 1.12, "x": 0},
        margin={"t": 30},
        bargap=0.25,
    )
    return fig


def scores_figure(tokens: Sequence[str], scores: dict[str, Sequence[float | None]], positions: Sequence[int]) -> go.Figure:
    """Grouped bars of a method's named score vectors over the given token positions."""
    fig = go.Figure()
    x = [label(i, tokens[i]) for i in positions]
    for name in sorted(scores):
        vec = scores[name]
        fig.add_trace(
            go.Bar(
                x=x,
                y=[rnd(vec[i]) if i < len(vec) else None for i in positions],
                name=esc(name),
                hovertemplate="%{x}<br>" + esc(name) + " = %{y:.4g}<extra></extra>",
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        height=300,
        barmode="group",
        xaxis={"type": "category", "tickangle": -45},
        yaxis={"gridcolor": "#eef0f3", "zeroline": True, "zerolinecolor": "#9aa5b1"},
        legend={"orientation": "h", "y": 1.12, "x": 0},
        margin={"t": 30},
    )
    return fig
