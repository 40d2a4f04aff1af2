"""The faithfulness scorecard through the runner: spec block, cache, results.json, HTML and PDF.

The evaluation plugin is registered in code on a plugin manager (as tests/test_hooks.py does),
so these tests do not depend on its entry point being installed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import reportgen_plugins.evaluation as evaluation_plugin
from reportgen import hookimpl
from reportgen.errors import SpecError
from reportgen.plugins import Registry, get_plugin_manager
from reportgen.results import load_run
from reportgen.runner import RunOptions, render, run_audit
from reportgen.spec import validate_text
from tests.conftest import TinyLoader, write_spec

SPEC = """\
title: scorecard
models:
  - id: tiny
    source: "tiny:4"
prompts:
  - id: colour
    text: "Name a colour please."
  - id: capital
    text: "What is the capital of France?"
generation: {max_new_tokens: 3}
methods:
  - method: inseq.saliency
  - method: inseq.input_x_gradient
evaluation:
  perturbations: 8
  bootstrap: 200
report:
  formats: [json, html, pdf]
"""


def make_registry(tokenizer: Any) -> tuple[Registry, TinyLoader]:
    loader = TinyLoader(tokenizer)

    class _Tiny:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    if not pm.is_registered(evaluation_plugin):  # the entry point may not be installed yet
        pm.register(evaluation_plugin, name="evaluation")
    pm.register(_Tiny(), name="tests-tiny")
    return Registry(pm), loader


@pytest.fixture(scope="module")
def audit(smollm_tokenizer: Any, tmp_path_factory: Any) -> dict[str, Any]:
    registry, loader = make_registry(smollm_tokenizer)
    tmp = tmp_path_factory.mktemp("evaluation")
    spec = write_spec(tmp, SPEC + "cache: cache\n")
    run, written = run_audit(spec, RunOptions(output=str(tmp / "out")), registry)
    return {"registry": registry, "loader": loader, "run": run, "written": written, "spec": spec, "tmp": tmp}


def test_runner_stores_the_evaluation(audit: dict[str, Any]) -> None:
    run = audit["run"]
    (ev,) = run.evaluations
    assert ev.evaluator == "faithfulness" and ev.model_id == "tiny" and ev.status == "ok"
    methods = {s.method for s in ev.scores}
    assert {"inseq.saliency", "inseq.input_x_gradient"} <= methods
    assert {p.prompt_id for p in ev.prompts} == {"colour", "capital"}
    assert ev.settings["seed"] == 0 and ev.settings["operator"] == "replace" and ev.settings["perturbations"] == 8
    assert ev.recommendation is not None and ev.recommendation.verdict == "too_thin"  # two prompts
    assert "timings" in ev.to_json() and run.timings["evaluate:tiny:faithfulness"] > 0


def test_results_json_holds_every_metric_and_loads_back(audit: dict[str, Any]) -> None:
    path = Path(audit["written"]["json"])
    data = json.loads(path.read_text("utf-8"))
    (ev,) = data["evaluations"]
    names = {m["name"] for m in ev["metrics"]}
    assert {"naopc", "aopc", "insertion_norm", "infidelity", "comprehensiveness", "sufficiency", "gini"} <= names
    assert {"comprehensiveness@1", "sufficiency@50"} <= names
    pm = ev["prompts"][0]
    assert set(pm["values"]) >= {"naopc", "infidelity", "comprehensiveness@20"} and pm["curves"]["deletion"][0] == 0.0
    assert {a["prompt"] for a in ev["agreement"]} == {"colour", "capital", None}
    again = load_run(path)
    assert [e.to_json() for e in again.evaluations] == [e.to_json() for e in audit["run"].evaluations]


def test_rerun_reuses_the_cached_evaluation(audit: dict[str, Any]) -> None:
    """(The tiny loader has no weights fingerprint, so the model loads to be keyed; nothing is recomputed.)"""
    logs: list[str] = []
    from reportgen.runner import Progress

    opts = RunOptions(output=str(audit["tmp"] / "out2"), progress=Progress(log=logs.append))
    run, _ = run_audit(audit["spec"], opts, audit["registry"])
    assert "evaluations: 1 reused from the cache, 0 computed" in logs
    (ev,) = run.evaluations
    assert ev.details.get("from_cache") is True
    first = audit["run"].evaluations[0]
    assert [s.to_json() for s in ev.scores] == [s.to_json() for s in first.scores]


def test_html_report_has_the_section_and_the_summary_headline(audit: dict[str, Any]) -> None:
    html = Path(audit["written"]["html"]).read_text("utf-8")
    assert html.count("Which attributions can you trust?") >= 3  # toc, summary headline, section
    assert 'id="evaluation"' in html and 'class="data scorecard"' in html
    summary = html[html.index('id="summary"') : html.index('id="anomalies"')]
    assert "Too little evidence to recommend a method on tiny" in summary
    assert "Deletion score" in html and "↑" in html and "↓" in html and "★" in html
    assert 'id="fig-eval-deletion-tiny-faithfulness"' in html and 'id="fig-eval-agreement-tiny-faithfulness"' in html
    assert "random order (reference)" in html and "replacing it with a single space" in html
    # the section comes before the results
    assert html.index('id="evaluation"') < html.index('id="results"')


def test_pdf_report_has_the_section(audit: dict[str, Any]) -> None:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(audit["written"]["pdf"])
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in reader.pages))
    assert "Which attributions can you trust?" in text
    assert "Scorecard" in text.replace("SCORECARD", "Scorecard") and "Too little evidence to recommend" in text


def test_reportgen_render_rebuilds_the_section(audit: dict[str, Any], tmp_path: Path) -> None:
    run = load_run(audit["written"]["json"], rebuild=True)
    written = render(audit["registry"], run, tmp_path, ["html"])
    html = Path(written["html"]).read_text("utf-8")
    assert 'class="data scorecard"' in html and "Too little evidence to recommend" in html


def test_evaluation_is_off_unless_asked(audit: dict[str, Any]) -> None:
    from tests.report_fixtures import html_of, make_run

    run = make_run(models=1)
    assert run.spec.evaluation is None and not run.evaluations
    assert "Which attributions can you trust?" not in html_of(run)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "evaluation: {evaluators: [faithfulnes]}",
            "evaluation.evaluators[0]: unknown evaluator 'faithfulnes' (did you mean 'faithfulness'?)",
        ),
        ("evaluation: {metrics: [naopc]}", "evaluation.metrics[0]: unknown metric 'naopc'"),
        ("evaluation: {options: {faithfulness: {beam: 3}}}", "evaluation.options.faithfulness.beam: unknown option for faithfulness"),
        (
            "evaluation: {options: {faithfulness: {beam_width: 0}}}",
            "evaluation.options.faithfulness.beam_width: Input should be greater than or equal to 1",
        ),
        ("evaluation: {k: [0, 10]}", "evaluation.k: 0.0 is not a percentage in (0, 100]"),
        ("evaluation: {methods: [saliency]}", "evaluation.methods names 'saliency', which is not a method label of this spec"),
        ("evaluation: {operator: blank}", "evaluation.operator: got 'blank'; expected 'replace', 'mask' or 'delete'"),
    ],
)
def test_spec_errors_in_the_evaluation_block(audit: dict[str, Any], block: str, message: str) -> None:
    text = SPEC.split("evaluation:")[0] + block + "\n"
    with pytest.raises(SpecError) as err:
        validate_text(text, "audit.yaml", audit["registry"])
    assert any(message in p for p in err.value.problems), err.value.problems


def test_valid_evaluation_block(audit: dict[str, Any]) -> None:
    text = SPEC.split("evaluation:")[0] + (
        "evaluation:\n  metrics: [deletion, agreement]\n  operator: delete\n  k: [50, 10]\n  methods: [inseq.saliency]\n"
        "  options: {faithfulness: {beam_width: 3, exact_up_to: 6}}\n"
    )
    spec = validate_text(text, "audit.yaml", audit["registry"])
    assert spec.evaluation is not None and spec.evaluation.k == [10.0, 50.0] and spec.evaluation.operator == "delete"


def test_metric_subset_and_delete_operator(smollm_tokenizer: Any, tmp_path: Path) -> None:
    registry, _ = make_registry(smollm_tokenizer)
    text = SPEC.replace("  perturbations: 8\n", "  perturbations: 4\n  metrics: [deletion, agreement]\n  operator: delete\n")
    text = text.replace("[json, html, pdf]", "[json]").replace('  - id: capital\n    text: "What is the capital of France?"\n', "")
    run, _ = run_audit(write_spec(tmp_path, text), RunOptions(output=str(tmp_path / "out"), use_cache=False), registry)
    (ev,) = run.evaluations
    assert {m.name for m in ev.metrics} == {"naopc", "aopc"}
    for p in ev.prompts:
        assert set(p.values) <= {"naopc", "aopc"}
    assert "deleting it" in ev.perturbation and ev.pooled_agreement() is not None
