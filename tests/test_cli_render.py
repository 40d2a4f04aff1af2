"""`reportgen render`: a malformed results.json is exit 6 in one line naming the file and the
JSON path (never a traceback); a rebuilt report says it was rebuilt."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reportgen import hookimpl
from reportgen.cli import main
from reportgen.errors import ResultsError
from reportgen.plugins import Registry, get_plugin_manager
from reportgen.results import load_run
from reportgen.runner import RunOptions, run_audit
from tests.conftest import TinyLoader

CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")

SPEC = """\
title: Render
models:
  - id: tiny
    source: "tiny:3"
prompts:
  - id: p1
    text: "Is it safe?"
generation: {max_new_tokens: 3}
methods:
  - method: inseq.saliency
report:
  formats: [json]
cache: false
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={k: os.environ.get(k) for k in CLI_ENV}, catch_exceptions=False)


@pytest.fixture(scope="module")
def good(smollm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real results.json from a tiny run (with one finding added, to have positions to break)."""
    loader = TinyLoader(smollm_tokenizer)

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-render")
    tmp = tmp_path_factory.mktemp("render")
    (tmp / "audit.yaml").write_text(SPEC, encoding="utf-8")
    _, written = run_audit(tmp / "audit.yaml", RunOptions(output=str(tmp / "out")), Registry(pm))
    data: dict[str, Any] = json.loads(Path(written["json"]).read_text("utf-8"))
    data["findings"].append(
        {
            "detector": "d",
            "severity": "low",
            "model_id": "tiny",
            "prompt_id": "p1",
            "method": "inseq.saliency",
            "positions": [1],
            "token": "x",
            "evidence": {},
            "message": "m",
            "suggestion": "",
            "title": "",
        }
    )
    return data


def _drop_attribution(d: dict[str, Any]) -> None:
    del d["results"][0]["attribution"]


def _ragged(d: dict[str, Any]) -> None:
    d["results"][0]["attribution"]["raw"][1] = d["results"][0]["attribution"]["raw"][1][:-1]


def _text_cell(d: dict[str, Any]) -> None:
    d["results"][0]["attribution"]["raw"][0][2] = "0.5"


def _rows(d: dict[str, Any]) -> None:
    d["results"][0]["attribution"]["raw"].pop()


def _major(d: dict[str, Any]) -> None:
    d["schema_version"] = "2.0"


def _bad_spec(d: dict[str, Any]) -> None:
    d["spec_text"] = d["spec_text"].replace("title: Render\n", "")


def _position(d: dict[str, Any]) -> None:
    d["findings"][-1]["positions"] = [10_000]


def _tokens(d: dict[str, Any]) -> None:
    d["generations"][0]["input_tokens"] = d["generations"][0]["input_tokens"][:-1]


def _status(d: dict[str, Any]) -> None:
    d["results"][0]["status"] = "great"


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing attribution", _drop_attribution, ": results[0].attribution: missing"),
    ("ragged matrix", _ragged, ": results[0].attribution.raw[1]: 2 values; expected 3 (one per output token)"),
    ("non-numeric cell", _text_cell, ": results[0].attribution.raw[0][2]: expected a number or null (got str)"),
    ("missing row", _rows, ": results[0].attribution.raw: "),
    ("schema major", _major, ": schema_version: '2.0' is not supported (this reportgen reads 1.x)"),
    ("invalid stored spec", _bad_spec, ": spec_text: the stored audit spec is invalid: "),
    ("finding position", _position, ": findings[0].positions: 10000 is not a token of the input"),
    ("token lengths", _tokens, ": generations[0]: input_ids, input_tokens and input_special differ in length"),
    ("status", _status, ": results[0].status: got 'great'; input should be 'ok', 'unavailable' or 'failed'"),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_malformed_results_exit_6_in_one_line(
    tmp_path: Path, good: dict[str, Any], name: str, mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    data = copy.deepcopy(good)
    mutate(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    res = invoke("render", str(path), "-o", str(tmp_path / "out"))
    assert res.exit_code == 6, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"error: {path}{expected}"), lines[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(ResultsError):
        load_run(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[1, 2, 3]", ": (root): expected a JSON object (a reportgen results.json); got a list"),
        (b'{"schema_version": "1.0",', ":1:26: not JSON (Expecting property name enclosed in double quotes)"),
        (b"\xff\xfe{}", ": not UTF-8 text (invalid start byte at byte 0)"),
        (b'{"title": "x"}', ": schema_version: missing; is this a reportgen results.json?"),
    ],
)
def test_files_that_are_not_results(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(content)
    res = invoke("render", str(path), "-o", str(tmp_path / "out"))
    assert res.exit_code == 6, res.stderr
    assert res.stderr.strip() == f"error: {path}{expected}"


def test_a_good_file_renders_and_records_the_rebuild(tmp_path: Path, good: dict[str, Any]) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(good), encoding="utf-8")
    res = invoke("render", str(path), "-o", str(tmp_path / "out"), "-f", "json", "-f", "html")
    assert res.exit_code == 0, res.stderr
    rebuilt = json.loads((tmp_path / "out" / "results.json").read_text("utf-8"))["provenance"]["rebuilt"]
    assert rebuilt["from"] == "results.json" and rebuilt["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rebuilt["at"].endswith("+00:00")
    html = (tmp_path / "out" / "report.html").read_text("utf-8")
    assert 'class="callout st-unavailable rebuilt-notice"' in html and rebuilt["sha256"] in html
    # A rebuild of the rebuild names its own source.
    res = invoke("render", str(tmp_path / "out" / "results.json"), "-o", str(tmp_path / "again"), "-f", "json")
    assert res.exit_code == 0, res.stderr
    again = json.loads((tmp_path / "again" / "results.json").read_text("utf-8"))["provenance"]["rebuilt"]
    assert again["sha256"] == hashlib.sha256((tmp_path / "out" / "results.json").read_bytes()).hexdigest()


def test_render_into_a_folder_that_cannot_be_written_is_exit_6(tmp_path: Path, good: dict[str, Any]) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(good), encoding="utf-8")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    res = invoke("render", str(path), "-o", str(tmp_path / "file" / "out"))
    assert res.exit_code == 6
    assert res.stderr.strip() == f"error: --output: {tmp_path / 'file' / 'out'} cannot be created: {tmp_path / 'file'} is a file"


def test_render_unknown_format_is_usage(tmp_path: Path, good: dict[str, Any]) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(good), encoding="utf-8")
    res = invoke("render", str(path), "-o", str(tmp_path / "out"), "-f", "docx")
    assert res.exit_code == 2 and "unknown format 'docx'" in res.stderr
