"""The HTML report in headless Chromium, driven over the Chrome DevTools protocol.

Checks that every Plotly figure rendered, no console error or exception occurred, nothing
was requested from any host, the method switch works, and the hover window sums that
``report.js`` computes agree with ``reportgen.aggregate.input_window`` (seed 001 eq. 4).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_fixtures import html_of, make_figures, make_run

from reportgen.aggregate import input_window, output_window
from reportgen.figures import MAX_ALPHA

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--remote-debugging-port=0",
]


class CDP:
    """A minimal Chrome DevTools protocol client over one page websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, name: str, timeout: float = 60) -> dict[str, Any]:
        end = time.time() + timeout
        for e in self.events:
            if e["method"] == name:
                return e
        while time.time() < end:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == name:
                    return msg
        raise TimeoutError(name)

    def eval(self, expr: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium) — browser tests skipped")
    pytest.importorskip("websocket", reason="websocket-client not installed (pip install -e '.[test]')")
    prof = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={prof}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = prof / "DevToolsActivePort"
        end = time.time() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() > end or proc.poll() is not None:
                pytest.skip("chromium did not start a DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def open_page(base: str, url: str) -> CDP:
    req = urllib.request.Request(f"{base}/json/new?about:blank", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        target = json.load(r)
    cdp = CDP(target["webSocketDebuggerUrl"])
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.call(f"{domain}.enable")
    cdp.call("Page.navigate", url=url)
    cdp.wait_event("Page.loadEventFired", 120)
    return cdp


def problems(cdp: CDP) -> list[str]:
    out = []
    for e in cdp.events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(
                f"exception: {p['exceptionDetails'].get('text')} {p['exceptionDetails'].get('exception', {}).get('description', '')}"
            )
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    return out


def requests(cdp: CDP) -> list[str]:
    return [e["params"]["request"]["url"] for e in cdp.events if e["method"] == "Network.requestWillBeSent"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(html_of(make_run(), make_figures()), "utf-8")
    return path


DRAWN = """
(() => {
  const divs = Array.from(document.querySelectorAll('div.plotly-graph-div'));
  return {total: divs.length,
          missing: divs.filter(d => !d.querySelector('svg.main-svg') || !d.querySelector('.plot-container')).map(d => d.id)};
})()
"""

#: Bring every figure into view as a reader would (open its prompt and details, pick its method),
#: waiting for each to be drawn; returns the ids of figures that were not.
DRAW_ALL = """
(async () => {
  const wait = ms => new Promise(r => setTimeout(r, ms));
  for (let k = 0; k < 200 && document.documentElement.dataset.figures !== 'ready'; k++) await wait(50);
  const divs = Array.from(document.querySelectorAll('div.lazy-figure'));
  for (const d of divs) {
    for (let e = d.parentElement; e; e = e.parentElement) { if (e.tagName === 'DETAILS') e.open = true; }
    const view = d.closest('.view[hidden]');
    if (view) {
      const sw = view.parentElement.closest('.switchable');
      Array.from(sw.querySelectorAll('.switch button')).find(b => b.dataset.key === view.dataset.key).click();
    }
    d.scrollIntoView();
    for (let k = 0; k < 200 && d.dataset.drawn !== 'yes'; k++) await wait(25);
  }
  window.scrollTo(0, 0);
  return divs.filter(d => d.dataset.drawn !== 'yes').map(d => d.id);
})()
"""


def draw_all(cdp: CDP) -> list[str]:
    """Scroll every figure into view (see DRAW_ALL); the ids of those that did not draw."""
    return list(cdp.eval(DRAW_ALL))


def test_every_figure_renders_without_errors(browser: str, report: Path) -> None:
    cdp = open_page(browser, report.as_uri())
    try:
        assert cdp.eval("document.querySelectorAll('[data-drawn]').length") <= 2  # lazily: few figures are in view at load
        assert draw_all(cdp) == []
        res = cdp.eval(DRAWN)
        assert res["total"] >= 20
        assert res["missing"] == []
        html = report.read_text("utf-8")
        ids = set(re.findall(r'id="(heatmap-[^"]+)"', html))
        assert ids  # the fixture report has heatmaps
        rendered = set(
            cdp.eval(
                "Array.from(document.querySelectorAll('div.plotly-graph-div svg.main-svg')).map(s => s.closest('.plotly-graph-div').id)"
            )
        )
        assert ids <= rendered
        # the injected prompt created no element and ran nothing
        assert cdp.eval("document.querySelectorAll('img').length") == 0
        assert cdp.eval("typeof window.__pwned") == "undefined"
        assert cdp.eval("document.body.innerText.includes('</script><script>alert(1)</script>')") is True
        assert problems(cdp) == []
        assert [u for u in requests(cdp) if not u.startswith(("file:", "data:", "about:"))] == []
    finally:
        cdp.close()


def test_method_switch_and_hover_window(browser: str, report: Path) -> None:
    run = make_run()
    cdp = open_page(browser, report.as_uri())
    try:
        panel = "#panel-smol-capital"
        # switch to integrated_gradients: its view shows, the saliency view hides, its heatmap has a size
        cdp.eval(f"document.querySelector('{panel} button[data-key=integrated_gradients]').click()")
        vis = cdp.eval(f"Array.from(document.querySelectorAll('{panel} .method-view')).filter(v => !v.hidden).map(v => v.dataset.key)")
        assert vis == ["integrated_gradients"]
        w = cdp.eval("document.getElementById('heatmap-smol-capital-integrated_gradients').getBoundingClientRect().width")
        assert w > 200
        cdp.eval(f"document.querySelector('{panel} button[data-key=saliency]').click()")

        # window c=3, hover input token k: output colours follow eq. 4 (unsigned: eq. 7 alpha)
        r = next(x for x in run.results if x.method == "saliency" and x.model_id == "smol" and x.prompt_id == "capital")
        a = np.array([[float(f"{v:.6g}") for v in row] for row in r.matrix])
        k, c = 5, 3
        cdp.eval(
            f"(() => {{ const s = document.querySelector('{panel} input.window'); s.value = '{c}';"
            " s.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )
        got = cdp.eval(
            f"(() => {{ const v = document.querySelector('{panel} .method-view[data-key=saliency]');"
            f" const tok = v.querySelector('.tokens[data-side=in] .tok[data-i=\"{k}\"]');"
            " tok.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
            " const outs = Array.from(v.querySelectorAll('.tokens[data-side=out] .tok')).map(s => getComputedStyle(s).backgroundColor);"
            " const win = Array.from(v.querySelectorAll('.tokens[data-side=in] .tok.in-window')).map(s => +s.dataset.i);"
            " return {outs, win}; })()"
        )
        vals = input_window(a, k, c)
        s = (vals - vals.min()) / (vals.max() - vals.min())
        alphas = [_alpha(css) for css in got["outs"]]
        assert alphas == pytest.approx([MAX_ALPHA * x for x in s], abs=2e-3)
        assert got["win"] == [k - 1, k, k + 1]

        # hover output token j: input (user tokens) coloured by eq. 5, special tokens left uncoloured
        j = 2
        got = cdp.eval(
            f"(() => {{ const v = document.querySelector('{panel} .method-view[data-key=saliency]');"
            f" v.querySelector('.tokens[data-side=out] .tok[data-i=\"{j}\"]')"
            ".dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
            " return Array.from(v.querySelectorAll('.tokens[data-side=in] .tok'))"
            ".map(s => [s.classList.contains('special'), getComputedStyle(s).backgroundColor]); })()"
        )
        g = run.generation("smol", "capital")
        vals = output_window(a, j, c)
        user = [i for i in range(g.n) if not g.input_special[i]]
        assert [special for special, _ in got] == list(g.input_special) and user  # one span per input token
        lo, hi = vals[user].min(), vals[user].max()
        for i, (special, css) in enumerate(got):
            if special:
                assert _alpha(css) == 0
            else:
                assert _alpha(css) == pytest.approx(MAX_ALPHA * (vals[i] - lo) / (hi - lo), abs=2e-3)
        # leaving restores the static I(x) colouring
        cdp.eval(
            f"document.querySelector('{panel} .method-view[data-key=saliency] .tokens[data-side=out]')"
            ".dispatchEvent(new MouseEvent('mouseleave'))"
        )
        assert cdp.eval(f"document.querySelectorAll('{panel} .tok.in-window').length") == 0
        assert problems(cdp) == []
    finally:
        cdp.close()


def _alpha(css: str) -> float:
    m = re.match(r"rgba?\(([^)]*)\)", css)
    assert m, css
    parts = [p.strip() for p in m.group(1).split(",")]
    return float(parts[3]) if len(parts) == 4 else 1.0 if css.startswith("rgb(") and parts != ["0", "0", "0"] else 0.0
