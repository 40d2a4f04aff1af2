"""Bars, lines and markers as SVG, drawn from a Plotly figure's data (no browser).

:func:`xy_svg` draws one panel, or one row of panels (``make_subplots(rows=1, cols=n)``, shared
or separate y axes, subplot titles), each over a category x axis (tick text from ``tickvals`` /
``ticktext`` where given) or a linear one (numbers placed by value). Bars may be grouped or
overlaid, coloured per bar (a list of colours, or numbers through a colorscale), outlined per
bar, hatched per bar (``marker.pattern.shape``), labelled (``text``, drawn outside the bar) and carry
error bars; lines may be dashed and break at missing values; markers take Plotly's common
symbols and per-point sizes. A single panel may have a second y axis on the right. Anything
else (stacked bars, several rows, log axes, shapes, free annotations, ...) returns ``None`` so
the caller can export the figure another way.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

from reportgen_plugins.renderers.svg import (
    COLORWAY,
    GRID,
    INK,
    INK2,
    LABEL_MAX,
    LEADING,
    WIDTH,
    colour_at,
    fit,
    fmt,
    nice_ticks,
    num,
    plain,
    rgb,
    svg_root,
    text_el,
    text_width,
    wrap,
)

#: Height (px) of each panel's plot area.
PLOT_H = 170.0
#: Stroke dash patterns of Plotly's named dashes.
DASHES = {"dot": "1.5,2.5", "dash": "5,3", "longdash": "9,3", "dashdot": "5,2.5,1.5,2.5", "longdashdot": "9,2.5,1.5,2.5"}
#: One diagonal-hatch pattern per drawing, for bars with ``marker.pattern.shape``.
HATCH = (
    '<defs><pattern id="hatch" width="5" height="5" patternUnits="userSpaceOnUse">'
    '<path d="M0,5 L5,0 M-1,1 L1,-1 M4,6 L6,4" stroke="#1f2933" stroke-width="0.7"/></pattern></defs>'
)


def _vals(seq: Any) -> list[float | None]:
    out: list[float | None] = []
    for v in list(seq) if seq is not None else []:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(f if math.isfinite(f) else None)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def paint(c: Any) -> tuple[str, float] | None:
    """A Plotly colour as an SVG colour and opacity (``rgba`` split up); None when transparent."""
    if not isinstance(c, str) or not c.strip():
        return None
    s = c.strip()
    if s.lower() == "transparent":
        return None
    if s.startswith("rgba("):
        parts = s[5:].rstrip(")").split(",")
        alpha = float(parts[3]) if len(parts) > 3 else 1.0
        if alpha <= 0:
            return None
        r, g, b = (round(v) for v in rgb(s))
        return f"#{r:02x}{g:02x}{b:02x}", alpha
    if s.startswith("rgb("):
        r, g, b = (round(v) for v in rgb(s))
        return f"#{r:02x}{g:02x}{b:02x}", 1.0
    return s, 1.0


def _paint_attr(p: tuple[str, float] | None, what: str = "fill") -> str:
    if p is None:
        return f' {what}="none"'
    return f' {what}="{p[0]}"' + (f' {what}-opacity="{num(p[1])}"' if p[1] < 1 else "")


def per_point(spec: Any, n: int, default: str, marker: Any = None) -> list[tuple[str, float] | None]:
    """Each point's paint from a Plotly colour spec: one colour, a list of colours, or numbers
    mapped through ``marker.colorscale`` between ``cmin`` and ``cmax`` (else the data's range)."""
    if spec is None:
        return [paint(default)] * n
    if isinstance(spec, str):
        return [paint(spec)] * n
    items = list(spec)
    if items and all(_is_number(v) or v is None for v in items):
        scale = getattr(marker, "colorscale", None)
        if not scale:
            return [paint(default)] * n
        fin = [float(v) for v in items if v is not None and math.isfinite(float(v))]
        lo = float(marker.cmin) if marker.cmin is not None else min(fin, default=0.0)
        hi = float(marker.cmax) if marker.cmax is not None else max(fin, default=1.0)
        stops = [[float(p), str(c)] for p, c in scale]
        span = hi - lo
        return [
            paint(default) if v is None else paint(colour_at(stops, 0.5 if span == 0 else (float(v) - lo) / span))
            for v in (items + [None] * n)[:n]
        ]
    return [paint(c) if c is not None else paint(default) for c in (items + [None] * n)[:n]]


def _per(spec: Any, n: int, default: Any) -> list[Any]:
    """A scalar or per-point attribute as one value per point."""
    if spec is None or isinstance(spec, (str, int, float)):
        return [default if spec is None else spec] * n
    items = list(spec)
    return [(items[i] if i < len(items) and items[i] is not None else default) for i in range(n)]


def _line(x1: float, x2: float, y1: float, y2: float, stroke: str, width: float, extra: str = "") -> str:
    return f'<line x1="{num(x1)}" x2="{num(x2)}" y1="{num(y1)}" y2="{num(y2)}" stroke="{stroke}" stroke-width="{num(width)}"{extra}/>'


def _poly(pts: Sequence[tuple[float, float]]) -> str:
    return "M" + "L".join(f"{num(a)},{num(b)}" for a, b in pts) + "z"


def marker_path(symbol: str, cx: float, cy: float, r: float) -> str:
    """Path data of one marker: circle, square, diamond, triangle-up/down, cross, x or star."""
    base = symbol.replace("-open", "").replace("-dot", "")
    if base == "square":
        return f"M{num(cx - r)},{num(cy - r)}h{num(2 * r)}v{num(2 * r)}h{num(-2 * r)}z"
    if base == "diamond":
        k = r * 1.3
        return _poly([(cx, cy - k), (cx + k, cy), (cx, cy + k), (cx - k, cy)])
    if base in ("triangle-up", "triangle-down"):
        s = -1 if base == "triangle-up" else 1
        return _poly([(cx, cy + s * r * 1.2), (cx + r * 1.1, cy - s * r * 0.7), (cx - r * 1.1, cy - s * r * 0.7)])
    if base == "star":
        rads = [r * 1.3 if k % 2 == 0 else r * 0.55 for k in range(10)]
        angles = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        return _poly([(cx + q * math.cos(a), cy + q * math.sin(a)) for q, a in zip(rads, angles, strict=True)])
    if base in ("cross", "x"):
        k = r * 0.35
        arm = (
            f"M{num(cx - k)},{num(cy - r)}h{num(2 * k)}v{num(r - k)}h{num(r - k)}v{num(2 * k)}h{num(k - r)}"
            f"v{num(r - k)}h{num(-2 * k)}v{num(k - r)}h{num(k - r)}v{num(-2 * k)}h{num(r - k)}z"
        )
        return arm  # "x": the caller rotates it by 45°
    return f"M{num(cx - r)},{num(cy)}a{num(r)},{num(r)} 0 1,0 {num(2 * r)},0a{num(r)},{num(r)} 0 1,0 {num(-2 * r)},0z"


# --------------------------------------------------------------------------- axes


@dataclasses.dataclass
class XAxis:
    """One panel's x axis in axis units: categories at 0.5, 1.5, ... (``cats``) or numbers."""

    cats: list[str] | None
    lo: float
    hi: float
    slot: float  # width of one bar slot (axis units)
    ticks: list[tuple[float, str]]

    def u(self, v: Any) -> float:
        return self.cats.index(str(v)) + 0.5 if self.cats is not None else float(v)


def _xs(tr: Any) -> list[Any]:
    return list(tr.x) if tr.x is not None else list(range(len(tr.y or [])))


def x_axis(traces: Sequence[Any], spec: Any) -> XAxis | None:
    """The x axis of one panel's traces, or None when it is of a kind not drawn here."""
    kind = spec.type if spec is not None else None
    if kind not in (None, "-", "linear", "category"):
        return None
    xs = [v for tr in traces for v in _xs(tr)]
    tickmap: dict[str, str] = {}
    if spec is not None and spec.tickvals is not None and spec.ticktext is not None:
        tickmap = {str(v): plain(t) for v, t in zip(spec.tickvals, spec.ticktext, strict=False)}
    if kind == "category" or not all(_is_number(v) for v in xs):
        cats: list[str] = []
        for v in xs:
            if str(v) not in cats:
                cats.append(str(v))
        if not cats:
            return None
        return XAxis(cats, 0.0, float(len(cats)), 1.0, [(i + 0.5, tickmap.get(c, plain(c))) for i, c in enumerate(cats)])
    vals = sorted({float(v) for v in xs})
    if not vals:
        return None
    bar_x = sorted({float(v) for tr in traces if tr.type == "bar" for v in _xs(tr)})
    steps = [b - a for a, b in itertools.pairwise(bar_x) if b > a]
    slot = min(steps, default=1.0)
    if spec is not None and spec.range is not None and None not in tuple(spec.range):
        lo, hi = float(spec.range[0]), float(spec.range[1])
    elif bar_x:
        lo, hi = min(vals[0], bar_x[0] - slot / 2), max(vals[-1], bar_x[-1] + slot / 2)
    else:
        pad = 0.05 * (vals[-1] - vals[0]) or 0.5
        lo, hi = vals[0] - pad, vals[-1] + pad
    if tickmap:
        ticks = [(float(v), tickmap[str(v)]) for v in spec.tickvals if _is_number(v) and lo <= float(v) <= hi]
    else:
        ticks = [(v, fmt(v)) for v in nice_ticks(lo, hi, 6) if lo - 1e-12 <= v <= hi + 1e-12]
    return XAxis(None, lo, hi, slot, ticks)


def _errors(tr: Any, n: int) -> list[tuple[float, float]] | None:
    e = getattr(tr, "error_y", None)
    if e is None or e.visible is False or e.array is None:
        return None
    up = _vals(e.array)
    down = _vals(e.arrayminus) if e.arrayminus is not None and not e.symmetric else up
    return [((down[i] or 0.0) if i < len(down) else 0.0, (up[i] or 0.0) if i < len(up) else 0.0) for i in range(n)]


def y_range(traces: Sequence[Any], spec: Any) -> tuple[float, float]:
    """Plotly's autorange (bars from zero, 5 % padding), or the axis' fixed range."""
    if spec is not None and spec.range is not None and None not in tuple(spec.range):
        return float(spec.range[0]), float(spec.range[1])
    vals: list[float] = []
    for tr in traces:
        ys = _vals(tr.y)
        vals.extend(v for v in ys if v is not None)
        err = _errors(tr, len(ys))
        if err:
            vals.extend(v + e[1] for v, e in zip(ys, err, strict=True) if v is not None)
            vals.extend(v - e[0] for v, e in zip(ys, err, strict=True) if v is not None)
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if any(tr.type == "bar" for tr in traces) or (spec is not None and spec.rangemode == "tozero"):
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        hi = lo + 1.0
    pad = 0.05 * (hi - lo)
    return (lo if lo == 0 else lo - pad), (hi if hi == 0 else hi + pad)


# --------------------------------------------------------------------------- the figure


@dataclasses.dataclass
class Panel:
    """One subplot: its traces, x axis, y axis name and horizontal domain (fraction of the plot area)."""

    traces: list[Any]
    x: XAxis
    x_title: str
    y: str
    domain: tuple[float, float]
    y2: str | None = None  # a second y axis on the right (one-panel figures only)
    x0: float = 0.0
    w: float = 0.0

    def px(self, u: float) -> float:
        return self.x0 + self.w * (u - self.x.lo) / (self.x.hi - self.x.lo)


def _axis_key(ref: str, kind: str) -> str:
    """``"x2"`` → ``"xaxis2"``."""
    return f"{kind}axis{ref[1:]}"


def _title(spec: Any) -> str:
    return plain(spec.title.text) if spec is not None and spec.title and spec.title.text else ""


def panels(fig: Any) -> list[Panel] | None:
    """The figure's panels, left to right, or None when it is not one row of bar/line panels."""
    layout = fig.layout
    traces = [tr for tr in fig.data if tr.visible is not False]
    if not traces or any(tr.type not in ("bar", "scatter") for tr in fig.data):
        return None
    if layout.shapes or layout.barmode in ("stack", "relative"):
        return None
    for tr in traces:
        if tr.type == "bar" and tr.orientation == "h":
            return None
        if tr.type == "scatter" and ((tr.fill not in (None, "none")) or "text" in (tr.mode or "")):
            return None
    out: list[Panel] = []
    for xref in dict.fromkeys(tr.xaxis or "x" for tr in traces):
        mine = [tr for tr in traces if (tr.xaxis or "x") == xref]
        ys = list(dict.fromkeys(tr.yaxis or "y" for tr in mine))
        spec = layout[_axis_key(xref, "x")]
        ax = x_axis(mine, spec)
        if ax is None or len(ys) > 2:
            return None
        y2 = None
        if len(ys) == 2:
            y2 = ys[1]
            if layout[_axis_key(y2, "y")].overlaying != ys[0]:
                return None
        for y in ys:
            yspec = layout[_axis_key(y, "y")]
            if yspec.type not in (None, "-", "linear") or yspec.autorange == "reversed":
                return None
            if yspec.domain is not None and tuple(yspec.domain) != (0.0, 1.0) and yspec.overlaying is None:
                return None  # several rows of panels
        dom = tuple(spec.domain) if spec is not None and spec.domain is not None else (0.0, 1.0)
        out.append(Panel(mine, ax, _title(spec), ys[0], (float(dom[0]), float(dom[1])), y2))
    if len(out) > 1 and any(p.y2 for p in out):
        return None
    return sorted(out, key=lambda p: p.domain[0])


def subplot_titles(fig: Any) -> list[tuple[float, str]] | None:
    """Subplot titles (paper-anchored annotations above the plots) as (x fraction, text); None
    when the figure has annotations of another kind."""
    out = []
    for a in fig.layout.annotations or ():
        if a.xref != "paper" or a.yref != "paper" or a.showarrow is not False or a.y is None or a.y < 0.99:
            return None
        out.append((float(a.x if a.x is not None else 0.5), plain(a.text)))
    return out


def _colour(tr: Any, k: int) -> str:
    for spec in (tr.marker.color if tr.marker is not None else None, tr.line.color if tr.type == "scatter" and tr.line else None):
        if isinstance(spec, str):
            return spec
    return COLORWAY[k % len(COLORWAY)]


def xy_svg(fig: Any) -> str | None:
    """Bars, lines and markers over one row of panels (see the module docstring), else None."""
    ps = panels(fig)
    titles_above = subplot_titles(fig)
    if ps is None or titles_above is None:
        return None
    layout = fig.layout
    traces = [tr for p in ps for tr in p.traces]
    order = {id(tr): k for k, tr in enumerate(fig.data)}  # Plotly's colourway follows the trace order
    if sum(len(p.x.cats or p.x.ticks) for p in ps) > 400:
        return None
    # y axes: one range per axis, one for axes that match another
    ranges: dict[str, tuple[float, float]] = {}
    groups: dict[str, list[Any]] = {}
    for tr in traces:
        y = tr.yaxis or "y"
        spec = layout[_axis_key(y, "y")]
        groups.setdefault(spec.matches if spec.matches else y, []).append(tr)
    for y in {tr.yaxis or "y" for tr in traces}:
        spec = layout[_axis_key(y, "y")]
        ranges[y] = y_range(groups[spec.matches if spec.matches else y], spec)
    lab = 7.0 if sum(len(p.x.ticks) for p in ps) > 30 else 8.0
    tick_labels = {id(p): [fit(t, lab, LABEL_MAX) for _, t in p.x.ticks] for p in ps}

    def yticks(y: str) -> list[float]:
        lo, hi = ranges[y]
        return [t for t in nice_ticks(lo, hi, 6) if lo - 1e-12 <= t <= hi + 1e-12]

    def shows_labels(y: str) -> bool:
        return layout[_axis_key(y, "y")].showticklabels is not False

    tick_w = {y: max((text_width(fmt(v), 8) for v in yticks(y)), default=0.0) for y in ranges}
    y_titles = {y: _title(layout[_axis_key(y, "y")]) for y in ranges}
    first = ps[0]
    left = max(52.0, 22 + tick_w[first.y] + 4)
    right = 14.0
    if first.y2:
        right = 12 + tick_w[first.y2] + (16 if y_titles[first.y2] else 4)
    width = float(WIDTH)
    w_all = width - left - right
    flat: dict[int, bool] = {}
    label_w: dict[int, float] = {}
    gaps: dict[int, float] = {}  # px between neighbouring x ticks
    for p in ps:
        p.x0, p.w = left + p.domain[0] * w_all, (p.domain[1] - p.domain[0]) * w_all
        pos = [p.px(u) for u, _ in p.x.ticks]
        gaps[id(p)] = min((b - a for a, b in itertools.pairwise(pos)), default=p.w)
        label_w[id(p)] = max((text_width(s, lab) for s in tick_labels[id(p)]), default=0.0)
        flat[id(p)] = label_w[id(p)] < 0.9 * gaps[id(p)]
    if not flat[id(first)]:  # rotated by 60°, the first label reaches cos 60° of its width to the left
        left = max(left, 0.5 * label_w[id(first)] + 4)
    if left != max(52.0, 22 + tick_w[first.y] + 4):
        w_all = width - left - right
        for p in ps:
            p.x0, p.w = left + p.domain[0] * w_all, (p.domain[1] - p.domain[0]) * w_all

    # legend: one entry per name (or legend group), rows as wide as the plot area
    entries: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for tr in fig.data:
        key = tr.legendgroup or tr.name
        if tr.visible is False or not tr.name or tr.showlegend is False or key in seen:
            continue
        seen.add(key)
        entries.append((fit(plain(tr.name), 8.5, w_all - 13), tr))
    show_legend = layout.showlegend if layout.showlegend is not None else (len(entries) > 1 or bool(first.y2))
    slots: list[tuple[float, int]] = []
    if show_legend:
        lx, row = left, 0
        for name, _ in entries:
            w = 13 + text_width(name, 8.5) + 11
            if lx > left and lx + w - 11 > left + w_all:
                lx, row = left, row + 1
            slots.append((lx, row))
            lx += w
    title = plain(layout.title.text) if layout.title and layout.title.text else ""
    titles = wrap(title, 11, width - left - 4, bold=True) if title else []
    above: list[tuple[float, list[str]]] = []
    for fx, text in titles_above:
        cx = left + fx * w_all
        room = 2 * min(cx - 2, width - 2 - cx, max((p.w for p in ps if p.x0 - 1 <= cx <= p.x0 + p.w + 1), default=w_all) / 2 + 6)
        above.append((cx, wrap(text, 9, room)))
    above_h = max((len(lines) for _, lines in above), default=0) * 9 * LEADING + (4 if above else 0)
    legend_h = 14.0 * (slots[-1][1] + 1 if slots else 0)
    top = 6 + 11 * LEADING * len(titles) + (4 if titles else 0) + legend_h + above_h
    x_title_h = 12.0 if any(p.x_title for p in ps) else 0.0
    bottom = 16 + x_title_h + max((lab + 4 if flat[id(p)] else 0.87 * label_w[id(p)] + 0.5 * lab + 8) for p in ps)
    height = top + PLOT_H + bottom
    body: list[str] = []
    if any(tr.type == "bar" and tr.marker is not None and tr.marker.pattern is not None and tr.marker.pattern.shape for tr in traces):
        body.append(HATCH)
    for k, line in enumerate(titles):
        body.append(text_el(left, 14 + 11 * LEADING * k, line, size=11, weight="bold"))
    for cx, lines in above:
        for k, line in enumerate(lines):
            y = top - above_h + 9 + 9 * LEADING * k
            body.append(text_el(cx, y, line, size=9, anchor="middle"))

    def ypx(v: float, y: str) -> float:
        return _ypx(v, ranges[y], top)

    for p in ps:
        for tick in yticks(p.y):
            py = ypx(tick, p.y)
            stroke = "#9aa5b1" if tick == 0 else GRID
            body.append(_line(p.x0, p.x0 + p.w, py, py, stroke, 0.6))
            if shows_labels(p.y):
                body.append(text_el(p.x0 - 4, py + 3, fmt(tick), size=8, anchor="end", fill=INK2))
        if p.y2:
            for tick in yticks(p.y2):
                body.append(text_el(p.x0 + p.w + 4, ypx(tick, p.y2) + 3, fmt(tick), size=8, fill=INK2))
        base = top + PLOT_H
        body.append(_line(p.x0, p.x0 + p.w, base, base, "#cbd2d9", 0.8))
        body.extend(_panel_traces(p, order, layout, ranges, top))
        labels = tick_labels[id(p)]
        step = max(1, math.ceil(lab / gaps[id(p)])) if not flat[id(p)] and gaps[id(p)] < lab else 1
        for i in range(0, len(p.x.ticks), step):
            px = p.px(p.x.ticks[i][0])
            if flat[id(p)]:
                body.append(text_el(px, base + lab + 3, labels[i], size=lab, anchor="middle"))
            else:
                body.append(text_el(px + lab * 0.35, base + 4, labels[i], size=lab, anchor="end", rotate=-60))
        if p.x_title:
            body.append(text_el(p.x0 + p.w / 2, height - 4, p.x_title, size=8.5, anchor="middle", fill=INK2))
        if y_titles[p.y] and (p is first or shows_labels(p.y)):
            tx = p.x0 - tick_w[p.y] - 12 if p is not first else 11
            body.append(text_el(tx, top + PLOT_H / 2, y_titles[p.y], size=8.5, anchor="middle", fill=INK2, rotate=-90))
        if p.y2 and y_titles[p.y2]:
            body.append(text_el(width - 6, top + PLOT_H / 2, y_titles[p.y2], size=8.5, anchor="middle", fill=INK2, rotate=90))
    legend_top = top - above_h - legend_h
    for (name, tr), (lx, row) in zip(entries if slots else [], slots, strict=True):
        ly = legend_top + 6 + 14.0 * row
        colour = _colour(tr, order[id(tr)])
        dim = ' opacity="0.45"' if tr.visible == "legendonly" else ""
        if tr.type == "bar":
            body.append(f'<rect x="{num(lx)}" y="{num(ly - 7)}" width="9" height="9" fill="{colour}"{dim}/>')
        elif "lines" in (tr.mode or "lines+markers"):
            body.append(_line(lx, lx + 10, ly - 3, ly - 3, colour, 2, dim))
        else:
            sym = str(tr.marker.symbol or "circle") if tr.marker is not None else "circle"
            fill = "none" if "open" in sym else colour
            body.append(f'<path d="{marker_path(sym, lx + 5, ly - 3, 3.5)}" fill="{fill}" stroke="{colour}"{dim}/>')
        body.append(text_el(lx + 13, ly + 1, name, size=8.5))
    return svg_root(width, height, body)


def _ypx(v: float, rng: tuple[float, float], top: float) -> float:
    return top + PLOT_H * (1 - (v - rng[0]) / (rng[1] - rng[0]))


def _panel_traces(p: Panel, order: dict[int, int], layout: Any, ranges: dict[str, tuple[float, float]], top: float) -> list[str]:
    """The SVG of one panel's traces, in trace order: bars (grouped or overlaid), lines, markers, error bars."""
    body: list[str] = []
    bars = [tr for tr in p.traces if tr.type == "bar" and tr.visible != "legendonly"]
    group = len(bars) if (layout.barmode in (None, "group") and len(bars) > 1) else 1
    gap = float(layout.bargap) if layout.bargap is not None else 0.2
    unit = p.w / (p.x.hi - p.x.lo)  # px per axis unit
    bw = p.x.slot * unit * (1 - gap) / group
    for tr in p.traces:
        if tr.visible == "legendonly":
            continue
        rng = ranges[tr.yaxis or "y"]
        xs, ys = _xs(tr), _vals(tr.y)
        n = len(ys)
        colour = _colour(tr, order[id(tr)])
        err = _errors(tr, n)
        mids: list[float | None] = []
        if tr.type == "bar":
            m = tr.marker
            fills = per_point(m.color if m is not None else None, n, colour, m)
            line = m.line if m is not None else None
            strokes = per_point(line.color if line is not None else None, n, "rgba(0,0,0,0)", line)
            lw = _per(line.width if line is not None else None, n, 0.0)
            hatch = _per(m.pattern.shape if m is not None and m.pattern is not None else None, n, "")
            op = float(m.opacity) if m is not None and isinstance(m.opacity, (int, float)) else 1.0
            op *= float(tr.opacity) if tr.opacity is not None else 1.0
            slot_k = bars.index(tr) if group > 1 else 0
            texts = _per(tr.text, n, "")
            labelled = tr.textposition != "none"  # drawn outside the bar whatever the position asked
            hatched: list[str] = []
            for i, (xv, v) in enumerate(zip(xs, ys, strict=False)):
                cx = p.px(p.x.u(xv)) - p.x.slot * unit * (1 - gap) / 2 + slot_k * bw
                mids.append(cx + bw / 2)
                if v is None:
                    continue
                y0, yv = _ypx(max(min(0.0, rng[1]), rng[0]), rng, top), _ypx(v, rng, top)
                r = f'x="{num(cx)}" y="{num(min(y0, yv))}" width="{num(bw)}" height="{num(abs(y0 - yv))}"'
                f = fills[i]
                opa = f' fill-opacity="{num(op * f[1])}"' if f is not None and op * f[1] < 1 else ""
                stroke = ""
                if strokes[i] is not None and float(lw[i]) > 0:
                    stroke = _paint_attr(strokes[i], "stroke") + f' stroke-width="{num(float(lw[i]) * 0.6)}"'
                body.append(f'<rect class="bar" {r} fill="{f[0] if f else "none"}"{opa}{stroke}/>')
                if hatch[i]:
                    hatched.append(f"M{num(cx)},{num(min(y0, yv))}h{num(bw)}v{num(abs(y0 - yv))}h{num(-bw)}z")
                label = plain(texts[i])
                if label and labelled:
                    ty = yv - 3 if v >= 0 else yv + 9
                    body.append(text_el(cx + bw / 2, ty, label, size=8, anchor="middle"))
            if hatched:
                body.append(f'<path d="{"".join(hatched)}" fill="url(#hatch)"/>')
        else:
            m = tr.marker
            mode = tr.mode or ("lines+markers" if n < 20 else "lines")
            pts: list[tuple[float, float] | None] = []
            for xv, v in zip(xs, ys, strict=False):
                mid = p.px(p.x.u(xv))
                mids.append(mid)
                pts.append(None if v is None else (mid, _ypx(v, rng, top)))
            if "lines" in mode:
                d, pen = [], False
                for pt in pts:
                    if pt is None:
                        pen = bool(tr.connectgaps) and pen
                        continue
                    d.append(("L" if pen else "M") + f"{num(pt[0])},{num(pt[1])}")
                    pen = True
                lw_line = float(tr.line.width) if tr.line is not None and tr.line.width is not None else 1.5
                dash = DASHES.get(str(tr.line.dash)) if tr.line is not None and tr.line.dash else None
                dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
                if len(d) > 1:
                    body.append(f'<path d="{"".join(d)}" stroke="{colour}" stroke-width="{num(lw_line)}" fill="none"{dash_attr}/>')
            if "markers" in mode:
                sym = str(m.symbol) if m is not None and isinstance(m.symbol, str) else "circle"
                sizes = _per(m.size if m is not None else None, n, 6.0)
                fills = per_point(m.color if m is not None else None, n, colour, m)
                op = float(m.opacity) if m is not None and isinstance(m.opacity, (int, float)) else 1.0
                mline = m.line if m is not None else None
                edge = paint(mline.color) if mline is not None and isinstance(mline.color, str) else None
                ew = float(mline.width) if mline is not None and isinstance(mline.width, (int, float)) else 0.0
                for i, pt in enumerate(pts):
                    if pt is None:
                        continue
                    f = fills[i]
                    shape = marker_path(sym, pt[0], pt[1], float(sizes[i]) / 2)
                    rot = f' transform="rotate(45 {num(pt[0])} {num(pt[1])})"' if sym.replace("-open", "") == "x" else ""
                    if "open" in sym:
                        body.append(f'<path d="{shape}" fill="none"{_paint_attr(f, "stroke")} stroke-width="1.2"{rot}/>')
                        continue
                    a = f' fill-opacity="{num(op)}"' if op < 1 else ""
                    s = _paint_attr(edge, "stroke") + f' stroke-width="{num(ew)}"' if edge and ew > 0 else ""
                    body.append(f'<path d="{shape}"{_paint_attr(f)}{a}{s}{rot}/>')
        if err:
            e = tr.error_y
            ecol = e.color if isinstance(e.color, str) else INK
            cap = float(e.width) if e.width is not None else 2.5
            for i, v in enumerate(ys):
                centre = mids[i] if i < len(mids) else None
                if v is None or centre is None:
                    continue
                lo_e, hi_e = _ypx(v - err[i][0], rng, top), _ypx(v + err[i][1], rng, top)
                body.append(
                    f'<path d="M{num(centre)},{num(lo_e)} V{num(hi_e)} M{num(centre - cap)},{num(lo_e)} H{num(centre + cap)} '
                    f'M{num(centre - cap)},{num(hi_e)} H{num(centre + cap)}" stroke="{ecol}" stroke-width="0.7" fill="none"/>'
                )
    return body
