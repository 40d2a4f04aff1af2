"""Golden-file test of the HTML report (coverage.py style).

The report of ``make_run(models=1)`` with its plugin figures is compared with
``tests/golden/report_one_model.html`` after masking the inlined static assets: the contents of
``templates/report.css`` (in ``<style>``), ``templates/report.js`` and the plotly.js bundle (in
``<script>``, plotly.js gzip-compressed and packed as text) are each replaced by a one-line marker, so a style or script change does not
rewrite the golden file (those files are tested by the browser tests). Each asset must be
inlined exactly once, verbatim; the rest of the page (markup, data, figures) is compared byte
for byte. On a mismatch the actual output is written to ``tests/actual/`` (git-ignored) and a
diff is shown. Accept new output with ``pytest tests/test_html_golden.py --update-golden``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from report_fixtures import html_of, make_figures, make_run

from reportgen.render import plotly_js_packed, read_asset

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "report_one_model.html"
ACTUAL = HERE / "actual" / "report_one_model.html"
BUNDLE_MASK = "/* plotly.js bundle (masked in the golden file) */"
CSS_MASK = "/* templates/report.css (masked in the golden file) */"
JS_MASK = "/* templates/report.js (masked in the golden file) */"


def render_report() -> str:
    return html_of(make_run(models=1), make_figures())


def mask_assets(html: str) -> str:
    """Replace each inlined static asset by its marker; each must appear exactly once."""
    bundle = next((text for b in ("cartesian", "full") if (text := str(plotly_js_packed(b).text)) in html), "(no plotly.js bundle)")
    for name, text, mask in (
        ("plotly.js", bundle, BUNDLE_MASK),
        ("templates/report.css", read_asset("report.css"), CSS_MASK),
        ("templates/report.js", read_asset("report.js"), JS_MASK),
    ):
        assert text.strip(), f"{name} is empty"
        assert html.count(text) == 1, f"{name} is inlined {html.count(text)} times, expected once"
        html = html.replace(text, mask)
    return html


def masked_report() -> str:
    return mask_assets(render_report())


def test_report_matches_golden(request: pytest.FixtureRequest) -> None:
    actual = masked_report()
    if request.config.getoption("--update-golden"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(actual, "utf-8")
    expected = GOLDEN.read_text("utf-8")
    if actual != expected:
        ACTUAL.parent.mkdir(parents=True, exist_ok=True)
        ACTUAL.write_text(actual, "utf-8")
        diff = list(difflib.unified_diff(expected.splitlines(), actual.splitlines(), "golden", "actual", lineterm="", n=1))
        raise AssertionError(
            f"report differs from {GOLDEN.relative_to(HERE.parent)} ({len(diff)} diff lines; actual written to "
            f"{ACTUAL.relative_to(HERE.parent)}; accept with: pytest tests/test_html_golden.py --update-golden):\n" + "\n".join(diff[:80])
        )
