"""The host's report model: one builder for every renderer, so HTML and PDF say the same."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from reportgen.plugins import get_registry
from reportgen.report import build_context
from reportgen.runner import render
from reportgen_plugins.renderers.html import PlotlyDrawer
from reportgen_plugins.renderers.pdf import KaleidoExporter, SvgDrawer
from report_fixtures import DETECTORS, make_figures, make_run

pypdf = pytest.importorskip("pypdf")


@pytest.mark.parametrize("findings", [True, False])
def test_summary_and_findings_are_the_same_in_html_and_pdf(findings: bool) -> None:
    run = make_run(findings=findings)
    html = build_context(run, make_figures(), DETECTORS, PlotlyDrawer())
    pdf = build_context(run, make_figures(), DETECTORS, SvgDrawer(KaleidoExporter(False)))
    assert html.summary == pdf.summary
    assert html.findings == pdf.findings
    assert html.toc == pdf.toc
    # only how figures are drawn (and whether hover data is embedded) differs
    assert [p.id for s in html.sections for p in s.panels] == [p.id for s in pdf.sections for p in s.panels]
    assert any(mv.hover for s in html.sections for p in s.panels for mv in p.methods)
    assert not any(mv.hover for s in pdf.sections for p in s.panels for mv in p.methods)


def _no_detector_input() -> Any:
    """A run whose only results are saliency: no installed detector has anything to read."""
    run = make_run(models=1, findings=False)
    return dataclasses.replace(run, results=[r for r in run.results if r.method == "saliency"])


def test_pdf_and_html_warn_when_no_detector_could_read_anything(tmp_path: Path) -> None:
    """Regression: the PDF said "No anomalies were found" in green where the HTML warned."""
    registry = get_registry()
    assert registry.detectors, "the built-in detector families are installed"
    written = render(registry, _no_detector_input(), tmp_path, ["html", "pdf"])
    html_text = re.sub(r"<[^>]+>", " ", Path(written["html"]).read_text("utf-8"))
    pdf_text = " ".join(p.extract_text() for p in pypdf.PdfReader(written["pdf"]).pages)
    for text in (html_text, pdf_text):
        flat = re.sub(r"\s+", " ", text)
        assert "no detector had results it could read" in flat
        assert "No anomalies were found." not in flat
        assert "detector noise_token: had nothing to read" in flat


def test_ids_are_unique_and_stable() -> None:
    run = make_run()
    a = build_context(run, make_figures(), DETECTORS, PlotlyDrawer())
    b = build_context(make_run(), make_figures(), DETECTORS, PlotlyDrawer())
    ids = [e.anchor for e in a.toc]
    assert len(ids) == len(set(ids)) and ids == [e.anchor for e in b.toc]


def test_context_has_no_dict_fields() -> None:
    """Typed all the way down: templates read named fields, never free-form dicts."""
    import typing

    import reportgen.report.model as model

    for name, cls in vars(model).items():
        if dataclasses.is_dataclass(cls) and isinstance(cls, type):
            for f in dataclasses.fields(cls):
                hint = str(typing.get_type_hints(cls)[f.name])
                assert "dict" not in hint.lower() and "Any" not in hint, f"{name}.{f.name}: {hint}"
