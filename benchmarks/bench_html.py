"""Size, open time and hover latency of the HTML report, and the cost of rendering it.

Run: ``.venv/bin/python benchmarks/bench_html.py [--quickstart reports/quickstart/results.json] [--render]``.

1. **Prompts**: synthetic runs (no model; ``tests/scale_fixtures.py``: one model, three methods,
   24 × 12 matrices) with 1, 50 and 200 prompts: file size, its parts (packed plotly.js, embedded
   results, figure data, the rest), growth per prompt × method, and the time headless Chromium takes
   to open the page: the ``load`` event, plotly.js running, the moment every figure in view is drawn
   (at 200 prompts the first screen is the summary and index, no figure), and how long a figure
   scrolled into view then takes to be drawn.
2. **A 1,000 × 500 matrix** (one prompt, one method; drawn as block means): size, open time, how long
   until the exact values behind the heatmap are decoded, and hover latency: a mousemove dispatched
   over the DevTools protocol until the exact-value label (and Plotly's own hover label) changes,
   timed in the page (it includes the protocol's delivery, so it is an upper bound).
3. **Quickstart** (with ``--quickstart``, or ``reports/quickstart/results.json`` when it exists):
   ``reportgen render`` of it, its size and parts.
4. With ``--render``: rendering time and size against ``plotly.io.to_html`` of the same heatmaps as
   the matrices grow (the cost any Plotly report pays).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from report_fixtures import html_of
from scale_fixtures import METHODS, synthetic_run
from test_browser import CDP, CHROMIUM, FLAGS
from test_browser_scale import FIGURES_IN_VIEW

from reportgen.render import plotly_js

MB = 1e6


def parts(html: str) -> dict[str, int]:
    """Bytes of the page's parts: packed plotly.js, embedded results, figure data, everything else."""
    out = {"plotly.js": 0, "results": 0, "figures": 0}
    for m in re.finditer(r"<script([^>]*)>(.*?)</script>", html, re.S):
        attrs, size = m.group(1), len(m.group(2).encode("utf-8"))
        if 'id="plotly-packed"' in attrs:
            out["plotly.js"] += size
        elif 'id="reportgen-evidence"' in attrs:
            out["results"] += size
        elif "figure-data" in attrs:
            out["figures"] += size
    out["rest"] = len(html.encode("utf-8")) - sum(out.values())
    return out


@contextmanager
def chromium() -> Iterator[str]:
    if CHROMIUM is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as prof:
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={prof}", "about:blank"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(prof) / "DevToolsActivePort"
            end = time.time() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                if time.time() > end or proc.poll() is not None:
                    raise SystemExit("chromium did not start a DevTools endpoint")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{int(port_file.read_text().split()[0])}"
        finally:
            proc.terminate()
            proc.wait(10)


def new_page(base: str) -> CDP:
    req = urllib.request.Request(f"{base}/json/new?about:blank", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        cdp = CDP(json.load(r)["webSocketDebuggerUrl"])
    for domain in ("Page", "Runtime"):
        cdp.call(f"{domain}.enable")
    cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    return cdp


def poll(cdp: CDP, expr: str, timeout: float = 120) -> Any:
    end = time.time() + timeout
    while time.time() < end:
        v = cdp.eval(expr)
        if v:
            return v
        time.sleep(0.02)
    raise TimeoutError(expr)


#: In the page: ms since navigation once plotly.js runs and every figure in view is drawn, else 0.
IN_VIEW_DRAWN = f"""(() => {{
  if (document.documentElement.dataset.figures !== 'ready') return 0;
  return {FIGURES_IN_VIEW}.every(d => d.dataset.drawn === 'yes') ? performance.now() : 0;
}})()"""

#: In the page: scroll the first figure to the top of the viewport at once (the page scrolls smoothly
#: otherwise); performance.now() just before.
SCROLL_TO_FIRST = """(() => { const t = performance.now();
  document.querySelector('div.lazy-figure').scrollIntoView({block: 'start', behavior: 'instant'}); return t; })()"""


def open_times(base: str, path: Path, repeat: int = 3) -> tuple[float, float, float, float]:
    """Best of ``repeat`` (ms): since navigation, the load event, plotly.js running and every figure in
    view drawn (at 200 prompts the first viewport holds the summary and index, no figure); then, from
    scrolling the first figure into view, until every figure in view is drawn."""
    best = [float("inf")] * 4
    for _ in range(repeat):
        cdp = new_page(base)
        try:
            cdp.call("Page.navigate", url=path.as_uri())
            cdp.wait_event("Page.loadEventFired", 300)
            drawn = float(poll(cdp, IN_VIEW_DRAWN))
            load = float(cdp.eval("performance.getEntriesByType('navigation')[0].loadEventEnd"))
            ready = float(cdp.eval("performance.getEntriesByName('reportgen:plotly-ready')[0].startTime"))
            t0 = float(cdp.eval(SCROLL_TO_FIRST))
            scrolled = float(poll(cdp, f"{FIGURES_IN_VIEW}.length > 0 && {IN_VIEW_DRAWN}")) - t0
            best = [min(b, v) for b, v in zip(best, (load, ready, drawn, scrolled), strict=True)]
        finally:
            cdp.close()
    return best[0], best[1], best[2], best[3]


def bench_prompts(base: str, folder: Path) -> None:
    print("\n## Reports with many prompts (1 model × 3 methods, 24 × 12 matrices per prompt × method)\n")
    head = ("prompts", "size MB", "plotly.js", "results", "figures", "rest", "load ms", "plotly ms", "drawn ms", "scroll ms")
    print(" ".join(f"{h:>9}" for h in head))
    sizes = {}
    for k in (1, 50, 200):
        html = html_of(synthetic_run(prompts=k))
        path = folder / f"prompts-{k}.html"
        path.write_text(html, "utf-8")
        p = parts(html)
        sizes[k] = len(html.encode("utf-8"))
        load, ready, drawn, scrolled = open_times(base, path)
        print(
            f"{k:>9} {sizes[k] / MB:>9.2f} {p['plotly.js'] / MB:>9.2f} {p['results'] / MB:>9.2f} {p['figures'] / MB:>9.2f} "
            f"{p['rest'] / MB:>9.2f} {load:>9.0f} {ready:>9.0f} {drawn:>9.0f} {scrolled:>9.0f}"
        )
    per = (sizes[200] - sizes[50]) / (150 * len(METHODS))
    print(f"\ngrowth: {per / 1e3:.1f} KB per prompt × method (50 → 200 prompts); 200 prompts / 1 prompt = {sizes[200] / sizes[1]:.1f}×")


#: In the page: for each mouse move, the first time (performance.now()) the exact-value label and
#: Plotly's hover label change. Both are watched through the figure's container, not through a node
#: Plotly may replace (its hover layer is rebuilt when the figure is redrawn), and a move only counts
#: changes after it was sent (``__hover.since``).
WATCH = """(() => {
  const fig = document.getElementById('%s'), label = fig.parentNode.querySelector('.exact-hover');
  window.__hover = {since: Infinity, exact: 0, plotly: 0};
  const seen = (key) => { const h = window.__hover, t = performance.now(); if (t >= h.since && !h[key]) h[key] = t; };
  new MutationObserver(() => seen('exact')).observe(label, {childList: true, characterData: true, subtree: true});
  new MutationObserver((records) => {
    if (records.some(r => { const n = r.target.nodeType === 1 ? r.target : r.target.parentNode; return n && n.closest('.hoverlayer'); }))
      seen('plotly');
  }).observe(fig, {childList: true, characterData: true, subtree: true});
  return true;
})()"""

#: Seconds a move waits for Plotly's label before it counts as not shown (the exact label always changes).
PLOTLY_WAIT_S = 3.0


def hover_latencies(cdp: CDP, box: list[float], moves: int = 30) -> tuple[list[float], list[float], int]:
    """ms from each mouse move until the exact-value label and Plotly's label change, over ``moves``
    moves to different cells (x and y each step by at least a sixth of the plot, far wider than a block);
    also how many moves Plotly's label did not change within :data:`PLOTLY_WAIT_S`."""
    exact: list[float] = []
    plotly_ms: list[float] = []
    missed = 0
    for k in range(moves):
        x = box[0] + box[2] * (0.1 + 0.8 * ((k * 7) % moves) / moves)
        y = box[1] + box[3] * (0.1 + 0.8 * ((k * 11) % moves) / moves)
        t0 = float(cdp.eval("(h => (h.exact = 0, h.plotly = 0, h.since = performance.now()))(window.__hover)"))
        cdp.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        exact.append(float(poll(cdp, "window.__hover.exact", 10)) - t0)
        try:
            plotly_ms.append(float(poll(cdp, "window.__hover.plotly", PLOTLY_WAIT_S)) - t0)
        except TimeoutError:
            missed += 1
        time.sleep(0.06)  # past Plotly's hover throttle (50 ms), so no move waits on the one before
    return exact, plotly_ms, missed


def bench_matrix(base: str, folder: Path, n: int = 1000, t: int = 500) -> None:
    print(f"\n## One {n:,} × {t:,} matrix (one prompt, one method)\n")
    html = html_of(synthetic_run(prompts=1, n=n, t=t, methods=("saliency",)))
    path = folder / "matrix.html"
    path.write_text(html, "utf-8")
    p = parts(html)
    load, ready, drawn, _ = open_times(base, path, repeat=1)
    size = len(html.encode()) / MB
    print(f"size {size:.2f} MB (plotly.js {p['plotly.js'] / MB:.2f}, results {p['results'] / MB:.2f}, figures {p['figures'] / MB:.2f})")
    print(f"open: load {load:.0f} ms, plotly.js running {ready:.0f} ms, figures in view drawn {drawn:.0f} ms")
    fid = "heatmap-m-p000-saliency"
    cdp = new_page(base)
    try:
        cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=1600, deviceScaleFactor=1, mobile=False)
        cdp.call("Page.navigate", url=path.as_uri())
        cdp.wait_event("Page.loadEventFired", 300)
        poll(cdp, "document.documentElement.dataset.figures === 'ready'")
        cdp.eval(f"document.getElementById('{fid}').scrollIntoView()")
        t_drawn = float(poll(cdp, f"document.getElementById('{fid}').dataset.drawn === 'yes' && performance.now()"))
        box = cdp.eval(f"(b => [b.left, b.top, b.width, b.height])(document.querySelector('#{fid} .nsewdrag').getBoundingClientRect())")
        cdp.call("Input.dispatchMouseEvent", type="mouseMoved", x=box[0] + 5, y=box[1] + 5)
        t_exact = float(poll(cdp, f"document.querySelector('#fig-{fid} .exact-hover').dataset.cell && performance.now()"))
        print(f"exact values ready {t_exact - t_drawn:.0f} ms after the heatmap is drawn (the embedded results decoded once)")
        cdp.eval(WATCH % fid)
        exact, plotly_ms, missed = hover_latencies(cdp, box)
        line = f"hover latency over {len(exact)} moves: exact-value label median {statistics.median(exact):.1f} ms, max {max(exact):.1f} ms"
        if plotly_ms:
            line += f"; Plotly's label median {statistics.median(plotly_ms):.1f} ms, max {max(plotly_ms):.1f} ms"
        if missed:
            line += f" (Plotly's label unchanged after {missed} moves)"
        verdict = "met" if max(exact) < 100 else "NOT met"
        print(f"{line}; target < 100 ms for the exact value: {verdict}")
    finally:
        cdp.close()


def bench_quickstart(results: Path, folder: Path) -> None:
    print(f"\n## Quickstart ({results})\n")
    out = folder / "quickstart"
    exe = Path(sys.executable).parent / "reportgen"
    subprocess.run([str(exe), "render", str(results), "-o", str(out)], check=True, capture_output=True)
    html = (out / "report.html").read_text("utf-8")
    p = parts(html)
    size = len(html.encode("utf-8"))
    print(f"report.html {size / MB:.2f} MB: plotly.js {p['plotly.js'] / MB:.2f} MB (plain: {len(plotly_js().encode()) / MB:.2f} MB)")
    verdict = "met" if size <= 2e6 else "NOT met"
    print(f"results {p['results'] / MB:.2f} MB, figures {p['figures'] / MB:.2f} MB, rest {p['rest'] / MB:.2f} MB; target 2 MB: {verdict}")


def bench_render() -> None:
    import numpy as np
    import plotly.io as pio

    from reportgen.figures import heatmap
    from reportgen.render import PLOTLY_CONFIG

    print("\n## Rendering cost against plotly.io.to_html of the same heatmaps\n")
    print(f"{'n×t':>10} {'report s':>9} {'base s':>8} {'×base':>6} {'report MB':>10} {'base MB':>8}")
    for n, t in ((32, 16), (128, 64), (512, 256)):
        run = synthetic_run(prompts=1, n=n, t=t)
        t0 = time.perf_counter()
        html = html_of(run)
        tr = time.perf_counter() - t0
        t0 = time.perf_counter()
        base = plotly_js()
        for r in run.results:
            fig, _ = heatmap(np.asarray(r.matrix), r.input_tokens, r.output_tokens, signed=r.signed, max_cells=20000)
            base += pio.to_html(fig, full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG)
        tb = time.perf_counter() - t0
        print(f"{n:>4}×{t:<5} {tr:>9.2f} {tb:>8.2f} {tr / tb:>6.2f} {len(html.encode()) / MB:>10.2f} {len(base.encode()) / MB:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quickstart", type=Path, default=ROOT / "reports" / "quickstart" / "results.json")
    ap.add_argument("--render", action="store_true", help="also time rendering against plotly.io.to_html")
    args = ap.parse_args()
    plotly_js()
    with tempfile.TemporaryDirectory() as tmp, chromium() as base:
        folder = Path(tmp)
        bench_prompts(base, folder)
        bench_matrix(base, folder)
        if args.quickstart.is_file():
            bench_quickstart(args.quickstart, folder)
        else:
            print(f"\n(no quickstart results at {args.quickstart}: `make demo` writes one; or pass --quickstart)")
    if args.render:
        bench_render()


if __name__ == "__main__":
    main()
