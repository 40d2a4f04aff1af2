"""An unchanged rerun into the same folder writes nothing (issue 10 §5), like ``make``.

Tiny models through the CLI: a rerun whose jobs all come from the cache, into a folder that
holds that run's reports intact, prints one "up to date" line, rewrites no byte and touches
no file (mtimes), and still applies the gate (exit 7). An edited or deleted report, another
spec text, other formats, ``--no-cache`` or other software render everything again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reportgen import plugins
from reportgen import stamp as stamps
from tests.test_cli_run import SPEC, cli_registry, invoke, last_line, spec_file  # noqa: F401 - cli_registry: the fixture used

pytestmark = pytest.mark.usefixtures("cli_registry")
TWO_FORMATS = SPEC.replace("formats: [json]", "formats: [json, html]")


def snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    """Every file in ``out`` with its mtime (ns) and bytes."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.iterdir()) if p.is_file()}


def first_run(tmp_path: Path, text: str = TWO_FORMATS) -> tuple[Path, dict[str, tuple[int, bytes]]]:
    spec = spec_file(tmp_path, text)
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 0, res.stderr
    assert "up to date" not in res.stderr
    return spec, snapshot(tmp_path / "out")


def test_an_unchanged_rerun_rewrites_nothing_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, before = first_run(tmp_path)
    out = tmp_path / "out"
    assert set(before) == {".reportgen-stamp.json", "provenance.intoto.json", "report.html", "results.json"}
    stamp = stamps.read(out)
    results = json.loads(before["results.json"][1])
    assert stamp is not None and stamp.run_id == results["run_id"] and stamp.completed_at == results["completed_at"]
    assert stamp.signer is None and set(stamp.files) == {"provenance.intoto.json", "report.html", "results.json"}
    monkeypatch.setattr("reportgen.runner.linguistics.annotate_all", no_labels)  # nor detectors, nor spaCy
    monkeypatch.setattr("reportgen.runner.detect", no_labels)
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 0, res.stderr
    assert snapshot(out) == before  # not one byte, not one mtime
    line = (
        f"up to date: the reports in {out} are from run {results['run_id']} at {results['completed_at']} with the same spec, "
        f"models and reportgen; nothing rewritten. `reportgen render {out / 'results.json'} -o {out} -f html` rebuilds them"
    )
    assert line in res.stderr.splitlines()
    assert "jobs: 3 of 3 reused from the cache, 0 computed" in res.stderr
    assert f"html: {out / 'report.html'}" in res.stdout and f"json: {out / 'results.json'}" in res.stdout


def no_labels(*args: Any) -> Any:
    raise AssertionError("an up-to-date folder needs no token labels and no detector")


@pytest.mark.parametrize("formats", ["[json, html]", "[html]"])  # the gate reads results.json, else the run's own findings
def test_the_gate_still_fails_when_up_to_date(tmp_path: Path, formats: str) -> None:
    spec, before = first_run(tmp_path, SPEC.replace("[json]", formats))
    res = invoke("run", str(spec), "-q", "--fail-on", "medium")
    assert res.exit_code == 7, res.stderr
    assert "up to date: " in res.stderr
    assert last_line(res) == (
        "error: gate failed: 1 finding(s) of severity medium or worse: 1 medium (fail on: medium); the reports are written"
    )
    assert snapshot(tmp_path / "out") == before


def _edit_report(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    (tmp_path / "out" / "report.html").write_text("<html>edited</html>", encoding="utf-8")
    return []


def _delete_report(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    (tmp_path / "out" / "report.html").unlink()
    return []


def _delete_statement(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    (tmp_path / "out" / "provenance.intoto.json").unlink()
    return []


def _edit_spec(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    spec.write_text(TWO_FORMATS + "# a comment: the same jobs, another spec text\n", encoding="utf-8")
    return []


def _fewer_formats(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["-f", "json"]


def _more_formats(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["-f", "json", "-f", "html", "-f", "pdf"]


def _no_cache(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["--no-cache"]


def _other_software(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(stamps, "software_digest", lambda modules: "another reportgen")
    return []


def _other_spacy(tmp_path: Path, spec: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(stamps, "package_versions", lambda names: dict.fromkeys(names, "9.9"))
    return []


@pytest.mark.parametrize(
    "change",
    [_edit_report, _delete_report, _delete_statement, _edit_spec, _fewer_formats, _more_formats, _no_cache, _other_software, _other_spacy],
)
def test_any_difference_renders_again(tmp_path: Path, change: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, before = first_run(tmp_path)
    extra = change(tmp_path, spec, monkeypatch)
    res = invoke("run", str(spec), "-q", *extra)
    assert res.exit_code == 0, res.stderr
    assert "up to date" not in res.stderr
    out = tmp_path / "out"
    after = snapshot(out)
    written = {n for n in after if n != ".reportgen-stamp.json"}
    assert written == {Path(line.split(": ", 1)[1]).name for line in res.stdout.splitlines() if ": " in line}
    for name in written & set(before):  # every report rendered again (the run's timings are in each of them)
        assert after[name][1] != before[name][1], name
    stamp = stamps.read(out)
    assert stamp is not None and stamp.files == stamps.file_digests(out, written)
    again = invoke("run", str(spec), "-q", *extra)  # and the folder is up to date after it
    assert again.exit_code == 0 and ("up to date: " in again.stderr) == ("--no-cache" not in extra), again.stderr


def test_a_failed_render_leaves_no_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _ = first_run(tmp_path)

    def broken(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(plugins.get_registry().renderers["html"], "render", broken)  # cli_registry's
    monkeypatch.setattr(stamps, "software_digest", lambda modules: "another reportgen")
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 6, res.stderr
    assert stamps.read(tmp_path / "out") is None


def test_the_inputs_digest_ignores_run_dependent_fields_only() -> None:
    data = {"run_id": "a", "created_at": "t0", "timings": {"total": 1.0}, "spec_text": "x", "results": [{"timings": {}}]}
    same = {**data, "run_id": "b", "created_at": "t1", "timings": {"total": 2.0}}
    base = stamps.inputs_digest(data, ["results.json"], "sw")
    assert stamps.inputs_digest(same, ["results.json"], "sw") == base
    assert stamps.inputs_digest({**data, "spec_text": "y"}, ["results.json"], "sw") != base
    assert stamps.inputs_digest(data, ["results.json", "report.html"], "sw") != base
    assert stamps.inputs_digest(data, ["results.json"], "sw2") != base


def test_the_software_digest_follows_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    pkg = tmp_path / "someplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n", encoding="utf-8")
    module = types.ModuleType("someplugin")
    module.__file__ = str(pkg / "__init__.py")
    monkeypatch.setitem(sys.modules, "someplugin", module)
    first = stamps.software_digest(["someplugin.sub"])
    assert stamps.software_digest(["someplugin"]) == first != stamps.software_digest([])
    (pkg / "sub.py").write_text("Y = 2\n", encoding="utf-8")
    assert stamps.software_digest(["someplugin"]) != first


def test_a_signed_folder_is_up_to_date_only_with_its_signatures(tmp_path: Path) -> None:
    pytest.importorskip("pyhanko")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.test_signing import _cert, _name, _pem

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "cert.pem").write_bytes(_pem(_cert("Report Signer", key, _name("Report Signer"), key)))
    sign = ["--sign", str(tmp_path / "key.pem"), "--cert", str(tmp_path / "cert.pem")]
    spec, _ = first_run(tmp_path)
    out = tmp_path / "out"
    res = invoke("run", str(spec), "-q", *sign)  # unsigned folder: rendered again and signed
    assert res.exit_code == 0 and "up to date" not in res.stderr, res.stderr
    envelopes = {"provenance.intoto.json.dsse.json", "report.html.dsse.json", "results.json.dsse.json"}
    assert envelopes <= set(snapshot(out))
    stamp = stamps.read(out)
    assert stamp is not None and stamp.signer is not None and envelopes <= set(stamp.files)
    signed = snapshot(out)
    res = invoke("run", str(spec), "-q", *sign)
    assert res.exit_code == 0 and "up to date: " in res.stderr and "signed: " not in res.stdout, res.stderr
    assert snapshot(out) == signed
    (out / "report.html.dsse.json").unlink()  # a signature missing: rendered and signed again
    res = invoke("run", str(spec), "-q", *sign)
    assert res.exit_code == 0 and "up to date" not in res.stderr and "signed: " in res.stdout, res.stderr
    assert envelopes <= set(snapshot(out))
    res = invoke("run", str(spec), "-q")  # not signed this time: the signatures of the earlier files go
    assert res.exit_code == 0 and "up to date" not in res.stderr, res.stderr
    assert not envelopes & set(snapshot(out))


def test_a_stamp_that_cannot_be_written_costs_only_the_shortcut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stamps, "write", full)
    spec = spec_file(tmp_path)
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 0, res.stderr
    stamp = tmp_path / "out" / ".reportgen-stamp.json"
    assert f"could not write {stamp} (No space left on device): the next run renders again" in res.stderr
    assert (tmp_path / "out" / "results.json").is_file()
    res = invoke("run", str(spec), "-q")
    assert res.exit_code == 0 and "up to date" not in res.stderr
