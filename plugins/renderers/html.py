"""The self-contained interactive HTML report (renderer format ``html``).

The report model comes from the host (:func:`reportgen.report.build_context`); this renderer
only draws figures as Plotly ``<div>`` elements (:class:`reportgen.render.PlotlyDrawer`) and prints the model
with ``templates/report.html``. The output is one file: CSS, the small ``report.js`` and
plotly.js (once, gzip-compressed: :func:`reportgen.render.plotly_js_packed`; the partial
cartesian bundle when the figures need nothing else) are inlined, nothing
is fetched from any host, and the same run renders byte-identical HTML (no clock reads, stable
ids, fixed order). Figures are created when they scroll into view; prompt sections after the
first :data:`OPEN_SECTIONS` start collapsed, and an index table (``html_index``) leads to each.

The page carries its evidence in one ``<script type="application/json" id="reportgen-evidence">``
block: the run's manifest and the exact bytes of its results.json (gzip+base64 when large, see
:func:`reportgen.manifest.evidence`). ``reportgen verify report.html`` checks the manifest
against those results and the page against a fresh rendering of them.
"""

from __future__ import annotations

from typing import ClassVar

from markupsafe import Markup

from reportgen import __version__
from reportgen.manifest import evidence, evidence_json
from reportgen.plugin_api import RenderContext, Renderer
from reportgen.render import PlotlyDrawer, plotly_bundle, plotly_js_packed, plotly_templates_json, read_asset
from reportgen.report import build_context
from reportgen.report.provenance import run_reference
from reportgen.results import dumps_data, run_to_json
from reportgen_plugins.renderers.html_index import SEVERITIES, index_rows

#: Prompt sections shown open when the page loads; the others start collapsed.
OPEN_SECTIONS = 3


def render_html(ctx: RenderContext) -> str:
    """The whole report as one HTML string (deterministic for a given run)."""
    drawer = PlotlyDrawer()
    report = build_context(ctx, drawer)
    data = run_to_json(ctx.run)
    results = dumps_data(data).encode("utf-8")
    return ctx.env.get_template("report.html").render(
        evidence=Markup(evidence_json(evidence(results, data["manifest"]))),
        run_ref=run_reference(data, results),
        ctx=report,
        index=index_rows(report, ctx.run),
        severities=SEVERITIES,
        open_sections=OPEN_SECTIONS,
        css=Markup(read_asset("report.css")),
        js=Markup(read_asset("report.js")),
        plotly=plotly_js_packed(plotly_bundle(drawer.trace_types)),
        plotly_templates=plotly_templates_json(drawer.templates),
        version=__version__,
    )


class HtmlRenderer(Renderer):
    """Self-contained interactive HTML report (one file, opens offline)."""

    format: ClassVar[str] = "html"
    extension: ClassVar[str] = "html"
    description: ClassVar[str] = "Self-contained interactive HTML report (Plotly inlined once, compressed; no network)."

    def render(self, ctx: RenderContext, out_path: str) -> None:
        with open(out_path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(render_html(ctx))
