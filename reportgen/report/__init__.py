"""The renderer-independent report model (public plugin API for renderers).

``build_context(render_context, drawer)`` returns a frozen
:class:`~reportgen.report.model.ReportContext`; a renderer supplies only a
:class:`FigureDrawer` (how figures are drawn) and its templates.
"""

from reportgen.report.builder import FigureDrawer, build_context
from reportgen.report.model import FigureBlock, ReportContext

__all__ = ["FigureBlock", "FigureDrawer", "ReportContext", "build_context"]
