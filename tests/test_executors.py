"""The ``executor:`` block and ``--executor``: checked before any model loads (exit 2, file:line).

The executors themselves: tests/test_runner.py (local, the default) and tests/test_executor_ray.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reportgen.cli import main
from reportgen.errors import SpecError
from reportgen.plugins import get_registry
from reportgen.spec import RunTarget, validate_text
from tests.conftest import write_spec

CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")

SPEC = """\
title: t
models:
  - id: m
    source: embedded:smollm2-135m-instruct
prompts:
  - id: p
    text: "hello"
methods:
  - method: inseq.saliency
report:
  output: out
"""


@pytest.fixture(scope="module")
def registry() -> Any:
    return get_registry()


@pytest.fixture()
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray looks uninstalled."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))


def problems(tmp_path: Path, text: str, registry: Any, target: RunTarget | None = None) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate_text(text, str(tmp_path / "audit.yaml"), registry, target=target)
    return info.value.problems


def test_the_default_executor_is_local(tmp_path: Path, registry: Any) -> None:
    spec = validate_text(SPEC, str(tmp_path / "audit.yaml"), registry, target=RunTarget())
    assert spec.executor.kind == "local" and spec.executor.prompts_per_task == 8 and spec.executor.address is None


@pytest.mark.parametrize("address", ["auto", "ray://head.example:10001", "10.0.0.5:6379", None])
def test_ray_settings_are_read(tmp_path: Path, registry: Any, address: str | None) -> None:
    line = "" if address is None else f", address: {address!r}"
    text = SPEC + f"executor: {{kind: ray, gpus_per_worker: 0.5, prompts_per_task: 4, max_retries: 1{line}}}\n"
    spec = validate_text(text, str(tmp_path / "audit.yaml"), registry)
    assert (spec.executor.kind, spec.executor.address, spec.executor.gpus_per_worker) == ("ray", address, 0.5)
    assert (spec.executor.prompts_per_task, spec.executor.max_retries) == (4, 1)


def test_executor_errors_name_their_line(tmp_path: Path, registry: Any) -> None:
    text = SPEC + "executor:\n  kind: rey\n  address: 'my cluster'\n  prompts_per_task: 0\n  workers: 2\n"
    found = problems(tmp_path, text, registry)
    assert any(p.endswith(":13:3: executor.kind: got 'rey'; expected 'local' or 'ray'") for p in found), found
    assert any(":14:3: executor.address: 'my cluster' is not a Ray address; use auto" in p for p in found), found
    assert any(":15:3: executor.prompts_per_task: Input should be greater than or equal to 1" in p for p in found), found
    assert any(p.endswith(":16:3: executor.workers: unknown field") for p in found), found


def test_ray_not_installed_is_a_spec_error_before_any_model_loads(tmp_path: Path, registry: Any, no_ray: None) -> None:
    text = SPEC + "executor:\n  kind: ray\n"
    assert problems(tmp_path, text, registry, RunTarget()) == [
        f"{tmp_path / 'audit.yaml'}:13:3: executor.kind: the ray executor needs Ray, which is not installed: pip install 'reportgen[ray]'"
    ]
    # without a target (no run planned) the spec itself is fine
    assert validate_text(text, str(tmp_path / "audit.yaml"), registry).executor.kind == "ray"


def test_cli_executor_ray_without_ray_exits_2_with_one_line(tmp_path: Path, no_ray: None) -> None:
    spec = tmp_path / "audit.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    result = CliRunner().invoke(
        main, ["run", str(spec), "--executor", "ray"], env={k: os.environ.get(k) for k in CLI_ENV}, catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "--executor: the ray executor needs Ray, which is not installed: pip install 'reportgen[ray]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    bad = CliRunner().invoke(main, ["run", str(spec), "--executor", "dask"], catch_exceptions=False)
    assert bad.exit_code == 2 and "'dask' is not one of 'local', 'ray'" in bad.stderr


def test_no_cluster_at_the_address_exits_2_before_any_model_loads(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    spec = tmp_path / "audit.yaml"
    spec.write_text(SPEC + "executor: {kind: ray, address: auto}\n", encoding="utf-8")
    env = {k: os.environ.get(k) for k in CLI_ENV} | {"RAY_ADDRESS": None}
    result = CliRunner().invoke(main, ["run", str(spec), "-q"], env=env, catch_exceptions=False)
    assert result.exit_code == 2
    assert "error: executor.address: cannot join the Ray cluster at auto: Could not find any running Ray instance" in result.stderr
    assert "loading" not in result.stderr and not (tmp_path / "out").exists()


def test_the_local_executor_is_in_the_provenance_of_every_report(tmp_path: Path, tiny_registry: Any) -> None:
    """results.json (which the schema check validates), the HTML and PDF provenance table and the in-toto statement."""
    from reportgen.runner import RunOptions, run_audit
    from reportgen_plugins.renderers.pdf import KaleidoExporter, SvgDrawer, render_html_for_pdf
    from tests.report_fixtures import render_context

    text = SPEC.replace("embedded:smollm2-135m-instruct", '"tiny:1"').replace("  output: out\n", "  formats: [json, html]\n")
    text += "generation: {max_new_tokens: 2}\n"
    run, written = run_audit(write_spec(tmp_path, text), RunOptions(output=str(tmp_path / "out"), use_cache=False), tiny_registry)
    assert json.loads(Path(written["json"]).read_text("utf-8"))["provenance"]["executor"] == {"kind": "local"}
    statement = json.loads(Path(written["provenance"]).read_text("utf-8"))
    assert statement["predicate"]["buildDefinition"]["internalParameters"]["executor"] == {"kind": "local"}
    row = '<tr><th scope="row">executor.kind</th><td><code>local</code></td></tr>'
    assert row in Path(written["html"]).read_text("utf-8")
    printed = render_html_for_pdf(render_context(run), SvgDrawer(KaleidoExporter(False)))
    assert row in printed.replace("<wbr>", "")  # the PDF lets an identifier header wrap after its dots
