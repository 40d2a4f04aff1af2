"""PDF renderer speed and size, with baselines measured in the same run.

* whole PDF (context + layout + PDF/A write) vs the interactive HTML report of the same run;
* one figure drawn as SVG from its data (pdf_svg) vs exported by kaleido/Chromium (if available);
* PDF size vs the results.json it embeds.

Run: .venv/bin/python benchmarks/bench_pdf.py [--kaleido]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from report_fixtures import html_of, make_figures, make_run, render_context

from reportgen.figures import heatmap
from reportgen.results import dumps
from reportgen_plugins.renderers.pdf import KaleidoExporter, render_pdf
from reportgen_plugins.renderers.svg import figure_svg


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    import numpy as np

    run, figs = make_run(), make_figures()
    html_of(run, figs)  # warm imports
    t_html = timed(lambda: html_of(run, figs), 2)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.pdf"
        t0 = time.perf_counter()
        stats = render_pdf(render_context(run, figs), str(out), kaleido=False)
        t_pdf = time.perf_counter() - t0
        size = out.stat().st_size
    rj = len(dumps(run).encode())
    print(f"HTML report      {t_html:7.2f} s (baseline)")
    print(f"PDF/A-3b report  {t_pdf:7.2f} s  = {t_pdf / t_html:5.1f}× HTML   {stats.pages} pages, {stats.svg_figures} SVG figures")
    print(f"PDF size         {size / 1024:7.0f} KiB = {size / rj:5.1f}× the embedded results.json ({rj / 1024:.0f} KiB)")

    rng = np.random.default_rng(0)
    fig, _ = heatmap(rng.normal(size=(40, 30)), [f"in{i}" for i in range(40)], [f"out{j}" for j in range(30)], signed=True, title="40×30")
    t_svg = timed(lambda: figure_svg(fig), 3)
    print(f"heatmap 40×30 as SVG from data   {t_svg * 1000:7.1f} ms (baseline)")
    if "--kaleido" in sys.argv:
        ex = KaleidoExporter(True)
        try:
            t_start = timed(lambda: ex.svg(fig))
            t_k = timed(lambda: ex.svg(fig), 3)
        finally:
            ex.close()
        if ex.reason:
            print("kaleido:", ex.reason)
        else:
            print(
                f"same via kaleido (warm)          {t_k * 1000:7.1f} ms = {t_k / t_svg:5.1f}× SVG; "
                f"first call incl. Chromium start {t_start:.1f} s"
            )


if __name__ == "__main__":
    main()
