"""The PDF's bar / line / marker drawings (``reportgen_plugins.renderers.svg_xy``) against the figures' data.

Oracles are the figures' own numbers: bar heights proportional to the values on a shared axis,
colours from the trace (or its colorscale, through :func:`colour_at`), error-bar ends at
value ± error, markers placed by value on a numeric axis. The report's grouped-bar and table
figures must be drawn without starting Chromium (kaleido enabled but never started).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots
from report_fixtures import INJECT_SCRIPT

from reportgen_plugins.dbsa.payload import DbsaPayload, Examples, NeighbourTest, UnitResult
from reportgen_plugins.dbsa.views import effect_figure, responses_figure
from reportgen_plugins.renderers.pdf import KaleidoExporter, SvgDrawer
from reportgen_plugins.renderers.svg import colour_at, figure_svg

SVG = "{http://www.w3.org/2000/svg}"


def _root(fig: Any) -> ET.Element:
    svg = figure_svg(fig)
    assert svg is not None, "the drawer should draw this figure"
    return ET.fromstring(svg)


def _bars(root: ET.Element) -> list[dict[str, Any]]:
    out = []
    for r in root.iter(SVG + "rect"):
        if r.get("class") == "bar":
            x, y, w, h = (float(r.get(k, "nan")) for k in ("x", "y", "width", "height"))
            out.append({"x": x, "y": y, "w": w, "h": h, "fill": r.get("fill"), "stroke": r.get("stroke")})
    return out


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(SVG + "text")]


def _drawn_without_chromium(fig: Any) -> SvgDrawer:
    ex = KaleidoExporter(True)  # enabled: any figure the drawer cannot draw would start Chromium
    drawer = SvgDrawer(ex)
    drawer.draw(fig, "f", "title", "")
    assert not ex.started and drawer.n_kaleido == 0 and drawer.n_fallback == 0
    return drawer


# --------------------------------------------------------------------------- grouped bars in panels (PAS candidates)


def candidates_like() -> tuple[Any, list[list[list[float | None]]]]:
    """Grouped bars in a row of panels with a shared y axis, as ``pas_views.candidates_figure``
    draws them: per panel prior and posterior bars, missing values, the original outlined."""
    data = [
        [[0.92, 0.08, 0.0002], [0.97, 0.025, None]],
        [[0.19, 0.05, None, 0.03], [0.999, None, 0.0002, 0.0001]],
    ]
    labels = [["is (original)", "'s", "was"], ["France (original)", "Brazil", "Europe", "Canada"]]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["«␣is» (position 25, AS = 0.0578)", "«␣France» (position 29)"], shared_yaxes=True)
    for col, (pair, ticks) in enumerate(zip(data, labels, strict=True), start=1):
        xs = list(range(len(ticks)))
        for ys, name, colour in zip(pair, ("prior", "posterior"), ("#9ecae1", "#08519c"), strict=True):
            fig.add_trace(
                go.Bar(
                    x=xs,
                    y=ys,
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    marker={"color": colour, "line": {"color": ["black"] + [colour] * (len(xs) - 1), "width": 2}},
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(tickmode="array", tickvals=xs, ticktext=ticks, tickangle=-60, row=1, col=col)
    fig.update_yaxes(title_text="probability", rangemode="tozero", row=1, col=1)
    fig.update_layout(title="Replacement candidates", barmode="group", legend={"orientation": "h", "y": -0.45})
    return fig, data


def test_grouped_bars_in_a_row_of_panels_one_rect_per_value_heights_from_the_data() -> None:
    fig, data = candidates_like()
    root = _root(fig)
    bars = _bars(root)
    values = [v for panel in data for trace in panel for v in trace if v is not None]
    assert len(bars) == len(values)  # one rect per value, none for a missing one
    # in trace order: panel 1 prior, panel 1 posterior, panel 2 prior, ...; one shared y axis,
    # so height / value is one constant across the panels
    k = bars[0]["h"] / values[0]
    for b, v in zip(bars, values, strict=True):
        assert b["h"] == pytest.approx(k * v, abs=0.011)
    # all bars stand on the same zero line
    assert {round(b["y"] + b["h"], 1) for b in bars} == {round(bars[0]["y"] + bars[0]["h"], 1)}
    # grouped: in each category the posterior bar is right of the prior bar, same width, touching
    p1_prior, p1_post = bars[0:3], bars[3:5]
    assert p1_post[0]["x"] == pytest.approx(p1_prior[0]["x"] + p1_prior[0]["w"], abs=0.02)
    assert p1_post[0]["w"] == pytest.approx(p1_prior[0]["w"])
    # panel 2 lies right of panel 1
    assert min(b["x"] for b in bars[5:]) > max(b["x"] + b["w"] for b in bars[:5])
    # colours and the original's outline
    assert [b["fill"] for b in bars[:3]] == ["#9ecae1"] * 3 and bars[3]["fill"] == "#08519c"
    assert bars[0]["stroke"] == "black" and bars[1]["stroke"] == "#9ecae1"
    texts = _texts(root)
    for label in ("is (original)", "France (original)", "Canada", "probability", "prior", "posterior"):
        assert label in texts
    assert texts.count("prior") == 1  # one legend entry per legend group
    joined = " ".join(texts)
    assert "«␣is» (position 25, AS = 0.0578)" in joined or {"«␣is»", "0.0578)"} <= set(joined.split())


def test_report_grouped_bars_never_start_chromium() -> None:
    fig, _ = candidates_like()
    assert _drawn_without_chromium(fig).n_svg == 1


def test_every_pas_figure_is_drawn_and_the_candidate_bars_match_their_data() -> None:
    from test_pas_views import make_result, make_run

    from reportgen_plugins.pas.views import PASViews

    figs = {f.id.split("-")[1]: f.figure for f in PASViews().figures(make_run([make_result()]))}
    assert sorted(figs) == ["as", "candidates", "entropy", "kl", "replacement"]
    for fig in figs.values():
        _drawn_without_chromium(fig)
    cand = figs["candidates"]
    bars = _bars(_root(cand))
    values = [v for tr in cand.data for v in tr.y if v is not None]
    assert len(bars) == len(values)
    k = bars[0]["h"] / values[0]
    assert [b["h"] for b in bars] == pytest.approx([k * v for v in values], abs=0.011)


def test_stacked_bars_two_rows_log_axes_and_shapes_are_left_to_the_fallback() -> None:
    stacked = go.Figure([go.Bar(x=["a"], y=[1]), go.Bar(x=["a"], y=[2])], layout={"barmode": "stack"})
    rows = make_subplots(rows=2, cols=1)
    rows.add_trace(go.Bar(x=["a"], y=[1]), row=1, col=1)
    rows.add_trace(go.Bar(x=["b"], y=[2]), row=2, col=1)
    log = go.Figure(go.Scatter(x=[1, 2], y=[1, 100]), layout={"yaxis": {"type": "log"}})
    shape = go.Figure(go.Bar(x=["a"], y=[1]))
    shape.add_hline(y=0.5)
    note = go.Figure(go.Bar(x=["a"], y=[1]))
    note.add_annotation(x="a", y=1, text="a note on the data")
    for fig in (stacked, rows, log, shape, note):
        assert figure_svg(fig) is None


# --------------------------------------------------------------------------- DBSA


def _unit(text: str, pos: int, effect: float | None, significant: bool) -> UnitResult:
    return UnitResult(
        text=text,
        kind="word",
        positions=(pos,),
        neighbours=(NeighbourTest("Rome", 0.2, 0.01, 0),) if effect is not None else (),
        effect=effect,
        p_value=0.001 if significant else (0.4 if effect is not None else None),
        q_value=0.002 if significant else (0.5 if effect is not None else None),
        significant=significant,
        skipped=None if effect is not None else "no neighbours",
        examples=Examples("Rome", ("Paris is", INJECT_SCRIPT), ("Rome is", "b")) if significant else None,
    )


def dbsa_payload() -> DbsaPayload:
    units = (_unit("capital", 3, 0.31, True), _unit("the", 2, 0.04, False), _unit("?", 6, None, False), _unit("France", 5, 0.12, True))
    return DbsaPayload(
        unit="word",
        units=units,
        samples=10,
        permutations=200,
        neighbours_per_unit=1,
        combine="fisher",
        metric="cosine",
        temperature=1.0,
        max_new_tokens=8,
        alpha=0.05,
        baseline_examples=("a",),
        draws_total=40,
        draws_now=40,
        embedding_model="hash_embed",
        sampler={"kind": "fake"},
        warnings=(),
    )


def test_dbsa_effect_bars_coloured_by_significance_with_stars_outside() -> None:
    payload = dbsa_payload()
    root = _root(effect_figure(payload))
    bars = _bars(root)
    tested = [u for u in payload.units if u.effect is not None]
    assert len(bars) == len(tested)  # the skipped unit has no bar
    k = bars[0]["h"] / tested[0].effect  # type: ignore[operator]
    for b, u in zip(bars, tested, strict=True):
        assert b["h"] == pytest.approx(k * u.effect, abs=0.011)
        assert b["fill"] == ("#c0392b" if u.significant else "#95a5a6")
    stars = [t for t in root.iter(SVG + "text") if t.text == "*"]
    assert len(stars) == sum(u.significant for u in payload.units)
    for star, b in zip(stars, [b for b, u in zip(bars, tested, strict=True) if u.significant], strict=True):
        assert float(star.get("x", "nan")) == pytest.approx(b["x"] + b["w"] / 2, abs=0.02)
        assert float(star.get("y", "nan")) < b["y"]  # above its bar
    assert "capital ·3" in _texts(root) and "mean energy distance" in _texts(root)


def test_dbsa_figures_never_start_chromium_and_the_responses_print_as_a_table() -> None:
    payload = dbsa_payload()
    assert _drawn_without_chromium(effect_figure(payload)).n_svg == 1
    table = responses_figure(payload)
    assert table is not None
    ex = KaleidoExporter(True)
    drawer = SvgDrawer(ex)
    block = drawer.draw(table, "t", "DBSA sample responses", "")
    assert not ex.started and drawer.n_table == 1 and drawer.n_svg == 0
    html = str(block.html)
    assert "<th>perturbed prompt: sampled response</th>" in html and "Figure shown as data" not in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    pairs = sum(len(u.examples.original) for u in payload.units if u.examples is not None)
    assert html.count("<tr>") == 1 + pairs and "<caption>" not in html  # the header, one row per example pair


# --------------------------------------------------------------------------- colours, error bars, hatching (PAS attribution score)


def test_colorscale_bars_error_bars_and_hatching_follow_the_data() -> None:
    ys, plus, minus = [1.0, -2.0, 0.5], [0.5, 1.0, 1.0], [0.25, 0.5, 1.0]
    scale = [[0.0, "#0000ff"], [0.5, "#ffffff"], [1.0, "#ff0000"]]
    fig = go.Figure(
        go.Bar(
            x=[0, 1, 2],
            y=ys,
            marker={"color": ys, "colorscale": scale, "cmin": -2, "cmax": 2, "pattern": {"shape": ["", "", "/"]}},
            error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus},
        ),
        layout={"xaxis": {"tickmode": "array", "tickvals": [0, 1, 2], "ticktext": ["What", "␣is", "?"]}},
    )
    root = _root(fig)
    bars = _bars(root)
    assert [b["fill"] for b in bars] == [colour_at(scale, (v + 2) / 4) for v in ys]
    zero = bars[0]["y"] + bars[0]["h"]  # the first bar is positive: it ends on the zero line
    k = bars[0]["h"] / ys[0]

    def ypx(v: float) -> float:
        return zero - k * v

    err = [p for p in root.iter(SVG + "path") if p.get("fill") == "none" and " V" in p.get("d", "")]
    assert len(err) == 3
    for p, v, up, down, b in zip(err, ys, plus, minus, bars, strict=True):
        nums = [float(n) for n in re.findall(r"-?[\d.]+", p.get("d", ""))]
        mid, lo, hi = nums[0], nums[1], nums[2]
        assert mid == pytest.approx(b["x"] + b["w"] / 2, abs=0.02)
        assert lo == pytest.approx(ypx(v - down), abs=0.02) and hi == pytest.approx(ypx(v + up), abs=0.02)
    hatch = [p for p in root.iter(SVG + "path") if p.get("fill") == "url(#hatch)"]
    assert len(hatch) == 1 and hatch[0].get("d", "").count("M") == 1  # one hatched bar, one path
    assert [t for t in _texts(root) if t in ("What", "␣is", "?")] == ["What", "␣is", "?"]  # tick text, not 0 1 2


# --------------------------------------------------------------------------- numeric axes, lines


def test_markers_on_a_numeric_axis_are_placed_by_value() -> None:
    xs = [-0.5, 0.0, 1.5]
    fig = go.Figure(
        go.Scatter(x=xs, y=[1.0, 2.0, 3.0], mode="markers", marker={"size": 8}), layout={"xaxis": {"title": {"text": "AS (nats)"}}}
    )
    root = _root(fig)
    marks = [p.get("d", "") for p in root.iter(SVG + "path") if p.get("d", "").startswith("M") and "a4," in p.get("d", "")]
    cx = [float(re.match(r"M(-?[\d.]+),", d).group(1)) + 4 for d in marks]  # type: ignore[union-attr]
    assert len(cx) == 3
    assert (cx[2] - cx[0]) / (cx[1] - cx[0]) == pytest.approx((xs[2] - xs[0]) / (xs[1] - xs[0]), rel=1e-3)
    assert "AS (nats)" in _texts(root)


def test_lines_break_at_missing_values_and_keep_their_dash() -> None:
    fig = go.Figure(go.Scatter(x=["a", "b", "c", "d"], y=[1.0, None, 2.0, 3.0], mode="lines", line={"dash": "dot"}))
    (line,) = [p for p in _root(fig).iter(SVG + "path") if p.get("stroke-dasharray")]
    assert line.get("d", "").count("M") == 2  # a (alone, no segment) … then c–d
