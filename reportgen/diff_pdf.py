"""``reportgen diff -f pdf``: the run comparison as an archival PDF/A-3b (``diff.pdf``).

The same sections as ``diff.html`` (``templates/partials/diff_body.html``) in a print template
(``templates/pdf/diff.html``, the PDF report's print styles), the Δ heatmaps drawn as static
vector figures by the PDF report's drawer, and written by the PDF report's PDF/A-3b writer
(:mod:`reportgen_plugins.renderers.pdf`). Attached: ``diff.json`` (relationship Data) and both
runs' ``results.json`` (Source) as the files given, or as this reportgen writes the runs when
the comparison was not read from files; the cover prints each attachment's SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from reportgen import __version__
from reportgen.diff import RunDiff, diff_sections
from reportgen.render import make_jinja_env, read_asset
from reportgen.results import dumps


@dataclass(frozen=True)
class Attached:
    """One file attached to the PDF, as the cover lists it."""

    name: str
    data: bytes
    description: str
    relationship: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


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


def write_diff_pdf(d: RunDiff, out_path: Path, diff_text: str) -> None:
    """Write ``diff.pdf``: print HTML with static figures, PDF/A-3b, :func:`attachments` attached."""
    from reportgen_plugins.renderers.pdf import KaleidoExporter, SvgDrawer, write_print_html

    exporter = KaleidoExporter()
    drawer = SvgDrawer(exporter)
    files = attachments(d, diff_text)
    try:
        html = (
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
    finally:
        exporter.close()
    write_print_html(
        html, str(out_path), [(f.name, f.data, f.description, f.relationship) for f in files], d.new.completed_at or d.new.created_at
    )
