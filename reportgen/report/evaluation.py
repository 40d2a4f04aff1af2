"""The section "Which attributions can you trust?": each evaluator's scorecard per model.

Built from the run's :class:`~reportgen.data.Evaluation` tables (whatever evaluator wrote them):
a scorecard (one row per method, one column per metric the evaluator marks for it, an arrow for
the better direction, the best value per column marked, 95 % bootstrap intervals over prompts),
the mean deletion and insertion curves, the rank agreement between methods as a heatmap and a
table, the recommendation with its evidence, and what perturbing a token meant. The summary's
headline lines come from here too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from reportgen.data import Estimate, Evaluation, MethodScore, MetricInfo
from reportgen.figures import DIVERGING, TEMPLATE, esc
from reportgen.report.model import (
    AgreementTable,
    EvaluationSection,
    EvaluationView,
    FigureBlock,
    ScoreCell,
    ScoreColumn,
    ScoreRowView,
)
from reportgen.report.text import fmt_seconds

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.report.builder import ReportBuilder

TITLE = "Which attributions can you trust?"
ARROW = {"higher": "↑", "lower": "↓", "none": ""}
BETTER = {"higher": "higher is better", "lower": "lower is better", "none": "neither is better: it describes the method"}
#: Line colours of the curves (the report's colourway); the reference is drawn grey.
COLOURS = ["#1f4e79", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#e6ab02"]
REFERENCE_COLOUR = "#9aa5b1"
#: The verdict's colour: a recommendation is good news, a missing one a caution.
TONE = {"recommend": "ok", "no_clear_winner": "medium", "too_thin": "medium", "none": "info"}


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    if x != 0 and abs(x) < 10 ** (-digits):
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def build(b: ReportBuilder) -> EvaluationSection | None:
    """The section, or None when the run has no evaluation (the spec did not ask for one)."""
    evals = list(b.run.evaluations)
    if not evals:
        return None
    from reportgen.report.builder import uid

    sid = b.id("evaluation")
    order = {m.id: i for i, m in enumerate(b.spec.models)}
    evals.sort(key=lambda e: (order.get(e.model_id, len(order)), e.model_id, e.evaluator))
    views = tuple(_view(b, e, b.id(uid("evaluation", e.model_id, e.evaluator))) for e in evals)
    headline = tuple(_headline(v) for v in views)
    return EvaluationSection(id=sid, title=TITLE, views=views, headline=headline)


def _headline(v: EvaluationView) -> str:
    if v.status != "ok":
        return f"{v.model_label}: the faithfulness check did not run ({v.reason or v.status})."
    return v.headline


def _view(b: ReportBuilder, e: Evaluation, vid: str) -> EvaluationView:
    from reportgen.report.builder import uid

    label = b.model_label.get(e.model_id, e.model_id)
    if e.status != "ok":
        return EvaluationView(
            id=vid,
            model_id=e.model_id,
            model_label=label,
            evaluator=e.evaluator,
            status=e.status,
            reason=e.reason or "",
            headline="",
            verdict="none",
            tone="info",
            evidence=(),
            perturbation="",
            ranking="",
            facts=(),
            columns=(),
            rows=(),
            curves=(),
            agreement=None,
            agreement_table=None,
            notes=(),
        )
    cols = [m for m in e.metrics if m.scorecard]
    columns = tuple(ScoreColumn(m.name, m.label, ARROW.get(m.better, ""), BETTER.get(m.better, ""), m.description, m.unit) for m in cols)
    rec = e.recommendation
    best = {m.name: _best(e.scores, m) for m in cols}
    rows = tuple(
        ScoreRowView(
            method=s.method,
            kind="reference" if s.reference else ("signed" if s.signed else "unsigned"),
            reference=s.reference,
            recommended=rec is not None and rec.method == s.method,
            cells=tuple(_cell(s.values.get(m.name), m, s.method in best[m.name]) for m in cols),
        )
        for s in e.scores
    )
    curves = tuple(
        fb
        for fb in (
            _curve(b, e, "deletion", uid("eval-deletion", e.model_id, e.evaluator)),
            _curve(b, e, "insertion", uid("eval-insertion", e.model_id, e.evaluator)),
        )
        if fb is not None
    )
    pooled = e.pooled_agreement()
    heat = table = None
    if pooled is not None and len(pooled.methods) > 1:
        heat = _agreement_figure(b, e, uid("eval-agreement", e.model_id, e.evaluator))
        table = AgreementTable(
            methods=pooled.methods,
            rows=tuple(
                (m, tuple(f"{fmt(t)} ({fmt(r)})" for t, r in zip(kr, sr, strict=True)))
                for m, kr, sr in zip(pooled.methods, pooled.kendall, pooled.spearman, strict=True)
            ),
            n=pooled.n,
        )
    return EvaluationView(
        id=vid,
        model_id=e.model_id,
        model_label=label,
        evaluator=e.evaluator,
        status=e.status,
        reason="",
        headline=rec.headline if rec is not None else "",
        verdict=rec.verdict if rec is not None else "none",
        tone=TONE.get(rec.verdict if rec is not None else "none", "info"),
        evidence=rec.evidence if rec is not None else (),
        perturbation=e.perturbation,
        ranking=e.ranking,
        facts=_facts(e),
        columns=columns,
        rows=rows,
        curves=curves,
        agreement=heat,
        agreement_table=table,
        notes=_notes(e),
    )


def _best(scores: tuple[MethodScore, ...], m: MetricInfo) -> set[str]:
    """The method(s) with the best mean in a column (references excluded; none for describing metrics)."""
    if m.better == "none":
        return set()
    vals = {s.method: s.values[m.name].value for s in scores if not s.reference and m.name in s.values}
    fin = {k: v for k, v in vals.items() if v is not None and math.isfinite(v)}
    if len(fin) < 2:
        return set()
    target = max(fin.values()) if m.better == "higher" else min(fin.values())
    return {k for k, v in fin.items() if abs(v - target) <= 1e-12}


def _cell(est: Estimate | None, m: MetricInfo, best: bool) -> ScoreCell:
    if est is None or est.value is None:
        return ScoreCell("—", "", False, "not computed for this method")
    interval = f"[{fmt(est.lo)}, {fmt(est.hi)}]" if est.lo is not None and est.hi is not None else ""
    unit = f" {m.unit}" if m.unit else ""
    title = f"{m.label}: mean {est.value:.6g}{unit} over {est.n} prompt(s)"
    if interval:
        title += f"; 95 % bootstrap interval {est.lo:.6g} to {est.hi:.6g}"
    else:
        title += "; no interval (too few prompts for one)"
    return ScoreCell(fmt(est.value), interval, best, title)


def _facts(e: Evaluation) -> tuple[tuple[str, str], ...]:
    s = e.settings
    n_prompts = len({p.prompt_id for p in e.prompts})
    op = str(s.get("operator", ""))
    if op == "replace":
        op += f" ({s.get('replacement', '')})"
    facts = [
        ("prompts scored", str(n_prompts)),
        ("target", "log-probability of the whole response" if s.get("target") == "response" else "each response token's log-probability"),
        ("perturbation", op),
        ("random subsets for infidelity", str(s.get("perturbations", ""))),
        ("comprehensiveness / sufficiency at", ", ".join(f"{float(k):g} %" for k in s.get("k_percent", ())) + " of the user's tokens"),
        ("intervals", f"95 % bootstrap over prompts, {s.get('bootstrap', '')} resamples"),
        ("seed", str(s.get("seed", ""))),
    ]
    bounds = [f"{pid}: {d['bounds']}" for pid, d in (e.details.get("prompts") or {}).items() if isinstance(d, dict) and d.get("bounds")]
    if bounds:
        facts.append(("best and worst orderings", "; ".join(bounds)))
    cost = []
    if e.details.get("forwards") is not None:
        cost.append(f"{e.details['forwards']} perturbed prompts scored")
    if e.timings.get("seconds") is not None:
        cost.append(fmt_seconds(e.timings["seconds"]))
    if cost:
        facts.append(("cost", ", ".join(cost)))
    return tuple(facts)


def _notes(e: Evaluation) -> tuple[str, ...]:
    out = []
    for p in e.prompts:
        if p.note:
            out.append(f"{p.method} on prompt {p.prompt_id}: {p.note}")
    for pid, d in (e.details.get("prompts") or {}).items():
        if isinstance(d, dict) and d.get("skipped"):
            out.append(f"Prompt {pid} was not scored: {d['skipped']}")
    return tuple(dict.fromkeys(out))


def _curve(b: ReportBuilder, e: Evaluation, kind: str, fid: str) -> FigureBlock | None:
    grid = list(e.curve_grid)
    series = [s for s in e.scores if s.curves.get(kind)]
    if not grid or not series:
        return None
    x = [f"{round(100 * g)} %" for g in grid]
    fig = go.Figure()
    colours = iter(COLOURS * 4)
    for s in series:
        ys = list(s.curves[kind])
        colour = REFERENCE_COLOUR if s.reference else next(colours)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=ys,
                name=esc(s.method),
                mode="lines+markers",
                line={"color": colour, "width": 1.5 if s.reference else 2.2, "dash": "dot" if s.reference else "solid"},
                marker={"color": colour, "size": 5},
                hovertemplate=esc(s.method) + "<br>%{x} perturbed: %{y:.4g} nats<extra></extra>",
            )
        )
    if kind == "deletion":
        title = "Deletion: the method's most important tokens perturbed first"
        caption = (
            "Change in the response's log-probability (nats, 0 = the original prompt) as a growing share of the "
            "user's tokens is perturbed, most important first by each method. A faithful method's curve falls "
            "fastest. Mean over the prompts; the dotted grey line is a random order."
        )
        xt = "share of the user's tokens perturbed (most important first)"
    else:
        title = "Insertion: the method's most important tokens restored first"
        caption = (
            "Start from a prompt with every user token perturbed and restore a growing share, most important first. "
            "Change in the response's log-probability against the original prompt (nats). A faithful method's curve "
            "rises fastest. Mean over the prompts; the dotted grey line is a random order."
        )
        xt = "share of the user's tokens restored (most important first)"
    fig.update_layout(
        template=TEMPLATE,
        height=320,
        title={"text": esc(f"{title} ({b.model_label.get(e.model_id, e.model_id)})"), "font": {"size": 13}},
        xaxis={"type": "category", "title": {"text": xt}},
        yaxis={"title": {"text": "Δ log-probability (nats)"}, "gridcolor": "#eef0f3", "zeroline": True, "zerolinecolor": "#9aa5b1"},
        legend={"orientation": "h", "y": -0.3, "x": 0},
        margin={"t": 40, "b": 10},
    )
    return b.figure(fig, fid, "", caption)


def _agreement_figure(b: ReportBuilder, e: Evaluation, fid: str) -> FigureBlock | None:
    pooled = e.pooled_agreement()
    if pooled is None:
        return None
    labels = [esc(m) for m in pooled.methods]
    z = [[None if v is None else round(v, 4) for v in row] for row in pooled.kendall]
    rho = [[None if v is None else round(v, 4) for v in row] for row in pooled.spearman]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            customdata=rho,
            colorscale=DIVERGING,
            zmin=-1.0,
            zmax=1.0,
            zmid=0.0,
            hovertemplate="%{y} vs %{x}<br>Kendall τ = %{z:.2f}<br>Spearman ρ = %{customdata:.2f}<extra></extra>",
            colorbar={"title": {"text": "Kendall τ", "side": "right"}, "thickness": 12, "len": 0.8},
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        height=int(min(700, max(280, 140 + 46 * len(labels)))),
        title={"text": esc(f"Do the methods rank tokens alike? ({b.model_label.get(e.model_id, e.model_id)})"), "font": {"size": 13}},
        xaxis={"type": "category", "tickangle": -30},
        yaxis={"type": "category", "autorange": "reversed"},
    )
    caption = (
        f"Rank agreement of the methods' token importances (Kendall τ; 1 = the same order, 0 = unrelated, −1 = reversed), "
        f"averaged over {pooled.n} prompt(s). Methods that disagree cannot all be right: the scorecard says which one the "
        "model bears out."
    )
    return b.figure(fig, fid, "", caption)
