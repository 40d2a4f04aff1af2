"""results.json as a published format: its JSON Schema (``reportgen schema --results``), semver
``schema_version``, the reader and the schema agreeing, and byte-identical results apart from the
run-dependent fields the schema names."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from report_fixtures import make_run

from reportgen.cli import main
from reportgen.errors import ResultsError
from reportgen.results import (
    RUN_DEPENDENT,
    SCHEMA_VERSION,
    dumps,
    json_schema,
    parse_run,
    without_run_dependent,
)
from reportgen.runner import RunOptions, run_audit
from tests.conftest import write_spec

jsonschema = pytest.importorskip("jsonschema")
CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")

SPEC = """\
title: Determinism
models:
  - id: tiny
    source: "tiny:3"
prompts:
  - id: p1
    text: "Is it safe?"
  - id: p2
    messages:
      - role: user
        content: "Name a colour 🎨."
generation: {max_new_tokens: 4}
methods:
  - method: inseq.saliency
  - method: inseq.input_x_gradient
  - method: inseq.attention
report:
  formats: [json]
seed: 7
cache: false
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={k: os.environ.get(k) for k in CLI_ENV}, catch_exceptions=False)


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema.Draft202012Validator(json_schema())


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(dumps(make_run()))
    return data


def test_schema_command_prints_a_valid_2020_12_schema() -> None:
    res = invoke("schema", "--results")
    assert res.exit_code == 0, res.output
    schema = json.loads(res.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["x-schema-version"] == SCHEMA_VERSION == "1.4"
    assert schema["x-run-dependent"] == list(RUN_DEPENDENT)
    assert {"generations", "results", "spec_text", "schema_version"} <= set(schema["required"])
    # every field this wave added is documented
    defs = schema["$defs"]
    assert {"input_raw", "output_raw", "input_byte_spans", "output_byte_spans"} <= set(defs["GenerationRecord"]["properties"])
    assert {"raw", "byte_spans"} <= set(defs["TokensRecord"]["properties"])
    assert {"jobs", "rebuilt"} <= set(defs["ProvenanceRecord"]["properties"])
    assert {"run_id", "manifest"} <= set(schema["properties"])
    # the spec's schema is still the default
    assert "models" in json.loads(invoke("schema").output)["properties"]


def test_schema_version_is_semver_major_minor() -> None:
    assert re.fullmatch(r"[1-9][0-9]*\.[0-9]+", SCHEMA_VERSION)


def test_written_results_validate_and_load(good: dict[str, Any], validator: Any) -> None:
    assert not list(validator.iter_errors(good))
    assert good["schema_version"] == "1.4" and good["manifest"]["run_id"] == good["run_id"]
    parse_run(json.dumps(good).encode(), "results.json")


def test_a_1_0_file_still_validates_and_loads(good: dict[str, Any], validator: Any) -> None:
    old = copy.deepcopy(good)
    old["schema_version"] = "1.0"
    for key in ("run_id", "manifest"):
        del old[key]
    for g in old["generations"]:
        for k in ("input_raw", "output_raw", "input_byte_spans", "output_byte_spans"):
            g.pop(k)
    for r in old["results"]:
        for side in ("input", "output"):
            r[side] = {"tokens": r[side]["tokens"]}
    assert not list(validator.iter_errors(old))
    parse_run(json.dumps(old).encode(), "old.json")


def test_unknown_fields_of_a_newer_minor_are_accepted_by_both(good: dict[str, Any], validator: Any) -> None:
    newer = copy.deepcopy(good)
    newer["schema_version"] = "1.7"
    newer["a_later_field"] = [{"anything": 1}]
    newer["generations"][0]["new_field"] = True
    assert not list(validator.iter_errors(newer))
    parse_run(json.dumps(newer).encode(), "newer.json")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        node: Any = d
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        node: Any = d
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]

    return edit


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no generations", _drop("generations"), "generations: missing"),
    ("no spec text", _drop("spec_text"), "spec_text: missing"),
    ("severity", _set("findings.0.severity", "urgent"), "findings[0].severity"),
    ("status", _set("results.0.status", "great"), "results[0].status"),
    ("text in a matrix", _set("results.0.attribution.raw.0.0", "0.5"), "results[0].attribution.raw[0][0]"),
    ("token not a string", _set("generations.0.input_tokens.0", 5), "generations[0].input_tokens[0]"),
    ("byte span shape", _set("generations.0.input_byte_spans", [[1, 2]]), "generations[0].input_byte_spans[0]"),
    ("jobs count", _set("provenance.jobs", {"total": "6", "reused": 0, "computed": 6}), "provenance.jobs.total"),
    ("manifest run id", _set("manifest.run_id", 7), "manifest.run_id"),
]


@pytest.mark.parametrize(("name", "edit", "field"), BAD, ids=[b[0] for b in BAD])
def test_the_schema_and_the_reader_reject_the_same_files(
    good: dict[str, Any], validator: Any, name: str, edit: Callable[[dict[str, Any]], None], field: str
) -> None:
    data = copy.deepcopy(good)
    edit(data)
    assert list(validator.iter_errors(data)), f"the schema accepts {name}"
    with pytest.raises(ResultsError, match=re.escape(field)):
        parse_run(json.dumps(data).encode(), "results.json")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.0", "schema_version: '2.0' is not supported (this reportgen reads 1.x); it was written by a newer reportgen"),
        ("0.9", "schema_version: '0.9' is not supported (this reportgen reads 1.x); it is not a results.json format"),
    ],
)
def test_render_refuses_another_major_in_one_line(tmp_path: Path, good: dict[str, Any], version: str, expected: str) -> None:
    data = copy.deepcopy(good)
    data["schema_version"] = version
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    res = invoke("render", str(path), "-o", str(tmp_path / "out"))
    assert res.exit_code == 6
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {expected}"), lines
    assert ("upgrade reportgen to read it" in lines[0]) == (version == "2.0")
    assert not (tmp_path / "out").exists()


def test_render_warns_about_a_hand_edited_file(tmp_path: Path, good: dict[str, Any]) -> None:
    data = copy.deepcopy(good)
    data["results"][0]["attribution"]["raw"][0][0] = 0.125
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    res = invoke("render", str(path), "-o", str(tmp_path / "out"), "-f", "json")
    assert res.exit_code == 0, res.stderr  # still rendered; the rebuilt report records the file's sha256
    assert res.stderr.startswith(f"warning: {path}: its content is not what its manifest's results_sha256 pins (edited after the run?)")


def test_without_run_dependent_removes_exactly_the_listed_fields(good: dict[str, Any]) -> None:
    data = copy.deepcopy(good)
    data["provenance"]["cache"] = {"root": "x", "hits": 1, "misses": 2}
    data["results"][0]["details"]["from_cache"] = True
    stripped = without_run_dependent(data)
    for key in ("run_id", "created_at", "completed_at", "timings"):
        assert key not in stripped
    assert all("seconds" not in g for g in stripped["generations"])
    assert all("timings" not in r and "from_cache" not in r["details"] for r in stripped["results"])
    assert "cache" not in stripped["provenance"] and set(stripped["manifest"]) == set(data["manifest"]) - {"run_id", "results_sha256"}
    assert stripped["spec_text"] == data["spec_text"] and stripped["results"][0]["attribution"] == data["results"][0]["attribution"]


def test_same_spec_and_seed_give_the_same_results_json_apart_from_run_dependent_fields(tmp_path: Path, tiny_registry: Any) -> None:
    """The tiny-model audit twice without a cache: byte-identical once the run-dependent fields are removed."""
    spec = write_spec(tmp_path, SPEC)
    _, first = run_audit(spec, RunOptions(output=str(tmp_path / "a"), use_cache=False), tiny_registry)
    _, second = run_audit(spec, RunOptions(output=str(tmp_path / "b"), use_cache=False), tiny_registry)
    a = json.loads(Path(first["json"]).read_text("utf-8"))
    b = json.loads(Path(second["json"]).read_text("utf-8"))
    assert a != b  # timings at least: the comparison below is not vacuous
    assert tiny_registry.tiny_loader.loads == 2  # nothing was reused
    canonical = [json.dumps(without_run_dependent(d), indent=1, ensure_ascii=False).encode() for d in (a, b)]
    assert canonical[0] == canonical[1]
    assert a["manifest"]["spec_sha256"] == b["manifest"]["spec_sha256"] and a["run_id"] != b["run_id"]
