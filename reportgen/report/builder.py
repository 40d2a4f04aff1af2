"""Build the :class:`~reportgen.report.model.ReportContext` of a run, section by section.

``build_context(ctx, drawer)`` is the one way every renderer gets its report model. The sections
are built by :mod:`~reportgen.report.summary`,
:mod:`~reportgen.report.findings`, :mod:`~reportgen.report.panels`,
:mod:`~reportgen.report.comparison` and :mod:`~reportgen.report.provenance`; this module
holds what they share: stable unique ids, the spec's report settings, plugin figures and
the renderer's :class:`FigureDrawer`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from reportgen.data import FigureSpec, RunResult
from reportgen.figures import slug
from reportgen.plugin_api import RenderContext
from reportgen.report.model import FigureBlock, Rebuilt, ReportContext, TocEntry


class FigureDrawer(Protocol):
    """How a renderer draws a figure: the only thing HTML and PDF reports build differently.

    ``interactive``: the page runs scripts (hover data is embedded for client-side views).
    ``heatmap_cells(spec_limit)``: the largest heatmap drawn before block-averaging, and
    how the report names that limit (e.g. ``report.max_heatmap_cells=20000``).
    """

    interactive: bool

    def heatmap_cells(self, spec_limit: int) -> tuple[int, str]: ...

    def draw(self, fig: Any, fid: str, title: str, caption: str) -> FigureBlock: ...


def uid(*parts: str) -> str:
    return "-".join(slug(p) for p in parts)


class ReportBuilder:
    """Shared state of one context build (ids are stable and unique within a report)."""

    def __init__(
        self,
        run: RunResult,
        figures: Sequence[FigureSpec],
        detectors: Mapping[str, tuple[str, ...]],
        drawer: FigureDrawer,
        method_descriptions: Mapping[str, str],
    ) -> None:
        self.run = run
        self.method_descriptions = dict(method_descriptions)
        self.spec = run.spec
        self.detectors = dict(detectors)
        self.drawer = drawer
        self.figures = sorted(figures, key=lambda f: (f.order, f.id))
        self.max_cells, self.cells_phrase = drawer.heatmap_cells(int(self.spec.report.max_heatmap_cells))
        self.absolute = self.spec.aggregations.token_importance == "abs_sum"
        self.window = int(self.spec.aggregations.window)
        self.model_label = {m.id: m.display for m in self.spec.models}
        self.used_ids: set[str] = set()

    def id(self, base: str) -> str:
        """``base``, or ``base-2``, ``base-3``… when two ids sanitise alike."""
        i, cand = 2, base
        while cand in self.used_ids:
            cand = f"{base}-{i}"
            i += 1
        self.used_ids.add(cand)
        return cand

    def figure(self, fig: Any, fid: str, title: str = "", caption: str = "") -> FigureBlock:
        fid = self.id(fid)
        try:
            return self.drawer.draw(fig, fid, title, caption)
        except Exception as exc:  # noqa: BLE001 - a plugin's malformed figure must not take the whole report down
            from markupsafe import Markup

            return FigureBlock(fid, title, caption, Markup(""), error=f"{type(exc).__name__}: {exc}"[:500])

    def plugin_figures(self, section: str, model_id: str | None = None, prompt_id: str | None = None) -> tuple[FigureBlock, ...]:
        out = []
        for f in self.figures:
            if f.section != section:
                continue
            if section == "prompt" and (f.model_id != model_id or f.prompt_id != prompt_id):
                continue
            out.append(self.figure(f.figure, slug(f.id), f.title, f.caption))
        return tuple(out)

    def orphan_figures(self) -> tuple[FigureBlock, ...]:
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
        return tuple(out)


def build_context(ctx: RenderContext, drawer: FigureDrawer) -> ReportContext:
    """The report model of ``ctx.run``, its figures drawn by ``drawer``.

    The render context's ``detectors`` (what each installed detector reads) let the report say
    what was checked and when nothing could be; ``methods`` gives each method's description.
    """
    from reportgen.report import (
        comparison,
        conversation,
        evaluation,
        findings,
        narrative,
        panels,
        provenance,
        summary,
    )

    run = ctx.run
    b = ReportBuilder(run, ctx.figures, ctx.detectors, drawer, ctx.methods)
    sections = conversation.attach(b, panels.build_sections(b, comparison.build_comparisons))
    anchors = {s.prompt_id: s.id for s in sections}
    before, after = narrative.build(b)
    found = findings.build(b)
    report = ReportContext(
        title=run.spec.report.title or run.spec.title,
        description=run.spec.description or "",
        created_at=run.created_at,
        completed_at=run.completed_at,
        summary=summary.build(b, anchors, found),
        findings=found,
        narrative_before=before,
        narrative_after=after,
        sections=sections,
        summary_figures=b.plugin_figures("summary"),
        anomaly_figures=b.plugin_figures("anomalies"),
        other_figures=b.orphan_figures(),
        provenance=provenance.rows(run),
        spec_text=run.spec_text,
        spec_path=run.spec_path,
        heatmap_cells=b.max_cells,
        rebuilt=_rebuilt(run),
        evaluation=evaluation.build(b),
    )
    return replace(report, toc=_toc(report))


def _rebuilt(run: RunResult) -> Rebuilt | None:
    """What ``reportgen render`` recorded in ``provenance["rebuilt"]`` (see ``reportgen.results.load_run``)."""
    rec = run.provenance.get("rebuilt")
    if not isinstance(rec, dict):
        return None
    return Rebuilt(at=str(rec.get("at", "")), source=str(rec.get("from", "")), sha256=str(rec.get("sha256", "")))


def _toc(ctx: ReportContext) -> tuple[TocEntry, ...]:
    toc = [TocEntry("summary", "Summary", 1), TocEntry("anomalies", f"Anomalies ({ctx.n_findings})", 1)]
    toc += [TocEntry(n.id, n.title, 1) for n in ctx.narrative_before]
    if ctx.evaluation is not None:
        toc.append(TocEntry(ctx.evaluation.id, ctx.evaluation.title, 1))
        if len(ctx.evaluation.views) > 1:
            toc += [TocEntry(v.id, f"{v.model_label} · {v.evaluator}", 2) for v in ctx.evaluation.views]
    toc.append(TocEntry("results", "Results", 1))
    for s in ctx.sections:
        toc.append(TocEntry(s.id, f"Prompt {s.label}", 2))
        toc += [TocEntry(p.id, p.model_label, 3) for p in s.panels]
        toc += [TocEntry(c.id, f"{c.left} vs {c.right}", 3) for c in s.comparisons]
    toc += [TocEntry(n.id, n.title, 1) for n in ctx.narrative_after]
    toc.append(TocEntry("provenance", "Provenance", 1))
    return tuple(toc)
