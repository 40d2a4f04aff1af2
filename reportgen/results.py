"""results.json: the whole run, machine-readable; loading it back rebuilds the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reportgen.data import AttributionResult, Finding, Generation, RunResult, jsonable_dict
from reportgen.errors import ReportgenError
from reportgen.spec import validate_text

SCHEMA_VERSION = "1.0"


def run_to_json(run: RunResult) -> dict[str, Any]:
    """The seed-001 A.2 result structure, extended with generations, findings and provenance."""
    return jsonable_dict(
        {
            "schema_version": SCHEMA_VERSION,
            "job_id": run.provenance.get("spec_sha256", "")[:16],
            "created_at": run.created_at,
            "completed_at": run.completed_at,
            "title": run.spec.title,
            "spec_path": run.spec_path,
            "spec_text": run.spec_text,
            "options": {
                "generation": run.spec.generation.model_dump(),
                "aggregations": run.spec.aggregations.model_dump(),
                "seed": run.spec.seed,
            },
            "generations": [g.to_json() for g in run.generations],
            "results": [r.to_json() for r in run.results],
            "findings": [f.to_json() for f in run.findings],
            "provenance": run.provenance,
            "timings": run.timings,
        }
    )


def dumps(run: RunResult) -> str:
    return json.dumps(run_to_json(run), indent=1, ensure_ascii=False, allow_nan=False)


def load_run(path: str | Path) -> RunResult:
    """Rebuild a RunResult from results.json (spec re-validated from its stored text)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportgenError(f"{path}: cannot read results ({exc})") from None
    version = str(data.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ReportgenError(f"{path}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
    spec = validate_text(data["spec_text"], data.get("spec_path", str(path)))
    return RunResult(
        spec=spec,
        spec_text=data["spec_text"],
        spec_path=data.get("spec_path", ""),
        generations=[Generation.from_json(g) for g in data["generations"]],
        results=[AttributionResult.from_json(r) for r in data["results"]],
        findings=[Finding.from_json(f) for f in data["findings"]],
        provenance=data.get("provenance", {}),
        timings=data.get("timings", {}),
        created_at=data.get("created_at", ""),
        completed_at=data.get("completed_at", ""),
    )
