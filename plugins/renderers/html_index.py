"""The HTML report's index of results: one row per prompt × model × method.

Each row names its panel, counts the findings on it by severity and gives one headline score,
the *top-token share*: the largest |I(x_i)| over the user's input tokens divided by Σ_i |I(x_i)|
over the same tokens (1 when one token carries all the attribution, 1/n when it is spread evenly;
I(x_i) = Σ_j A_ij as the report colours tokens). ``report.js`` sorts the table by any column.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from reportgen.aggregate import token_importance
from reportgen.data import AttributionResult, Generation, RunResult
from reportgen.report import ReportContext

SEVERITIES = ("high", "medium", "low", "info")


@dataclass(frozen=True)
class IndexRow:
    prompt: str
    prompt_anchor: str
    model: str
    panel_anchor: str
    method: str
    status: str
    findings: tuple[int, ...]  # one count per SEVERITIES
    top_token: str
    top_share: float | None

    @property
    def n_findings(self) -> int:
        return sum(self.findings)


def top_share(r: AttributionResult, g: Generation, absolute: bool) -> tuple[str, float | None]:
    """(token, share) of the user input token with the largest |I(x)|; ("", None) without a matrix."""
    if r.status != "ok" or r.matrix is None:
        return "", None
    m = np.asarray(r.matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0 or m.shape[0] != g.n:
        return "", None
    ix, _ = token_importance(m, absolute=absolute)
    user = [i for i in g.user_positions if ix[i] is not None]
    mags = np.array([abs(float(ix[i] or 0.0)) for i in user])
    if not user or not np.isfinite(mags).all() or mags.sum() == 0:
        return "", None
    k = int(np.argmax(mags))
    return g.input_tokens[user[k]], float(mags[k] / mags.sum())


def index_rows(report: ReportContext, run: RunResult) -> tuple[IndexRow, ...]:
    """The index in report order (sections, then panels, then method views)."""
    counts = Counter((f.model_id, f.prompt_id, f.method, f.severity) for f in report.findings.all)
    absolute = run.spec.aggregations.token_importance == "abs_sum"
    rows = []
    for s in report.sections:
        for p in s.panels:
            g = run.generation(p.model_id, p.prompt_id)
            results = {r.display_name: r for r in run.results_for(p.model_id, p.prompt_id)}
            for mv in p.methods:
                r = results.get(mv.label)
                token, share = top_share(r, g, absolute) if r is not None and g is not None else ("", None)
                rows.append(
                    IndexRow(
                        prompt=s.label,
                        prompt_anchor=s.id,
                        model=p.model_label,
                        panel_anchor=p.id,
                        method=mv.label,
                        status=mv.status,
                        findings=tuple(counts[(p.model_id, p.prompt_id, mv.method, sev)] for sev in SEVERITIES),
                        top_token=token,
                        top_share=share,
                    )
                )
    return tuple(rows)
