"""The HTML report reaches no network: no cloud buttons, a CSP that blocks every request.

A real headless Chromium opens the report, every modebar button of every figure is clicked,
and no request leaves the page and no popup opens.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from report_fixtures import html_of, make_figures, make_run

from reportgen.render import CONTENT_SECURITY_POLICY, PLOTLY_CONFIG
from tests.test_browser import browser, draw_all, open_page, problems, requests  # noqa: F401  (fixture)

LOCAL = ("file:", "data:", "blob:", "about:")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("offline") / "report.html"
    path.write_text(html_of(make_run(models=1), make_figures()), "utf-8")
    return path


def test_report_declares_a_csp_and_no_cloud_features(report: Path) -> None:
    html = report.read_text("utf-8")
    head = html[: html.index("<script")]
    assert f'<meta http-equiv="Content-Security-Policy" content="{escape(CONTENT_SECURITY_POLICY)}">' in head
    for directive in ("default-src 'none'", "connect-src 'none'", "form-action 'none'", "frame-src 'none'", "img-src data: blob:"):
        assert directive in CONTENT_SECURITY_POLICY
    assert PLOTLY_CONFIG["showSendToCloud"] is False
    assert PLOTLY_CONFIG["displaylogo"] is False and "sendDataToCloud" in PLOTLY_CONFIG["modeBarButtonsToRemove"]
    assert html.count('"showSendToCloud": false') == html.count("Plotly.newPlot(") > 0


@pytest.mark.browser
def test_clicking_every_modebar_button_sends_nothing(browser: str, report: Path) -> None:  # noqa: F811
    cdp = open_page(browser, report.as_uri())
    try:
        cdp.call("Target.setDiscoverTargets", discover=True)
        cdp.call("Page.setDownloadBehavior", behavior="deny")
        assert draw_all(cdp) == []  # figures are created as they scroll into view
        titles: list[str] = []
        for _ in range(100):
            titles = cdp.eval("Array.from(document.querySelectorAll('.modebar-btn')).map(b => b.getAttribute('data-title'))")
            if titles:
                break
            time.sleep(0.1)
        assert titles, "the figures have modebars"
        assert not [t for t in titles if any(w in (t or "").lower() for w in ("cloud", "chart studio", "share", "edit"))]
        clicked = cdp.eval(
            "(() => { let n = 0; for (const b of document.querySelectorAll('.modebar-btn')) { b.click(); n++; } return n; })()"
        )
        assert clicked == len(titles)
        time.sleep(1.0)
        cdp.call("Runtime.evaluate", expression="1")  # drain events that arrived meanwhile
        popups = [
            e
            for e in cdp.events
            if e["method"] == "Target.targetCreated"
            and e["params"]["targetInfo"]["type"] == "page"
            and e["params"]["targetInfo"]["url"] not in ("about:blank", report.as_uri())
        ]
        assert popups == []
        assert [u for u in requests(cdp) if not u.startswith(LOCAL)] == []
        assert problems(cdp) == []
    finally:
        cdp.close()


@pytest.mark.browser
def test_csp_blocks_requests_the_page_would_make(browser: str, report: Path) -> None:  # noqa: F811
    cdp = open_page(browser, report.as_uri())
    try:
        got: Any = cdp.eval(
            "(async () => { const out = {};"
            " try { await fetch('http://127.0.0.1:9/leak'); out.fetch = 'sent'; } catch (e) { out.fetch = 'blocked'; }"
            " const img = new Image(); img.src = 'http://127.0.0.1:9/pixel.png';"
            " await new Promise(r => { img.onerror = r; img.onload = r; setTimeout(r, 1000); });"
            " out.img = img.complete && img.naturalWidth > 0 ? 'loaded' : 'blocked';"
            " return out; })()"
        )
        assert got == {"fetch": "blocked", "img": "blocked"}
        blocked = {
            e["params"]["requestId"]
            for e in cdp.events
            if e["method"] == "Network.loadingFailed" and e["params"].get("blockedReason") == "csp"
        }
        sent = [e["params"] for e in cdp.events if e["method"] == "Network.requestWillBeSent"]
        assert [r["request"]["url"] for r in sent if not r["request"]["url"].startswith(LOCAL) and r["requestId"] not in blocked] == []
        violations = [p for p in problems(cdp) if "Content Security Policy" in p]
        assert len(violations) >= 2  # the browser refused both because of the policy
    finally:
        cdp.close()


@pytest.mark.browser
def test_report_logs_no_console_warnings(browser: str, report: Path) -> None:  # noqa: F811
    cdp = open_page(browser, report.as_uri())
    try:
        assert draw_all(cdp) == []
        time.sleep(0.5)
        cdp.call("Runtime.evaluate", expression="1")  # drain pending events
        noisy = [
            e["params"]
            for e in cdp.events
            if (e["method"] == "Runtime.consoleAPICalled" and e["params"].get("type") in ("warning", "error", "assert"))
            or (e["method"] == "Log.entryAdded" and e["params"]["entry"].get("level") in ("warning", "error"))
        ]
        assert noisy == []
    finally:
        cdp.close()
