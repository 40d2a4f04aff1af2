"""The conversation part of a prompt section: turn timeline, eq. 11 temporal view, token roles.

For every model whose generation spans more than one turn (seed 001 §4.5): one row per (turn,
role) of the attributed input — its text, its tokens and, per method, the share of Σ_ij |A_ij|
its tokens carry (:func:`reportgen.conversation.turn_shares`) — then the attributed reply; and per
turn the eq. 11 α_t with the shares before and after weighting. Every token of the panels' token
views is given its role (a stripe in the page, named in the legend and on hover); the tokens of a
system prompt the chat template wrote itself (:func:`reportgen.conversation.template_system`) are
``system`` and say so on hover, in the legend and in the timeline.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reportgen.conversation import TurnShare, alphas, turn_shares
from reportgen.data import AttributionResult, Generation
from reportgen.report.model import ConversationView, MethodView, Panel, PromptSection, TemporalRow, TimelineRow, Tok
from reportgen.report.panels import matrix_or_none

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.report.builder import ReportBuilder

LONG_TEXT = 600
PREVIEW = 280


def attach(b: ReportBuilder, sections: tuple[PromptSection, ...]) -> tuple[PromptSection, ...]:
    """``sections`` with token roles marked and a conversation view per multi-turn generation."""
    prompts = {p.id: p for p in b.spec.prompts}
    out = []
    for s in sections:
        panels: list[Panel] = []
        views: list[ConversationView] = []
        injected = False
        for panel in s.panels:
            g = b.run.generation(panel.model_id, s.prompt_id)
            if g is None or len(g.input_roles) != g.n or len(g.input_turns) != g.n:
                panels.append(panel)
                continue
            panels.append(_mark_panel(panel, g))
            injected = injected or _template_system(g)
            if len(set(g.input_turns)) > 1:
                views.append(_view(b, g, prompts.get(s.prompt_id)))
        marked = any(p is not q for p, q in zip(panels, s.panels, strict=True))
        out.append(replace(s, panels=tuple(panels), conversations=tuple(views), roles_marked=marked, template_system=injected))
    return tuple(out)


def _template_system(g: Generation) -> bool:
    """Whether the input's system tokens are the chat template's own system prompt (no system message)."""
    return bool(g.messages) and "system" in g.input_roles and all(m["role"] != "system" for m in g.messages)


Marks = tuple[list[str], list[str], list[int]]  # role, the role as the hover names it, turn per token


def _mark(toks: tuple[Tok, ...], marks: Marks) -> tuple[Tok, ...]:
    roles, names, turns = marks
    if len(toks) != len(roles):  # a coarser view (words, sentences) or a method's own tokens
        return toks
    return tuple(replace(t, role=r, title=f"{t.title} · {n}, turn {k}") for t, r, n, k in zip(toks, roles, names, turns, strict=True))


def _input_marks(g: Generation) -> Marks:
    """Each input token's role, name and turn: the chat template's own system prompt says so on hover."""
    roles = list(g.input_roles)
    own = _template_system(g)
    return roles, [f"{r} (the chat template's own)" if own and r == "system" else r for r in roles], list(g.input_turns)


def _mark_panel(panel: Panel, g: Generation) -> Panel:
    inp = _input_marks(g)
    out_roles = ["assistant"] * g.t
    out: Marks = (out_roles, out_roles, [max(g.input_turns, default=1)] * g.t)

    def method(v: MethodView) -> MethodView:
        return replace(v, input_toks=_mark(v.input_toks, inp), output_toks=_mark(v.output_toks, out))

    blend = panel.blend
    if blend is not None:
        blend = replace(blend, input_toks=_mark(blend.input_toks, inp), output_toks=_mark(blend.output_toks, out))
    return replace(
        panel,
        plain_input=_mark(panel.plain_input, inp),
        plain_output=_mark(panel.plain_output, out),
        methods=tuple(method(v) for v in panel.methods),
        blend=blend,
    )


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _results(b: ReportBuilder, g: Generation) -> list[AttributionResult]:
    order = {m.label: i for i, m in enumerate(b.spec.methods)}
    return sorted(b.run.results_for(g.model_id, g.prompt_id), key=lambda r: (order.get(r.display_name, len(order)), r.display_name))


def _alpha_rule(prompt: Any, k: int) -> str:
    temporal = getattr(prompt, "temporal", None)
    if temporal is None:
        return "α_t = 1 for every turn (the spec gives no temporal weights), so the weighted shares equal the plain ones"
    if temporal.alpha is not None:
        return "α_t as the spec gives them (temporal.alpha)"
    return f"α_t = {temporal.decay:g}^(K−t) with K = {k} (temporal.decay): the last turn weighs 1"


def _view(b: ReportBuilder, g: Generation, prompt: Any) -> ConversationView:
    from reportgen.report.builder import uid

    roles, turns = list(g.input_roles), list(g.input_turns)
    k = max(turns)
    alpha = alphas(prompt, k) if getattr(prompt, "turns", None) is not None else [1.0] * k
    keys = list(dict.fromkeys(zip(turns, roles, strict=True)))
    methods: list[str] = []
    shares: list[dict[tuple[int, str], TurnShare]] = []
    skipped: list[str] = []
    for r in _results(b, g):
        m = matrix_or_none(r)
        if m is None or m.shape[0] != g.n:
            skipped.append(f"{r.display_name} ({r.reason or 'no matrix over these tokens'})")
            continue
        methods.append(r.display_name)
        shares.append({(s.turn, s.role): s for s in turn_shares(m, roles, turns, alpha)})
    rows = [_row(g, key, turns, roles, [_pct(sh[key].share) for sh in shares]) for key in keys]
    rows.append(TimelineRow(k, "assistant", g.response_text, _preview(g.response_text), True, g.t, tuple("" for _ in methods), output=True))
    temporal = []
    for t in range(1, k + 1):
        plain = [_turn_sum(sh, t, weighted=False) for sh in shares]
        weighted = [_turn_sum(sh, t, weighted=True) for sh in shares]
        temporal.append(TemporalRow(t, f"{alpha[t - 1]:g}", tuple(map(_pct, plain)), tuple(map(_pct, weighted))))
    note = ("No turn shares for " + "; ".join(skipped) + ".") if skipped else ""
    return ConversationView(
        id=b.id(uid("conversation", g.model_id, g.prompt_id)),
        model_label=b.model_label.get(g.model_id, g.model_id),
        methods=tuple(methods),
        rows=tuple(rows),
        temporal=tuple(temporal),
        alpha_rule=_alpha_rule(prompt, k),
        note=note,
    )


def _turn_sum(sh: dict[tuple[int, str], TurnShare], t: int, *, weighted: bool) -> float | None:
    vals = [s.weighted if weighted else s.share for (turn, _r), s in sh.items() if turn == t]
    return None if any(v is None for v in vals) else sum(v for v in vals if v is not None)


def _preview(text: str) -> str:
    return text[:PREVIEW].rstrip() + "…" if len(text) > LONG_TEXT else ""


def _row(g: Generation, key: tuple[int, str], turns: list[int], roles: list[str], shares: list[str]) -> TimelineRow:
    turn, role = key
    msgs = [m for m in g.messages if int(m["turn"]) == turn and m["role"] == role]
    text = "\n\n".join(str(m["content"]) for m in msgs)
    rows = [i for i, k in enumerate(zip(turns, roles, strict=True)) if k == key]
    own = not msgs and role == "system" and _template_system(g)
    if not msgs and role == "assistant":
        text = "(chat-template tokens that open the reply being generated)"
    elif own:
        text = "".join(g.input_tokens[i] for i in rows)
    generated = any(bool(m.get("generated")) for m in msgs)
    return TimelineRow(turn, role, text, _preview(text), generated, len(rows), tuple(shares), template=own)
