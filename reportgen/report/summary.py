"""The summary section: the headline (what an auditor must act on), what was audited, what ran,
what the detectors could read, timings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reportgen.conversation import spec_messages
from reportgen.data import AttributionResult
from reportgen.report.findings import TOP_FINDINGS
from reportgen.report.model import (
    Findings,
    Headline,
    MessageRow,
    MethodRow,
    ModelRow,
    PromptRow,
    StatusCell,
    StatusRow,
    Summary,
    TemplateText,
)
from reportgen.report.text import fmt_seconds, options_text
from reportgen.spec import PromptSpec

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.report.builder import ReportBuilder


def build(b: ReportBuilder, anchors: dict[str, str], findings: Findings) -> Summary:
    spec, run = b.spec, b.run
    checked, nothing_checked = _checked(b)
    return Summary(
        models=tuple(ModelRow(m.id, m.display, m.source, _model_info(b, m.id)) for m in spec.models),
        prompts=tuple(
            PromptRow(p.id, p.label or p.id, message_rows(p), _template_texts(b, p.id), anchors.get(p.id, "results")) for p in spec.prompts
        ),
        methods=tuple(
            MethodRow(m.label, m.method, options_text(m.options), ", ".join(m.models) if m.models else "all") for m in spec.methods
        ),
        status_models=tuple(m.id for m in spec.models),
        status_rows=tuple(
            StatusRow(
                ms.label,
                tuple(_status_cell([r for r in run.results if r.model_id == m.id and r.display_name == ms.label]) for m in spec.models),
            )
            for ms in spec.methods
        ),
        checked=checked,
        nothing_checked=nothing_checked,
        timings=tuple((k, fmt_seconds(v)) for k, v in run.timings.items()),  # in run order
        headline=headline(b, findings),
    )


#: Severities an auditor must act on; ``info`` findings are notes (possible anomalies the
#: evidence did not establish, or context) and stay in the anomalies section.
ACT_ON = ("high", "medium", "low")


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def headline(b: ReportBuilder, findings: Findings) -> Headline:
    """The summary's lead: high/medium/low findings, failed method jobs, and one line on the
    info-level notes, worded so that uncertain notes are never read as "no anomalies"."""
    act = tuple(f for f in findings.all if f.severity in ACT_ON)
    info = [f for f in b.run.findings if f.severity not in ACT_ON]
    notes = ""
    if info:
        positions = {(f.model_id, f.prompt_id, p) for f in info for p in f.positions}
        notes = (
            f"{_n(len(info), 'info-level note', 'info-level notes')} on {_n(len(positions), 'token position', 'token positions')} "
            f"{'is' if len(info) == 1 else 'are'} uncertain or informational"
        )
    verdict = "" if act else "No anomaly was established" if info else "No anomalies were flagged"
    failed = tuple(
        f"{r.display_name} on {r.model_id}/{r.prompt_id}: {r.reason or 'no reason given'}" for r in b.run.results if r.status == "failed"
    )
    return Headline(findings=act[:TOP_FINDINGS], more=max(0, len(act) - TOP_FINDINGS), failed=failed, verdict=verdict, notes=notes)


#: Messages longer than this many characters are shown shortened, with a way to expand them.
LONG_MESSAGE = 600
PREVIEW = 280


def message_rows(p: PromptSpec) -> tuple[MessageRow, ...]:
    """Every message of a prompt with its role (a plain-text prompt is one user message)."""
    msgs = spec_messages(p)
    return tuple(MessageRow(role, text, text[:PREVIEW].rstrip() + "…" if len(text) > LONG_MESSAGE else "") for role, text in msgs)


def _template_texts(b: ReportBuilder, prompt_id: str) -> tuple[TemplateText, ...]:
    """What the models' chat templates added to this prompt; models that added the same text
    share one entry, models whose template added nothing are left out."""
    by_text: dict[str, list[str]] = {}
    added: dict[str, int] = {}
    for m in b.spec.models:
        g = b.run.generation(m.id, prompt_id)
        if g is None or not any(g.input_special):
            continue
        parts: list[str] = []
        for tok, special in zip(g.input_tokens, g.input_special, strict=True):
            if special:
                parts.append(tok)
            elif not parts or parts[-1] != "⟦…⟧":
                parts.append("⟦…⟧")
        text = "".join(parts)
        by_text.setdefault(text, []).append(m.id)
        added[text] = sum(len(t) for t, sp in zip(g.input_tokens, g.input_special, strict=True) if sp)
    return tuple(TemplateText(", ".join(ids), text, added[text]) for text, ids in by_text.items())


def _model_info(b: ReportBuilder, model_id: str) -> str:
    models = b.run.provenance.get("models")
    if isinstance(models, dict) and isinstance(models.get(model_id), dict):
        info = models[model_id]
        for k in ("sha256", "file_sha256", "revision"):
            if info.get(k):
                return f"{k} {str(info[k])[:16]}…"
    return ""


def _status_cell(rs: list[AttributionResult]) -> StatusCell:
    if not rs:
        return StatusCell("none", "not run", "not requested for this model")
    st = sorted({r.status for r in rs})
    reason = "; ".join(sorted({r.reason for r in rs if r.reason}))
    if st == ["ok"]:
        return StatusCell("ok", "ok" if len(rs) == 1 else f"ok ({len(rs)})", "")
    if len(st) == 1:
        return StatusCell(st[0], st[0], reason)
    ok = sum(1 for r in rs if r.status == "ok")
    return StatusCell("partial", f"ok {ok}/{len(rs)}", reason)


def _checked(b: ReportBuilder) -> tuple[tuple[str, ...], bool]:
    """What the detectors looked at, said plainly; and whether no detector had anything to read."""
    run, spec = b.run, b.spec
    ok = [r for r in run.results if r.status == "ok"]
    out = [f"{len(ok)} of {len(run.results)} method results (ok) over {len(spec.models)} model(s) × {len(spec.prompts)} prompt(s)"]
    disabled = set(spec.disable_detectors)
    active = sorted(set(b.detectors) - disabled)
    ran = {r.method for r in ok}
    nothing_checked = bool(active)
    for name in active:
        reads = b.detectors[name]
        if not reads or "" in reads:
            nothing_checked = False
            out.append(f"detector {name}: reads every method's results")
        elif ran & set(reads):
            nothing_checked = False
            out.append(f"detector {name}: read {', '.join(sorted(ran & set(reads)))} results")
        else:
            out.append(f"detector {name}: had nothing to read (it reads {', '.join(reads)}, which this audit did not run)")
    if not b.detectors:
        out.append("no anomaly detector is installed")
    if spec.detectors:
        out.append("detectors configured: " + ", ".join(sorted(spec.detectors)))
    if disabled:
        out.append("detectors disabled: " + ", ".join(sorted(disabled)))
    return tuple(out), nothing_checked
