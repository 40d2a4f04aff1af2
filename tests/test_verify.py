"""``reportgen verify``: intact reports of a tiny-model run verify (exit 0); every tampered copy fails
(exit 8) with a message naming the file and what differs.

Two runs (A and B: the same spec with another prompt) write report.html, report.pdf,
results.json and provenance.intoto.json. Tampering, per format: one number in the visible text,
one in the embedded data (HTML: the embedded results and a figure's Plotly data; PDF: the
attached results.json), the manifest removed, and run B's results swapped in.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from reportgen.cli import main
from reportgen.manifest import EVIDENCE_ID, canonical_json, evidence, results_from_evidence
from reportgen.runner import RunOptions, run_audit
from reportgen.verify import verify

SPEC = """\
title: Verify
models:
  - id: tiny
    source: "tiny:3"
prompts:
  - id: p1
    text: "{text}"
generation: {{max_new_tokens: 4}}
methods:
  - method: inseq.saliency
  - method: inseq.input_x_gradient
report:
  formats: [html, json, pdf]
cache: false
"""
BLOCK = re.compile(r'(<script type="application/json" id="' + EVIDENCE_ID + r'">)(.*?)(</script>)', re.DOTALL)


@pytest.fixture(scope="module")
def runs(smollm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Run A and run B (another prompt), every format; verify and the CLI see the same registry."""
    from reportgen import hookimpl
    from reportgen.plugins import Registry, get_plugin_manager
    from tests.conftest import TinyLoader

    loader = TinyLoader(smollm_tokenizer)

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-verify")
    reg = Registry(pm)
    out: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("reportgen.runner.get_registry", lambda: reg)
        mp.setattr("reportgen.plugins.get_registry", lambda: reg)
        for name, text in (("a", "Is it safe?"), ("b", "Is it sound and safe?")):
            folder = tmp_path_factory.mktemp(f"verify-{name}")
            (folder / "audit.yaml").write_text(SPEC.format(text=text), encoding="utf-8")
            if name == "a":  # from the command line: the attached statement records the command
                with pytest.MonkeyPatch.context() as here:
                    here.chdir(folder)
                    res = CliRunner().invoke(main, ["run", "audit.yaml", "-o", "out", "-q"], catch_exceptions=False)
                assert res.exit_code == 0, res.output
            else:
                run_audit(folder / "audit.yaml", RunOptions(output=str(folder / "out")), reg)
            out[name] = folder
        yield out


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["verify", *args])


def copy_report(src: Path, dst_dir: Path, name: str) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "out" / name, dst_dir / name)
    return dst_dir / name


def fails(path: Path, *expected: str) -> list[str]:
    """Verify ``path`` with the CLI: exit 8, and every ``expected`` text in one of its problem lines."""
    res = invoke(str(path))
    assert res.exit_code == 8, res.output
    problems = [line.strip()[2:] for line in res.output.splitlines() if line.strip().startswith("- ")]
    for text in expected:
        assert any(text in p for p in problems), f"{text!r} not in {problems}"
    assert res.stderr.strip().startswith("error: verification failed: ")
    return problems


# --------------------------------------------------------------------------- intact


def test_intact_reports_verify(runs: Any) -> None:
    res = invoke(str(runs["a"] / "out"), "--spec", str(runs["a"] / "audit.yaml"))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for name in ("report.html", "report.pdf", "results.json", "provenance.intoto.json"):
        assert any(line.startswith(str(runs["a"] / "out" / name) + ": ok") for line in lines), res.output
    assert "the spec audit.yaml" in res.output and "note:" not in res.output
    for name in ("report.html", "report.pdf"):  # byte for byte, the PDF's statement with its command line too
        head = res.output.index(str(runs["a"] / "out" / name) + ": ok")
        assert "identical to a fresh rendering" in res.output[head:].splitlines()[1]
    statement = json.loads(pypdf_attachment(runs["a"] / "out" / "report.pdf", "provenance.intoto.json"))
    assert statement["predicate"]["buildDefinition"]["externalParameters"]["command"] == ["reportgen", "run", "audit.yaml", "-o", "out"]


def pypdf_attachment(path: Path, name: str) -> bytes:
    import pypdf

    return bytes(pypdf.PdfReader(path).attachments[name][0])


def test_the_manifest_is_the_same_in_every_format(runs: Any) -> None:
    import pypdf

    out = runs["a"] / "out"
    in_json = json.loads((out / "results.json").read_text("utf-8"))["manifest"]
    block = json.loads(BLOCK.search((out / "report.html").read_text("utf-8")).group(2))  # type: ignore[union-attr]
    in_pdf = json.loads(pypdf.PdfReader(out / "report.pdf").attachments["manifest.json"][0])
    assert in_json == block["manifest"] == in_pdf
    assert set(in_json) == {
        "manifest_version", "run_id", "schema_version", "results_sha256", "results_canonicalization",
        "spec_sha256", "seed", "models", "reportgen_version", "plugins",
    }  # fmt: skip
    assert results_from_evidence(block) == (out / "results.json").read_bytes()


def test_a_report_folder_of_two_runs_disagrees(runs: Any, tmp_path: Path) -> None:
    copy_report(runs["a"], tmp_path, "report.html")
    copy_report(runs["b"], tmp_path, "results.json")
    problems = fails(tmp_path)  # each file is intact; together they are two runs
    assert any("results.json is from run" in p and "report.html is from run" in p for p in problems), problems
    assert any("carry different results (" in p and "generations[0]" in p for p in problems), problems


def test_wrong_spec_is_named_with_its_first_differing_line(runs: Any, tmp_path: Path) -> None:
    spec = tmp_path / "audit.yaml"
    spec.write_text((runs["a"] / "audit.yaml").read_text("utf-8").replace("max_new_tokens: 4", "max_new_tokens: 5"), "utf-8")
    res = invoke(str(runs["a"] / "out" / "results.json"), "--spec", str(spec))
    assert res.exit_code == 8
    assert "audit.yaml: sha256 " in res.output and "was made from a spec with sha256" in res.output
    assert "first difference at line 8: 'generation: {max_new_tokens: 5}' here, 'generation: {max_new_tokens: 4}' in the run" in res.output


def test_not_a_report_is_a_usage_error(tmp_path: Path) -> None:
    res = invoke(str(tmp_path / "missing.html"))
    assert res.exit_code == 2 and "no such file or folder" in res.stderr


# --------------------------------------------------------------------------- results.json


def test_results_json_number_changed(runs: Any, tmp_path: Path) -> None:
    path = copy_report(runs["a"], tmp_path, "results.json")
    data = json.loads(path.read_text("utf-8"))
    data["results"][0]["attribution"]["raw"][0][0] *= 2
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    fails(path, "results.json: the results are not the ones its manifest pins", "(a value was changed after the run)")


def test_results_json_reindented_still_verifies(runs: Any, tmp_path: Path) -> None:
    """The digest is over canonical JSON: layout does not matter, content does."""
    path = copy_report(runs["a"], tmp_path, "results.json")
    path.write_text(json.dumps(json.loads(path.read_text("utf-8")), indent=4, sort_keys=True), encoding="utf-8")
    assert invoke(str(path)).exit_code == 0


def test_results_json_manifest_removed(runs: Any, tmp_path: Path) -> None:
    path = copy_report(runs["a"], tmp_path, "results.json")
    data = json.loads(path.read_text("utf-8"))
    del data["manifest"]
    path.write_text(json.dumps(data), encoding="utf-8")
    fails(path, "results.json: carries no manifest")


def test_results_json_of_another_run_beside_a_report(runs: Any, tmp_path: Path) -> None:
    html = copy_report(runs["a"], tmp_path, "report.html")
    other = copy_report(runs["b"], tmp_path / "b", "results.json")
    res = CliRunner().invoke(main, ["verify", str(html), str(other)])
    assert res.exit_code == 8
    assert "results.json is from run" in res.output and "carry different results" in res.output


def test_statement_names_a_changed_file(runs: Any, tmp_path: Path) -> None:
    shutil.copytree(runs["a"] / "out", tmp_path / "out")
    results = tmp_path / "out" / "results.json"
    results.write_text(results.read_text("utf-8") + "\n", encoding="utf-8")  # the same content, other bytes
    res = invoke(str(tmp_path / "out" / "provenance.intoto.json"))
    assert res.exit_code == 8
    assert "results.json has sha256 " in res.output and "the statement names" in res.output


# --------------------------------------------------------------------------- HTML


def html_of(runs: Any, run: str = "a") -> str:
    return (runs[run] / "out" / "report.html").read_text("utf-8")


def write_html(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "report.html"
    path.write_text(text, encoding="utf-8")
    return path


def test_html_visible_number_changed(runs: Any, tmp_path: Path) -> None:
    page = html_of(runs)
    m = re.search(r'<div class="facts">(\d+) input tokens', page)
    assert m is not None
    n = int(m.group(1))
    path = write_html(tmp_path, page[: m.start(1)] + str(n + 1) + page[m.end(1) :])
    fails(path, f'report.html: #panel-tiny-p1: text is "{n + 1} input tokens', f'the embedded results give "{n} input tokens')


def test_html_token_colour_and_hover_value_changed(runs: Any, tmp_path: Path) -> None:
    page = html_of(runs)
    m = re.search(r'<span class="tok" data-i="(\d+)" title="input#\d+ [^"]*I\(x\) = ([0-9])', page)
    assert m is not None
    page = page[: m.start(2)] + str((int(m.group(2)) + 1) % 10) + page[m.end(2) :]
    m2 = re.search(r'style="background-color:(rgba?\([^)]*\)|#[0-9a-f]{6})"', page)
    assert m2 is not None
    page = page[: m2.start(1)] + "#ff0000" + page[m2.end(1) :]
    problems = fails(
        write_html(tmp_path, page),
        f'report.html: #panel-tiny-p1 › method "inseq.saliency" › input tokens › token #{m.group(1)}: attribute title is ',
        'attribute style is "background-color:#ff0000" in the report; the embedded results give "background-color:',
    )
    assert any("I(x) = " in p and "the embedded results give" in p for p in problems), problems


def test_html_figure_data_changed(runs: Any, tmp_path: Path) -> None:
    page = html_of(runs)
    at = page.index("Plotly.newPlot(", page.index('id="heatmap-tiny-p1-inseq.saliency"'))
    m = re.compile(r'"z":(\{"dtype":"f8","bdata":"([^"]+)"[^}]*\}|\[\[(-?[0-9.e+-]+))').search(page, at)
    assert m is not None
    if m.group(2):  # a typed array: change its first value
        arr = np.frombuffer(base64.b64decode(m.group(2)), dtype="f8").copy()
        arr[0] = 0.5
        page = page[: m.start(2)] + base64.b64encode(arr.tobytes()).decode() + page[m.end(2) :]
    else:
        page = page[: m.start(3)] + "0.5" + page[m.end(3) :]
    fails(
        write_html(tmp_path, page),
        'report.html: figure "heatmap-tiny-p1-inseq.saliency": trace 0 z[0][0] is 0.5 in the report; the embedded results give ',
    )


def test_html_embedded_results_changed(runs: Any, tmp_path: Path) -> None:
    page = html_of(runs)
    m = BLOCK.search(page)
    assert m is not None
    block = json.loads(m.group(2))
    data = json.loads(results_from_evidence(block))
    data["results"][0]["attribution"]["raw"][1][0] = 0.25
    block["results"]["data"] = json.dumps(data, indent=1, ensure_ascii=False)
    path = write_html(tmp_path, page[: m.start(2)] + json.dumps(block).replace("<", "\\u003c") + page[m.end(2) :])
    fails(
        path,
        "report.html: the results (embedded) are not the ones its manifest pins",
        "(a value was changed after the run)",
        "the embedded results.json has sha256",
    )


def test_html_compressed_evidence_round_trips_and_detects_a_change() -> None:
    raw = json.dumps({"schema_version": "1.1", "x": list(range(5000))}).encode()
    block = evidence(raw, {"run_id": "r"}, compress_above=0)
    assert block["results"]["encoding"] == "gzip+base64" and results_from_evidence(block) == raw
    assert evidence(raw, {"run_id": "r"}, compress_above=0) == block  # deterministic (gzip mtime 0)
    assert evidence(raw, {}, compress_above=len(raw))["results"]["encoding"] == "utf-8"
    broken = {**block, "results": {**block["results"], "data": block["results"]["data"][:-8] + "AAAAAAAA"}}
    with pytest.raises(ValueError, match="cannot be decoded"):
        results_from_evidence(broken)


def test_html_manifest_removed(runs: Any, tmp_path: Path) -> None:
    page = BLOCK.sub("", html_of(runs))
    fails(write_html(tmp_path, page), 'report.html: carries no manifest: no <script type="application/json" id="reportgen-evidence"> block')


def test_html_with_another_runs_evidence(runs: Any, tmp_path: Path) -> None:
    """Run B's manifest and results in run A's page: they agree with each other, not with the page."""
    a, b = html_of(runs, "a"), html_of(runs, "b")
    theirs = BLOCK.search(b)
    assert theirs is not None
    page = BLOCK.sub(lambda m: m.group(1) + theirs.group(2) + m.group(3), a)
    problems = fails(
        write_html(tmp_path, page),
        'report.html: dl 1 › "Run started": text is ',  # the differences in page order: the run's times first
        "more difference(s) not listed",
    )
    assert sum("in the report; the embedded results give" in p for p in problems) == 8, problems


def test_html_with_another_runs_results_only(runs: Any, tmp_path: Path) -> None:
    a = html_of(runs, "a")
    mine = json.loads(BLOCK.search(a).group(2))  # type: ignore[union-attr]
    theirs = json.loads(BLOCK.search(html_of(runs, "b")).group(2))  # type: ignore[union-attr]
    swapped = {**mine, "results": theirs["results"], "results_sha256_file": theirs["results_sha256_file"]}
    page = BLOCK.sub(lambda m: m.group(1) + json.dumps(swapped).replace("<", "\\u003c") + m.group(3), a)
    fails(write_html(tmp_path, page), "(they are from another run: run id ", f"the manifest names {mine['manifest']['run_id']})")


# --------------------------------------------------------------------------- PDF


def _cmap(font: Any) -> dict[bytes, str]:
    """A font's ToUnicode map: glyph code → text."""
    tu = font.get("/ToUnicode")
    data = tu.get_object().get_data().decode("latin-1") if tu is not None else ""
    out: dict[bytes, str] = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", data, re.DOTALL):
        for src, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            out[bytes.fromhex(src)] = bytes.fromhex(dst).decode("utf-16-be", "replace")
    for block in re.findall(r"beginbfrange(.*?)endbfrange", data, re.DOTALL):
        for lo, hi, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            for k in range(int(lo, 16), int(hi, 16) + 1):
                out[k.to_bytes(len(lo) // 2, "big")] = chr(int(dst, 16) + k - int(lo, 16))
    return out


def change_printed_number(src: Path, dst: Path, pattern: str = r"(\d+) input tokens") -> tuple[int, str, str]:
    """Change the first digit of a number WeasyPrint printed, in the first line matching ``pattern``
    (a glyph code in a page's content stream, via the font's ToUnicode map)."""
    import pypdf
    from pypdf.generic import ByteStringObject, ContentStream

    def raw(piece: Any) -> bytes:
        b = bytes(piece.get_original_bytes() if hasattr(piece, "get_original_bytes") else piece)
        return b[2:] if b.startswith(b"\xfe\xff") else b  # pypdf re-adds a UTF-16 BOM to 2-byte strings

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(src))
    for number, page in enumerate(writer.pages, start=1):
        fonts = page["/Resources"]["/Font"]
        content = ContentStream(page.get_contents(), writer)
        cmap: dict[bytes, str] = {}
        for operands, op in content.operations:
            if op == b"Tf":
                cmap = _cmap(fonts[operands[0]].get_object())
            if op != b"TJ" or not cmap:
                continue
            pieces = [(k, raw(p)) for k, p in enumerate(operands[0]) if not isinstance(p, (int, float))]
            text = "".join(cmap.get(b[i : i + 2], "?") for _, b in pieces for i in range(0, len(b), 2))
            m = re.match(pattern, text)
            if m is None:
                continue
            first = next((k, b) for k, b in pieces if b and cmap.get(b[:2], "").isdigit())
            digit = str((int(cmap[first[1][:2]]) + 1) % 10)
            glyph = {v: c for c, v in cmap.items()}[digit]
            operands[0][first[0]] = ByteStringObject(glyph + first[1][2:])
            page.replace_contents(content)
            with open(dst, "wb") as fh:
                writer.write(fh)
            before = m.group(0)
            return number, before, digit + before[1:]
    raise AssertionError(f"no printed text matches {pattern!r}")


def edit_attachments(src: Path, dst: Path, replace: dict[str, bytes | None]) -> None:
    """Copy a PDF with attachments replaced (bytes) or removed (None)."""
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(src))
    for f in list(writer.attachment_list):
        if str(f.name) in replace:
            body = replace[str(f.name)]
            if body is None:
                f.delete()
            else:
                f.content = body
    if any(v is None for v in replace.values()) and "/AF" in writer.root_object:
        af = writer.root_object["/AF"]
        keep = [ref for ref in af if str(ref.get_object().get("/F")) not in {k for k, v in replace.items() if v is None}]
        af.clear()
        af.extend(keep)
    with open(dst, "wb") as fh:
        writer.write(fh)


def test_pdf_printed_number_changed(runs: Any, tmp_path: Path) -> None:
    page, before, after = change_printed_number(runs["a"] / "out" / "report.pdf", tmp_path / "report.pdf")
    problems = fails(tmp_path / "report.pdf", f"report.pdf: page {page}, line ")
    assert any(after in p and before in p and "the report prints" in p for p in problems), (before, after, problems)


def test_pdf_attached_results_changed(runs: Any, tmp_path: Path) -> None:
    data = json.loads((runs["a"] / "out" / "results.json").read_text("utf-8"))
    data["results"][1]["attribution"]["raw"][0][1] = 0.75
    edit_attachments(runs["a"] / "out" / "report.pdf", tmp_path / "report.pdf", {"results.json": json.dumps(data).encode()})
    fails(
        tmp_path / "report.pdf",
        "report.pdf: the results (attached) are not the ones its manifest pins",
        "(a value was changed after the run)",
        "report.pdf: the attached provenance.intoto.json names results.json with sha256",
    )


def test_pdf_manifest_removed(runs: Any, tmp_path: Path) -> None:
    edit_attachments(runs["a"] / "out" / "report.pdf", tmp_path / "report.pdf", {"manifest.json": None})
    fails(tmp_path / "report.pdf", "report.pdf: carries no manifest (attached manifest.json)")


def test_pdf_with_another_runs_attachments(runs: Any, tmp_path: Path) -> None:
    """Run B's results.json and manifest.json in run A's PDF: consistent, but not what the pages print."""
    import pypdf

    theirs = pypdf.PdfReader(runs["b"] / "out" / "report.pdf").attachments
    edit_attachments(
        runs["a"] / "out" / "report.pdf",
        tmp_path / "report.pdf",
        {name: theirs[name][0] for name in ("results.json", "manifest.json", "provenance.intoto.json")},
    )
    problems = fails(tmp_path / "report.pdf", "report.pdf: page ")
    assert any("the report prints" in p and "the attached results give" in p for p in problems), problems


def test_pdf_resaved_without_change_still_verifies(runs: Any, tmp_path: Path) -> None:
    """Another program re-saving the PDF changes its bytes, not its pages or attachments."""
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(runs["a"] / "out" / "report.pdf"))
    buf = io.BytesIO()
    writer.write(buf)
    (tmp_path / "report.pdf").write_bytes(buf.getvalue())
    result = verify([tmp_path / "report.pdf"])
    assert result.ok, result.all_problems()
    assert any("re-saved by another program" in n for f in result.files for n in f.notes)


# --------------------------------------------------------------------------- canonical JSON (RFC 8785)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"), (-0.0, "0"), (1e21, "1e+21"), (1e-7, "1e-7"), (333333333.3333333, "333333333.3333333"),
        (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"), (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"), (0.000001, "0.000001"), (2.0, "2"), (-1.5, "-1.5"), (1e23, "1e+23"),
    ],
)  # fmt: skip
def test_numbers_print_as_rfc_8785_says(value: float, expected: str) -> None:
    assert canonical_json(value) == expected.encode()


def test_keys_sort_by_utf16_code_units_and_strings_escape_minimally() -> None:
    value = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    assert canonical_json(value).decode() == '{"\\r":2,"1":4,"\u0080":6,"\u00f6":7,"\u20ac":1,"\U0001f600":5,"\ufb33":3}'
    assert canonical_json(["\u2028", "\x1f", '"\\/']) == '["\u2028","\\u001f","\\"\\\\/"]'.encode()
