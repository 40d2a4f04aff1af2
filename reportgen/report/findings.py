"""The anomalies section: every finding, most severe first, shown in its token context."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reportgen.data import SEVERITY_ORDER
from reportgen.report.model import Findings, FindingView
from reportgen.report.text import finding_context, flatten, standalone_token

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.report.builder import ReportBuilder

#: How many findings the summary lists (all are in the anomalies section).
TOP_FINDINGS = 5
SEVERITIES = ("high", "medium", "low", "info")


def build(b: ReportBuilder) -> Findings:
    from reportgen.report.builder import uid

    fs = sorted(
        enumerate(b.run.findings),
        key=lambda x: (SEVERITY_ORDER.get(x[1].severity, 9), x[1].model_id, x[1].prompt_id, x[1].positions, x[0]),
    )
    views = tuple(
        FindingView(
            id=f"finding-{k}",
            severity=f.severity if f.severity in SEVERITIES else "info",
            title=f.title or f.detector,
            detector=f.detector,
            model_id=f.model_id,
            prompt_id=f.prompt_id,
            method=f.method,
            token=standalone_token(f.token),
            positions=", ".join(str(p) for p in f.positions),
            context=finding_context(b.run.generation(f.model_id, f.prompt_id), f.positions),
            evidence=tuple(flatten(f.evidence)),
            message=f.message,
            suggestion=f.suggestion,
            panel_id=uid("panel", f.model_id, f.prompt_id),
        )
        for k, (_, f) in enumerate(fs, start=1)
    )
    counts = tuple((s, sum(1 for f in views if f.severity == s)) for s in SEVERITIES)
    return Findings(severity_counts=counts, top=views[:TOP_FINDINGS], all=views)
