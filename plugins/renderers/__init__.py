"""Report renderers: ``html`` (interactive, one file), ``pdf`` (PDF/A-3b) and ``json`` (results.json)."""

from __future__ import annotations

from typing import Any

from reportgen import hookimpl
from reportgen_plugins.renderers.html import HtmlRenderer
from reportgen_plugins.renderers.json_results import JSONRenderer
from reportgen_plugins.renderers.pdf import PdfRenderer


@hookimpl
def reportgen_register_renderers(register: Any) -> None:
    register(HtmlRenderer())
    register(JSONRenderer())
    register(PdfRenderer())
