"""Commands that load no model import no model stack: ``--help``, ``validate`` (a valid spec, an
invalid one, a missing file), ``render -f html``, ``verify`` and ``diff`` import none of torch,
transformers, scipy, inseq or spacy (each command runs in a fresh interpreter and the test reads
``sys.modules`` after it exits). Two exceptions, where the work needs the package and imports it
where it is used: ``diff`` sums tokens into units with sparse matrices (scipy), and anything that
lists inseq's methods (a spec naming ``inseq.*``, ``reportgen plugins``) imports inseq, hence torch
(``tests/test_deferred_methods.py``). The last test imports every host and plugin module, so a
heavy import at module level fails here even before any command reaches it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from reportgen.cli import main
from reportgen.results import dumps
from tests.conftest import write_spec
from tests.import_watch import HEAVY, REPO, cli_imports
from tests.report_fixtures import make_run

# Every method family but inseq's (listing those imports inseq), with options, evaluation and detectors.
SPEC = """\
title: light
models:
  - id: m
    source: embedded:smollm2-135m-instruct
prompts:
  - id: p
    text: What is the capital of France?
methods:
  - method: probabilistic
    options: {mode: fast, bound_pool: adaptive}
  - method: jacobian.semantic
  - method: jacobian.temperature
  - method: jacobian.fisher
    options: {fisher_mode: low_rank, rank: 8}
  - method: dbsa
    options: {unit: word, samples: 10}
evaluation:
  options: {faithfulness: {beam_width: 2}}
aggregations:
  dimension: l2
report:
  formats: [html, json, pdf]
"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two one-model runs (seeds 0 and 1) as results.json, each rendered to html and json."""
    root = tmp_path_factory.mktemp("light")
    out: dict[str, Path] = {}
    for seed in (0, 1):
        run = make_run(models=1, findings=False, seed=seed)
        digest = hashlib.sha256(run.spec_text.encode("utf-8")).hexdigest()  # verify checks it
        run = replace(run, provenance={**run.provenance, "spec_sha256": digest})
        results = root / f"run{seed}.json"
        results.write_text(dumps(run), encoding="utf-8")
        folder = root / f"out{seed}"
        res = CliRunner().invoke(main, ["render", str(results), "-o", str(folder), "-f", "html", "-f", "json"])
        assert res.exit_code == 0, res.output
        out[f"results{seed}"], out[f"out{seed}"] = results, folder
    return out


def test_help_imports_nothing_heavy() -> None:
    proc, heavy = cli_imports("--help")
    assert proc.returncode == 0 and "validate" in proc.stdout
    assert heavy == set()


def test_validate_a_valid_spec_imports_nothing_heavy(tmp_path: Path) -> None:
    proc, heavy = cli_imports("validate", str(write_spec(tmp_path, SPEC)))
    assert proc.returncode == 0, proc.stderr
    assert "ok (1 model(s) × 1 prompt(s) × 5 method(s))" in proc.stdout
    assert heavy == set()


def test_validate_an_invalid_spec_still_names_the_problem_and_imports_nothing_heavy(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC.replace("rank: 8", "rank: 0"))
    proc, heavy = cli_imports("validate", str(spec))
    assert proc.returncode == 2 and f"{spec}:" in proc.stderr and "rank" in proc.stderr, proc.stderr
    assert heavy == set()


def test_validate_a_missing_file_imports_nothing_heavy(tmp_path: Path) -> None:
    proc, heavy = cli_imports("validate", str(tmp_path / "nonexistent.yaml"))
    assert proc.returncode == 2 and "nonexistent.yaml" in proc.stderr
    assert heavy == set()


def test_render_html_imports_nothing_heavy(reports: dict[str, Path], tmp_path: Path) -> None:
    proc, heavy = cli_imports("render", str(reports["results0"]), "-o", str(tmp_path / "out"), "-f", "html")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "report.html").is_file()
    assert heavy == set()


def test_verify_imports_nothing_heavy(reports: dict[str, Path]) -> None:
    proc, heavy = cli_imports("verify", str(reports["out0"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert heavy == set()


def test_diff_imports_only_scipy(reports: dict[str, Path], tmp_path: Path) -> None:
    old, new = (str(reports[f"out{s}"] / "results.json") for s in (0, 1))
    proc, heavy = cli_imports("diff", old, new, "-o", str(tmp_path / "diff"), "-f", "html")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "diff" / "diff.html").is_file()
    assert heavy <= {"scipy"}  # the unit shares are scipy.sparse matrices


# Every module of the host (reportgen/) and the built-in plugins (plugins/, imported as
# reportgen_plugins), found from the files: pkgutil.walk_packages would import packages to list them.
# reportgen_plugins.pas.engine is PAS's compute engine (torch at module level); only
# ProbabilisticMethod.attribute imports it.
IMPORT_ALL = f"""
import importlib, sys
from pathlib import Path
names = []
for folder, package in (("reportgen", "reportgen"), ("plugins", "reportgen_plugins")):
    for path in sorted(Path({str(REPO)!r}, folder).rglob("*.py")):
        parts = (package, *path.relative_to(Path({str(REPO)!r}, folder)).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
for name in names:
    if name != "reportgen_plugins.pas.engine":
        importlib.import_module(name)
        heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
        if heavy:
            sys.exit(f"importing {{name}} imports {{','.join(heavy)}}")
print(len(names))
"""


def test_no_module_imports_a_heavy_package_at_module_level() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 80  # every module was imported, not a few
