"""``reportgen diff -f pdf``: the run comparison as an archival PDF/A-3b (``diff.pdf``).

The same sections as ``diff.html`` (``templates/partials/diff_body.html``) in a print template
(``templates/pdf/diff.html``, the PDF report's print styles), written by the registry's ``pdf``
renderer through its optional capability ``Renderer.write_print_document`` (the built-in one
draws the Δ heatmaps as static vector figures and writes PDF/A-3b). Without such a renderer
(e.g. ``REPORTGEN_BLOCK_PLUGINS=renderers``) ``-f pdf`` is a usage error (exit 2). Attached:
``diff.json`` (relationship Data) and both runs' ``results.json`` (Source) as the files given,
or as this reportgen writes the runs when the comparison was not read from files; the cover
prints each attachment's SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from reportgen import __version__
from reportgen.diff import RunDiff, diff_sections
from reportgen.errors import SpecError
from reportgen.plugin_api import Attachment, Renderer
from reportgen.plugins import Registry, get_registry
from reportgen.render import make_jinja_env, read_asset
from reportgen.report import FigureDrawer
from reportgen.results import dumps


@dataclass(frozen=True)
class Attached(Attachment):
    """One file attached to the PDF, as the cover lists it."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def pdf_writer(registry: Registry) -> Renderer:
    """The registry's ``pdf`` renderer, if it writes print documents; otherwise a usage error."""
    renderer = registry.renderers.get("pdf")
    if renderer is None or not getattr(renderer, "writes_print_documents", False):
        why = "the 'pdf' renderer cannot write print documents"
        if renderer is None:
            why = "no 'pdf' renderer is installed, or its plugin is blocked"
        raise SpecError(f"-f pdf: no installed renderer can write diff.pdf ({why}); use -f html or -f json")
    return renderer


def _results_bytes(d: RunDiff, side: str) -> bytes:
    name, run = (d.old_name, d.old) if side == "old" else (d.new_name, d.new)
    path = Path(name)
    return path.read_bytes() if path.is_file() else dumps(run).encode("utf-8")


def attachments(d: RunDiff, diff_text: str) -> list[Attached]:
    """diff.json, then OLD's and NEW's results.json."""
    return [
        Attached(
            "diff.json", diff_text.encode("utf-8"), "reportgen diff: the pairs' differential matrices and the findings' changes", "Data"
        ),
        Attached("old-results.json", _results_bytes(d, "old"), f"OLD run's results.json ({d.old_name})", "Source"),
        Attached("new-results.json", _results_bytes(d, "new"), f"NEW run's results.json ({d.new_name})", "Source"),
    ]


def write_diff_pdf(d: RunDiff, out_path: Path, diff_text: str, writer: Renderer | None = None) -> None:
    """Write ``diff.pdf`` with ``writer`` (default: :func:`pdf_writer` of the installed plugins),
    :func:`attachments` attached."""
    renderer = writer or pdf_writer(get_registry())
    files = attachments(d, diff_text)

    def build_html(drawer: FigureDrawer) -> str:
        return (
            make_jinja_env()
            .get_template("pdf/diff.html")
            .render(
                d=d,
                sections=diff_sections(d, drawer),
                files=files,
                css=Markup(read_asset("report.css")),
                print_css=Markup(read_asset("pdf/print.css")),
                version=__version__,
            )
        )

    renderer.write_print_document(build_html, str(out_path), files, d.new.completed_at or d.new.created_at)
