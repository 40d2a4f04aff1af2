"""The results section: one panel per (model, prompt), one view per method inside it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from reportgen.aggregate import clamp_window, token_importance
from reportgen.data import AttributionResult, Generation
from reportgen.figures import heatmap, rnd_matrix, scores_figure, slug, step_scores_figure
from reportgen.granularity import aggregate_matrix, units
from reportgen.linguistics import INSTALL_HINT
from reportgen.render import fmt_number
from reportgen.report import blend
from reportgen.report.blend import MethodMatrix
from reportgen.report.model import (
    BlendView,
    Comparison,
    FigureBlock,
    HoverData,
    MethodView,
    Panel,
    PromptSection,
    ScoreRow,
    ScoreTable,
)
from reportgen.report.text import fmt_seconds, options_text, output_special, standalone_token, token_views

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.report.builder import ReportBuilder

#: Matrices larger than this are not embedded for the client-side hover/window view.
MAX_INTERACTIVE_CELLS = 100_000
#: Score vectors preferred for colouring tokens when a method has no matrix, in order.
PRIMARY_SCORES = ("attribution_score", "importance", "score")

Comparisons = Callable[["ReportBuilder", Generation, Generation], Comparison]


def build_sections(b: ReportBuilder, compare: Comparisons) -> tuple[PromptSection, ...]:
    from reportgen.report.builder import uid
    from reportgen.report.summary import message_rows

    out = []
    for p in b.spec.prompts:
        panels = []
        for m in b.spec.models:
            g = b.run.generation(m.id, p.id)
            if g is not None:
                panels.append(_panel(b, g))
        present = [g for g in (b.run.generation(m.id, p.id) for m in b.spec.models) if g is not None]
        comps = tuple(compare(b, present[0], other) for other in present[1:])
        out.append(PromptSection(b.id(uid("prompt", p.id)), p.id, p.label or p.id, message_rows(p), tuple(panels), comps))
    return tuple(out)


def matrix_or_none(r: AttributionResult) -> np.ndarray | None:
    """The result's n × t matrix when it has a usable one."""
    if r.status != "ok" or r.matrix is None:
        return None
    m = np.asarray(r.matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        return None
    return m


def importance(b: ReportBuilder, m: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    return token_importance(m, absolute=b.absolute)


def _ordered_results(b: ReportBuilder, g: Generation) -> list[AttributionResult]:
    rs = b.run.results_for(g.model_id, g.prompt_id)
    order = {m.label: i for i, m in enumerate(b.spec.methods)}
    return sorted(rs, key=lambda r: (order.get(r.display_name, len(order)), r.display_name))


def _panel(b: ReportBuilder, g: Generation) -> Panel:
    from reportgen.report.builder import uid

    pid = b.id(uid("panel", g.model_id, g.prompt_id))
    results = _ordered_results(b, g)
    views = tuple(_method_view(b, g, r) for r in results)
    labels, ling_note = _labels(b, g)
    steps = step_scores_figure(g.output_tokens, g.step_scores)
    return Panel(
        id=pid,
        model_id=g.model_id,
        model_label=b.model_label.get(g.model_id, g.model_id),
        prompt_id=g.prompt_id,
        settings=", ".join(f"{k}={v}" for k, v in sorted(g.settings.items())) if g.settings else "",
        n=g.n,
        t=g.t,
        user_n=len(g.user_positions),
        window_max=max(1, min(g.n, g.t) // 2),
        window_default=clamp_window(b.window, g.n, g.t),
        methods=views,
        plain_input=token_views(g.input_tokens, g.input_special, None, False, "", "input"),
        plain_output=token_views(g.output_tokens, output_special(g), None, False, "", "output"),
        steps=b.figure(steps, uid("steps", g.model_id, g.prompt_id), "Step scores") if steps else None,
        figures=b.plugin_figures("prompt", g.model_id, g.prompt_id),
        blend=_blend(b, g, results, labels),
        ling=blend.ling_view(labels) if labels else None,
        ling_note=ling_note,
    )


def _tokens(g: Generation, r: AttributionResult) -> tuple[list[str], list[str], list[bool]]:
    """The result's input and output tokens and which input tokens are template/special."""
    in_tokens = list(r.input_tokens) or list(g.input_tokens)
    out_tokens = list(r.output_tokens) or list(g.output_tokens)
    special = list(g.input_special)[: len(in_tokens)]
    special += [False] * (len(in_tokens) - len(special))
    return in_tokens, out_tokens, special


def unit_matrix(
    b: ReportBuilder, g: Generation, r: AttributionResult
) -> tuple[np.ndarray, list[str], list[bool], list[str], list[bool]] | None:
    """The result's matrix at the report's granularity (token, or words / sentences through character
    spans) with the input and output tokens or units and their special flags; None without a usable matrix."""
    m = matrix_or_none(r)
    in_tokens, out_tokens, special = _tokens(g, r)
    if m is None or m.shape != (len(in_tokens), len(out_tokens)):
        return None
    unit = b.spec.aggregations.granularity
    vosp = output_special(g, out_tokens)
    if unit == "token":
        return m, in_tokens, special, out_tokens, vosp
    rows, cols = units(in_tokens, special, unit), units(out_tokens, vosp, unit)
    return aggregate_matrix(m, rows, cols), list(rows.texts), list(rows.special), list(cols.texts), list(cols.special)


def _blend(
    b: ReportBuilder, g: Generation, results: list[AttributionResult], labels: dict[str, list[str | None]] | None
) -> BlendView | None:
    """Methods toggled together and their eq. 10 mean, when two or more have same-shaped matrices
    (an interactive view: none on paper, where each method has its own view)."""
    if not b.drawer.interactive:
        return None
    mats, toks = [], None
    for r in results:
        u = unit_matrix(b, g, r)
        if u is None:
            continue
        m, vin, vsp, vout, vosp = u
        mats.append(MethodMatrix(slug(r.display_name), r.display_name, bool(r.signed), m, vsp, vosp))
        if toks is None:
            toks = (token_views(vin, vsp, None, False, "", "input"), token_views(vout, vosp, None, False, "", "output"))
    if toks is None:
        return None
    return blend.build(mats, toks[0], toks[1], b.absolute, labels)


def _labels(b: ReportBuilder, g: Generation) -> tuple[dict[str, list[str | None]] | None, str]:
    """The generation's part-of-speech / entity labels at token granularity, or why there are none."""
    if g.linguistics:
        if b.spec.aggregations.granularity != "token":
            return None, f"Linguistic filters work on tokens; this report shows {b.spec.aggregations.granularity}s."
        return g.linguistics, ""
    if b.spec.linguistics.enabled is False:
        return None, "Linguistic filters are off: the spec sets linguistics.enabled: false."
    return None, f"Linguistic filters are unavailable: this run had no spaCy pipeline (install it with {INSTALL_HINT} and run again)."


def _method_view(b: ReportBuilder, g: Generation, r: AttributionResult) -> MethodView:
    from reportgen.report.builder import uid

    m = matrix_or_none(r)
    in_tokens, out_tokens, special = _tokens(g, r)
    heat = None
    note = ""
    hover = None
    unit = b.spec.aggregations.granularity
    at_units = unit_matrix(b, g, r)
    if m is not None and at_units is not None:
        m, vin, vsp, vout, vosp = at_units
        ix, iy = importance(b, m)
        signed = bool(r.signed) and not b.absolute
        what = "I(x)" + (" (Σ|A|)" if b.absolute else "")
        in_toks = token_views(vin, vsp, ix, signed, what, "input")
        out_toks = token_views(vout, vosp, iy, signed, "I(y)", "output")
        fig, ds = heatmap(
            m,
            vin,
            vout,
            signed=bool(r.signed),
            value_label=r.matrix_label or "A",
            title=f"{r.display_name}: attribution A (input × output)" + ("" if unit == "token" else f" per {unit}"),
            max_cells=b.max_cells,
        )
        heat = b.figure(fig, uid("heatmap", g.model_id, g.prompt_id, r.display_name))
        if ds.reduced:
            note = (
                f"{m.shape[0]}×{m.shape[1]} = {m.size} cells exceed {b.cells_phrase}: "
                f"shown as means of {ds.row_factor}×{ds.col_factor} blocks."
            )
        if b.drawer.interactive and m.size <= MAX_INTERACTIVE_CELLS:
            hover = HoverData(tuple(tuple(row) for row in rnd_matrix(m)), bool(r.signed))
    else:
        primary = primary_score(r, len(in_tokens))
        if primary is not None:  # a scores-only method (e.g. PAS): colour the input by its primary score
            in_toks = token_views(in_tokens, special, r.scores[primary], bool(r.signed), primary, "input")
        else:
            in_toks = token_views(in_tokens, special, None, False, "", "input")
        out_toks = token_views(out_tokens, output_special(g, out_tokens), None, False, "", "output")
        if r.status == "ok" and m is None and len(out_tokens) == 0:
            note = "The response is empty: there is nothing to attribute."
        elif r.status == "ok" and m is None:
            note = "This method returns per-token scores only (no input × output matrix)"
            note += f"; input tokens are coloured by {primary}." if primary else "."
        elif r.status == "ok" and m is not None:
            note = f"Matrix shape {m.shape} does not match the tokens ({len(in_tokens)}×{len(out_tokens)})."
    table, sfig = _scores(b, g, r, in_tokens, special)
    return MethodView(
        key=slug(r.display_name),
        label=r.display_name,
        method=r.method,
        about=_about(b, r),
        status=r.status,
        reason=r.reason,
        signed=bool(r.signed),
        matrix_label=r.matrix_label,
        options=options_text(r.options),
        timings=tuple((k, fmt_seconds(v)) for k, v in r.timings.items()),
        input_toks=in_toks,
        output_toks=out_toks,
        heatmap=heat,
        heatmap_note=note,
        scores=table,
        scores_fig=sfig,
        hover=hover,
    )


def _scores(
    b: ReportBuilder, g: Generation, r: AttributionResult, tokens: list[str], special: list[bool]
) -> tuple[ScoreTable | None, FigureBlock | None]:
    from reportgen.report.builder import uid

    names = sorted(k for k, v in r.scores.items() if v is not None and len(v) > 0)
    if r.status != "ok" or not names:
        return None, None
    rows = []
    scored = []
    for i, tok in enumerate(tokens):
        vals = [r.scores[n][i] if i < len(r.scores[n]) else None for n in names]
        if all(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in vals):
            continue
        scored.append(i)
        rows.append(ScoreRow(i, standalone_token(tok), special[i] if i < len(special) else False, tuple(fmt_number(v) for v in vals)))
    if not rows:
        return None, None
    fig = scores_figure(tokens, {n: r.scores[n] for n in names}, scored)
    return ScoreTable(tuple(names), tuple(rows)), b.figure(fig, uid("scores", g.model_id, g.prompt_id, r.display_name), "Scores")


def _about(b: ReportBuilder, r: AttributionResult) -> str:
    """The method's own one-line description and how to read this view's colours."""
    what = b.method_descriptions.get(r.method, "").strip()
    if what and not what.endswith("."):
        what += "."
    if r.matrix is None:
        colours = "Input tokens are coloured by the method's per-token score"
    else:
        colours = f"Tokens and heatmap show A = {r.matrix_label or r.method}"
    if r.signed and not b.absolute:
        colours += ": red marks positive values, blue negative, deeper colour larger magnitude."
    else:
        colours += ": deeper colour marks a larger value (scaled from the smallest to the largest user token)."
    return f"{what} {colours}".strip()


def primary_score(r: AttributionResult, n: int) -> str | None:
    """The score vector that colours the input of a scores-only result (None if none fits)."""
    if r.status != "ok":
        return None
    for k in [k for k in PRIMARY_SCORES if k in r.scores] + sorted(r.scores):
        v = r.scores.get(k)
        if v is not None and len(v) == n and any(x is not None for x in v):
            return k
    return None
