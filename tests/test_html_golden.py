"""Golden-file test of the HTML report (coverage.py style).

The report of ``make_run(models=1)`` with its plugin figures is compared, after masking the
inlined plotly.js bundle, with ``tests/golden/report_one_model.html``. On a mismatch the
actual output is written to ``tests/actual/`` (git-ignored) and a diff is shown. Accept new
output with ``REPORTGEN_UPDATE_GOLDEN=1 pytest tests/test_html_golden.py``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from plotly.offline import get_plotlyjs

from reportgen_plugins.renderers.html import render_html
from report_fixtures import make_figures, make_run

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "report_one_model.html"
ACTUAL = HERE / "actual" / "report_one_model.html"
BUNDLE_MASK = "/* plotly.js bundle (masked in the golden file) */"


def masked_report() -> str:
    html = render_html(make_run(models=1), make_figures())
    bundle = get_plotlyjs()
    assert html.count(bundle) == 1
    return html.replace(bundle, BUNDLE_MASK)


def test_report_matches_golden() -> None:
    actual = masked_report()
    if os.environ.get("REPORTGEN_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(actual, "utf-8")
    expected = GOLDEN.read_text("utf-8")
    if actual != expected:
        ACTUAL.parent.mkdir(parents=True, exist_ok=True)
        ACTUAL.write_text(actual, "utf-8")
        diff = list(
            difflib.unified_diff(expected.splitlines(), actual.splitlines(), "golden", "actual", lineterm="", n=1)
        )
        raise AssertionError(
            f"report differs from {GOLDEN.relative_to(HERE.parent)} ({len(diff)} diff lines; actual written to "
            f"{ACTUAL.relative_to(HERE.parent)}; accept with REPORTGEN_UPDATE_GOLDEN=1):\n" + "\n".join(diff[:80])
        )
