"""The faithfulness scorecard on the real embedded SmolLM2 (slow): one prompt, two gradient methods.

Checks the whole section on a real model: every metric in range, curves that end where they must
(all user tokens perturbed: the same value for every method; all restored: zero), the random
reference, the recommendation, results.json and the HTML section.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import reportgen_plugins.evaluation as evaluation_plugin
from reportgen.plugins import Registry, get_plugin_manager
from reportgen.runner import RunOptions, run_audit
from tests.conftest import write_spec

pytestmark = pytest.mark.slow

SPEC = """\
title: scorecard on SmolLM2
models:
  - id: smollm2
    source: embedded:smollm2-135m-instruct
prompts:
  - id: capital
    text: "What is the capital of France?"
generation: {max_new_tokens: 6}
methods:
  - method: inseq.saliency
  - method: inseq.input_x_gradient
evaluation:
  perturbations: 16
report:
  formats: [json, html]
cache: false
"""


def test_scorecard_on_smollm2(tmp_path: Path) -> None:
    pm = get_plugin_manager()
    if not pm.is_registered(evaluation_plugin):
        pm.register(evaluation_plugin, name="evaluation")
    run, written = run_audit(write_spec(tmp_path, SPEC), RunOptions(output=str(tmp_path / "out"), use_cache=False), Registry(pm))
    (ev,) = run.evaluations
    assert ev.status == "ok", ev.reason
    details = ev.details["prompts"]["capital"]
    assert details["user_tokens"] == 7 and details["bounds"].startswith("exact") and details["forwards"] == 2**7 - 1
    scored = [p for p in ev.prompts if not p.reference]
    assert {p.method for p in scored} == {"inseq.saliency", "inseq.input_x_gradient"}
    ends = set()
    for p in ev.prompts:
        for name in ("naopc", "insertion_norm", "infidelity"):
            v = p.values.get(name)
            assert v is None or 0.0 <= v <= 1.0, (p.method, name, v)
        assert p.curves["deletion"][0] == 0.0 and p.curves["insertion"][-1] == pytest.approx(0.0, abs=1e-9)
        ends.add(round(p.curves["deletion"][-1], 9))
    assert len(ends) == 1 and ends.pop() < 0, "perturbing every user token must lower log P(response) for every method alike"
    assert ev.recommendation is not None and ev.recommendation.verdict == "too_thin"
    data = json.loads(Path(written["json"]).read_text("utf-8"))
    assert data["evaluations"][0]["scores"][0]["values"]["naopc"]["n"] == 1
    html = Path(written["html"]).read_text("utf-8")
    assert 'class="data scorecard"' in html and "Too little evidence to recommend a method on smollm2" in html
