"""The json renderer writes results.json as UTF-8 bytes with "\\n" line ends on every platform."""

from __future__ import annotations

import builtins
import io
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import make_run, render_context

from reportgen.results import dumps
from reportgen_plugins.renderers.json_results import JSONRenderer


def test_results_json_is_the_dumps_bytes_with_lf_even_where_text_mode_writes_crlf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = io.open

    def windows_open(
        file: Any, mode: str = "r", buffering: int = -1, encoding: Any = None, errors: Any = None, newline: Any = None, *a: Any
    ) -> Any:
        if "b" not in mode and newline is None:
            newline = "\r\n"  # what text mode does on Windows
        return real_open(file, mode, buffering, encoding, errors, newline, *a)

    monkeypatch.setattr(io, "open", windows_open)
    monkeypatch.setattr(builtins, "open", windows_open)
    run = make_run(models=1)
    out = tmp_path / "results.json"
    JSONRenderer().render(render_context(run), str(out))
    data = out.read_bytes()
    assert b"\r" not in data
    assert data.count(b"\n") > 10
    assert data == dumps(run).encode("utf-8")
    with windows_open(tmp_path / "text.txt", "w", encoding="utf-8") as fh:  # the emulation does translate
        fh.write("a\nb")
    assert (tmp_path / "text.txt").read_bytes() == b"a\r\nb"
