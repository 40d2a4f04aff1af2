"""results.json: the whole run, machine-readable; loading it back rebuilds the report.

:func:`load_run` checks the file before anything is rendered: a wrong JSON root, an
unsupported ``schema_version`` major, a missing or mistyped field, a ragged or non-numeric
matrix, or lengths that do not match the tokens raise :class:`~reportgen.errors.ResultsError`
(exit 6) naming the file and the JSON path, e.g.
``out/results.json: results[2].attribution.raw[1]: 3 values; expected 4 (one per output token)``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from reportgen.data import (
    AttributionResult,
    Evaluation,
    Finding,
    Generation,
    RunResult,
    jsonable_dict,
)
from reportgen.errors import ResultsError, SpecError
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
            "evaluations": [e.to_json() for e in run.evaluations],  # evaluators' metric tables (reportgen.data.Evaluation)
            "provenance": run.provenance,
            "timings": run.timings,
        }
    )


def dumps(run: RunResult) -> str:
    return json.dumps(run_to_json(run), indent=1, ensure_ascii=False, allow_nan=False)


# --------------------------------------------------------------------------- checking a file

# A number as results.json stores it: NaN and infinities are written as null.
Num = StrictInt | StrictFloat | None


class _Loose(BaseModel):
    """Fields a newer 1.x writer adds are ignored; the ones read are typed strictly."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Generation(_Loose):
    model_id: StrictStr
    prompt_id: StrictStr
    input_ids: list[StrictInt]
    input_tokens: list[StrictStr]
    input_special: list[StrictBool]
    output_ids: list[StrictInt]
    output_tokens: list[StrictStr]
    prompt_text: StrictStr
    response_text: StrictStr
    step_scores: dict[str, list[Num]] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    seconds: StrictInt | StrictFloat = 0.0


class _Tokens(_Loose):
    tokens: list[StrictStr]


class _Attribution(_Loose):
    raw: list[list[Num]] | None
    label: StrictStr = ""
    signed: StrictBool = False


class _Result(_Loose):
    method: StrictStr
    label: StrictStr | None = None
    model: StrictStr
    prompt: StrictStr
    options: dict[str, Any] = Field(default_factory=dict)
    status: Literal["ok", "unavailable", "failed"] = "ok"
    reason: StrictStr | None = None
    input: _Tokens
    output: _Tokens
    attribution: _Attribution
    scores: dict[str, list[Num]] = Field(default_factory=dict)
    intervals: dict[str, list[list[Num] | None]] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, Num] = Field(default_factory=dict)


class _Finding(_Loose):
    detector: StrictStr
    severity: Literal["high", "medium", "low", "info"]
    model_id: StrictStr
    prompt_id: StrictStr
    method: StrictStr
    positions: list[StrictInt]
    token: StrictStr
    evidence: dict[str, Any]
    message: StrictStr
    suggestion: StrictStr = ""
    title: StrictStr = ""


class _ResultsFile(_Loose):
    schema_version: StrictStr
    spec_text: StrictStr
    spec_path: StrictStr = ""
    created_at: StrictStr = ""
    completed_at: StrictStr = ""
    generations: list[_Generation]
    results: list[_Result]
    findings: list[_Finding] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, Num] = Field(default_factory=dict)


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


_MEMBER = {"int": "a number", "float": "a number", "str": "a string", "bool": "true or false"}


def _first_error(exc: ValidationError) -> str:
    """The first problem as ``json.path: message``, plus how many other places are wrong."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for err in exc.errors():
        # A union reports one error per member, tagged with the member's type name: group them.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p in _MEMBER or "[" in p)))
        groups.setdefault(loc, []).append(err)
    loc, errs = next(iter(groups.items()))
    err = errs[0]
    got = type(err.get("input")).__name__
    if err["type"] == "missing":
        msg = "missing"
    elif len(errs) > 1 or err["loc"][-1] in _MEMBER:
        kinds = sorted({_MEMBER[e["loc"][-1]] for e in errs if e["loc"][-1] in _MEMBER})
        msg = f"expected {' or '.join(kinds)} or null (got {got})"
    elif err["type"] == "literal_error":
        msg = f"got {err.get('input')!r}; {err['msg'].lower()}"
    else:
        msg = f"{err['msg'].lower()} (got {got})"
    more = len(groups) - 1
    return f"{_path(loc)}: {msg}" + (f" (and {more} more problem(s))" if more else "")


def _shape_problems(data: _ResultsFile) -> list[str]:
    """Lengths that must agree: tokens, ids, matrices, scores, finding positions."""
    problems: list[str] = []
    gens: dict[tuple[str, str], _Generation] = {}
    for i, g in enumerate(data.generations):
        at = f"generations[{i}]"
        if not len(g.input_ids) == len(g.input_tokens) == len(g.input_special):
            problems.append(
                f"{at}: input_ids, input_tokens and input_special differ in length "
                f"({len(g.input_ids)}, {len(g.input_tokens)}, {len(g.input_special)})"
            )
        if len(g.output_ids) != len(g.output_tokens):
            problems.append(f"{at}: output_ids and output_tokens differ in length ({len(g.output_ids)}, {len(g.output_tokens)})")
        gens[(g.model_id, g.prompt_id)] = g
    for i, r in enumerate(data.results):
        at = f"results[{i}]"
        n, t = len(r.input.tokens), len(r.output.tokens)
        if (r.model, r.prompt) not in gens:
            problems.append(f"{at}: no generation for model {r.model!r} and prompt {r.prompt!r}")
        raw = r.attribution.raw
        if raw is not None:
            if len(raw) != n:
                problems.append(f"{at}.attribution.raw: {len(raw)} rows; expected {n} (one per input token)")
            for j, row in enumerate(raw):
                if len(row) != t:
                    problems.append(f"{at}.attribution.raw[{j}]: {len(row)} values; expected {t} (one per output token)")
                    break
        for name, vec in r.scores.items():
            if len(vec) != n:
                problems.append(f"{at}.scores.{name}: {len(vec)} values; expected {n} (one per input token)")
    for i, f in enumerate(data.findings):
        fg = gens.get((f.model_id, f.prompt_id))
        if fg is None:
            problems.append(f"findings[{i}]: no generation for model {f.model_id!r} and prompt {f.prompt_id!r}")
            continue
        bad = [p for p in f.positions if not 0 <= p < len(fg.input_tokens)]
        if bad:
            problems.append(f"findings[{i}].positions: {bad[0]} is not a token of the input (0 to {len(fg.input_tokens) - 1})")
    return problems


def rebuilt_record(path: str | Path, raw: bytes, at: str | None = None) -> dict[str, str]:
    """What a rebuilt report says about its source: when, from which file (name only) and its sha256."""
    return {
        "at": at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "from": Path(path).name,
        "sha256": hashlib.sha256(raw).hexdigest(),
    }


def load_run(path: str | Path, *, rebuild: bool = False) -> RunResult:
    """Rebuild a RunResult from results.json (checked, spec re-validated from its stored text).

    With ``rebuild=True`` (``reportgen render``) the run's ``provenance["rebuilt"]`` records
    :func:`rebuilt_record` of the file read, so the reports made from it say so. Raises
    :class:`~reportgen.errors.ResultsError` (exit 6) naming the file and the JSON path.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read results ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: (root): expected a JSON object (a reportgen results.json); got a {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, str):
        raise ResultsError(f"{path}: schema_version: missing; is this a reportgen results.json?")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ResultsError(
            f"{path}: schema_version: {version!r} is not supported (this reportgen reads {SCHEMA_VERSION.split('.')[0]}.x)"
        )
    try:
        checked = _ResultsFile.model_validate(data)
    except ValidationError as exc:
        raise ResultsError(f"{path}: {_first_error(exc)}") from None
    problems = _shape_problems(checked)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ResultsError(f"{path}: {problems[0]}{more}")
    try:
        spec = validate_text(checked.spec_text, checked.spec_path or str(path))
    except SpecError as exc:
        first = exc.problems[0] if exc.problems else str(exc)
        raise ResultsError(f"{path}: spec_text: the stored audit spec is invalid: {first}") from None
    provenance = dict(checked.provenance)
    if rebuild:
        provenance["rebuilt"] = rebuilt_record(path, raw)
    return RunResult(
        spec=spec,
        spec_text=checked.spec_text,
        spec_path=checked.spec_path,
        generations=[Generation.from_json(g.model_dump()) for g in checked.generations],
        results=[AttributionResult.from_json(r) for r in data["results"]],
        findings=[Finding.from_json(f.model_dump()) for f in checked.findings],
        provenance=provenance,
        timings=dict(data.get("timings") or {}),
        created_at=checked.created_at,
        completed_at=checked.completed_at,
        evaluations=_evaluations(str(path), data.get("evaluations")),
    )

def _evaluations(name: str, raw: Any) -> list[Evaluation]:
    """The ``evaluations`` member (absent in files written before evaluators existed)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ResultsError(f"{name}: evaluations: expected a list (got {type(raw).__name__})")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(Evaluation.from_json(item))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultsError(f"{name}: evaluations[{i}]: not an evaluation ({type(exc).__name__}: {exc})") from None
    return out
