"""Model comparison: the same prompt and method on two models, side by side (seed 001 §4.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reportgen.aggregate import difference
from reportgen.data import Generation
from reportgen.figures import heatmap, slug
from reportgen.report.model import CompareMethod, Comparison
from reportgen.report.panels import importance, matrix_or_none
from reportgen.report.text import output_special, token_views

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.report.builder import ReportBuilder


def build_comparisons(b: ReportBuilder, a: Generation, other: Generation) -> Comparison:
    from reportgen.report.builder import uid

    cid = b.id(uid("compare", a.prompt_id, a.model_id, "vs", other.model_id))
    ra = {r.display_name: r for r in b.run.results_for(a.model_id, a.prompt_id)}
    rb = {r.display_name: r for r in b.run.results_for(other.model_id, other.prompt_id)}
    methods = []
    for ms in b.spec.methods:
        x, y = ra.get(ms.label), rb.get(ms.label)
        if x is None or y is None:
            continue
        mx, my = matrix_or_none(x), matrix_or_none(y)
        if mx is None or my is None or mx.shape != (a.n, a.t) or my.shape != (other.n, other.t):
            continue
        signed = (bool(x.signed) or bool(y.signed)) and not b.absolute
        ixa, iya = importance(b, mx)
        ixb, iyb = importance(b, my)
        diff = None
        if tuple(a.input_tokens) == tuple(other.input_tokens):
            d = difference(mx, my)
            t = d.shape[1]
            note = (
                f"A[{a.model_id}] − A[{other.model_id}] over the same input tokens"
                if a.t == other.t
                else f"The responses differ in length ({a.t} vs {other.t} tokens): the difference covers the first {t} "
                "output positions, aligned by position."
            )
            out_labels = [f"{ta} | {tb}" if ta != tb else ta for ta, tb in zip(a.output_tokens[:t], other.output_tokens[:t], strict=True)]
            fig, _ = heatmap(
                d,
                list(a.input_tokens),
                out_labels,
                signed=True,
                value_label=f"Δ {ms.label}",
                title=f"{ms.label}: A[{a.model_id}] − A[{other.model_id}]",
                max_cells=b.max_cells,
            )
            diff = b.figure(fig, uid("diff", a.prompt_id, ms.label, a.model_id, "minus", other.model_id))
        else:
            note = "No differential matrix: the two models tokenise the input differently, so rows do not correspond."
        methods.append(
            CompareMethod(
                key=slug(ms.label),
                label=ms.label,
                left_input=token_views(a.input_tokens, a.input_special, ixa, signed, "I(x)", "input"),
                left_output=token_views(a.output_tokens, output_special(a), iya, signed, "I(y)", "output"),
                right_input=token_views(other.input_tokens, other.input_special, ixb, signed, "I(x)", "input"),
                right_output=token_views(other.output_tokens, output_special(other), iyb, signed, "I(y)", "output"),
                diff=diff,
                note=note,
            )
        )
    return Comparison(
        id=cid,
        left=a.model_id,
        right=other.model_id,
        left_label=b.model_label.get(a.model_id, a.model_id),
        right_label=b.model_label.get(other.model_id, other.model_id),
        same_output=tuple(a.output_tokens) == tuple(other.output_tokens),
        inputs_note=_inputs_note(a, other),
        methods=tuple(methods),
    )


def _inputs_note(a: Generation, b: Generation) -> str:
    """Empty when both models saw the same input text; otherwise what differed, plainly."""
    if "".join(a.input_tokens) == "".join(b.input_tokens):
        return ""
    user_a = "".join(t for t, sp in zip(a.input_tokens, a.input_special, strict=True) if not sp)
    user_b = "".join(t for t, sp in zip(b.input_tokens, b.input_special, strict=True) if not sp)
    if user_a == user_b:
        return (
            f"The two models did not see the same input: their chat templates wrap the prompt differently "
            f"({a.model_id}: {a.n} input tokens, {b.model_id}: {b.n}). Compare the attributions of the prompt's own tokens."
        )
    return f"The two models did not see the same input text ({a.model_id}: {a.n} input tokens, {b.model_id}: {b.n})."
