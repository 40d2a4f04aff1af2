"""Model comparison: the same prompt and method on two models, side by side (seed 001 §4.5).

The differential matrix A¹ − A² needs rows and columns that mean the same thing on both sides.
When both generations have the same input and output tokens it is taken token by token. When
the tokenizers differ (or the inputs or responses do), both matrices are first aggregated to
words (:mod:`reportgen.granularity`; the spec's ``aggregations.granularity`` may ask for
sentences), and the units are aligned by a diff of their texts (:class:`difflib.SequenceMatcher`
on the input units and, separately, on the output units): only units the diff matches are
compared, never positions. :func:`align` and :func:`delta` are the pure part that
``reportgen diff`` shares.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from reportgen.aggregate import token_importance
from reportgen.data import AttributionResult, Generation
from reportgen.figures import heatmap, slug
from reportgen.granularity import Granularity, Units, aggregate_matrix, aggregate_vector, units
from reportgen.report.conversation import Marks, _input_marks
from reportgen.report.model import CompareMethod, Comparison, SyncHover, SyncUnits, Tok
from reportgen.report.panels import matrix_or_none, primary_score
from reportgen.report.text import output_special, token_views

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.report.builder import ReportBuilder


@dataclass(frozen=True)
class Alignment:
    """How two generations' attribution matrices are put side by side.

    ``rows``/``cols``: matched (left unit, right unit) index pairs of the input and output units.
    """

    granularity: Granularity
    left_in: Units
    left_out: Units
    right_in: Units
    right_out: Units
    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]

    def note(self, left: str, right: str) -> str:
        """What the differential matrix covers, in plain words (the figure's caption)."""
        u = self.granularity
        li, ri, lo, ro = (len(x.units) for x in (self.left_in, self.right_in, self.left_out, self.right_out))
        parts = [f"A[{left}] − A[{right}]"]
        if self.granularity == "token":
            parts.append("token by token: both have the same input and output tokens.")
        else:
            parts.append(
                f"per {u}: each token's attribution is split over the {u}s it covers in proportion to its characters "
                f"and summed per {u} (template tokens stay units of their own)."
            )
        if len(self.rows) != li or len(self.rows) != ri:
            parts.append(
                f"The inputs differ: a {u}-level diff matched {len(self.rows)} of {li} / {ri} input {u}s; only those rows are shown."
            )
        if len(self.cols) != lo or len(self.cols) != ro:
            parts.append(
                f"The responses differ: a {u}-level diff (difflib) matched {len(self.cols)} of {lo} / {ro} response {u}s; "
                "only matched units are compared, not positions."
            )
        return " ".join(parts)


def _pairs(left: Units, right: Units) -> tuple[tuple[int, int], ...]:
    keys_l = [(u.special, u.core) for u in left.units]
    keys_r = [(u.special, u.core) for u in right.units]
    sm = difflib.SequenceMatcher(None, keys_l, keys_r, autojunk=False)
    return tuple((blk.a + k, blk.b + k) for blk in sm.get_matching_blocks() for k in range(blk.size))


def align(a: Generation, b: Generation, granularity: Granularity = "token") -> Alignment:
    """Units of both generations and their matches: tokens when both tokenised input and response
    alike and ``granularity`` is ``token``; otherwise words (or ``granularity`` when coarser)."""
    same = tuple(a.input_tokens) == tuple(b.input_tokens) and tuple(a.output_tokens) == tuple(b.output_tokens)
    g: Granularity = granularity if granularity != "token" or same else "word"
    li = units(a.input_tokens, a.input_special, g)
    lo = units(a.output_tokens, output_special(a), g)
    ri = units(b.input_tokens, b.input_special, g)
    ro = units(b.output_tokens, output_special(b), g)
    return Alignment(g, li, lo, ri, ro, _pairs(li, ri), _pairs(lo, ro))


@dataclass(frozen=True)
class Delta:
    """The differential matrix over the aligned units, with each unit's label (left side's text)."""

    matrix: np.ndarray
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    left: np.ndarray  # both matrices at the alignment's granularity (all units)
    right: np.ndarray


def delta(al: Alignment, ma: np.ndarray, mb: np.ndarray) -> Delta:
    """A[left] − A[right] over the units ``al`` matched (NaN where either is undefined)."""
    left = aggregate_matrix(ma, al.left_in, al.left_out)
    right = aggregate_matrix(mb, al.right_in, al.right_out)
    ri = [i for i, _ in al.rows], [j for _, j in al.rows]
    ci = [i for i, _ in al.cols], [j for _, j in al.cols]
    d = left[np.ix_(ri[0], ci[0])] - right[np.ix_(ri[1], ci[1])]
    return Delta(
        matrix=d,
        rows=tuple(al.left_in.units[i].text for i in ri[0]),
        cols=tuple(al.left_out.units[i].text for i in ci[0]),
        left=left,
        right=right,
    )


def usable(g: Generation, r: AttributionResult | None) -> np.ndarray | None:
    """The result's matrix when it has one of the generation's shape."""
    m = None if r is None else matrix_or_none(r)
    return m if m is not None and m.shape == (g.n, g.t) else None


def _column_delta(al: Alignment, name: str, va: list[float | None], vb: list[float | None]) -> Delta:
    """Δ of a per-input-token vector (summed per unit) over the matched input units, as one column."""
    ua, ub = aggregate_vector(va, al.left_in), aggregate_vector(vb, al.right_in)
    left, right = (np.array([np.nan if x is None else x for x in v], dtype=np.float64)[:, None] for v in (ua, ub))
    d = left[[i for i, _ in al.rows]] - right[[j for _, j in al.rows]]
    return Delta(d, tuple(al.left_in.units[i].text for i, _ in al.rows), (f"Δ {name}",), left, right)


def score_delta(al: Alignment, ra: AttributionResult, rb: AttributionResult) -> tuple[str, Delta] | None:
    """For results with per-token scores only (e.g. PAS): Δ of their primary score per matched input
    unit (one column; summed per unit like attributions). None when they share no primary score."""
    name = primary_score(ra, al.left_in.n_tokens)
    if name is None or name != primary_score(rb, al.right_in.n_tokens) or not al.rows:
        return None
    return name, _column_delta(al, name, list(ra.scores[name]), list(rb.scores[name]))


def method_delta(
    al: Alignment, pair: tuple[Generation, Generation], results: tuple[AttributionResult, AttributionResult]
) -> tuple[str, Delta] | None:
    """("A", Δ of the attribution matrices) over the matched units; ("I(x)", Δ of each input unit's
    total attribution) when the responses share no unit; (score name, Δ of that score) for
    scores-only results; None when the two results cannot be compared."""
    ma, mb = usable(pair[0], results[0]), usable(pair[1], results[1])
    if ma is not None and mb is not None and al.rows and al.cols:
        return "A", delta(al, ma, mb)
    if ma is not None and mb is not None and al.rows:  # no response unit in common: compare I(x) = Σ_j A_ij
        return "I(x)", _column_delta(al, "I(x)", token_importance(ma)[0], token_importance(mb)[0])
    if results[0].status == "ok" and results[1].status == "ok" and results[0].matrix is None and results[1].matrix is None:
        return score_delta(al, *results)
    return None


def why_not(al: Alignment, results: tuple[AttributionResult, AttributionResult], names: tuple[str, str]) -> str:
    """Why two results have no difference to show, in plain words."""
    bad = [f"{n}: {r.status}" + (f" ({r.reason})" if r.reason else "") for n, r in zip(names, results, strict=True) if r.status != "ok"]
    if bad:
        return "No difference: " + "; ".join(bad) + "."
    if any(r.matrix is None for r in results):
        return "No difference: the two results share no per-token score to compare."
    return f"No differential matrix: no input or no response {al.granularity} of one side matches the other's."


def note_for(al: Alignment, what: str, names: tuple[str, str]) -> str:
    """The caption of a difference: of the matrices (``what`` = "A") or of a per-token score."""
    if what == "A":
        return al.note(*names)
    u = al.granularity
    if what == "I(x)":
        return (
            f"The responses share no {u}, so no response {u} can be compared: Δ I(x) = {names[0]} − {names[1]} of each "
            f"input {u}'s total attribution to its own response (I(x) = Σ_j A_ij, eq. 6, summed per {u}), over "
            f"{len(al.rows)} matched input {u}s."
        )
    text = f"The method gives per-token scores only: Δ {what} = {names[0]} − {names[1]} per input {u}"
    text += "." if u == "token" else f" (each token's score split over the {u}s it covers and summed per {u})."
    n_left, n_right = len(al.left_in.units), len(al.right_in.units)
    if len(al.rows) != n_left or len(al.rows) != n_right:
        text += f" A {u}-level diff matched {len(al.rows)} of {n_left} / {n_right} input {u}s; only those are shown."
    return text


Values = tuple[list[float | None], list[float | None]]  # per input unit, per response unit


def _matrix_values(b: ReportBuilder, al_in: Units, al_out: Units, m: np.ndarray) -> Values:
    """I(x) and I(y) (eq. 6) of each unit: the tokens' totals split over the units they cover."""
    ix, iy = token_importance(m, absolute=b.absolute)
    return aggregate_vector(ix, al_in), aggregate_vector(iy, al_out)


def _score_values(al_in: Units, al_out: Units, r: AttributionResult, name: str) -> Values:
    """The per-token score ``name`` of each input unit; response units have none."""
    return aggregate_vector(r.scores[name], al_in), [None] * len(al_out.units)


def _views(al_in: Units, al_out: Units, vals: Values, signed: bool) -> tuple[tuple[Tok, ...], ...]:
    u = al_in.granularity
    what = "I(x)" if u == "token" else f"I(x) per {u}"
    return (
        token_views(al_in.texts, al_in.special, vals[0], signed, what, "input"),
        token_views(al_out.texts, al_out.special, vals[1], signed, what.replace("x", "y"), "output"),
    )


def _score_views(al_in: Units, al_out: Units, vals: Values, signed: bool, name: str) -> tuple[tuple[Tok, ...], ...]:
    return (
        token_views(al_in.texts, al_in.special, vals[0], signed, name, "input"),
        token_views(al_out.texts, al_out.special, None, False, "", "output"),
    )


def _sync_units(values: list[float | None], pairs: dict[int, int]) -> SyncUnits:
    finite = tuple(v if v is not None and math.isfinite(v) else None for v in values)
    return SyncUnits(finite, tuple(pairs.get(i) for i in range(len(values))))


def sync_hover(al: Alignment, left: Values, right: Values) -> SyncHover:
    """Each unit's value and its aligned partner on the other side (``al.rows`` / ``al.cols``)."""
    return SyncHover(
        left_in=_sync_units(left[0], dict(al.rows)),
        left_out=_sync_units(left[1], dict(al.cols)),
        right_in=_sync_units(right[0], {j: i for i, j in al.rows}),
        right_out=_sync_units(right[1], {j: i for i, j in al.cols}),
    )


def role_marks(g: Generation) -> tuple[Marks, Marks] | None:
    """Each input and response token's chat role, its name on hover and its turn, as the prompt's
    panels mark them (the response is the assistant's, in the last turn); None when the generation
    does not know them."""
    if len(g.input_roles) != g.n or len(g.input_turns) != g.n:
        return None
    out = ["assistant"] * g.t
    return _input_marks(g), (out, out, [max(g.input_turns, default=1)] * g.t)


def mark_roles(toks: tuple[Tok, ...], us: Units, marks: Marks) -> tuple[Tok, ...]:
    """Each token or unit with the chat role (and turn) of the tokens it covers, named on hover as in
    the panels; a unit whose tokens belong to different messages is left unmarked."""
    roles, names, turns = marks
    out = []
    for t, u in zip(toks, us.units, strict=True):
        found = {(roles[i], names[i], turns[i]) for i in u.tokens}
        if len(found) == 1:
            ((role, name, turn),) = found
            t = replace(t, role=role, title=f"{t.title} · {name}, turn {turn}")
        out.append(t)
    return tuple(out)


def _with_roles(g: Generation, ins: Units, outs: Units, views: tuple[tuple[Tok, ...], ...]) -> tuple[tuple[Tok, ...], ...]:
    marks = role_marks(g)
    if marks is None:
        return views
    return mark_roles(views[0], ins, marks[0]), mark_roles(views[1], outs, marks[1])


def compare_method(
    b: ReportBuilder,
    label: str,
    pair: tuple[Generation, Generation],
    results: tuple[AttributionResult, AttributionResult],
    names: tuple[str, str],
) -> CompareMethod | None:
    """One method's comparison of two generations: both sides' views and the difference (None when
    neither has an attribution matrix or a per-token score to compare)."""
    from reportgen.report.builder import uid

    (ga, gb), (ra, rb) = pair, results
    al = align(ga, gb, b.spec.aggregations.granularity)
    ma, mb = usable(ga, ra), usable(gb, rb)
    found = method_delta(al, pair, results)
    if ma is not None and mb is not None:
        signed = (bool(ra.signed) or bool(rb.signed)) and not b.absolute
        va, vb = _matrix_values(b, al.left_in, al.left_out, ma), _matrix_values(b, al.right_in, al.right_out, mb)
        left_in, left_out = _views(al.left_in, al.left_out, va, signed)
        right_in, right_out = _views(al.right_in, al.right_out, vb, signed)
    elif found is not None:
        va, vb = _score_values(al.left_in, al.left_out, ra, found[0]), _score_values(al.right_in, al.right_out, rb, found[0])
        left_in, left_out = _score_views(al.left_in, al.left_out, va, bool(ra.signed), found[0])
        right_in, right_out = _score_views(al.right_in, al.right_out, vb, bool(rb.signed), found[0])
    else:
        return None
    left_in, left_out = _with_roles(ga, al.left_in, al.left_out, (left_in, left_out))
    right_in, right_out = _with_roles(gb, al.right_in, al.right_out, (right_in, right_out))
    diff = None
    if found is not None:
        what, d = found
        per = "" if al.granularity == "token" else f" per {al.granularity}"
        fig, _ = heatmap(
            d.matrix,
            list(d.rows),
            list(d.cols),
            signed=True,
            value_label=f"Δ {label}" if what == "A" else f"Δ {what}",
            title=f"{label}: {what}[{names[0]}] − {what}[{names[1]}]{per}",
            max_cells=b.max_cells,
        )
        diff = b.figure(fig, uid("diff", ga.prompt_id, label, names[0], "minus", names[1]))
    return CompareMethod(
        key=slug(label),
        label=label,
        left_input=left_in,
        left_output=left_out,
        right_input=right_in,
        right_output=right_out,
        diff=diff,
        note=why_not(al, results, names) if found is None else note_for(al, found[0], names),
        sync=sync_hover(al, va, vb) if b.drawer.interactive else None,  # hover: the HTML page only
    )


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
        cm = compare_method(b, ms.label, (a, other), (x, y), (a.model_id, other.model_id))
        if cm is not None:
            methods.append(cm)
    return Comparison(
        id=cid,
        left=a.model_id,
        right=other.model_id,
        left_label=b.model_label.get(a.model_id, a.model_id),
        right_label=b.model_label.get(other.model_id, other.model_id),
        same_output=tuple(a.output_tokens) == tuple(other.output_tokens),
        inputs_note=inputs_note(a, other),
        methods=tuple(methods),
    )


def inputs_note(a: Generation, b: Generation) -> str:
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
