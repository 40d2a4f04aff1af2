"""The archival PDF report (renderer format ``pdf``): PDF/A-3b, vector figures, results attached.

It renders the same report model as the HTML report (:func:`reportgen.report.build_context`,
so the same sections, numbers, order and wording) through the same Jinja environment, with a
print template (``templates/pdf/report.html``) that reuses the HTML partials, and converts the
result with WeasyPrint into PDF/A-3b with ``results.json`` embedded as an associated file
(``AFRelationship /Data``), listed once in the catalog's ``/AF`` (:func:`pdfa_finisher`).
The last page, an appendix, prints the SHA-256 of the attached bytes and says how to extract
and check them; :mod:`reportgen_plugins.renderers.pdfa_check` checks the written file against
the PDF/A-3b rules most often broken.

A PDF carries no JavaScript, so every figure becomes a static vector drawing:

1. the figure shapes the report itself draws (heatmaps; bars, grouped or not, lines and markers
   in one row of panels, optional right axis, error bars) are drawn as SVG directly from the
   figure's numbers (:mod:`reportgen_plugins.renderers.svg`, :mod:`~reportgen_plugins.renderers.svg_xy`:
   deterministic, no browser, milliseconds per figure); Plotly tables are printed as HTML tables;
2. any other Plotly figure (several rows of subplots, 3-D, ...) is exported to SVG by kaleido 1.x
   driving the system Chromium (``BROWSER_PATH``; kaleido never downloads a browser here), one
   browser for the whole report, started only when such a figure comes; set
   ``REPORTGEN_PDF_KALEIDO=0`` to skip this step;
3. if that is not possible, the figure's data are printed as a table with a note saying why.

Heatmaps are reduced to at most :data:`PDF_MAX_HEATMAP_CELLS` cells (block means, labelled) so the
PDF stays legible and small; the exact matrices are in the attached ``results.json``. Nothing is
fetched while rendering: the URL fetcher accepts ``data:`` URLs only.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from markupsafe import Markup

from reportgen import __version__
from reportgen.manifest import MANIFEST_NAME
from reportgen.plugin_api import Attachment, RenderContext, Renderer
from reportgen.render import read_asset
from reportgen.report import FigureBlock, FigureDrawer, build_context
from reportgen.report.provenance import run_reference
from reportgen.results import dumps
from reportgen.statement import STATEMENT_NAME, statement_bytes, statement_for
from reportgen_plugins.renderers.svg import figure_svg, plain

log = logging.getLogger(__name__)

#: Largest heatmap drawn in the PDF (cells after block-mean downsampling).
PDF_MAX_HEATMAP_CELLS = 2400
#: Rows of data shown per trace when a figure falls back to a table.
FALLBACK_ROWS = 60
#: Environment switch: ``0`` never starts Chromium for figures the SVG drawer cannot draw.
KALEIDO_ENV = "REPORTGEN_PDF_KALEIDO"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


# --------------------------------------------------------------------------- static figures


def find_browser() -> str | None:
    """A local Chromium/Chrome for kaleido (``BROWSER_PATH`` first); never downloads one."""
    env = os.environ.get("BROWSER_PATH")
    if env and os.path.exists(env):
        return env
    for name in BROWSERS:
        p = shutil.which(name)
        if p:
            return p
    return None


class KaleidoExporter:
    """Exports Plotly figures to SVG with kaleido, starting one browser for many figures.

    Any failure (kaleido missing, no browser, export error) is remembered as ``reason`` and
    later figures fall back without retrying the browser start.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = os.environ.get(KALEIDO_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
        self.enabled = enabled
        self.reason: str | None = None if enabled else f"static export disabled ({KALEIDO_ENV}=0)"
        self.started = False
        self.count = 0

    def _start(self) -> bool:
        if self.started:
            return True
        if self.reason is not None:
            return False
        try:
            import kaleido
        except ImportError:
            self.reason = "kaleido is not installed (pip install kaleido)"
            return False
        browser = find_browser()
        if browser is None:
            self.reason = "no Chromium found for kaleido (install chromium or set BROWSER_PATH)"
            return False
        os.environ.setdefault("BROWSER_PATH", browser)
        try:
            kaleido.start_sync_server(silence_warnings=True)
        except Exception as exc:  # noqa: BLE001 - degrade to the table fallback
            self.reason = f"kaleido could not start Chromium: {type(exc).__name__}: {exc}"
            return False
        self.started = True
        return True

    def svg(self, fig: Any) -> str | None:
        if not self._start():
            return None
        import kaleido

        try:
            out = kaleido.calc_fig_sync(fig, opts={"format": "svg"})
        except Exception as exc:  # noqa: BLE001
            self.reason = f"kaleido export failed: {type(exc).__name__}: {exc}"
            log.warning("PDF figure export failed: %s", self.reason)
            return None
        self.count += 1
        return out.decode("utf-8") if isinstance(out, bytes) else str(out)

    def close(self) -> None:
        if self.started:
            import kaleido

            try:
                kaleido.stop_sync_server(silence_warnings=True)
            except Exception as exc:  # noqa: BLE001 - best effort
                log.debug("kaleido did not stop cleanly: %s", exc)
            self.started = False


def svg_img(svg: str, alt: str) -> Markup:
    """An SVG as an ``<img>`` with a data URI (WeasyPrint draws it as vector graphics)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return Markup('<img class="svgfig" alt="{}" src="data:image/svg+xml;base64,{}">').format(alt, Markup(data))


def trace_table(tr: Any, k: int, limit: int | None = FALLBACK_ROWS) -> Markup:
    """One trace's data as a table (a Plotly table: its header and cells), all text escaped.
    ``limit``: at most that many rows, a caption naming the trace and what was left out; None:
    every row, no caption (a Plotly table printed as itself)."""
    name = plain(getattr(tr, "name", None) or f"trace {k + 1}")
    if tr.type == "table":
        head = [plain(h) for h in (tr.header.values or [])] if tr.header else []
        cols = [list(c) for c in (tr.cells.values or [])] if tr.cells else []
    else:
        cols_named = [(a, getattr(tr, a, None)) for a in ("x", "y", "z", "text")]
        present: list[tuple[str, Any]] = [(a, v) for a, v in cols_named if v is not None and not isinstance(v, str)]
        head = [a for a, _ in present]
        cols = [list(v) for _, v in present]
    rows = list(zip(*cols, strict=False)) if cols else []
    shown = rows if limit is None else rows[:limit]
    body = Markup("").join(
        Markup("<tr>{}</tr>").format(Markup("").join(Markup("<td>{}</td>").format(_cell(v)) for v in row)) for row in shown
    )
    more = f" (first {limit} of {len(rows)} rows)" if len(shown) < len(rows) else ""
    cap = Markup("<caption>{}{} · {}</caption>").format(name, more, tr.type) if limit is not None else Markup("")
    return Markup('<table class="data compact fig-data">{}<thead><tr>{}</tr></thead><tbody>{}</tbody></table>').format(
        cap, Markup("").join(Markup("<th>{}</th>").format(h) for h in head), body
    )


def figure_table(fig: Any, reason: str) -> Markup:
    """A figure that could not be drawn: a note and its data as tables (all text escaped)."""
    parts = [Markup('<p class="note fig-fallback">Figure shown as data: {}.</p>').format(reason)]
    parts.extend(trace_table(tr, k) for k, tr in enumerate(getattr(fig, "data", ()) or ()))
    return Markup("").join(parts)


def is_table(fig: Any) -> bool:
    """A figure made of Plotly tables only: printed as HTML tables (text wraps, nothing clipped)."""
    return bool(fig.data) and all(tr.type == "table" for tr in fig.data)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_cell(u) for u in v)
    return plain(v)


# --------------------------------------------------------------------------- drawing


class SvgDrawer:
    """Figures as static vector drawings: SVG from the data, else kaleido, else a data table.
    Plotly tables are printed as HTML tables."""

    interactive = False

    def __init__(self, exporter: KaleidoExporter) -> None:
        self.exporter = exporter
        self.n_svg = 0
        self.n_kaleido = 0
        self.n_fallback = 0
        self.n_table = 0

    def heatmap_cells(self, spec_limit: int) -> tuple[int, str]:
        if spec_limit <= PDF_MAX_HEATMAP_CELLS:
            return spec_limit, f"report.max_heatmap_cells={spec_limit}"
        return PDF_MAX_HEATMAP_CELLS, f"the PDF limit of {PDF_MAX_HEATMAP_CELLS}"

    def draw(self, fig: Any, fid: str, title: str, caption: str) -> FigureBlock:
        import plotly.graph_objects as go

        if not isinstance(fig, go.Figure):
            fig = go.Figure(fig)
        alt = plain(title or (fig.layout.title.text if fig.layout.title else "") or fid)
        if is_table(fig):
            self.n_table += 1
            return FigureBlock(fid, title, caption, Markup("").join(trace_table(tr, k, None) for k, tr in enumerate(fig.data)))
        svg = figure_svg(fig, max_cells=PDF_MAX_HEATMAP_CELLS)
        if svg is not None:
            self.n_svg += 1
            return FigureBlock(fid, title, caption, svg_img(svg, alt))
        svg = self.exporter.svg(fig)
        if svg is not None:
            self.n_kaleido += 1
            return FigureBlock(fid, title, caption, svg_img(svg, alt))
        self.n_fallback += 1
        return FigureBlock(fid, title, caption, figure_table(fig, self.exporter.reason or "no static export"))


# --------------------------------------------------------------------------- rendering


def _datetime(iso: str) -> _dt.datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC if it has no zone; None if unparsable)."""
    if not iso:
        return None
    try:
        d = _dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo is not None else d.replace(tzinfo=_dt.timezone.utc)


def _w3c_date(iso: str) -> str | None:
    """An ISO 8601 timestamp as WeasyPrint's W3C date metadata (None if unparsable)."""
    d = _datetime(iso)
    return d.isoformat(timespec="seconds") if d else None


def data_only_fetcher() -> Any:
    """A WeasyPrint URL fetcher that accepts ``data:`` URLs only; an archival PDF fetches nothing."""
    try:
        from weasyprint.urls import URLFetcher  # WeasyPrint >= 68
    except ImportError:  # pragma: no cover - older WeasyPrint takes a function
        from weasyprint.urls import default_url_fetcher

        def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
            if not url.startswith("data:"):
                raise ValueError(f"reportgen PDF refuses to fetch {url!r} (reports are self-contained)")
            return default_url_fetcher(url, *args, **kwargs)

        return fetch
    return URLFetcher(allowed_protocols=("data",))


@dataclasses.dataclass(frozen=True)
class PdfStats:
    """What one render did (for benchmarks and logs)."""

    pages: int
    svg_figures: int
    kaleido_figures: int
    fallback_figures: int
    fallback_reason: str | None
    table_figures: int = 0  # Plotly tables printed as HTML tables


#: Name of the attached results in the PDF (and in the appendix that tells how to check it).
RESULTS_NAME = "results.json"


def results_bytes(ctx: RenderContext) -> bytes:
    """The exact bytes attached as ``results.json``: the UTF-8 text the json renderer writes."""
    return dumps(ctx.run).encode("utf-8")


_TH = re.compile(r"<th(\b[^>]*)>([^<]*)</th>")
_JOINT = re.compile(r"(?<=[A-Za-z])([_.])(?=[A-Za-z])")


def breakable_headers(html: str) -> str:
    """``html`` with a ``<wbr>`` after each ``_`` or ``.`` between letters in plain-text table
    headers: identifiers (``entropy_prompt_response``, ``inseq.input_x_gradient``) may then wrap
    between their words, and the print stylesheet forbids breaks inside a word."""
    return _TH.sub(lambda m: "<th" + m.group(1) + ">" + _JOINT.sub(r"\1<wbr>", m.group(2)) + "</th>", html)


def render_html_for_pdf(ctx: RenderContext, drawer: SvgDrawer, results: bytes | None = None) -> str:
    """The print HTML (static figures, no scripts) that WeasyPrint lays out.

    ``results`` are the bytes that will be attached (computed here when not given): the
    appendix prints their SHA-256 and size so a reader can check the attachment.
    """
    run = ctx.run
    if results is None:
        results = results_bytes(ctx)
    report = build_context(ctx, drawer)
    html: str = ctx.env.get_template("pdf/report.html").render(
        ctx=report,
        css=Markup(read_asset("report.css")),
        print_css=Markup(read_asset("pdf/print.css")),
        version=__version__,
        created=_w3c_date(run.created_at),
        modified=_w3c_date(run.completed_at),
        run_ref=run_reference(json.loads(results), results),
        results_name=RESULTS_NAME,
        results_sha256=hashlib.sha256(results).hexdigest(),
        results_size=len(results),
    )
    return breakable_headers(html)


def one_af_entry_per_file(document: Any, pdf: Any) -> None:
    """WeasyPrint finisher: each associated file listed once in the catalog's ``/AF``.

    WeasyPrint's PDF/A-3 step (70.0 and earlier) adds every attachment to ``/AF`` twice: once
    from the ``EmbeddedFiles`` name tree and once from its file specification. PDF/A-3 wants
    each associated file listed once. The finisher runs on WeasyPrint's in-memory objects just
    before they are written, so the file is still written once, by WeasyPrint, deterministically.
    """
    af = pdf.catalog.get("AF")
    if af is not None:
        af[:] = list(dict.fromkeys(af))  # "N 0 R" references, first occurrence kept


def no_image_interpolation(document: Any, pdf: Any) -> None:
    """WeasyPrint finisher: no image asks for ``/Interpolate true``, which PDF/A forbids.

    WeasyPrint sets it on every raster image drawn with ``image-rendering: auto``, which
    includes the bitmaps of colour emoji (Noto Color Emoji) and their alpha masks; viewers
    smooth images anyway, so the pages look the same.
    """
    for obj in pdf.objects:
        extra = getattr(obj, "extra", None)
        if isinstance(extra, dict) and extra.get("Subtype") == "/Image" and "Interpolate" in extra:
            extra["Interpolate"] = "false"


def pdfa_finisher(document: Any, pdf: Any) -> None:
    """The fixes WeasyPrint's PDF/A-3b output needs, applied in memory before it is written."""
    one_af_entry_per_file(document, pdf)
    no_image_interpolation(document, pdf)


@contextlib.contextmanager
def source_date_epoch(when: _dt.datetime | None) -> Iterator[None]:
    """``SOURCE_DATE_EPOCH`` set to ``when`` (unless the caller already set it) for the duration.

    WeasyPrint re-saves some fonts with fontTools (colour emoji fonts with their bitmaps removed,
    variable fonts instantiated), which stamps the font's ``head.modified`` with the current time
    unless ``SOURCE_DATE_EPOCH`` is set; with it the same run writes the same bytes.
    """
    if "SOURCE_DATE_EPOCH" in os.environ:
        yield
        return
    os.environ["SOURCE_DATE_EPOCH"] = str(int(when.timestamp()) if when is not None else 0)
    try:
        yield
    finally:
        os.environ.pop("SOURCE_DATE_EPOCH", None)


def write_pdfa3b(document: Any, out_path: str, attachments: list[Any], identifier: bytes, when: _dt.datetime | None = None) -> None:
    """Write a laid-out WeasyPrint document as PDF/A-3b with ``attachments`` as associated files.

    Deterministic: ``identifier`` is the document ID and ``when`` stamps re-saved fonts. Each
    attachment is listed once in the catalog's ``/AF`` and no image is interpolated
    (:func:`pdfa_finisher`).
    """
    with source_date_epoch(when):
        document.write_pdf(
            out_path,
            pdf_variant="pdf/a-3b",
            attachments=attachments,
            pdf_identifier=identifier,
            custom_metadata=True,
            finisher=pdfa_finisher,
        )


def evidence_attachments(ctx: RenderContext, results: bytes) -> list[Any]:
    """``manifest.json`` (the run's manifest, as in results.json) and ``provenance.intoto.json``
    (the in-toto statement; its subject is the attached results.json, since a PDF cannot name
    its own digest), both attached with ``AFRelationship /Supplement``; ``reportgen verify`` reads them."""
    import weasyprint

    run = ctx.run
    data = json.loads(results)
    files = (
        (
            MANIFEST_NAME,
            json.dumps(data["manifest"], indent=1, ensure_ascii=False).encode("utf-8"),
            "reportgen manifest: run id and the sha256 of results.json, the spec and the model files",
        ),
        (
            STATEMENT_NAME,
            statement_bytes(statement_for(data, {RESULTS_NAME: results})),
            "in-toto Statement v1 with a SLSA Provenance v1 predicate about the attached results.json",
        ),
    )
    return [
        weasyprint.Attachment(
            file_obj=io.BytesIO(body),
            name=name,
            description=description,
            relationship="Supplement",
            created=_datetime(run.created_at),
            modified=_datetime(run.completed_at or run.created_at),
        )
        for name, body, description in files
    ]


def render_pdf(ctx: RenderContext, out_path: str, *, kaleido: bool | None = None) -> PdfStats:
    """Write the PDF/A-3b report with ``results.json`` attached; returns what was drawn how."""
    import weasyprint

    run = ctx.run
    exporter = KaleidoExporter(kaleido)
    drawer = SvgDrawer(exporter)
    results = results_bytes(ctx)
    try:
        html = render_html_for_pdf(ctx, drawer, results)
    finally:
        exporter.close()
    attachment = weasyprint.Attachment(
        file_obj=io.BytesIO(results),  # these exact bytes: the appendix prints their SHA-256
        name=RESULTS_NAME,
        description="reportgen results.json: the whole run (spec, tokens, matrices, scores, findings, provenance)",
        relationship="Data",
        created=_datetime(run.created_at),
        modified=_datetime(run.completed_at or run.created_at),
    )
    doc = weasyprint.HTML(string=html, url_fetcher=data_only_fetcher(), base_url=".").render()
    ident = hashlib.sha256(results + __version__.encode("utf-8")).hexdigest()[:32].encode("ascii")
    attachments = [attachment, *evidence_attachments(ctx, results)]  # manifest and provenance statement
    write_pdfa3b(doc, out_path, attachments, ident, _datetime(run.completed_at or run.created_at))
    reason = exporter.reason if drawer.n_fallback else None
    return PdfStats(len(doc.pages), drawer.n_svg, drawer.n_kaleido, drawer.n_fallback, reason, drawer.n_table)


def write_print_html(html: str, out_path: str, files: list[tuple[str, bytes, str, str]], when: str) -> int:
    """Lay out print HTML (no scripts, ``data:`` URLs only) and write it as PDF/A-3b with ``files``
    — (name, bytes, description, AFRelationship) — attached; ``when`` (ISO 8601) dates them and the
    re-saved fonts, and the document ID comes from the attached bytes. Returns the page count.
    :meth:`PdfRenderer.write_print_document` writes with it."""
    import weasyprint

    stamp = _datetime(when)
    attachments = [
        weasyprint.Attachment(file_obj=io.BytesIO(body), name=name, description=what, relationship=rel, created=stamp, modified=stamp)
        for name, body, what, rel in files
    ]
    doc = weasyprint.HTML(string=html, url_fetcher=data_only_fetcher(), base_url=".").render()
    ident = hashlib.sha256(b"".join(body for _n, body, _w, _r in files) + __version__.encode("utf-8")).hexdigest()[:32]
    write_pdfa3b(doc, out_path, attachments, ident.encode("ascii"), stamp)
    return len(doc.pages)


class PdfRenderer(Renderer):
    """Archival PDF/A-3b report: static vector figures, results.json embedded."""

    format: ClassVar[str] = "pdf"
    extension: ClassVar[str] = "pdf"
    description: ClassVar[str] = "Archival PDF/A-3b report (vector figures, results.json attached, no JavaScript)."
    writes_print_documents: ClassVar[bool] = True

    def __init__(self, kaleido: bool | None = None) -> None:
        self.kaleido = kaleido
        self.last_stats: PdfStats | None = None

    def render(self, ctx: RenderContext, out_path: str) -> None:
        self.last_stats = render_pdf(ctx, out_path, kaleido=self.kaleido)

    def write_print_document(
        self, build_html: Callable[[FigureDrawer], str], out_path: str, attachments: Sequence[Attachment], when: str
    ) -> None:
        """PDF/A-3b from print HTML, its figures drawn as in the report (``reportgen diff -f pdf``)."""
        exporter = KaleidoExporter(self.kaleido)
        try:
            html = breakable_headers(build_html(SvgDrawer(exporter)))
        finally:
            exporter.close()
        write_print_html(html, out_path, [(a.name, a.data, a.description, a.relationship) for a in attachments], when)
