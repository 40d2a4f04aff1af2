"""The archival PDF report: PDF/A-3b markers, attached results.json, text, escaping, vector figures.

One PDF of the hand-built run (``report_fixtures.make_run``) is rendered per module and read back
with pypdf; it passes the PDF/A-3b self-check (``pdfa_check``), is byte-identical when rendered
again, and its appendix prints the SHA-256 of the attachment; the SVG drawer is checked against
closed-form oracles; pages are rasterised with poppler's ``pdftoppm`` where installed;
kaleido/Chromium export is checked where available.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots
from report_fixtures import (
    DETECTORS,
    INJECT_IMG,
    INJECT_SCRIPT,
    html_of,
    make_figures,
    make_run,
    render_context,
)

from reportgen.figures import esc
from reportgen.figures import label as axis_label
from reportgen.report import build_context
from reportgen.results import dumps, run_to_json
from reportgen_plugins.renderers.pdf import (
    KaleidoExporter,
    PdfRenderer,
    SvgDrawer,
    figure_table,
    find_browser,
)
from reportgen_plugins.renderers.pdfa_check import pdfa_problems
from reportgen_plugins.renderers.svg import (
    colour_at,
    figure_svg,
    heatmap_svg,
    nice_ticks,
    plain,
    text_width,
)

pypdf = pytest.importorskip("pypdf")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def run() -> Any:
    return make_run(models=1)  # one model keeps the PDF short (the second adds pages, not features)


@pytest.fixture(scope="module")
def pdf_path(run: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pdf") / "report.pdf"
    r = PdfRenderer(kaleido=False)
    r.render(render_context(run, make_figures()), str(out))
    assert r.last_stats is not None and r.last_stats.fallback_figures == 0
    return out


@pytest.fixture(scope="module")
def reader(pdf_path: Path) -> Any:
    return pypdf.PdfReader(str(pdf_path))


@pytest.fixture(scope="module")
def text(reader: Any) -> str:
    """All page text with runs of whitespace collapsed (line breaks fall anywhere)."""
    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in reader.pages))


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


# --------------------------------------------------------------------------- the PDF


def test_pdfa3b_markers_and_metadata(reader: Any, run: Any) -> None:
    meta = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode("utf-8")
    assert re.search(r'pdfaid:part="3"|<pdfaid:part>3</pdfaid:part>', meta)
    assert re.search(r'pdfaid:conformance="B"|<pdfaid:conformance>B</pdfaid:conformance>', meta)
    assert reader.trailer["/Root"].get("/OutputIntents") is not None  # PDF/A needs an output intent
    info = reader.metadata
    assert info["/Title"] == run.spec.title
    assert info["/CreationDate"].startswith("D:20250102030405")  # from the run, not the clock
    assert info["/ModDate"].startswith("D:20250102030515")


def test_results_json_attached_and_equal(reader: Any, run: Any) -> None:
    assert sorted(reader.attachments) == ["manifest.json", "provenance.intoto.json", "results.json"]  # + evidence (issue 10)
    (data,) = reader.attachments["results.json"]
    assert json.loads(data) == json.loads(dumps(run))
    names = reader.trailer["/Root"]["/Names"]["/EmbeddedFiles"]["/Names"]
    specs = {str(names[i]): names[i + 1] for i in range(0, len(names), 2)}
    spec = specs["results.json"].get_object()
    assert spec["/AFRelationship"] == "/Data"  # PDF/A-3 associated file
    assert spec["/EF"]["/F"].get_object()["/Subtype"] == "/application/json"
    af = reader.trailer["/Root"]["/AF"]
    assert sorted(a.idnum for a in af) == sorted(s.idnum for s in specs.values())  # each listed exactly once


def test_pdfa3b_self_check(pdf_path: Path) -> None:
    assert pdfa_problems(pdf_path) == []


def test_pdf_bytes_are_deterministic(pdf_path: Path, run: Any, tmp_path: Path) -> None:
    again = tmp_path / "again.pdf"
    PdfRenderer(kaleido=False).render(render_context(run, make_figures()), str(again))
    assert again.read_bytes() == pdf_path.read_bytes()


@pytest.fixture(scope="module")
def appendix(reader: Any) -> str:
    last = re.sub(r"\s+", " ", reader.pages[-1].extract_text())
    assert "Appendix: how to verify this document" in last
    return last


def test_appendix_prints_the_attachments_sha256(appendix: str, reader: Any, run: Any) -> None:
    (data,) = reader.attachments["results.json"]
    digest = hashlib.sha256(data).hexdigest()
    assert digest == hashlib.sha256(dumps(run).encode("utf-8")).hexdigest()  # the bytes results.json holds
    m = re.search(r"SHA-256 of the attached results\.json \((\d+) bytes\).*?\b([0-9a-f]{64})\b", appendix)
    assert m is not None, appendix
    assert (int(m.group(1)), m.group(2)) == (len(data), digest)


def test_appendix_extraction_commands_give_the_printed_digest(appendix: str, pdf_path: Path, tmp_path: Path) -> None:
    """The commands the appendix prints, run as printed (report.pdf is this file)."""
    printed = re.search(r"\b([0-9a-f]{64})\b", appendix).group(1)  # type: ignore[union-attr]
    shutil.copy(pdf_path, tmp_path / "report.pdf")
    snippet = re.search(r'python -c "(import pypdf;.*?\[0\]\))"', appendix)
    assert snippet is not None, appendix
    subprocess.run([sys.executable, "-c", snippet.group(1)], cwd=tmp_path, check=True, timeout=120)
    assert hashlib.sha256((tmp_path / "results.json").read_bytes()).hexdigest() == printed
    assert "pdfdetach -savefile results.json report.pdf" in appendix
    if shutil.which("pdfdetach"):
        (tmp_path / "results.json").unlink()
        subprocess.run(["pdfdetach", "-savefile", "results.json", "report.pdf"], cwd=tmp_path, check=True, timeout=60)
        assert hashlib.sha256((tmp_path / "results.json").read_bytes()).hexdigest() == printed


def test_appendix_names_the_verify_command(appendix: str) -> None:
    from reportgen import __version__
    from reportgen.cli import main

    assert "verify" in getattr(main, "commands", {})
    assert f"reportgen verify report.pdf (reportgen {__version__} or later) checks the attachments" in appendix
    assert "is planned" not in appendix and "manifest.json" in appendix and "provenance.intoto.json" in appendix


def test_contents_lists_the_appendix(reader: Any) -> None:
    first = re.sub(r"\s+", " ", reader.pages[0].extract_text())
    assert "Appendix: how to verify this document" in first


def test_text_has_title_prompt_findings_provenance(text: str, run: Any, reader: Any) -> None:
    assert len(reader.pages) > 1
    assert run.spec.title in text
    assert "What is the capital of France?" in text
    for f in run.findings:
        assert _squash(f.message) in _squash(text)
    sha = run.provenance["spec_sha256"]
    assert sha in _squash(text)
    for section in ("Summary", "Anomalies", "Scope", "Results", "Conclusions", "Provenance", "Contents"):
        assert section in text


def test_injected_markup_is_literal_text(text: str) -> None:
    squashed = _squash(text)
    assert _squash(INJECT_SCRIPT) in squashed
    assert _squash(INJECT_IMG) in squashed
    assert "<script>alert('md')</script>" in text  # raw HTML in narrative Markdown shows as text


def test_no_javascript_or_external_links(pdf_path: Path, reader: Any) -> None:
    raw = pdf_path.read_bytes()
    assert b"/JavaScript" not in raw and b"/JS " not in raw
    for page in reader.pages:
        for annot in page.get("/Annots") or []:
            a = annot.get_object().get("/A")
            if a is not None:
                assert a.get_object().get("/S") != "/URI", "reports link nowhere outside themselves"


def test_page_numbers_and_running_header(reader: Any, run: Any) -> None:
    n = len(reader.pages)
    second = re.sub(r"\s+", " ", reader.pages[1].extract_text())
    assert f"Page 2 of {n}" in second
    assert run.spec.title in second  # running header
    assert run_line(run) in second  # running footer


def run_line(run: Any) -> str:
    """The run reference the header and every page footer print: run id, digest of results.json."""
    sha = hashlib.sha256(dumps(run).encode("utf-8")).hexdigest()
    return f"Run {run_to_json(run)['manifest']['run_id']} · results.json sha256 {sha[:16]}…"


def test_run_id_on_the_cover_and_every_page_and_whole_in_provenance(reader: Any, run: Any, text: str) -> None:
    line = run_line(run)
    for k, page in enumerate(reader.pages, start=1):
        assert line in re.sub(r"\s+", " ", page.extract_text()), f"page {k} does not name its run"
    sha = hashlib.sha256(dumps(run).encode("utf-8")).hexdigest()
    assert re.search(f"results.json sha256 ?{sha}", text) and re.search(f"run_id ?{run_to_json(run)['manifest']['run_id']}", text)


def test_every_method_view_printed(text: str, run: Any) -> None:
    # the HTML hides all but one method per panel; on paper each is printed in turn
    for label in ("saliency", "integrated_gradients", "attention", "probabilistic"):
        assert text.count(f"Method: {label}") == len(run.generations)
    assert "Step scores" in text and "Per-token scores of probabilistic" in text


def test_registered_through_entry_point() -> None:
    from importlib.metadata import entry_points

    import reportgen_plugins.renderers as mod
    from reportgen.plugins import Registry, get_plugin_manager

    (ep,) = [e for e in entry_points(group="reportgen") if e.name == "renderers"]
    assert ep.value == "reportgen_plugins.renderers"
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(mod, name="renderers")
    reg = Registry(pm)
    assert isinstance(reg.renderers["pdf"], PdfRenderer)
    assert reg.renderers["pdf"].extension == "pdf"


def test_pages_rasterise(pdf_path: Path, tmp_path: Path) -> None:
    exe = shutil.which("pdftoppm")
    if exe is None:
        pytest.skip("poppler's pdftoppm is not installed")
    subprocess.run([exe, "-png", "-r", "30", "-f", "1", "-l", "3", str(pdf_path), str(tmp_path / "p")], check=True, timeout=60)
    pngs = sorted(tmp_path.glob("p-*.png"))
    assert len(pngs) == 3
    from PIL import Image

    for p in pngs:
        im = np.asarray(Image.open(p).convert("L"))
        assert (im < 200).mean() > 0.01, f"{p.name} looks blank"


# --------------------------------------------------------------------------- figures


def test_colour_at_is_linear_interpolation() -> None:
    scale = [[0.0, "#000000"], [0.5, "#ff0000"], [1.0, "#ffffff"]]
    assert colour_at(scale, 0.0) == "#000000"
    assert colour_at(scale, 0.25) == "#800000"
    assert colour_at(scale, 0.5) == "#ff0000"
    assert colour_at(scale, 0.75) == "#ff8080"
    assert colour_at(scale, 2.0) == "#ffffff"


def test_nice_ticks_cover_range() -> None:
    assert nice_ticks(0, 1, 5) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(-3, 3, 4) == pytest.approx([-2, 0, 2]) or nice_ticks(-3, 3, 4) == pytest.approx([-3, -1.5, 0, 1.5, 3])


_RUN = re.compile(r"M([-\d.]+),([-\d.]+)h([\d.]+)v([\d.]+)h-[\d.]+z")


def heatmap_cells(svg: str, n: int, t: int) -> dict[tuple[int, int], str]:
    """Each (row, column) cell's fill, read back from the drawing's ``path.cells`` runs; asserts
    every cell is painted exactly once."""
    runs = [
        (float(a), float(b), float(w), float(h), p.get("fill", ""))
        for p in ET.fromstring(svg).iter(SVG + "path")
        if p.get("class") == "cells"
        for a, b, w, h in _RUN.findall(p.get("d", ""))
    ]
    x0, y0 = min(r[0] for r in runs), min(r[1] for r in runs)
    cw, ch = (max(r[0] + r[2] for r in runs) - x0) / t, (max(r[1] + r[3] for r in runs) - y0) / n
    cells: dict[tuple[int, int], str] = {}
    for x, y, w, h, fill in runs:
        assert h == pytest.approx(ch, abs=0.011)
        i, j = round((y - y0) / ch), round((x - x0) / cw)
        for jj in range(j, j + round(w / cw)):
            assert (i, jj) not in cells, "a cell painted twice"
            cells[i, jj] = fill
    assert sorted(cells) == [(i, j) for i in range(n) for j in range(t)]
    return cells


def test_heatmap_cells_and_colours_match_oracle() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 3))
    z[1, 2] = np.nan
    z[3] = 0.5  # a row of one colour: one run
    scale = [[0.0, "#0000ff"], [1.0, "#ff0000"]]
    svg = heatmap_svg(z, [f"r{i}" for i in range(4)], [esc("<b>x</b>"), "y", "z"], scale=scale, zmin=-3, zmax=3, title="t")
    root = ET.fromstring(svg)
    cells = heatmap_cells(svg, 4, 3)
    for (i, j), fill in cells.items():
        want = "url(#nan)" if not np.isfinite(z[i, j]) else colour_at(scale, (z[i, j] + 3) / 6)
        assert fill == want
    # one path per colour (the NaN cells' hatching one more), one pattern, the uniform row one run
    paths = [p for p in root.iter(SVG + "path") if p.get("class") == "cells"]
    assert len(paths) == len(set(cells.values())) and len({p.get("fill") for p in paths}) == len(paths)
    assert len(list(root.iter(SVG + "pattern"))) == 1
    assert sum(d.count("M") for p in paths if (d := p.get("d", "")) and p.get("fill") == cells[3, 0]) == 1
    labels = [t.text for t in root.iter(SVG + "text")]
    assert "<b>x</b>" in labels  # Plotly-escaped token label → literal text, XML-escaped in the file
    assert "<b>x</b>" not in svg


def test_heatmap_without_undefined_cells_defines_no_pattern() -> None:
    svg = heatmap_svg(np.eye(3), ["a", "b", "c"], ["x", "y", "z"], scale=[[0, "#ffffff"], [1, "#000000"]])
    assert "<pattern" not in svg and set(heatmap_cells(svg, 3, 3).values()) == {"#ffffff", "#000000"}


def test_plotly_heatmap_uses_reversed_axis_like_plotly() -> None:
    z = [[1.0, 2.0], [3.0, 4.0]]
    up = go.Figure(go.Heatmap(z=z, x=["a", "b"], y=["r0", "r1"], colorscale=[[0, "#000000"], [1, "#ffffff"]]))
    down = go.Figure(up)
    down.update_layout(yaxis={"autorange": "reversed"})

    def first_row(svg: str | None) -> list[str | None]:
        assert svg is not None
        return [t.text for t in ET.fromstring(svg).iter(SVG + "text")][:2]

    assert first_row(figure_svg(up)) != first_row(figure_svg(down))


def test_bar_heights_proportional() -> None:
    fig = go.Figure(go.Bar(x=["a", "b", "c"], y=[1.0, 2.0, 4.0]))
    fig.update_layout(yaxis={"range": [0, 4]})
    svg = figure_svg(fig)
    assert svg is not None
    bars = [float(r.get("height", "nan")) for r in ET.fromstring(svg).iter(SVG + "rect")]
    assert bars == pytest.approx([bars[2] / 4, bars[2] / 2, bars[2]], rel=1e-3)


def test_step_scores_and_grouped_bars_drawn() -> None:
    from reportgen.figures import scores_figure, step_scores_figure

    f1 = step_scores_figure(["a", "b"], {"probability": [0.5, 0.9], "entropy": [1.0, 2.0]})
    f2 = scores_figure(["x", "y", "z"], {"s1": [1.0, None, -1.0], "s2": [0.5, 0.2, 0.1]}, [0, 1, 2])
    for f in (f1, f2):
        svg = figure_svg(f)
        assert svg is not None
        ET.fromstring(svg)


def test_unsupported_figures_return_none_and_fall_back_to_tables() -> None:
    sub = make_subplots(rows=2, cols=1)  # one row of panels is drawn (tests/test_svg_charts.py), two are not
    sub.add_trace(go.Bar(x=["a"], y=[1]), row=1, col=1)
    sub.add_trace(go.Bar(x=["b"], y=[2]), row=2, col=1)
    table = go.Figure(go.Table(header={"values": ["token", "p"]}, cells={"values": [[INJECT_SCRIPT, "b"], [0.5, 0.25]]}))
    assert figure_svg(sub) is None and figure_svg(table) is None
    html = str(figure_table(table, "no browser"))
    assert "Figure shown as data: no browser." in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "<td>0.25</td>" in html
    drawer = SvgDrawer(KaleidoExporter(False))
    fb = drawer.draw(sub, "sub", "Two panels", "")
    assert "Figure shown as data" in str(fb.html) and drawer.n_fallback == 1


def test_pdf_heatmaps_are_limited() -> None:
    big = np.arange(200 * 100, dtype=float).reshape(200, 100)
    fig = go.Figure(go.Heatmap(z=big))
    assert figure_svg(fig, max_cells=2400) is None
    drawer = SvgDrawer(KaleidoExporter(False))
    assert drawer.heatmap_cells(20000) == (2400, "the PDF limit of 2400")
    assert drawer.heatmap_cells(1000) == (1000, "report.max_heatmap_cells=1000")


def test_large_matrix_is_block_averaged_in_the_pdf() -> None:
    import base64
    import dataclasses

    from reportgen.data import AttributionResult

    run = make_run(models=1)
    g = run.generations[0]
    n, t = 150, 60
    g2 = dataclasses.replace(
        g,
        input_ids=tuple(range(n)),
        input_tokens=tuple(f"w{i}" for i in range(n)),
        input_special=(False,) * n,
        output_ids=tuple(range(t)),
        output_tokens=tuple(f"o{j}" for j in range(t)),
        step_scores={},
    )
    m = np.random.default_rng(3).uniform(size=(n, t))
    r = AttributionResult(
        method="saliency",
        model_id=g.model_id,
        prompt_id=g.prompt_id,
        input_tokens=list(g2.input_tokens),
        output_tokens=list(g2.output_tokens),
        options={},
        matrix=m,
    )
    ctx = build_context(
        render_context(dataclasses.replace(run, generations=[g2], results=[r]), [], DETECTORS), SvgDrawer(KaleidoExporter(False))
    )
    (mv,) = [mv for s in ctx.sections for p in s.panels for mv in p.methods]
    assert mv.heatmap is not None and mv.hover is None
    assert f"{n}×{t} = {n * t} cells exceed the PDF limit of 2400" in mv.heatmap_note
    found = re.search(r'base64,([^"]+)"', str(mv.heatmap.html))
    assert found is not None
    src = found.group(1)
    svg = base64.b64decode(src).decode("utf-8")
    runs = [_RUN.findall(p.get("d", "")) for p in ET.fromstring(svg).iter(SVG + "path") if p.get("class") == "cells"]
    rows = len({y for rs in runs for _x, y, _w, _h in rs})
    edges = {round(float(x) + k * float(w), 1) for rs in runs for x, _y, w, _h in rs for k in (0, 1)}
    assert 0 < rows * (len(edges) - 1) <= 2400
    assert len(heatmap_cells(svg, rows, len(edges) - 1)) == rows * (len(edges) - 1)


def test_print_html_is_deterministic_and_script_free(run: Any) -> None:
    from reportgen_plugins.renderers.pdf import render_html_for_pdf

    a = render_html_for_pdf(render_context(run, make_figures()), SvgDrawer(KaleidoExporter(False)))
    b = render_html_for_pdf(render_context(run, make_figures()), SvgDrawer(KaleidoExporter(False)))
    assert a == b
    assert "<script" not in a.lower()  # injected text appears only escaped; no scripts at all


def test_plain_strips_plotly_markup_only() -> None:
    assert plain("a<br>b <b>c</b> &lt;script&gt;") == "a b c <script>"


@pytest.mark.browser
def test_kaleido_exports_subplots_to_svg() -> None:
    pytest.importorskip("kaleido")
    if find_browser() is None:
        pytest.skip("no Chromium for kaleido")
    sub = make_subplots(rows=1, cols=2, subplot_titles=["left", "right"])
    sub.add_trace(go.Bar(x=["a"], y=[1]), row=1, col=1)
    sub.add_trace(go.Scatter(x=["b"], y=[2]), row=1, col=2)
    ex = KaleidoExporter(True)
    try:
        svg = ex.svg(sub)
    finally:
        ex.close()
    assert svg is not None, ex.reason
    assert svg.lstrip().startswith("<svg") and "right" in svg


def test_spaces_in_tokens_are_visible_in_score_tables_and_findings(text: str, run: Any) -> None:
    """A token's leading space would vanish at the start of a table cell: it prints as ␣, and the
    page says what the mark means (the same as the HTML report)."""
    assert "In the Token column ␣ marks a space" in text
    g = next(g for g in run.generations if g.prompt_id == "capital")
    for tok in (" is", " the", " capital", " France"):
        assert re.search(rf"\d+ {re.escape(tok.replace(' ', '␣'))} ", text), tok  # "# Token score" rows read back
    assert "smol · capital · ␣France" in text  # the finding's token
    prose = re.sub(r"\d+: ␣\w+", "", text)  # less the figures' axis labels, which show the space too
    assert " Paris" in g.output_tokens and "␣Paris" not in prose  # running text (the response) keeps its spaces


# --------------------------------------------------------------------------- nothing cut, nothing overlapping

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


@pytest.mark.parametrize("bold", [False, True])
def test_text_width_is_never_below_the_fonts_advance(bold: bool) -> None:
    """The layout's width estimate (``svg.text_width``) against DejaVu Sans' real advances."""
    font_file = DEJAVU / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    if not font_file.exists():
        pytest.skip("DejaVu Sans is not installed")
    image_font = pytest.importorskip("PIL.ImageFont")
    font = image_font.truetype(str(font_file), 100)
    samples = [
        "0: <|im_start|>",
        "27: capital",
        "‖J_tᵀ w_y‖ (semantic scope)",
        "kl_posterior_prior",
        "WWW MMM mmm www",
        "ATTRIBUTION_SCORE",
        "-0.0049631",
        "saliency (l2 over hidden dims)",
        "Attribution score (AS) per prompt token",
        "#&<>=+~^",
        "4: ␣is ⏎ ⇥ ∅",
    ]
    for s in samples:
        assert text_width(s, 100, bold) >= font.getlength(s), s


def _boxes(svg: str) -> tuple[float, float, list[tuple[str, float, float, float, float]]]:
    """The drawing's size and each text's box (estimated extent, rotation applied)."""
    root = ET.fromstring(svg)
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    out = []
    for t in root.iter(SVG + "text"):
        s, size = t.text or "", float(t.get("font-size", "10"))
        px, py = float(t.get("x", "0")), float(t.get("y", "0"))
        w = text_width(s, size, t.get("font-weight") == "bold")
        x0 = {"start": px, "middle": px - w / 2, "end": px - w}[t.get("text-anchor", "start")]
        corners = [(x0, py - 0.8 * size), (x0 + w, py - 0.8 * size), (x0, py + 0.25 * size), (x0 + w, py + 0.25 * size)]
        rot = re.match(r"rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)", t.get("transform", ""))
        if rot:
            a, cx, cy = (float(v) for v in rot.groups())
            c, s_ = np.cos(np.radians(a)), np.sin(np.radians(a))
            corners = [(cx + (u - cx) * c - (v - cy) * s_, cy + (u - cx) * s_ + (v - cy) * c) for u, v in corners]
        xs, ys = [u for u, _ in corners], [v for _, v in corners]
        out.append((s, min(xs), min(ys), max(xs), max(ys)))
    return width, height, out


def _inside(svg: str) -> list[tuple[str, float, float, float, float]]:
    width, height, boxes = _boxes(svg)
    for s, x0, y0, x1, y1 in boxes:
        assert x0 >= -0.5 and y0 >= -0.5 and x1 <= width + 0.5 and y1 <= height + 0.5, (
            f"{s!r} is cut: {(x0, y0, x1, y1)} in {width}×{height}"
        )
    return boxes


@pytest.mark.parametrize("cols", [3, 40])
def test_heatmap_titles_and_long_labels_are_whole_and_inside(cols: int) -> None:
    rows = ["0: <|im_start|>", "1: ▁internationalization▁", "2: 東京都の天気", "3: x"]
    col_labels = [f"{j}: {'response token ' * (1 + j % 3)}".strip() for j in range(cols)]
    title = "jacobian.semantic: attribution A (input × output) of a prompt whose title runs on and on past the edge"
    bar_title = "‖J_tᵀ w_y‖ (semantic scope, summed over every generated token)"
    z = np.arange(4 * cols, dtype=float).reshape(4, cols)
    svg = heatmap_svg(z, rows, col_labels, scale=[[0.0, "#ffffff"], [1.0, "#000000"]], title=title, value_label=bar_title)
    boxes = _inside(svg)
    texts = [b[0] for b in boxes]
    assert " ".join(t for t in texts if t in title) == title  # wrapped, never shortened
    assert " ".join(t for t in texts if t in bar_title) == bar_title
    for r in rows:
        assert r in texts


def test_legend_wraps_into_rows_inside_the_drawing() -> None:
    names = ["attribution_score", "entropy_prompt", "entropy_prompt_response", "kl_posterior_prior", "kl_prior_posterior"]
    names += ["log_posterior_original", "log_prior_original"]
    fig = go.Figure([go.Bar(x=["24: What", "25: is"], y=[k, -k], name=n) for k, n in enumerate(names)])
    fig.update_layout(title="Scores")
    svg = figure_svg(fig)
    assert svg is not None
    boxes = _inside(svg)
    legend = [b for b in boxes if b[0] in names]
    assert sorted(b[0] for b in legend) == sorted(names)  # every entry, whole
    for k, a in enumerate(legend):
        for b in legend[k + 1 :]:
            assert a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2], f"{a[0]} overlaps {b[0]}"
    assert len({round(b[2]) for b in legend}) == 2  # two rows


# --------------------------------------------------------------------------- readability: token labels, informational notes


def test_axis_labels_show_a_tokens_spaces_like_the_tables() -> None:
    from reportgen.figures import downsample

    assert axis_label(4, " is") == "4: ␣is" and axis_label(4, "What") == "4: What" and axis_label(0, " <a b>") == "0: ␣&lt;a␣b&gt;"
    assert axis_label(2, "\n") == "2: ⏎" and axis_label(3, "") == "3: ∅"
    assert downsample(np.ones((4, 1)), ["a", " b", "c", "d"], ["x"], 2).row_labels == ["0–1: a…", "2–3: c…"]
    assert downsample(np.ones((4, 1)), [" a", "b", " c", "d"], ["x"], 2).row_labels == ["0–1: ␣a…", "2–3: ␣c…"]
    svg = heatmap_svg(
        np.ones((2, 2)),
        [axis_label(0, " is"), axis_label(1, "What")],
        [axis_label(0, " Paris"), axis_label(1, ".")],
        scale=[[0, "#fff"], [1, "#000"]],
    )
    texts = [t.text for t in ET.fromstring(svg).iter(SVG + "text")]
    assert "0: ␣is" in texts and "1: What" in texts and "0: ␣Paris" in texts


def test_pdf_figure_labels_keep_the_leading_space(text: str, run: Any) -> None:
    g = next(g for g in run.generations if g.prompt_id == "capital")
    i = g.input_tokens.index(" France")
    assert f"{i}: ␣France" in text  # a heatmap's row label, read back from the page
    assert not re.search(rf"\b{i}: France\b", text)


def test_info_findings_are_one_compact_table_after_the_others(text: str, run: Any) -> None:
    info = [f for f in run.findings if f.severity == "info"]
    others = [f for f in run.findings if f.severity != "info"]
    assert info and others
    anomalies = text[text.index("Anomalies 3 finding(s)") :]
    assert f"Informational notes ({len(info)})" in anomalies
    table = anomalies[anomalies.index("Informational notes") :]
    for f in info:  # one row: model · prompt · position, token (␣ for a space), detector, reason
        row = f"{f.model_id} · {f.prompt_id} · {f.positions[0]} {f.token.replace(' ', '␣')} {f.detector} {f.message}"
        assert row in table
    before = anomalies[: anomalies.index("Informational notes")]
    for f in others:  # the substantive findings come first, expanded, with what to try
        assert _squash(f.message) in _squash(before) and _squash(f.suggestion) in _squash(before)
    assert not any(_squash(f.message) in _squash(before) for f in info)


def test_html_report_keeps_each_info_finding_collapsed(run: Any) -> None:
    html = html_of(run, make_figures())
    assert "info-table" not in html and "Informational notes" not in html
    n_info = sum(f.severity == "info" for f in run.findings)
    assert html.count('<details class="finding-body">') == n_info  # collapsed, one each
    assert html.count('<details class="finding-body" open>') == len(run.findings) - n_info
