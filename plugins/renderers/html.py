"""The self-contained interactive HTML report (renderer format ``html``).

The renderer first builds a tree of frozen dataclasses (the report context: every number,
label, colour, id and the order of things is decided here, in Python), then renders
``templates/report.html`` with the one Jinja environment of :mod:`reportgen.render`.
Templates only loop and print. The output is one file: CSS, the small ``report.js`` and
plotly.js (once) are inlined, nothing is fetched from any host, and the same ``RunResult``
renders byte-identical HTML (no clock reads, stable ids, fixed order).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
from markupsafe import Markup

from reportgen.aggregate import clamp_window, difference, token_importance
from reportgen.data import SEVERITY_ORDER, AttributionResult, FigureSpec, Generation, RunResult
from reportgen.figures import (
    heatmap,
    rnd_matrix,
    scores_figure,
    slug,
    step_scores_figure,
    token_colours,
)
from reportgen.plugin_api import Renderer
from reportgen.render import fmt_number, make_jinja_env, plotly_div, plotly_js, read_asset

#: Matrices larger than this are not embedded for the client-side hover/window view.
MAX_INTERACTIVE_CELLS = 100_000
#: How many findings the summary lists (all are in the anomalies section).
TOP_FINDINGS = 5
SEVERITIES = ("high", "medium", "low", "info")


# --------------------------------------------------------------------------- context types


@dataclass(frozen=True)
class FigureBlock:
    """One Plotly figure as inserted into the page."""

    id: str
    title: str
    caption: str
    html: Markup
    error: str = ""  # why the figure could not be drawn (the report still renders)


@dataclass(frozen=True)
class Tok:
    """One token as shown in a token view."""

    index: int
    text: str
    special: bool
    css: str
    title: str


@dataclass(frozen=True)
class ScoreTable:
    names: list[str]
    rows: list[tuple[int, str, bool, list[str]]]


@dataclass(frozen=True)
class MethodView:
    """One method's view of one (model, prompt): token colours, heatmap, scores, status."""

    key: str
    label: str
    method: str
    status: str
    reason: str | None
    signed: bool
    matrix_label: str
    options: str
    timings: list[tuple[str, str]]
    input_toks: list[Tok]
    output_toks: list[Tok]
    heatmap: FigureBlock | None
    heatmap_note: str
    scores: ScoreTable | None
    scores_fig: FigureBlock | None
    data_json: Any  # JSON-able dict for report.js (hover windows), or None


@dataclass(frozen=True)
class Panel:
    """One (model, prompt) generation with every method's view."""

    id: str
    model_id: str
    model_label: str
    prompt_id: str
    settings: str
    n: int
    t: int
    user_n: int
    window_max: int
    window_default: int
    methods: list[MethodView]
    plain_input: list[Tok]
    plain_output: list[Tok]
    steps: FigureBlock | None
    figures: list[FigureBlock]


@dataclass(frozen=True)
class CompareMethod:
    key: str
    label: str
    left_input: list[Tok]
    left_output: list[Tok]
    right_input: list[Tok]
    right_output: list[Tok]
    diff: FigureBlock | None
    note: str


@dataclass(frozen=True)
class Comparison:
    id: str
    left: str
    right: str
    left_label: str
    right_label: str
    same_output: bool
    methods: list[CompareMethod]


@dataclass(frozen=True)
class PromptSection:
    id: str
    prompt_id: str
    label: str
    text: str
    panels: list[Panel]
    comparisons: list[Comparison]


@dataclass(frozen=True)
class FindingView:
    id: str
    severity: str
    title: str
    detector: str
    model_id: str
    prompt_id: str
    method: str
    token: str
    positions: str
    context: tuple[str, str, str]
    evidence: list[tuple[str, str]]
    message: str
    suggestion: str
    panel_id: str


@dataclass(frozen=True)
class StatusCell:
    status: str  # ok | unavailable | failed | partial | none
    text: str
    reason: str


@dataclass(frozen=True)
class Narrative:
    id: str
    title: str
    html: Markup


@dataclass
class ReportContext:
    title: str
    description: str
    created_at: str
    completed_at: str
    models: list[dict[str, str]]
    prompts: list[dict[str, str]]
    methods: list[dict[str, str]]
    status_models: list[str]
    status_rows: list[tuple[str, list[StatusCell]]]
    severity_counts: list[tuple[str, int]]
    n_findings: int
    top_findings: list[FindingView]
    findings: list[FindingView]
    checked: list[str]
    nothing_checked: bool  # detectors are known and none had results to read
    timings: list[tuple[str, str]]
    narrative_before: list[Narrative]
    narrative_after: list[Narrative]
    sections: list[PromptSection]
    summary_figures: list[FigureBlock]
    anomaly_figures: list[FigureBlock]
    other_figures: list[FigureBlock]
    provenance: list[tuple[str, str]]
    spec_text: str
    spec_path: str
    toc: list[tuple[str, str, int]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def uid(*parts: str) -> str:
    return "-".join(slug(p) for p in parts)


def exact(x: float | None) -> str:
    """The exact score shown on hover (9 significant digits)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "not scored"
    return f"{float(x):.9g}"


def display_token(tok: str) -> str:
    """A token as page text: newlines and tabs made visible (the newline still breaks the line)."""
    t = tok.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "⇥")
    if t == "":
        return "∅"
    return t.replace("\n", "⏎\n")


def flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as sorted ``a.b.c → value`` rows; lists and scalars as compact JSON/text."""
    rows: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k in sorted(d, key=str):
            rows.extend(flatten(d[k], f"{prefix}.{k}" if prefix else str(k)))
        return rows
    if isinstance(d, float):
        return [(prefix, fmt_number(d, 6))]
    if isinstance(d, (list, tuple)) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) or x is None for x in d
    ):
        return [(prefix, "[" + ", ".join(fmt_number(x, 6) for x in d) + "]")]
    if isinstance(d, (list, tuple)):
        try:
            return [(prefix, json.dumps(d, ensure_ascii=False, sort_keys=True, default=str))]
        except (TypeError, ValueError):
            return [(prefix, str(d))]
    return [(prefix, "" if d is None else str(d))]


def fmt_seconds(s: Any) -> str:
    try:
        f = float(s)
    except (TypeError, ValueError):
        return str(s)
    if f < 1:
        return f"{f * 1000:.0f} ms"
    if f < 120:
        return f"{f:.1f} s"
    return f"{f / 60:.1f} min"


def output_special(g: Generation, tokens: Sequence[str] | None = None) -> list[bool]:
    """Output tokens to mute: those spelled like a template/special token of the input
    (e.g. a generated ``<|im_end|>``); whitespace-only tokens never count."""
    specials = {t for t, sp in zip(g.input_tokens, g.input_special) if sp and t.strip()}
    return [t in specials for t in (g.output_tokens if tokens is None else tokens)]


def _toks(
    tokens: Sequence[str],
    special: Sequence[bool],
    values: Sequence[float | None] | None,
    signed: bool,
    what: str,
    side: str,
) -> list[Tok]:
    colours = token_colours(values, special, signed) if values is not None else None
    out = []
    for i, tok in enumerate(tokens):
        title = f"{side}#{i} {tok!r}"
        if special[i]:
            title += " · template/special token"
        css = ""
        if values is not None and colours is not None:
            title += f" · {what} = {exact(values[i] if i < len(values) else None)}"
            # template/special tokens stay muted (no colour); their score is still on hover
            css = colours[i].css if i < len(colours) and not special[i] else ""
        out.append(Tok(i, display_token(tok), bool(special[i]), css, title))
    return out


def _matrix_or_none(r: AttributionResult) -> np.ndarray | None:
    if r.status != "ok" or r.matrix is None:
        return None
    m = np.asarray(r.matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        return None
    return m


# --------------------------------------------------------------------------- building


class ContextBuilder:
    """Turns a ``RunResult`` plus plugin figures into a :class:`ReportContext`."""

    def __init__(
        self, run: RunResult, figures: list[FigureSpec], detectors: dict[str, tuple[str, ...]] | None = None
    ) -> None:
        self.run = run
        self.detectors = detectors or {}  # detector name → methods it reads (from the registry)
        self.nothing_checked = False
        self.spec = run.spec
        self.figures = sorted(figures, key=lambda f: (f.order, f.id))
        self.max_cells = int(getattr(getattr(self.spec, "report", None), "max_heatmap_cells", 20000))
        agg = getattr(self.spec, "aggregations", None)
        self.absolute = getattr(agg, "token_importance", "sum") == "abs_sum"
        self.window = int(getattr(agg, "window", 1))
        self.used_ids: set[str] = set()

    # ids are stable and unique: a clash (two ids sanitising alike) gets a numeric suffix
    def _id(self, base: str) -> str:
        i, cand = 2, base
        while cand in self.used_ids:
            cand = f"{base}-{i}"
            i += 1
        self.used_ids.add(cand)
        return cand

    def figure(self, fig: Any, fid: str, title: str = "", caption: str = "") -> FigureBlock:
        fid = self._id(fid)
        try:
            return FigureBlock(fid, title, caption, plotly_div(fig, fid))
        except Exception as exc:  # a plugin's malformed figure must not take the whole report down
            return FigureBlock(fid, title, caption, Markup(""), error=f"{type(exc).__name__}: {exc}"[:500])

    def build(self) -> ReportContext:
        spec, run = self.spec, self.run
        model_label = {m.id: m.display for m in spec.models}
        sections = self._sections(model_label)
        anchors = {sec.prompt_id: sec.id for sec in sections}
        findings = self._findings()
        counts = [(s, sum(1 for f in findings if f.severity == s)) for s in SEVERITIES]
        narrative = [
            Narrative(self._id("narrative-" + slug(n.title).lower()), n.title, Markup(_md(n.markdown)))
            for n in spec.narrative
        ]
        before = [nv for nv, n in zip(narrative, spec.narrative) if n.placement == "before"]
        after = [nv for nv, n in zip(narrative, spec.narrative) if n.placement == "after"]
        ctx = ReportContext(
            title=(spec.report.title or spec.title),
            description=spec.description or "",
            created_at=run.created_at,
            completed_at=run.completed_at,
            models=[
                {"id": m.id, "label": m.display, "source": m.source, "info": self._model_info(m.id)}
                for m in spec.models
            ],
            prompts=[
                {"id": p.id, "label": p.label or p.id, "text": p.user_text, "anchor": anchors.get(p.id, "results")}
                for p in spec.prompts
            ],
            methods=[
                {
                    "label": m.label,
                    "method": m.method,
                    "options": json.dumps(m.options, sort_keys=True, ensure_ascii=False, default=str) if m.options else "defaults",
                    "models": ", ".join(m.models) if m.models else "all",
                }
                for m in spec.methods
            ],
            status_models=[m.id for m in spec.models],
            status_rows=self._status_rows(),
            severity_counts=counts,
            n_findings=len(findings),
            top_findings=findings[:TOP_FINDINGS],
            findings=findings,
            checked=self._checked(),
            nothing_checked=self.nothing_checked,
            timings=[(k, fmt_seconds(v)) for k, v in sorted(run.timings.items())],
            narrative_before=before,
            narrative_after=after,
            sections=sections,
            summary_figures=self._plugin_figures("summary"),
            anomaly_figures=self._plugin_figures("anomalies"),
            other_figures=self._orphan_figures(),
            provenance=flatten(run.provenance),
            spec_text=run.spec_text,
            spec_path=run.spec_path,
        )
        ctx.toc = self._toc(ctx)
        return ctx

    def _model_info(self, model_id: str) -> str:
        models = self.run.provenance.get("models") if isinstance(self.run.provenance, dict) else None
        if isinstance(models, dict) and isinstance(models.get(model_id), dict):
            info = models[model_id]
            for k in ("sha256", "file_sha256", "revision"):
                if info.get(k):
                    return f"{k} {str(info[k])[:16]}…"
        return ""

    # ---- status table
    def _status_rows(self) -> list[tuple[str, list[StatusCell]]]:
        rows = []
        for ms in self.spec.methods:
            cells = []
            for m in self.spec.models:
                rs = [r for r in self.run.results if r.model_id == m.id and r.display_name == ms.label]
                cells.append(_status_cell(rs, len(self.spec.prompts)))
            rows.append((ms.label, cells))
        return rows

    def _checked(self) -> list[str]:
        """What the detectors looked at, said plainly when nothing was found."""
        ok = [r for r in self.run.results if r.status == "ok"]
        out = [
            f"{len(ok)} of {len(self.run.results)} method results (ok) over "
            f"{len(self.spec.models)} model(s) × {len(self.spec.prompts)} prompt(s)"
        ]
        prov = self.run.provenance if isinstance(self.run.provenance, dict) else {}
        dets = prov.get("detectors")
        disabled = set(self.spec.disable_detectors)
        if isinstance(dets, (list, tuple, dict)) and dets:
            out.append("detectors run: " + ", ".join(sorted(str(d) for d in dets)))
        elif self.detectors:
            ran = {r.method for r in ok}
            self.nothing_checked = bool(set(self.detectors) - disabled)
            for name in sorted(set(self.detectors) - disabled):
                reads = self.detectors[name]
                if not reads or "" in reads:
                    self.nothing_checked = False
                    out.append(f"detector {name}: reads every method's results")
                elif ran & set(reads):
                    self.nothing_checked = False
                    out.append(f"detector {name}: read {', '.join(sorted(ran & set(reads)))} results")
                else:
                    out.append(
                        f"detector {name}: had nothing to read (it reads {', '.join(reads)}, which this audit did not run)"
                    )
        if self.spec.detectors:
            out.append("detectors configured: " + ", ".join(sorted(self.spec.detectors)))
        if disabled:
            out.append("detectors disabled: " + ", ".join(sorted(disabled)))
        return out

    # ---- findings
    def _findings(self) -> list[FindingView]:
        fs = sorted(
            enumerate(self.run.findings),
            key=lambda x: (SEVERITY_ORDER.get(x[1].severity, 9), x[1].model_id, x[1].prompt_id, x[1].positions, x[0]),
        )
        out = []
        for k, (_, f) in enumerate(fs, start=1):
            out.append(
                FindingView(
                    id=f"finding-{k}",
                    severity=f.severity if f.severity in SEVERITIES else "info",
                    title=f.title or f.detector,
                    detector=f.detector,
                    model_id=f.model_id,
                    prompt_id=f.prompt_id,
                    method=f.method,
                    token=display_token(f.token),
                    positions=", ".join(str(p) for p in f.positions),
                    context=_split_context(f.context, f.token),
                    evidence=[(k2, v) for k2, v in flatten(f.evidence)],
                    message=f.message,
                    suggestion=f.suggestion,
                    panel_id=uid("panel", f.model_id, f.prompt_id),
                )
            )
        return out

    def _plugin_figures(self, section: str, model_id: str | None = None, prompt_id: str | None = None) -> list[FigureBlock]:
        out = []
        for f in self.figures:
            if f.section != section:
                continue
            if section == "prompt" and (f.model_id != model_id or f.prompt_id != prompt_id):
                continue
            out.append(self.figure(f.figure, slug(f.id), f.title, f.caption))
        return out

    def _orphan_figures(self) -> list[FigureBlock]:
        """Figures no section takes (an unknown section, or a (model, prompt) with no panel)."""
        panels = {(g.model_id, g.prompt_id) for g in self.run.generations}
        panels &= {(m.id, p.id) for m in self.spec.models for p in self.spec.prompts}
        out = []
        for f in self.figures:
            if f.section in ("summary", "anomalies"):
                continue
            if f.section == "prompt" and (f.model_id, f.prompt_id) in panels:
                continue
            out.append(self.figure(f.figure, slug(f.id), f.title, f.caption))
        return out

    # ---- per prompt
    def _sections(self, model_label: dict[str, str]) -> list[PromptSection]:
        out = []
        for p in self.spec.prompts:
            panels = []
            for m in self.spec.models:
                g = self.run.generation(m.id, p.id)
                if g is None:
                    continue
                panels.append(self._panel(g, model_label.get(m.id, m.id)))
            comps = []
            gens = [self.run.generation(m.id, p.id) for m in self.spec.models]
            present = [g for g in gens if g is not None]
            for other in present[1:]:
                comps.append(self._comparison(present[0], other, model_label))
            # plugin figures for a (model, prompt) the spec does not list still appear
            out.append(
                PromptSection(
                    id=self._id(uid("prompt", p.id)),
                    prompt_id=p.id,
                    label=p.label or p.id,
                    text=p.user_text,
                    panels=panels,
                    comparisons=comps,
                )
            )
        return out

    def _ordered_results(self, g: Generation) -> list[AttributionResult]:
        rs = self.run.results_for(g.model_id, g.prompt_id)
        order = {m.label: i for i, m in enumerate(self.spec.methods)}
        return sorted(rs, key=lambda r: (order.get(r.display_name, len(order)), r.display_name))

    def _importance(self, m: np.ndarray) -> tuple[list[float | None], list[float | None]]:
        return token_importance(m, absolute=self.absolute)

    def _panel(self, g: Generation, model_label: str) -> Panel:
        pid = self._id(uid("panel", g.model_id, g.prompt_id))
        views = [self._method_view(g, r) for r in self._ordered_results(g)]
        steps = step_scores_figure(g.output_tokens, g.step_scores)
        settings = ", ".join(f"{k}={v}" for k, v in sorted(g.settings.items())) if g.settings else ""
        upper = max(1, min(g.n, g.t) // 2)
        return Panel(
            id=pid,
            model_id=g.model_id,
            model_label=model_label,
            prompt_id=g.prompt_id,
            settings=settings,
            n=g.n,
            t=g.t,
            user_n=len(g.user_positions),
            window_max=upper,
            window_default=clamp_window(self.window, g.n, g.t),
            methods=views,
            plain_input=_toks(g.input_tokens, g.input_special, None, False, "", "input"),
            plain_output=_toks(g.output_tokens, output_special(g), None, False, "", "output"),
            steps=self.figure(steps, uid("steps", g.model_id, g.prompt_id), "Step scores") if steps else None,
            figures=self._plugin_figures("prompt", g.model_id, g.prompt_id),
        )

    def _method_view(self, g: Generation, r: AttributionResult) -> MethodView:
        key = slug(r.display_name)
        m = _matrix_or_none(r)
        special = list(g.input_special) + [False] * max(0, len(r.input_tokens) - g.n)
        in_tokens = list(r.input_tokens) or list(g.input_tokens)
        out_tokens = list(r.output_tokens) or list(g.output_tokens)
        special = special[: len(in_tokens)] + [False] * max(0, len(in_tokens) - len(special))
        heat = None
        note = ""
        data = None
        if m is not None and m.shape == (len(in_tokens), len(out_tokens)):
            ix, iy = self._importance(m)
            signed = bool(r.signed) and not self.absolute
            what = "I(x)" + (" (Σ|A|)" if self.absolute else "")
            in_toks = _toks(in_tokens, special, ix, signed, what, "input")
            out_toks = _toks(out_tokens, output_special(g, out_tokens), iy, signed, "I(y)", "output")
            fig, ds = heatmap(
                m,
                in_tokens,
                out_tokens,
                signed=bool(r.signed),
                value_label=r.matrix_label or "A",
                title=f"{r.display_name}: attribution A (input × output)",
                max_cells=self.max_cells,
            )
            heat = self.figure(fig, uid("heatmap", g.model_id, g.prompt_id, r.display_name))
            if ds.reduced:
                note = (
                    f"{m.shape[0]}×{m.shape[1]} = {m.size} cells exceed report.max_heatmap_cells={self.max_cells}: "
                    f"shown as means of {ds.row_factor}×{ds.col_factor} blocks."
                )
            if m.size <= MAX_INTERACTIVE_CELLS:
                data = {"A": rnd_matrix(m), "signed": bool(r.signed)}
        else:
            primary = _primary_score(r, len(in_tokens))
            if primary is not None:
                # a scores-only method (e.g. PAS): colour the input by its primary score
                in_toks = _toks(in_tokens, special, r.scores[primary], bool(r.signed), primary, "input")
            else:
                in_toks = _toks(in_tokens, special, None, False, "", "input")
            out_toks = _toks(out_tokens, output_special(g, out_tokens), None, False, "", "output")
            if r.status == "ok" and m is None and len(out_tokens) == 0:
                note = "The response is empty: there is nothing to attribute."
            elif r.status == "ok" and m is None:
                note = "This method returns per-token scores only (no input × output matrix)"
                note += f"; input tokens are coloured by {primary}." if primary else "."
            elif r.status == "ok" and m is not None:
                note = f"Matrix shape {m.shape} does not match the tokens ({len(in_tokens)}×{len(out_tokens)})."
        table, sfig = self._scores(g, r, in_tokens, special)
        return MethodView(
            key=key,
            label=r.display_name,
            method=r.method,
            status=r.status,
            reason=r.reason,
            signed=bool(r.signed),
            matrix_label=r.matrix_label,
            options=json.dumps(r.options, sort_keys=True, ensure_ascii=False, default=str) if r.options else "defaults",
            timings=[(k, fmt_seconds(v)) for k, v in sorted(r.timings.items())],
            input_toks=in_toks,
            output_toks=out_toks,
            heatmap=heat,
            heatmap_note=note,
            scores=table,
            scores_fig=sfig,
            data_json=data,
        )

    def _scores(
        self, g: Generation, r: AttributionResult, tokens: list[str], special: list[bool]
    ) -> tuple[ScoreTable | None, FigureBlock | None]:
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
            rows.append((i, display_token(tok), special[i] if i < len(special) else False, [fmt_number(v) for v in vals]))
        if not rows:
            return None, None
        fig = scores_figure(tokens, {n: r.scores[n] for n in names}, scored)
        fb = self.figure(fig, uid("scores", g.model_id, g.prompt_id, r.display_name), "Scores")
        return ScoreTable(names, rows), fb

    # ---- model comparison (seed 001 §4.5)
    def _comparison(self, a: Generation, b: Generation, labels: dict[str, str]) -> Comparison:
        cid = self._id(uid("compare", a.prompt_id, a.model_id, "vs", b.model_id))
        ra = {r.display_name: r for r in self.run.results_for(a.model_id, a.prompt_id)}
        rb = {r.display_name: r for r in self.run.results_for(b.model_id, b.prompt_id)}
        methods = []
        for ms in self.spec.methods:
            x, y = ra.get(ms.label), rb.get(ms.label)
            if x is None or y is None:
                continue
            mx, my = _matrix_or_none(x), _matrix_or_none(y)
            if mx is None or my is None:
                continue
            if mx.shape != (a.n, a.t) or my.shape != (b.n, b.t):
                continue
            signed = (bool(x.signed) or bool(y.signed)) and not self.absolute
            ixa, iya = self._importance(mx)
            ixb, iyb = self._importance(my)
            diff = None
            if tuple(a.input_tokens) == tuple(b.input_tokens):
                d = difference(mx, my)
                t = d.shape[1]
                note = (
                    f"A[{a.model_id}] − A[{b.model_id}] over the same input tokens"
                    if a.t == b.t
                    else f"The responses differ in length ({a.t} vs {b.t} tokens): the difference covers the first {t} output positions, aligned by position."
                )
                out_labels = [
                    f"{ta} | {tb}" if ta != tb else ta for ta, tb in zip(a.output_tokens[:t], b.output_tokens[:t])
                ]
                fig, _ = heatmap(
                    d,
                    list(a.input_tokens),
                    out_labels,
                    signed=True,
                    value_label=f"Δ {ms.label}",
                    title=f"{ms.label}: A[{a.model_id}] − A[{b.model_id}]",
                    max_cells=self.max_cells,
                )
                diff = self.figure(fig, uid("diff", a.prompt_id, ms.label, a.model_id, "minus", b.model_id))
            else:
                note = (
                    "No differential matrix: the two models tokenise the input differently, "
                    "so rows do not correspond."
                )
            methods.append(
                CompareMethod(
                    key=slug(ms.label),
                    label=ms.label,
                    left_input=_toks(a.input_tokens, a.input_special, ixa, signed, "I(x)", "input"),
                    left_output=_toks(a.output_tokens, output_special(a), iya, signed, "I(y)", "output"),
                    right_input=_toks(b.input_tokens, b.input_special, ixb, signed, "I(x)", "input"),
                    right_output=_toks(b.output_tokens, output_special(b), iyb, signed, "I(y)", "output"),
                    diff=diff,
                    note=note,
                )
            )
        return Comparison(
            id=cid,
            left=a.model_id,
            right=b.model_id,
            left_label=labels.get(a.model_id, a.model_id),
            right_label=labels.get(b.model_id, b.model_id),
            same_output=tuple(a.output_tokens) == tuple(b.output_tokens),
            methods=methods,
        )

    def _toc(self, ctx: ReportContext) -> list[tuple[str, str, int]]:
        toc = [("summary", "Summary", 1), ("anomalies", f"Anomalies ({ctx.n_findings})", 1)]
        toc += [(n.id, n.title, 1) for n in ctx.narrative_before]
        toc.append(("results", "Results", 1))
        for s in ctx.sections:
            toc.append((s.id, f"Prompt {s.label}", 2))
            for p in s.panels:
                toc.append((p.id, p.model_label, 3))
            for c in s.comparisons:
                toc.append((c.id, f"{c.left} vs {c.right}", 3))
        toc += [(n.id, n.title, 1) for n in ctx.narrative_after]
        toc.append(("provenance", "Provenance", 1))
        return toc


def _md(text: str) -> str:
    from reportgen.render import markdown_html

    return str(markdown_html(text))


def _status_cell(rs: list[AttributionResult], n_prompts: int) -> StatusCell:
    if not rs:
        return StatusCell("none", "not run", "not requested for this model")
    st = sorted({r.status for r in rs})
    reasons = sorted({r.reason for r in rs if r.reason})
    reason = "; ".join(reasons)
    if st == ["ok"]:
        return StatusCell("ok", "ok" if len(rs) == 1 else f"ok ({len(rs)})", "")
    if len(st) == 1:
        return StatusCell(st[0], st[0], reason)
    ok = sum(1 for r in rs if r.status == "ok")
    return StatusCell("partial", f"ok {ok}/{len(rs)}", reason)


#: Score vectors preferred for colouring tokens when a method has no matrix, in order.
PRIMARY_SCORES = ("attribution_score", "importance", "score")


def _primary_score(r: AttributionResult, n: int) -> str | None:
    """The score vector that colours the input of a scores-only result (None if none fits)."""
    if r.status != "ok":
        return None
    names = [k for k in PRIMARY_SCORES if k in r.scores] + sorted(r.scores)
    for k in names:
        v = r.scores.get(k)
        if v is not None and len(v) == n and any(x is not None for x in v):
            return k
    return None


def _split_context(context: str, token: str) -> tuple[str, str, str]:
    """(before, token, after) for highlighting; detectors mark the token as «token»."""
    marked = f"«{token}»"
    if token and marked in context:
        i = context.index(marked)
        return context[:i], token, context[i + len(marked) :]
    if token and token in context:
        i = context.index(token)
        return context[:i], context[i : i + len(token)], context[i + len(token) :]
    return context, "", ""


# --------------------------------------------------------------------------- rendering


def render_html(run: RunResult, figures: list[FigureSpec], pm: Any | None = None) -> str:
    """The whole report as one HTML string (deterministic for a given run)."""
    ctx = ContextBuilder(run, figures, _detectors(pm)).build()
    env = make_jinja_env(pm)
    template = env.get_template("report.html")
    return template.render(
        ctx=ctx,
        css=Markup(read_asset("report.css")),
        js=Markup(read_asset("report.js")),
        plotly_js=plotly_js(),
        version=_version(),
    )


def _detectors(pm: Any | None) -> dict[str, tuple[str, ...]]:
    """Installed detectors and the methods each reads (empty without a plugin manager)."""
    if pm is None:
        return {}
    try:
        from reportgen.plugins import Registry

        reg = Registry(pm)
    except Exception:  # a broken plugin must not stop the report; the CLI reports it
        return {}
    return {name: tuple(getattr(d, "methods", ()) or ()) for name, d in sorted(reg.detectors.items())}


def _version() -> str:
    from reportgen import __version__

    return __version__


class HtmlRenderer(Renderer):
    """Self-contained interactive HTML report (one file, opens offline)."""

    format: ClassVar[str] = "html"
    extension: ClassVar[str] = "html"
    description: ClassVar[str] = "Self-contained interactive HTML report (Plotly inlined once, no network)."

    def __init__(self, pm: Any | None = None) -> None:
        self.pm = pm

    def render(self, run: RunResult, figures: list[FigureSpec], out_path: str) -> None:
        pm = self.pm
        if pm is None:  # registered through the hook: use the installed plugins' Jinja additions
            from reportgen.plugins import get_plugin_manager

            pm = get_plugin_manager()
        html = render_html(run, figures, pm)
        with open(out_path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(html)
