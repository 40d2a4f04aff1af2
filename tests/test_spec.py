"""The audit spec: valid examples load; broken specs name file:line:col and field, exit 2, write nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reportgen.cli import main
from reportgen.errors import SpecError
from reportgen.plugins import get_registry
from reportgen.spec import json_schema, load_spec, validate_text

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
title: t
models:
  - id: m
    source: embedded:smollm2-135m-instruct
prompts:
  - id: p
    text: "hello"
methods:
  - method: inseq.saliency
"""


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return get_registry()


def problems(text: str, registry=None) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError) as exc:
        validate_text(text, "audit.yaml", registry)
    return exc.value.problems or [str(exc.value)]


def test_examples_validate(registry) -> None:  # type: ignore[no-untyped-def]
    paths = [p for p in sorted((REPO / "examples").glob("*/audit.yaml")) if "plugin_example" not in str(p)]
    assert {p.parent.name for p in paths} >= {"quickstart", "blackbox"}
    for path in paths:
        spec, _ = load_spec(path, registry)
        assert spec.models and spec.prompts and spec.methods


def test_defaults() -> None:
    spec = validate_text(GOOD, "audit.yaml")
    assert spec.generation.do_sample is False
    assert spec.models[0].trust_remote_code is False
    assert spec.report.formats == ["html", "json"]
    assert spec.seed == 0


def test_unknown_field_has_line_column_and_path() -> None:
    text = GOOD.replace('    text: "hello"', '    text: "hello"\n    colour: red')
    (p,) = problems(text)
    assert p.startswith("audit.yaml:8:5: prompts[0].colour: unknown field"), p


def test_wrong_type_points_at_the_value_line() -> None:
    text = GOOD + "generation:\n  max_new_tokens: lots\n"
    (p,) = problems(text)
    assert p.startswith("audit.yaml:11:3: generation.max_new_tokens:"), p
    assert "integer" in p


def test_prompt_needs_text_or_messages() -> None:
    text = GOOD.replace('    text: "hello"\n', "    label: x\n")
    (p,) = problems(text)
    assert "prompts[0]" in p and "exactly one of 'text', 'messages' or 'turns'" in p


def test_unknown_method_lists_choices(registry) -> None:  # type: ignore[no-untyped-def]
    text = GOOD.replace("inseq.saliency", "inseq.salincy")
    (p,) = problems(text, registry)
    assert p.startswith("audit.yaml:9:5: methods[0].method: unknown method 'inseq.salincy'"), p
    assert "did you mean 'inseq.saliency'" in p and "valid choices:" in p and "inseq.occlusion" in p


def test_unknown_method_option_lists_valid_options(registry) -> None:  # type: ignore[no-untyped-def]
    text = GOOD.replace("  - method: inseq.saliency", "  - method: inseq.integrated_gradients\n    options: {steps: 3}")
    (p,) = problems(text, registry)
    assert "methods[0].options.steps: unknown option" in p and "n_steps" in p


def test_unknown_model_scheme_and_format(registry) -> None:  # type: ignore[no-untyped-def]
    text = GOOD.replace("embedded:", "hug:") + "report:\n  formats: [html, docx]\n"
    ps = problems(text, registry)
    assert any("models[0].source: unknown model source 'hug:'" in p for p in ps)
    assert any("report.formats[1]: unknown format 'docx'" in p for p in ps)


def test_duplicate_ids_and_yaml_syntax() -> None:
    dup = GOOD.replace("prompts:\n", "prompts:\n  - id: p\n    text: x\n")
    assert any("duplicate prompt id 'p'" in p for p in problems(dup))
    (p,) = problems("title: [unclosed\n")
    assert p.startswith("audit.yaml:2:1: YAML syntax error"), p


def test_openai_model_needs_base_url() -> None:
    text = GOOD.replace("embedded:smollm2-135m-instruct", "openai:gpt")
    assert any("base_url" in p for p in problems(text))


def test_json_schema_is_valid_json() -> None:
    schema = json.loads(json_schema())
    assert schema["title"] == "reportgen audit spec"
    assert {"models", "prompts", "methods"} <= set(schema["properties"])


#: Variables the CLI sets with os.environ.setdefault; CliRunner restores them afterwards.
CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


def invoke_cli(*args: str) -> Any:
    """``reportgen ARGS`` in this process (click's CliRunner), stdout and stderr apart."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps result.stderr apart anyway
    return runner.invoke(main, list(args), env={k: os.environ.get(k) for k in CLI_ENV}, catch_exceptions=False)


def test_cli_invalid_spec_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "audit.yaml"
    spec.write_text(GOOD.replace("inseq.saliency", "nope") + "report:\n  output: out\n", encoding="utf-8")
    res = invoke_cli("run", str(spec))
    assert res.exit_code == 2, res.stderr
    assert f"{spec}:9:5: methods[0].method: unknown method 'nope'" in res.stderr
    assert "Traceback" not in res.stderr
    assert "loading" not in res.stderr  # exited before any model load
    assert not (tmp_path / "out").exists()


def test_cli_validate_reports_ok_and_errors(tmp_path: Path) -> None:
    spec = tmp_path / "audit.yaml"
    spec.write_text(GOOD, encoding="utf-8")
    res = invoke_cli("validate", str(spec))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == f"{spec}: ok (1 model(s) × 1 prompt(s) × 1 method(s))"
    spec.write_text(GOOD.replace("embedded:", "hug:"), encoding="utf-8")
    res = invoke_cli("validate", str(spec))
    assert res.exit_code == 2 and res.stdout == ""
    assert "models[0].source: unknown model source 'hug:'" in res.stderr


def test_the_readme_spec_is_valid(registry) -> None:  # type: ignore[no-untyped-def]
    """The annotated spec in README.md is a real, valid spec (plugin names and options included)."""
    readme = (REPO / "README.md").read_text("utf-8")
    block = readme.split("## The audit spec, annotated", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = validate_text(block, "README.md", registry)
    assert {m.method for m in spec.methods} >= {"probabilistic", "jacobian.fisher", "dbsa", "inseq.saliency"}


# --------------------------------------------------------------------------- UTF-16 surrogate escapes

WOMAN = "\U0001f469"  # 👩, written in YAML as the UTF-16 pair "\ud83d\udc69"


def test_a_surrogate_pair_escape_is_rejoined_into_its_character() -> None:
    second = '  - id: q\n    messages:\n      - role: user\n        content: "\\ud83d\\udc69\\ud83d\\udc69"\n'
    text = GOOD.replace('    text: "hello"\n', '    text: "hi \\ud83d\\udc69!"\n' + second)
    spec = validate_text(text, "audit.yaml")
    assert spec.prompts[0].text == f"hi {WOMAN}!"
    assert spec.prompts[1].messages is not None and spec.prompts[1].messages[0].content == WOMAN * 2
    assert spec.prompts[0].text.encode("utf-8") == f"hi {WOMAN}!".encode()  # what a tokenizer needs
    assert validate_text(GOOD.replace('"hello"', '"\\U0001F469"'), "audit.yaml").prompts[0].text == WOMAN


@pytest.mark.parametrize(
    ("escapes", "where", "unit"),
    [
        ("\\ud83d", "audit.yaml:7:5: prompts[0].text", "\\ud83d"),  # a high half alone
        ("a\\udc69b", "audit.yaml:7:5: prompts[0].text", "\\udc69"),  # a low half alone
        ("\\udc69\\ud83d", "audit.yaml:7:5: prompts[0].text", "\\udc69"),  # the halves in the wrong order
    ],
)
def test_a_lone_surrogate_is_a_spec_error_naming_file_line_and_field(escapes: str, where: str, unit: str) -> None:
    found = problems(GOOD.replace('"hello"', f'"{escapes}"'))
    assert len(found) == 1
    assert found[0].startswith(f"{where}: lone UTF-16 surrogate {unit} "), found
    found[0].encode("ascii")  # the message itself holds no surrogate: it prints anywhere


def test_cli_lone_surrogate_exits_2_in_one_message(tmp_path: Path) -> None:
    spec = tmp_path / "audit.yaml"
    spec.write_text(GOOD.replace('    text: "hello"', '    messages:\n      - role: user\n        content: "x\\ud83d"'), encoding="utf-8")
    res = invoke_cli("validate", str(spec))
    assert res.exit_code == 2, res.stderr
    assert f"{spec}:9:9: prompts[0].messages[0].content: lone UTF-16 surrogate \\ud83d" in res.stderr
    assert "Traceback" not in res.stderr
