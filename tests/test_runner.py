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
from reportgen.runner import Progress, RunOptions, render, run_audit
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
    assert data["schema_version"] == "1.4"
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
    # Timings read in the order things happened: the model's load, then its generations and methods.
    steps = list(data["timings"])
    assert steps[0].startswith("load:") and steps[1].startswith("generate:") and steps[-1] == "total"
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
    for r1, r2, r3 in zip(run1.results, run2.results, run3.results, strict=True):
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
    text = SPEC.replace('source: "tiny:3"', 'source: "tiny:3"\n    attn_implementation: sdpa').replace(
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
    """`reportgen render` rebuilds the run's report; it differs only by saying it was rebuilt."""
    import hashlib
    import re

    from click.testing import CliRunner

    from reportgen.cli import main

    # Methods every installed registry knows (the CLI renders with the entry-point registry).
    text = SPEC.replace("formats: [json]", "formats: [json, html]").replace("  - method: test.boom\n", "")
    spec = write_spec(tmp_path, text)
    _, written = run_audit(spec, RunOptions(output=str(tmp_path / "out")), registry)
    original = Path(written["html"]).read_text("utf-8")
    assert "rebuilt-notice" not in original and "rebuilt.sha256" not in original  # a run's report has no notice
    res = CliRunner().invoke(main, ["render", written["json"], "-o", str(tmp_path / "rebuilt"), "-f", "html", "-f", "json"])
    assert res.exit_code == 0, res.output
    rebuilt = (tmp_path / "rebuilt" / "report.html").read_text("utf-8")
    sha = hashlib.sha256(Path(written["json"]).read_bytes()).hexdigest()
    notice = re.search(r'<div class="callout st-unavailable rebuilt-notice" id="rebuilt" role="note">.*?</div>\n', rebuilt, re.DOTALL)
    assert notice is not None
    assert "<code>results.json</code>" in notice.group(0) and sha in notice.group(0)
    assert str(tmp_path) not in notice.group(0)  # the file's name, never its absolute path
    rows = re.findall(r"<tr><th scope=\"row\">rebuilt\.(at|from|sha256)</th><td><code>(.*?)</code></td></tr>\n", rebuilt)
    assert dict(rows)["from"] == "results.json" and dict(rows)["sha256"] == sha and dict(rows)["at"]
    # Without the notice and the provenance rows it says, the rebuilt report is the original.
    stripped = rebuilt.replace(notice.group(0), "")
    stripped = re.sub(r"[ \t]*<tr><th scope=\"row\">rebuilt\.(at|from|sha256)</th><td><code>.*?</code></td></tr>\n", "", stripped)
    # ... and the evidence block (the rebuilt results record the rebuild, so its manifest differs too).
    evidence = re.compile(r'<script type="application/json" id="reportgen-evidence">.*?</script>', re.DOTALL)
    assert evidence.sub("", stripped) == evidence.sub("", original)
    # The rebuilt results.json records it too.
    data = json.loads((tmp_path / "rebuilt" / "results.json").read_text("utf-8"))
    assert data["provenance"]["rebuilt"]["from"] == "results.json" and data["provenance"]["rebuilt"]["sha256"] == sha


def test_a_misshapen_result_fails_its_job_only(tmp_path: Path, registry: Registry) -> None:
    text = SPEC.replace("  - method: test.boom\n", "  - method: test.badshape\n")
    run, _ = run_audit(write_spec(tmp_path, text), RunOptions(output=str(tmp_path / "out")), registry)
    bad = [r for r in run.results if r.method == "test.badshape"]
    assert bad and all(r.status == "failed" and "expected (" in (r.reason or "") for r in bad)
    assert any(r.status == "ok" for r in run.results)


# --------------------------------------------------------------------------- reuse


class FingerprintedLoader(TinyLoader):
    """The tiny loader plus a ``fingerprint``: the sha256 of a stand-in weights file."""

    def __init__(self, tokenizer: Any, weights: Path) -> None:
        super().__init__(tokenizer)
        self.weights = weights

    def fingerprint(self, model_spec: Any, *, base_dir: str) -> dict[str, Any]:
        import hashlib

        return {"sha256": hashlib.sha256(self.weights.read_bytes()).hexdigest()}


REUSE_SPEC = """\
title: Reuse
models:
  - id: tiny
    source: "tiny:3"
prompts:
  - id: p1
    text: "Is it safe?"
  - id: p2
    text: "Name a colour."
generation: {max_new_tokens: 3}
methods:
  - method: inseq.saliency
  - method: inseq.input_x_gradient
report:
  formats: [json]
"""


@pytest.fixture()
def fingerprinted(smollm_tokenizer: Any, tmp_path: Path) -> tuple[Registry, FingerprintedLoader]:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"version 1")
    loader = FingerprintedLoader(smollm_tokenizer, weights)

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-fingerprinted")
    return Registry(pm), loader


def test_a_fully_cached_rerun_loads_no_model_and_says_so(tmp_path: Path, fingerprinted: tuple[Registry, Any]) -> None:
    registry, loader = fingerprinted
    spec = write_spec(tmp_path, REUSE_SPEC)
    run1, _ = run_audit(spec, RunOptions(output=str(tmp_path / "a")), registry)
    assert loader.loads == 1
    assert run1.provenance["jobs"] == {"total": 6, "reused": 0, "computed": 6, "unavailable": 0, "models_loaded": ["tiny"]}
    logs: list[str] = []
    run2, written = run_audit(spec, RunOptions(output=str(tmp_path / "b"), progress=Progress(log=logs.append)), registry)
    assert loader.loads == 1  # every job was in the cache: the model was never loaded
    assert run2.provenance["jobs"] == {"total": 6, "reused": 6, "computed": 0, "unavailable": 0, "models_loaded": []}
    assert logs[-1] == "jobs: 6 of 6 reused from the cache, 0 computed"
    assert "tiny: every job reused from the cache; the model was not loaded" in logs
    assert not any(line.startswith("loading") for line in logs)
    # Same numbers, and the provenance still describes the model (from the load that filled the cache).
    for r1, r2 in zip(run1.results, run2.results, strict=True):
        assert r1.matrix is not None and r2.matrix is not None and np.allclose(r1.matrix, r2.matrix)
    model = run2.provenance["models"]["tiny"]
    assert model["loaded"] is False and model["sha256"] == "tiny-3"
    assert run1.provenance["models"]["tiny"]["loaded"] is True
    data = json.loads(Path(written["json"]).read_text("utf-8"))
    assert data["provenance"]["jobs"]["reused"] == 6


def test_one_missing_job_loads_the_model_once_and_changed_weights_invalidate(tmp_path: Path, fingerprinted: tuple[Registry, Any]) -> None:
    registry, loader = fingerprinted
    spec = write_spec(tmp_path, REUSE_SPEC.replace("formats: [json]", "formats: [json]\ncache: cache"))
    run_audit(spec, RunOptions(output=str(tmp_path / "a")), registry)
    assert loader.loads == 1
    entries = sorted((tmp_path / "cache" / "results").rglob("*.json"))
    assert len(entries) == 4
    entries[0].unlink()  # one attribution job is no longer cached
    run2, _ = run_audit(spec, RunOptions(output=str(tmp_path / "b")), registry)
    assert loader.loads == 2
    assert run2.provenance["jobs"]["reused"] == 5 and run2.provenance["jobs"]["computed"] == 1
    # A changed weights file changes the fingerprint: nothing is reused.
    loader.weights.write_bytes(b"version 2")
    run3, _ = run_audit(spec, RunOptions(output=str(tmp_path / "c")), registry)
    assert loader.loads == 3
    assert run3.provenance["jobs"]["reused"] == 0 and run3.provenance["jobs"]["computed"] == 6


def test_a_loader_without_fingerprint_is_loaded_first_and_still_reuses(tmp_path: Path, registry: Registry) -> None:
    spec = write_spec(tmp_path, REUSE_SPEC)
    run_audit(spec, RunOptions(output=str(tmp_path / "a")), registry)
    run2, _ = run_audit(spec, RunOptions(output=str(tmp_path / "b")), registry)
    assert registry.loader.loads == 2  # type: ignore[attr-defined]  # it cannot tell its weights apart unloaded
    assert run2.provenance["jobs"]["reused"] == 6 and run2.provenance["jobs"]["models_loaded"] == ["tiny"]


# --------------------------------------------------------------------------- stale reports


def test_reports_an_earlier_run_left_are_removed_and_nothing_else(tmp_path: Path, registry: Registry) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = {"report.pdf": b"%PDF old", ".report.pdf.partial": b"%PDF half", ".results.json.ab12cd_9.tmp": b"{"}
    stale |= {"results.json.dsse.json": b"{}", "report.pdf.dsse.json": b"{}"}  # signatures of the earlier files
    kept = {"notes.txt": b"mine", "report.pdf.bak": b"mine", "report.md": b"mine", ".partial": b"mine", "results.json.old": b"{}"}
    kept |= {"notes.txt.dsse.json": b"{}"}
    for name, data in {**stale, **kept}.items():
        (out / name).write_bytes(data)
    (out / "sub").mkdir()
    (out / "sub" / "report.pdf").write_bytes(b"%PDF nested")
    logs: list[str] = []
    spec = write_spec(tmp_path, SPEC.replace("formats: [json]", "formats: [json, html]"))
    _, written = run_audit(spec, RunOptions(output=str(out), progress=Progress(log=logs.append)), registry)
    assert sorted(Path(p).name for p in written.values()) == ["provenance.intoto.json", "report.html", "results.json"]
    names = {p.name for p in out.iterdir()}
    assert names == {".reportgen-stamp.json", "provenance.intoto.json", "report.html", "results.json", "sub", *kept}
    assert all((out / n).read_bytes() == d for n, d in kept.items())
    assert (out / "sub" / "report.pdf").exists()  # only the output folder itself, never below it
    removed = sorted(line for line in logs if line.startswith("removed "))
    assert len(removed) == 5
    assert f"removed {out / 'results.json.dsse.json'}: the signature of an earlier run's file" in removed
    assert (
        f"removed {out / 'report.pdf'}: left by an earlier run; this run wrote provenance.intoto.json, report.html, results.json" in removed
    )
    assert any(".report.pdf.partial: an unfinished write of an earlier run" in line for line in removed)


def test_a_format_that_failed_this_time_leaves_no_older_file_behind(tmp_path: Path, registry: Registry) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("<html>an earlier run</html>", encoding="utf-8")
    spec = write_spec(tmp_path, SPEC)
    with pytest.raises(RenderError, match="could not render broken"):
        run_audit(spec, RunOptions(output=str(out), formats=["json", "broken"]), registry)
    assert sorted(p.name for p in out.iterdir()) == ["provenance.intoto.json", "results.json"]  # no report.html from another run


# --------------------------------------------------------------------------- the CI gate


def _finding(severity: str) -> Any:
    from reportgen.data import Finding

    return Finding(
        detector="d",
        severity=severity,
        model_id="tiny",
        prompt_id="p1",
        method="m",
        positions=(0,),  # type: ignore[arg-type]
        token="x",
        evidence={},
        message="m",
    )


def test_gate_levels(tmp_path: Path, registry: Registry) -> None:
    from dataclasses import replace as dc_replace

    from reportgen.runner import gate

    run, _ = run_audit(write_spec(tmp_path, SPEC), RunOptions(output=str(tmp_path / "out")), registry)
    assert any(r.status == "failed" for r in run.results)  # test.boom
    assert gate(run) is None
    assert gate(run, ["high"]) is None  # no findings
    assert gate(run, ["failed"]) == "2 method job(s) failed (fail on: failed)"
    with_findings = dc_replace(run, findings=[_finding("medium"), _finding("low"), _finding("high")])
    assert gate(with_findings, ["high"]) == "1 finding(s) of severity high or worse: 1 high (fail on: high)"
    assert gate(with_findings, ["medium"]) == "2 finding(s) of severity medium or worse: 1 high, 1 medium (fail on: medium)"
    assert gate(with_findings, ["high", "info"]).startswith("3 finding(s) of severity info or worse")  # type: ignore[union-attr]
    assert gate(dc_replace(run, findings=[_finding("info")]), ["low"]) is None
    nothing = dc_replace(run, results=[dc_replace(r, status="failed") for r in run.results])
    assert gate(nothing) == "no method produced a result (6 failed, 0 unavailable)"
