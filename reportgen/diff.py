"""``reportgen diff OLD NEW``: what changed between two runs, from their results.json alone.

Both files are read and checked by :func:`reportgen.results.load_run`; no model is loaded. The
runs' (prompt, model, method) triples are paired by id. For each pair the comparison view of the
report (:mod:`reportgen.report.comparison`) puts OLD and NEW side by side with the differential
matrix A[OLD] − A[NEW]: per token when both runs tokenised input and response alike, otherwise
per word (per the NEW spec's ``aggregations.granularity`` when coarser), the units aligned by a
diff of their texts. Findings are matched by (model, prompt, method, detector, token): those only
in NEW appeared, those only in OLD disappeared, those in both with another severity changed.
Prompts, models and methods of one run only are listed.

:func:`diff_runs` computes it, :func:`diff_json` is diff.json, :func:`write_diff` writes
``diff.html``, ``diff.json`` and/or ``diff.pdf`` (:mod:`reportgen.diff_pdf`: PDF/A-3b with
diff.json and both results.json attached).
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from reportgen import __version__
from reportgen.data import Finding, Generation, RunResult, jsonable_dict
from reportgen.errors import RenderError, SpecError
from reportgen.figures import rnd_matrix, slug
from reportgen.granularity import Granularity, Units
from reportgen.report.builder import FigureDrawer, ReportBuilder, uid
from reportgen.report.comparison import align, compare_method, inputs_note, method_delta, note_for, why_not
from reportgen.report.model import CompareMethod, Comparison, Tok
from reportgen.report.text import token_views

#: Formats ``reportgen diff`` writes.
FORMATS = ("html", "json", "pdf")


@dataclass(frozen=True)
class PairDiff:
    """One (prompt, model, method) present in both runs.

    ``delta`` is A[OLD] − A[NEW] over the aligned units (``rows`` × ``cols``, the OLD side's
    texts), or for a method with per-token scores only the difference of its primary score per
    input unit (one column; ``what`` names the score, "A" for matrices); None when the two cannot
    be compared (``note`` says why).
    """

    prompt_id: str
    model_id: str
    method: str
    granularity: str
    same_input: bool
    same_response: bool
    what: str
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    delta: np.ndarray | None
    note: str

    @property
    def max_abs(self) -> float | None:
        d = None if self.delta is None else self.delta[np.isfinite(self.delta)]
        return None if d is None or d.size == 0 else float(np.abs(d).max())

    @property
    def mean_abs(self) -> float | None:
        d = None if self.delta is None else self.delta[np.isfinite(self.delta)]
        return None if d is None or d.size == 0 else float(np.abs(d).mean())


@dataclass(frozen=True)
class RunDiff:
    old: RunResult
    new: RunResult
    old_name: str
    new_name: str
    pairs: tuple[PairDiff, ...]
    only_old: dict[str, tuple[str, ...]]  # prompts / models / methods / results of OLD only
    only_new: dict[str, tuple[str, ...]]
    appeared: tuple[Finding, ...]
    disappeared: tuple[Finding, ...]
    changed: tuple[tuple[Finding, Finding], ...]  # (OLD, NEW) with another severity
    granularity: Granularity  # asked for (pairs tokenised differently are compared at least per word)


def _ids(run: RunResult) -> dict[str, list[str]]:
    """Prompt, model and method ids of a run, in the spec's order."""
    return {
        "prompts": [p.id for p in run.spec.prompts],
        "models": [m.id for m in run.spec.models],
        "methods": [m.label for m in run.spec.methods],
    }


def _spec_order(key: tuple[str, str, str], ids: dict[str, list[str]]) -> tuple[tuple[int, str], ...]:
    """A (prompt, model, method) key's place in a spec: its prompts, then models, then methods in order."""
    return tuple((ids[k].index(v) if v in ids[k] else len(ids[k]), v) for k, v in zip(("prompts", "models", "methods"), key, strict=True))


def _results(run: RunResult) -> dict[tuple[str, str, str], Any]:
    return {(r.prompt_id, r.model_id, r.display_name): r for r in run.results}


def _finding_key(f: Finding) -> tuple[str, str, str, str, str]:
    return (f.model_id, f.prompt_id, f.method, f.detector, f.token)


def _findings(old: list[Finding], new: list[Finding]) -> tuple[list[Finding], list[Finding], list[tuple[Finding, Finding]]]:
    """(appeared, disappeared, changed severity): findings matched by key, in order, one to one."""
    by_key: dict[tuple[str, ...], list[Finding]] = defaultdict(list)
    for f in old:
        by_key[_finding_key(f)].append(f)
    appeared, changed = [], []
    for f in new:
        olds = by_key.get(_finding_key(f))
        if not olds:
            appeared.append(f)
            continue
        same = next((o for o in olds if o.severity == f.severity), None)
        o = same if same is not None else olds[0]
        olds.remove(o)
        if o.severity != f.severity:
            changed.append((o, f))
    disappeared = [f for fs in by_key.values() for f in fs]
    return appeared, disappeared, changed


def _pair(g_old: Generation, g_new: Generation, r_old: Any, r_new: Any, method: str, granularity: Granularity) -> PairDiff:
    al = align(g_old, g_new, granularity)
    make = functools.partial(
        PairDiff,
        prompt_id=g_old.prompt_id,
        model_id=g_old.model_id,
        method=method,
        granularity=al.granularity,
        same_input=tuple(g_old.input_tokens) == tuple(g_new.input_tokens),
        same_response=g_old.response_text == g_new.response_text,
    )
    found = method_delta(al, (g_old, g_new), (r_old, r_new))
    if found is None:
        return make(what="", rows=(), cols=(), delta=None, note=why_not(al, (r_old, r_new), ("OLD", "NEW")))
    what, d = found
    return make(what=what, rows=d.rows, cols=d.cols, delta=d.matrix, note=note_for(al, what, ("OLD", "NEW")))


def diff_runs(
    old: RunResult, new: RunResult, old_name: str = "OLD", new_name: str = "NEW", granularity: Granularity | None = None
) -> RunDiff:
    """Pair the two runs by (prompt, model, method) id and compare each pair; match their findings.

    ``granularity`` overrides the NEW spec's ``aggregations.granularity``.
    """
    g: Granularity = granularity or new.spec.aggregations.granularity
    ro, rn = _results(old), _results(new)
    io, inew = _ids(old), _ids(new)
    pairs = []
    for key in sorted(ro.keys() & rn.keys(), key=lambda k: _spec_order(k, inew)):
        prompt, model, method = key
        g_old, g_new = old.generation(model, prompt), new.generation(model, prompt)
        if g_old is not None and g_new is not None:
            pairs.append(_pair(g_old, g_new, ro[key], rn[key], method, g))
    only_old = {k: tuple(v for v in io[k] if v not in inew[k]) for k in io}
    only_new = {k: tuple(v for v in inew[k] if v not in io[k]) for k in inew}
    shown = {(p.prompt_id, p.model_id, p.method) for p in pairs}
    only_old["results"] = tuple(" / ".join(k) for k in sorted(ro.keys() - shown))
    only_new["results"] = tuple(" / ".join(k) for k in sorted(rn.keys() - shown))
    appeared, disappeared, changed = _findings(old.findings, new.findings)
    return RunDiff(old, new, old_name, new_name, tuple(pairs), only_old, only_new, tuple(appeared), tuple(disappeared), tuple(changed), g)


def _finding_json(f: Finding) -> dict[str, Any]:
    return {
        k: v
        for k, v in f.to_json().items()
        if k in ("detector", "severity", "model_id", "prompt_id", "method", "token", "positions", "title", "message")
    }


def diff_json(d: RunDiff) -> dict[str, Any]:
    """diff.json: the pairs (with their differential matrices), what only one run has, and the findings' changes."""
    return jsonable_dict(
        {
            "reportgen_version": __version__,
            "old": {"file": d.old_name, "title": d.old.spec.title, "created_at": d.old.created_at},
            "new": {"file": d.new_name, "title": d.new.spec.title, "created_at": d.new.created_at},
            "pairs": [
                {
                    "prompt": p.prompt_id,
                    "model": p.model_id,
                    "method": p.method,
                    "granularity": p.granularity,
                    "compared": p.what,
                    "same_input": p.same_input,
                    "same_response": p.same_response,
                    "max_abs_delta": p.max_abs,
                    "mean_abs_delta": p.mean_abs,
                    "rows": list(p.rows),
                    "cols": list(p.cols),
                    "delta": None if p.delta is None else rnd_matrix(p.delta),
                    "note": p.note,
                }
                for p in d.pairs
            ],
            "only_old": {k: list(v) for k, v in d.only_old.items()},
            "only_new": {k: list(v) for k, v in d.only_new.items()},
            "findings": {
                "appeared": [_finding_json(f) for f in d.appeared],
                "disappeared": [_finding_json(f) for f in d.disappeared],
                "changed": [{"old": _finding_json(o), "new": _finding_json(n)} for o, n in d.changed],
            },
        }
    )


@dataclass(frozen=True)
class PairSection:
    """One (prompt, model) of both runs: a comparison with one view per method."""

    label: str
    comparison: Comparison


def diff_sections(d: RunDiff, drawer: FigureDrawer) -> list[PairSection]:
    """One comparison per (prompt, model) of both runs, its figures drawn by ``drawer``."""
    aggregations = d.new.spec.aggregations.model_copy(update={"granularity": d.granularity})
    spec = d.new.spec.model_copy(update={"aggregations": aggregations})
    b = ReportBuilder(replace(d.new, spec=spec), [], {}, drawer, {})
    ro, rn = _results(d.old), _results(d.new)
    groups: dict[tuple[str, str], list[PairDiff]] = defaultdict(list)
    for p in d.pairs:
        groups[(p.prompt_id, p.model_id)].append(p)
    out = []
    for (prompt, model), ps in groups.items():
        g_old, g_new = d.old.generation(model, prompt), d.new.generation(model, prompt)
        if g_old is None or g_new is None:  # pragma: no cover - pairs exist only where both do
            continue
        methods: list[CompareMethod] = []
        for p in ps:
            key = (prompt, model, p.method)
            cm = compare_method(b, p.method, (g_old, g_new), (ro[key], rn[key]), ("OLD", "NEW"))
            methods.append(cm if cm is not None else _plain(p, (g_old, g_new), d.granularity))
        label = b.model_label.get(model, model)
        comp = Comparison(
            id=b.id(uid("pair", prompt, model)),
            left=f"OLD {model}",
            right=f"NEW {model}",
            left_label=f"OLD · {label}",
            right_label=f"NEW · {label}",
            same_output=g_old.response_text == g_new.response_text,
            inputs_note=inputs_note(g_old, g_new),
            methods=tuple(methods),
            title="Run comparison",
        )
        out.append(PairSection(f"prompt {prompt}", comp))
    return out


def _plain(p: PairDiff, pair: tuple[Generation, Generation], granularity: Granularity) -> CompareMethod:
    """Both sides' units uncoloured, and why there is no difference to show."""
    al = align(*pair, granularity)

    def plain(u: Units, side: str) -> tuple[Tok, ...]:
        return token_views(u.texts, u.special, None, False, "", side)

    return CompareMethod(
        key=slug(p.method),
        label=p.method,
        left_input=plain(al.left_in, "input"),
        left_output=plain(al.left_out, "output"),
        right_input=plain(al.right_in, "input"),
        right_output=plain(al.right_out, "output"),
        diff=None,
        note=p.note,
    )


def diff_html(d: RunDiff) -> str:
    """The comparison report: one section per (prompt, model), the findings' changes, what one run lacks."""
    from reportgen.render import PlotlyDrawer, make_jinja_env, plotly_bundle, plotly_js_packed, plotly_templates_json, read_asset

    drawer = PlotlyDrawer()
    sections = diff_sections(d, drawer)
    return (
        make_jinja_env()
        .get_template("diff.html")
        .render(
            d=d,
            sections=sections,
            css=Markup(read_asset("report.css")),
            js=Markup(read_asset("report.js")),
            plotly=plotly_js_packed(plotly_bundle(drawer.trace_types)),
            plotly_templates=plotly_templates_json(drawer.templates),
            version=__version__,
        )
    )


def check_formats(formats: list[str]) -> list[str]:
    """The formats to write; unknown ones are a usage error (exit 2)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise SpecError(f"unknown format {bad[0]!r} for diff; valid choices: {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def write_diff(d: RunDiff, out_dir: Path, formats: list[str]) -> dict[str, str]:
    """Write ``diff.html`` / ``diff.json`` / ``diff.pdf`` into ``out_dir`` (created), each file
    atomically; returns format → path."""
    from reportgen.cache import atomic_write_bytes, atomic_write_text

    data = json.dumps(diff_json(d), ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    written = {}
    for fmt in check_formats(formats):
        path = out_dir / f"diff.{fmt}"
        try:
            if fmt == "pdf":
                from reportgen.diff_pdf import write_diff_pdf

                out_dir.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.partial")
                try:
                    write_diff_pdf(d, tmp, data)
                    atomic_write_bytes(path, tmp.read_bytes())
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                atomic_write_text(path, diff_html(d) if fmt == "html" else data)
        except OSError as exc:
            raise RenderError(f"--output: cannot write {path} ({exc.strerror or exc})") from None
        written[fmt] = str(path)
    return written
