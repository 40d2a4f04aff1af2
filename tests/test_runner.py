"""The pipeline end to end on a tiny model: results.json, caching, failures, atomic reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reportgen import hookimpl
from reportgen.data import AttributionResult
from reportgen.errors import RenderError
from reportgen.plugin_api import AttributionMethod, Renderer
from reportgen.plugins import Registry, get_plugin_manager
from reportgen.results import load_run
from reportgen.runner import RunOptions, render, run_audit
from tests.conftest import TinyLoader, write_spec

SPEC = """\
title: "Tiny audit <script>alert(1)</script>"
models:
  - id: tiny
    source: "tiny:3"
prompts:
  - id: p1
    text: "Is </script><script>alert(1)</script> safe?"
  - id: p2
    messages:
      - role: user
        content: "Name a <img src=x onerror=alert(1)> colour."
generation: {max_new_tokens: 4}
methods:
  - method: inseq.saliency
  - method: inseq.input_x_gradient
  - method: test.boom
report:
  formats: [json]
"""


class Boom(AttributionMethod):
    name = "test.boom"
    description = "always fails"

    def attribute(self, ctx: Any) -> AttributionResult:
        raise ValueError("kaboom")


class BadShape(AttributionMethod):
    name = "test.badshape"
    description = "returns a matrix of the wrong shape"

    def attribute(self, ctx: Any) -> AttributionResult:
        return AttributionResult.for_generation(ctx.generation, self.name, ctx.options, matrix=np.zeros((2, 2)))


class BrokenRenderer(Renderer):
    format = "broken"
    extension = "html"

    def render(self, ctx: Any, out_path: str) -> None:
        Path(out_path).write_text("<html>half", encoding="utf-8")
        raise RuntimeError("disk full")


@pytest.fixture()
def registry(smollm_tokenizer: Any) -> Registry:
    loader = TinyLoader(smollm_tokenizer)

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

        @hookimpl
        def reportgen_register_attribution_methods(self, register: Any) -> None:
            register(Boom())
            register(BadShape())

        @hookimpl
        def reportgen_register_renderers(self, register: Any) -> None:
            register(BrokenRenderer())

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-runner")
    reg = Registry(pm)
    reg.loader = loader  # type: ignore[attr-defined]
    return reg


def test_run_writes_results_and_isolates_failures(tmp_path: Path, registry: Registry) -> None:
    spec = write_spec(tmp_path, SPEC)
    run, written = run_audit(spec, RunOptions(output=str(tmp_path / "out")), registry)
    assert registry.loader.loads == 1  # type: ignore[attr-defined]  # one load per model, not per prompt
    data = json.loads(Path(written["json"]).read_text())
    assert data["schema_version"] == "1.0"
    assert len(data["generations"]) == 2 and len(data["results"]) == 6
    by = {(r["prompt"], r["method"]): r for r in data["results"]}
    boom = by[("p1", "test.boom")]
    assert boom["status"] == "failed" and "kaboom" in boom["reason"]
    sal = by[("p1", "inseq.saliency")]
    gen = data["generations"][0]
    n, t = len(gen["input_ids"]), len(gen["output_ids"])
    assert sal["status"] == "ok" and np.array(sal["attribution"]["raw"], dtype=float).shape == (n, t)
    assert len(sal["attribution"]["aggregated"]["token_importance"]["input"]) == n
    # Every method explains the same stored response.
    assert by[("p1", "inseq.input_x_gradient")]["output"]["tokens"] == sal["output"]["tokens"]
    prov = data["provenance"]
    assert prov["seed"] == 0 and len(prov["spec_sha256"]) == 64 and "torch" in prov["packages"]
    # Loading it back rebuilds the same run.
    back = load_run(written["json"])
    assert [r.method for r in back.results] == [r.method for r in run.results]
    assert np.allclose(back.results[0].matrix, run.results[0].matrix, equal_nan=True)


def test_same_spec_same_numbers_and_cache_reuse(tmp_path: Path, registry: Registry) -> None:
    spec = write_spec(tmp_path, SPEC)
    run1, _ = run_audit(spec, RunOptions(output=str(tmp_path / "a"), use_cache=False), registry)
    run2, _ = run_audit(spec, RunOptions(output=str(tmp_path / "b")), registry)  # fills the cache
    run3, _ = run_audit(spec, RunOptions(output=str(tmp_path / "c")), registry)  # reads it
    assert len(run1.results) == len(run2.results) == len(run3.results) == 6
    compared = 0
    for r1, r2, r3 in zip(run1.results, run2.results, run3.results):
        assert (r1.method, r1.prompt_id, r1.status) == (r2.method, r2.prompt_id, r2.status) == (r3.method, r3.prompt_id, r3.status)
        if r1.matrix is not None:
            assert np.array_equal(r1.matrix, r2.matrix, equal_nan=True) and np.allclose(r2.matrix, r3.matrix, equal_nan=True)
            compared += 1
    assert compared == 4  # 2 prompts × (saliency, input_x_gradient); test.boom has no matrix
    assert run3.provenance["cache"]["hits"] >= 6  # 2 generations + 4 ok results
    ok = [r for r in run3.results if r.status == "ok"]
    assert len(ok) == 4 and all(r.details.get("from_cache") for r in ok)


def test_failed_render_leaves_no_half_written_report(tmp_path: Path, registry: Registry) -> None:
    spec = write_spec(tmp_path, SPEC)
    run, _ = run_audit(spec, RunOptions(output=str(tmp_path / "ok")), registry)
    out = tmp_path / "out"
    with pytest.raises(RenderError, match=r"could not render broken: RuntimeError: disk full; written: json") as err:
        render(registry, run, out, ["broken", "json"])
    assert err.value.exit_code == 6
    assert (out / "results.json").exists()  # the other formats are still written
    assert not (out / "report.html").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_unavailable_method_is_reported_not_fatal(tmp_path: Path, registry: Registry) -> None:
    text = SPEC.replace("source: \"tiny:3\"", "source: \"tiny:3\"\n    attn_implementation: sdpa").replace(
        "  - method: test.boom\n", "  - method: inseq.attention\n"
    )
    spec = write_spec(tmp_path, text)
    run, _ = run_audit(spec, RunOptions(output=str(tmp_path / "out")), registry)
    att = [r for r in run.results if r.method == "inseq.attention"]
    assert att and all(r.status == "unavailable" and "eager" in (r.reason or "") for r in att)


def test_reports_are_readable_by_others(tmp_path: Path) -> None:
    import os
    import stat

    from reportgen.cache import atomic_write_text

    target = tmp_path / "report.html"
    atomic_write_text(target, "<html></html>")
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH


def test_results_json_rebuilds_the_same_report(tmp_path: Path, registry: Registry) -> None:
    from click.testing import CliRunner

    from reportgen.cli import main

    spec = write_spec(tmp_path, SPEC.replace("formats: [json]", "formats: [json, html]"))
    _, written = run_audit(spec, RunOptions(output=str(tmp_path / "out")), registry)
    res = CliRunner().invoke(main, ["render", written["json"], "-o", str(tmp_path / "rebuilt"), "-f", "html"])
    assert res.exit_code == 0, res.output
    original = Path(written["html"]).read_text("utf-8")
    rebuilt = (tmp_path / "rebuilt" / "report.html").read_text("utf-8")
    assert rebuilt == original


def test_a_misshapen_result_fails_its_job_only(tmp_path: Path, registry: Registry) -> None:
    text = SPEC.replace("  - method: test.boom\n", "  - method: test.badshape\n")
    run, _ = run_audit(write_spec(tmp_path, text), RunOptions(output=str(tmp_path / "out")), registry)
    bad = [r for r in run.results if r.method == "test.badshape"]
    assert bad and all(r.status == "failed" and "expected (" in (r.reason or "") for r in bad)
    assert any(r.status == "ok" for r in run.results)
