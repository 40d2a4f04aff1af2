"""The spec's narrative sections (Markdown, raw HTML shown as text), before or after the results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reportgen.figures import slug
from reportgen.render import markdown_html
from reportgen.report.model import Narrative

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.report.builder import ReportBuilder


def build(b: ReportBuilder) -> tuple[tuple[Narrative, ...], tuple[Narrative, ...]]:
    views = [
        (Narrative(b.id("narrative-" + slug(n.title).lower()), n.title, markdown_html(n.markdown)), n.placement) for n in b.spec.narrative
    ]
    return tuple(v for v, p in views if p == "before"), tuple(v for v, p in views if p == "after")
