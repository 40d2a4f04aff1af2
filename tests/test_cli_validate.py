"""`reportgen validate` and `run` catch what can be known before any model loads (exit 2).

Every problem is one ``file:line:col: field.path: message`` line (command-line options:
``--option: message``); nothing is written and no model is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from reportgen.cli import main
from reportgen.errors import SpecError
from reportgen.plugins import get_registry
from reportgen.spec import RunTarget, device_problem, output_problem, validate_text

#: Variables the CLI sets with os.environ.setdefault; CliRunner restores them afterwards.
CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


def invoke(*args: str) -> Any:
    """``reportgen ARGS`` in this process, stdout and stderr apart."""
    return CliRunner().invoke(main, list(args), env={k: os.environ.get(k) for k in CLI_ENV}, catch_exceptions=False)


SPEC = """\
title: t
models:
  - id: m
    source: embedded:smollm2-135m-instruct
prompts:
  - id: p
    text: "hello"
methods:
  - method: inseq.integrated_gradients
    options:
      n_steps: 8
report:
  formats: [html, json]
  output: out
"""


@pytest.fixture(scope="module")
def registry() -> Any:
    return get_registry()


def write(tmp_path: Path, text: str) -> Path:
    spec = tmp_path / "audit.yaml"
    spec.write_text(text, encoding="utf-8")
    return spec


def problems_of(tmp_path: Path, text: str, registry: Any, target: RunTarget | None = None) -> list[str]:
    spec = write(tmp_path, text)
    with pytest.raises(SpecError) as exc:
        validate_text(text, str(spec), registry, target=target or RunTarget())
    assert exc.value.exit_code == 2
    return exc.value.problems


def test_a_good_spec_validates_and_nothing_is_written(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC)
    res = invoke("validate", str(spec))
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.yaml"]  # no output folder, no temp file left


def test_unknown_embedded_model_is_placed_with_choices(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC.replace("smollm2-135m-instruct", "smollm2-135m-instruc"))
    res = invoke("validate", str(spec))
    assert res.exit_code == 2 and res.stdout == ""
    assert (
        f"{spec}:4:5: models[0].source: unknown embedded model 'smollm2-135m-instruc' "
        "(did you mean 'embedded:smollm2-135m-instruct'?); valid choices: gemma3-270m, smollm2-135m-instruct"
    ) in res.stderr
    assert "Traceback" not in res.stderr


def test_the_loader_check_hook_is_what_judges_sources(tmp_path: Path, registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host asks the loader plugin (ModelLoader.check); it knows no embedded names itself."""
    loader = registry.model_loaders["embedded"]
    monkeypatch.setattr(loader, "check", lambda model_spec: ["the plugin says no"])
    assert problems_of(tmp_path, SPEC, registry) == [f"{tmp_path / 'audit.yaml'}:4:5: models[0].source: the plugin says no"]


def test_a_loader_whose_check_crashes_is_a_plugin_error(tmp_path: Path, registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from reportgen.errors import PluginError

    def broken(model_spec: Any) -> list[str]:
        raise KeyError("oops")

    monkeypatch.setattr(registry.model_loaders["embedded"], "check", broken)
    spec = write(tmp_path, SPEC)
    with pytest.raises(PluginError, match=r"model loader 'embedded:' \(plugin 'models'\) failed to check models\[0\]: KeyError") as exc:
        validate_text(SPEC, str(spec), registry)
    assert exc.value.exit_code == 3


def test_method_options_out_of_range(tmp_path: Path, registry: Any) -> None:
    text = SPEC.replace("n_steps: 8", "n_steps: -3\n      internal_batch_size: 0\n      dimension: cubic")
    got = problems_of(tmp_path, text, registry)
    where = tmp_path / "audit.yaml"
    assert sorted(got) == [
        f"{where}:11:7: methods[0].options.n_steps: Input should be greater than or equal to 1",
        f"{where}:12:7: methods[0].options.internal_batch_size: Input should be greater than or equal to 1",
        f"{where}:13:7: methods[0].options.dimension: unknown dimensional aggregation 'cubic'; valid choices: l2, mean, sum",
    ]


def test_a_registered_dimension_is_accepted(tmp_path: Path, registry: Any) -> None:
    for name in ("l2", "mean", "dimension.sum"):
        text = SPEC.replace("n_steps: 8", f"dimension: {name}")
        validate_text(text, str(write(tmp_path, text)), registry, target=RunTarget())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{fisher_mode: low_rank, rank: 0}", "methods[0].options.rank: Input should be greater than or equal to 1"),
        ("{seed: -1}", "methods[0].options.seed: Input should be greater than or equal to 0"),
        ("{vjp_batch: 0}", "methods[0].options.vjp_batch: Input should be greater than or equal to 1"),
    ],
)
def test_jacobian_option_constraints(tmp_path: Path, registry: Any, options: str, message: str) -> None:
    text = SPEC.replace("inseq.integrated_gradients", "jacobian.fisher").replace("options:\n      n_steps: 8", f"options: {options}")
    got = problems_of(tmp_path, text, registry)
    assert len(got) == 1 and got[0].endswith(message), got


def test_devices(tmp_path: Path, registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "audit.yaml"
    got = problems_of(tmp_path, SPEC + "device: tpu\n", registry)
    assert got == [f"{where}:15:1: device: unknown device 'tpu'; use cpu, cuda, cuda:<index> or mps"]
    # A CPU-only torch build.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    got = problems_of(tmp_path, SPEC + "device: cuda\n", registry)
    assert got == [f"{where}:15:1: device: device 'cuda' is not available: torch {torch.__version__} is a CPU-only build; use cpu"]
    # One GPU: cuda:0 is fine, cuda:7 does not exist (on the model here).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    text = SPEC.replace("    source: embedded:smollm2-135m-instruct\n", "    source: embedded:smollm2-135m-instruct\n    device: cuda:7\n")
    got = problems_of(tmp_path, text + "device: cuda:0\n", registry)
    assert got == [f"{where}:5:5: models[0].device: device 'cuda:7' does not exist: 1 CUDA device(s) visible (cuda:0 to cuda:0)"]
    assert device_problem("cpu") is None and device_problem("cuda") is None


def test_output_folder_problems(tmp_path: Path, registry: Any) -> None:
    where = tmp_path / "audit.yaml"
    (tmp_path / "out").write_text("a file", encoding="utf-8")
    got = problems_of(tmp_path, SPEC, registry)
    assert got == [f"{where}:14:3: report.output: {tmp_path / 'out'} is a file, not a folder"]
    got = problems_of(tmp_path, SPEC.replace("output: out", "output: out/deeper"), registry)
    assert got == [f"{where}:14:3: report.output: {tmp_path / 'out/deeper'} cannot be created: {tmp_path / 'out'} is a file"]


def test_an_output_folder_that_cannot_be_written(tmp_path: Path, registry: Any) -> None:
    """Tests run as root, who may write almost anywhere: /proc refuses new files even to root."""
    if output_problem(Path("/proc/reportgen-check")) is None:
        pytest.skip("/proc accepts new files here")
    got = problems_of(tmp_path, SPEC.replace("output: out", "output: /proc/reportgen-check"), registry)
    assert len(got) == 1
    assert got[0].startswith(
        f"{tmp_path / 'audit.yaml'}:14:3: report.output: /proc/reportgen-check is not writable (/proc cannot be written): "
    )
    if os.geteuid() != 0:  # as a user, a read-only folder is refused too
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert output_problem(locked / "out") is not None


def test_a_report_name_taken_by_a_folder(tmp_path: Path, registry: Any) -> None:
    (tmp_path / "out" / "results.json").mkdir(parents=True)
    got = problems_of(tmp_path, SPEC, registry)
    assert got == [
        (
            f"{tmp_path / 'audit.yaml'}:13:19: report.formats[1]: {tmp_path / 'out' / 'results.json'} is a folder; "
            "the json report is written to that name: move or rename the folder"
        )
    ]


def test_run_checks_the_command_line_before_loading(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC.replace("smollm2-135m-instruct", "nope"))
    (tmp_path / "file").write_text("x", encoding="utf-8")
    (tmp_path / "o2" / "report.html").mkdir(parents=True)
    res = invoke("run", str(spec), "--device", "tpu", "-o", str(tmp_path / "file" / "out"), "-f", "html", "-f", "nope", "-q")
    assert res.exit_code == 2, res.stderr
    assert "models[0].source: unknown embedded model 'nope'" in res.stderr
    assert "  --device: unknown device 'tpu'; use cpu, cuda, cuda:<index> or mps\n" in res.stderr
    assert "  --format: unknown format 'nope'; valid choices: " in res.stderr
    assert f"  --output: {tmp_path / 'file' / 'out'} cannot be created: {tmp_path / 'file'} is a file\n" in res.stderr
    assert "loading" not in res.stderr and "Traceback" not in res.stderr
    # A report name taken by a folder, named by the format given on the command line.
    spec = write(tmp_path, SPEC)
    res = invoke("run", str(spec), "-o", str(tmp_path / "o2"), "-f", "html", "-q")
    assert res.exit_code == 2, res.stderr
    assert f"{spec}: cannot run with these options (1 problem(s))" in res.stderr
    assert f"--format: {tmp_path / 'o2' / 'report.html'} is a folder" in res.stderr
    assert "loading" not in res.stderr


def test_fail_on_rejects_unknown_levels(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC)
    res = invoke("run", str(spec), "--fail-on", "high,severe")
    assert res.exit_code == 2
    assert "'severe'; choose from failed, high, medium, low, info" in res.stderr
    res = invoke("validate", str(write(tmp_path, SPEC + "fail_on: [medium, urgent]\n")))
    assert res.exit_code == 2 and "fail_on[1]: got 'urgent'" in res.stderr
