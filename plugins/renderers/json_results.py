"""The ``json`` renderer: results.json beside the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reportgen.data import FigureSpec, RunResult
from reportgen.plugin_api import Renderer
from reportgen.results import dumps


class JSONRenderer(Renderer):
    format = "json"
    extension = "json"
    description = "results.json: every generation, matrix, score, finding and the provenance (schema_version 1.0)"

    def render(self, run: RunResult, figures: list[FigureSpec], out_path: str) -> None:
        Path(out_path).write_text(dumps(run), encoding="utf-8")
