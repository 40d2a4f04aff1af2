"""What the PDF's figures cost WeasyPrint: every figure of a report drawn by the PDF drawer, laid
out and painted alone (one image per figure), CPU seconds (median of 3), with the SVG element
and text-character counts that paint time grows with.

Run: .venv/bin/python benchmarks/bench_pdf_paint.py path/to/results.json
"""

from __future__ import annotations

import base64
import collections
import io
import re
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import weasyprint

from reportgen.plugins import get_registry
from reportgen.report import FigureBlock, build_context
from reportgen.results import load_run
from reportgen.runner import render_context
from reportgen_plugins.renderers.pdf import KaleidoExporter, SvgDrawer


class Collecting(SvgDrawer):
    """The PDF drawer (kaleido off), keeping each SVG it draws."""

    def __init__(self) -> None:
        super().__init__(KaleidoExporter(False))
        self.svgs: list[str] = []

    def draw(self, fig: Any, fid: str, title: str, caption: str) -> FigureBlock:
        block = super().draw(fig, fid, title, caption)
        found = re.search(r'base64,([^"]+)"', str(block.html))
        if found:
            self.svgs.append(base64.b64decode(found.group(1)).decode("utf-8"))
        return block


def main() -> None:
    run = load_run(Path(sys.argv[1]), rebuild=True)
    drawer = Collecting()
    build_context(render_context(get_registry(), run), drawer)
    kinds: collections.Counter[str] = collections.Counter()
    chars = 0
    for svg in drawer.svgs:
        for el in ET.fromstring(svg).iter():
            kinds[el.tag.rsplit("}", 1)[-1]] += 1
            chars += len(el.text or "") if el.tag.endswith("text") else 0
    img = '<img style="width:170mm;display:block" src="data:image/svg+xml;base64,{}">'
    imgs = "".join(img.format(base64.b64encode(s.encode()).decode()) for s in drawer.svgs)
    html = f"<html><body>{imgs}</body></html>"
    times = []
    for _ in range(3):
        t = time.process_time()
        weasyprint.HTML(string=html).render().write_pdf(io.BytesIO())
        times.append(time.process_time() - t)
    print(f"{len(drawer.svgs)} figures drawn as SVG, {drawer.n_table} as tables, {drawer.n_fallback} not drawn")
    print("SVG elements: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()) + f"; {chars} text characters")
    print(f"layout + paint + write: {statistics.median(times):.2f} CPU s (median of 3: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
