"""The ``json`` renderer: results.json beside the report."""

from __future__ import annotations

from pathlib import Path

from reportgen.plugin_api import RenderContext, Renderer
from reportgen.results import dumps


class JSONRenderer(Renderer):
    format = "json"
    extension = "json"
    description = "results.json: every generation, matrix, score, finding, the provenance and the manifest (schema_version 1.1)"

    def render(self, ctx: RenderContext, out_path: str) -> None:
        # Bytes, not text mode: the file is UTF-8 with "\n" line ends on every platform, the
        # exact bytes the PDF attaches and the HTML embeds (no newline translation on Windows).
        Path(out_path).write_bytes(dumps(ctx.run).encode("utf-8"))
