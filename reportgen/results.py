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
from typing import Annotated, Any, Literal

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
from reportgen.manifest import manifest_for, manifest_problems, run_id_for
from reportgen.spec import validate_text

#: The results.json format version (semver: a reader refuses a newer major; a minor adds fields).
#: 1.1 added raw tokens (``input_raw``/``output_raw``, ``input.raw``), byte spans
#: (``*_byte_spans``, ``input.byte_spans``), ``provenance.rebuilt``, ``provenance.jobs``,
#: ``run_id`` and ``manifest``. 1.2 added token roles and turns (``input_roles``, ``input_turns``)
#: and the messages a conversation's input was built from (``messages``). 1.3 added part-of-speech
#: and entity labels of the tokens (``generations[].linguistics``, :mod:`reportgen.linguistics`).
#: 1.4 added the executor that computed the shards (``provenance.executor``).
SCHEMA_VERSION = "1.4"

#: Fields that differ between two runs of the same spec and seed (JSON paths; ``[]`` is every
#: element of a list, ``*`` every member of an object). Everything else in results.json is the
#: same, byte for byte, when the same spec runs with the same seed and no cache.
RUN_DEPENDENT: tuple[str, ...] = (
    "run_id",
    "created_at",
    "completed_at",
    "timings",
    "generations[].seconds",
    "results[].timings",
    "results[].details.from_cache",
    "evaluations[].timings",
    "evaluations[].details.from_cache",
    "provenance.cache",
    "provenance.jobs",
    "provenance.executor",
    "provenance.models.*.loaded",
    "provenance.models.*.load_seconds",
    "provenance.rebuilt",
    "manifest.run_id",
    "manifest.results_sha256",
)


def without_run_dependent(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a results.json object without the :data:`RUN_DEPENDENT` fields (for comparing runs)."""
    import copy

    out = copy.deepcopy(data)
    for path in RUN_DEPENDENT:
        _drop(out, path.replace("[]", ".[]").split("."))
    return out


def _drop(node: Any, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if head == "[]":
        for item in node if isinstance(node, list) else []:
            _drop(item, rest)
        return
    if not isinstance(node, dict):
        return
    keys = list(node) if head == "*" else [head]
    for key in keys:
        if key not in node:
            continue
        if rest:
            _drop(node[key], rest)
        else:
            del node[key]


def run_to_json(run: RunResult) -> dict[str, Any]:
    """The seed-001 A.2 result structure, extended with generations, findings, provenance and
    the manifest (:func:`reportgen.manifest.manifest_for` of everything else)."""
    body = results_body(run)
    out = {"schema_version": body.pop("schema_version"), "run_id": run_id_for(body), **body}
    out["manifest"] = manifest_for(out)
    return out


def results_body(run: RunResult) -> dict[str, Any]:
    """:func:`run_to_json` without the members derived from the rest (``run_id``, ``manifest``)."""
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
    """results.json as written: UTF-8 JSON, one space of indent, NaN and infinities as null."""
    return dumps_data(run_to_json(run))


def dumps_data(data: dict[str, Any]) -> str:
    """:func:`dumps` of a :func:`run_to_json` object already built."""
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)


def manifest_of(run: RunResult) -> dict[str, Any]:
    """The manifest of ``run`` (the same one results.json, the HTML and the PDF report carry)."""
    manifest: dict[str, Any] = run_to_json(run)["manifest"]
    return manifest


# --------------------------------------------------------------------------- the format
# These models check a file before it is rendered and are the published JSON Schema of
# results.json (``reportgen schema --results``). Fields a newer 1.x writer adds are ignored
# when reading (the schema allows additional properties); the ones read are typed strictly.

# A number as results.json stores it: NaN and infinities are written as null.
Num = StrictInt | StrictFloat | None
Span = tuple[StrictInt, StrictInt, StrictInt]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MessageRecord(_Loose):
    role: Literal["system", "user", "assistant", "tool"]
    content: StrictStr
    turn: Annotated[int, Field(ge=1)]
    generated: StrictBool = Field(False, description="The model's own earlier output (eq. 8), not spec text.")


class LinguisticsRecord(_Loose):
    """spaCy labels per token (1.3): null for template/special tokens and white space."""

    pipeline: StrictStr = Field(description="The spaCy pipeline and version that labelled the tokens.")
    input_pos: list[StrictStr | None] = Field(description="Universal part-of-speech tag of each input token.")
    input_ent: list[StrictStr | None] = Field(description="Named-entity type of each input token (null outside entities).")
    output_pos: list[StrictStr | None] = Field(description="Part-of-speech tag of each response token.")
    output_ent: list[StrictStr | None] = Field(description="Named-entity type of each response token.")


class GenerationRecord(_Loose):
    """One model's response to one prompt, generated once and explained by every method."""

    model_id: StrictStr = Field(description="The model's id in the spec.")
    prompt_id: StrictStr = Field(description="The prompt's id in the spec.")
    input_ids: list[StrictInt] = Field(description="Token ids of the whole model input (chat template included).")
    input_tokens: list[StrictStr] = Field(description="Display form of each input token: the characters it covers.")
    input_special: list[StrictBool] = Field(description="True for chat-template and special tokens, per input token.")
    output_ids: list[StrictInt] = Field(description="Token ids of the response.")
    output_tokens: list[StrictStr] = Field(description="Display form of each response token.")
    prompt_text: StrictStr = Field(description="The user content as text.")
    response_text: StrictStr = Field(description="The response as text.")
    step_scores: dict[str, list[Num]] = Field(default_factory=dict, description="Per response token scores (probability, entropy).")
    settings: dict[str, Any] = Field(default_factory=dict, description="Generation settings used.")
    seconds: StrictInt | StrictFloat = Field(0.0, description="Time the generation took (run-dependent).")
    input_raw: list[StrictStr] = Field(default_factory=list, description="The tokenizer's own input token strings (1.1).")
    output_raw: list[StrictStr] = Field(default_factory=list, description="The tokenizer's own response token strings (1.1).")
    input_byte_spans: list[Span] = Field(
        default_factory=list,
        description="[token index, start, end] of each byte mark in input_tokens: bytes of a character a later token completes (1.1).",
    )
    output_byte_spans: list[Span] = Field(default_factory=list, description="Byte marks in output_tokens, as input_byte_spans (1.1).")
    input_roles: list[Literal["system", "user", "assistant", "tool"]] = Field(
        default_factory=list, description="Chat role of each input token (1.2; the reply's generation prompt is 'assistant')."
    )
    input_turns: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="1-based conversation turn of each input token (1.2)."
    )
    messages: list[MessageRecord] = Field(
        default_factory=list, description="The messages the input was built from (1.2; eq. 8 for a conversation)."
    )
    linguistics: LinguisticsRecord | None = Field(
        None, description="Part-of-speech and entity labels per token (1.3; absent without spaCy)."
    )


class TokensRecord(_Loose):
    tokens: list[StrictStr] = Field(description="Display form of each token.")
    raw: list[StrictStr] = Field(default_factory=list, description="The tokenizer's own token strings (1.1).")
    byte_spans: list[Span] = Field(default_factory=list, description="[token index, start, end] of each byte mark (1.1).")


class AttributionRecord(_Loose):
    raw: list[list[Num]] | None = Field(
        description="The attribution matrix A: one row per input token, one value per output token; null when the method has none."
    )
    label: StrictStr = Field("", description="What A holds (e.g. '|∇| (l2)').")
    signed: StrictBool = Field(False, description="Whether A's sign is meaningful.")
    aggregated: dict[str, Any] = Field(default_factory=dict, description="token_importance.input / .output: I(x), I(y) (seed 001 eq. 6).")


class ResultRecord(_Loose):
    """What one method says about one (model, prompt) generation."""

    method: StrictStr = Field(description="The registered method name.")
    label: StrictStr | None = Field(None, description="The method's id when the spec lists it twice.")
    model: StrictStr
    prompt: StrictStr
    options: dict[str, Any] = Field(default_factory=dict, description="The method's validated options.")
    status: Literal["ok", "unavailable", "failed"] = "ok"
    reason: StrictStr | None = Field(None, description="Why the method was unavailable or failed.")
    input: TokensRecord
    output: TokensRecord
    attribution: AttributionRecord
    scores: dict[str, list[Num]] = Field(default_factory=dict, description="Named per input token scores.")
    intervals: dict[str, list[list[Num] | None]] = Field(default_factory=dict, description="[lo, hi] per input token, per score.")
    details: dict[str, Any] = Field(default_factory=dict, description="Method-specific evidence (the family's typed payload).")
    timings: dict[str, Num] = Field(default_factory=dict, description="Seconds per step (run-dependent).")


class FindingRecord(_Loose):
    """One anomaly a detector found."""

    detector: StrictStr
    severity: Literal["high", "medium", "low", "info"]
    model_id: StrictStr
    prompt_id: StrictStr
    method: StrictStr
    positions: list[StrictInt] = Field(description="Indices into the generation's input tokens.")
    token: StrictStr
    evidence: dict[str, Any] = Field(description="The numbers behind the finding.")
    message: StrictStr
    suggestion: StrictStr = ""
    title: StrictStr = ""


class JobsRecord(_Loose):
    total: StrictInt
    reused: StrictInt
    computed: StrictInt
    unavailable: StrictInt = 0
    models_loaded: list[StrictStr] = Field(default_factory=list)


class ExecutorRecord(_Loose):
    """Where the shards ran (1.4): ``local``, or ``ray`` with its settings and cluster size."""

    kind: Literal["local", "ray"]
    address: StrictStr | None = Field(None, description="ray: the spec's address as given (None: a private local cluster).")
    cluster: StrictStr | None = Field(None, description="ray: how the cluster was reached.")
    workers: StrictInt | None = Field(None, description="ray: CPUs of the cluster at the start (one-CPU tasks run at once).")
    gpus: float | None = Field(None, description="ray: GPUs of the cluster at the start.")
    gpus_per_worker: float | None = None
    prompts_per_task: StrictInt | None = None
    max_retries: StrictInt | None = None
    tasks: StrictInt | None = Field(None, description="ray: (model, chunk of prompts) tasks submitted.")


class RebuiltRecord(_Loose):
    at: StrictStr = Field(description="When `reportgen render` rebuilt the report (UTC, ISO 8601).")
    from_: StrictStr = Field(alias="from", description="The results file's name (never its path).")
    sha256: StrictStr = Field(description="sha256 of that file's bytes.")


class ProvenanceRecord(_Loose):
    """How the run was made. Absolute paths are shown relative to the spec's folder."""

    spec_sha256: StrictStr | None = Field(None, description="sha256 of the spec text (UTF-8).")
    seed: StrictInt | None = None
    device: dict[str, Any] | StrictStr | None = None
    python: StrictStr | None = None
    platform: StrictStr | None = None
    packages: dict[str, StrictStr] = Field(default_factory=dict, description="Package → version.")
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "Model id → source, what the load reported (sha256 of the weights, file, dtype …) "
            "and the loader's fingerprint of the weights (weights)."
        ),
    )
    plugins: dict[str, Any] = Field(default_factory=dict, description="Plugin → {version, distribution}.")
    failed_plugins: list[StrictStr] = Field(default_factory=list)
    cache: dict[str, Any] | None = Field(None, description="Cache root, hits and misses (run-dependent).")
    jobs: JobsRecord | None = Field(None, description="Jobs reused from the cache and computed (1.1, run-dependent).")
    executor: ExecutorRecord | None = Field(None, description="Where the shards ran (1.4, run-dependent).")
    rebuilt: RebuiltRecord | None = Field(None, description="Set by `reportgen render` (1.1).")


class ManifestModel(_Loose):
    source: StrictStr | None = None
    files: dict[str, StrictStr] = Field(default_factory=dict, description="File name → sha256 of weights and tokenizer files.")
    tokenizer: list[StrictStr] = Field(default_factory=list, description="Which of those files hold the tokenizer.")


class ManifestRecord(_Loose):
    """What every report carries; recomputed from the rest of the file by `reportgen verify` (1.1)."""

    manifest_version: StrictStr
    run_id: StrictStr
    schema_version: StrictStr | None = None
    results_sha256: StrictStr = Field(description="sha256 of RFC 8785 (JCS) JSON of this object without its manifest member.")
    results_canonicalization: StrictStr = ""
    spec_sha256: StrictStr | None = None
    seed: StrictInt | None = None
    models: dict[str, ManifestModel] = Field(default_factory=dict)
    reportgen_version: StrictStr | None = None
    plugins: dict[str, StrictStr | None] = Field(default_factory=dict)


class OptionsRecord(_Loose):
    generation: dict[str, Any] = Field(default_factory=dict)
    aggregations: dict[str, Any] = Field(default_factory=dict)
    seed: StrictInt | None = None


class ResultsRecord(_Loose):
    """results.json: one audit run, machine-readable; `reportgen render` rebuilds its reports."""

    schema_version: StrictStr = Field(description="MAJOR.MINOR; a reader refuses a newer major.")
    run_id: StrictStr | None = Field(None, description="The run's id (1.1; derived from the run-dependent fields).")
    job_id: StrictStr | None = Field(None, description="The first 16 hex digits of the spec's sha256.")
    created_at: StrictStr = Field("", description="When the run started (UTC, ISO 8601).")
    completed_at: StrictStr = Field("", description="When it finished.")
    title: StrictStr | None = None
    spec_path: StrictStr = ""
    spec_text: StrictStr = Field(description="The audit spec as run (YAML).")
    options: OptionsRecord | None = None
    generations: list[GenerationRecord]
    results: list[ResultRecord]
    findings: list[FindingRecord] = Field(default_factory=list)
    provenance: ProvenanceRecord = Field(default_factory=ProvenanceRecord)
    timings: dict[str, Num] = Field(default_factory=dict, description="Seconds per stage (run-dependent).")
    manifest: ManifestRecord | None = Field(None, description="The manifest every report of this run carries (1.1).")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of results.json, generated from the models that check it."""
    schema = ResultsRecord.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "reportgen results.json",
        **{k: v for k, v in schema.items() if k != "title"},
        "x-schema-version": SCHEMA_VERSION,
        "x-run-dependent": list(RUN_DEPENDENT),
        "$comment": (
            f"schema_version {SCHEMA_VERSION} (semver: readers refuse a newer major; a minor only adds fields, and "
            "readers ignore fields they do not know, so objects allow additional properties). x-run-dependent lists "
            "the only fields that differ between two runs of the same spec and seed without a cache. Lengths that "
            "must agree (tokens, ids, matrix rows and columns, scores, finding positions) are checked by the reader, "
            "not by this schema."
        ),
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


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


def _shape_problems(data: ResultsRecord) -> list[str]:
    """Lengths that must agree: tokens, ids, matrices, scores, finding positions."""
    problems: list[str] = []
    gens: dict[tuple[str, str], GenerationRecord] = {}
    for i, g in enumerate(data.generations):
        at = f"generations[{i}]"
        if not len(g.input_ids) == len(g.input_tokens) == len(g.input_special):
            problems.append(
                f"{at}: input_ids, input_tokens and input_special differ in length "
                f"({len(g.input_ids)}, {len(g.input_tokens)}, {len(g.input_special)})"
            )
        for k in ("input_roles", "input_turns"):
            if getattr(g, k) and len(getattr(g, k)) != len(g.input_ids):
                problems.append(f"{at}: {k} has {len(getattr(g, k))} entries for {len(g.input_ids)} input tokens")
        lin = g.linguistics
        for side, n in (("input", len(g.input_ids)), ("output", len(g.output_ids))):
            for k in (f"{side}_pos", f"{side}_ent"):
                if lin is not None and len(getattr(lin, k)) != n:
                    problems.append(f"{at}.linguistics.{k}: {len(getattr(lin, k))} labels for {n} {side} tokens")
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
    return parse_run(raw, str(path), rebuild=rebuild)


def read_json(raw: bytes, name: str) -> dict[str, Any]:
    """results.json bytes as a JSON object whose major version this reportgen reads.

    Raises :class:`~reportgen.errors.ResultsError` for bytes that are not UTF-8 JSON, a root
    that is not an object, a missing ``schema_version``, or another major version (a newer
    one: upgrade reportgen).
    """
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{name}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{name}: (root): expected a JSON object (a reportgen results.json); got a {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, str):
        raise ResultsError(f"{name}: schema_version: missing; is this a reportgen results.json?")
    ours = SCHEMA_VERSION.split(".")[0]
    major = version.split(".")[0]
    if major != ours:
        newer = major.isdigit() and int(major) > int(ours)
        why = (
            f"it was written by a newer reportgen (format {major}.x): upgrade reportgen to read it"
            if newer
            else "it is not a results.json format this reportgen knows"
        )
        raise ResultsError(f"{name}: schema_version: {version!r} is not supported (this reportgen reads {ours}.x); {why}")
    return data


def parse_run(raw: bytes, name: str, *, rebuild: bool = False) -> RunResult:
    """:func:`load_run` of bytes already read; ``name`` names them in errors (and in the rebuilt record)."""
    data = read_json(raw, name)
    try:
        checked = ResultsRecord.model_validate(data)
    except ValidationError as exc:
        raise ResultsError(f"{name}: {_first_error(exc)}") from None
    problems = _shape_problems(checked)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ResultsError(f"{name}: {problems[0]}{more}")
    try:
        spec = validate_text(checked.spec_text, checked.spec_path or name)
    except SpecError as exc:
        first = exc.problems[0] if exc.problems else str(exc)
        raise ResultsError(f"{name}: spec_text: the stored audit spec is invalid: {first}") from None
    provenance = dict(data.get("provenance") or {})
    if rebuild:
        provenance["rebuilt"] = rebuilt_record(name, raw)
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
        evaluations=_evaluations(name, data.get("evaluations")),
    )


def manifest_status(data: dict[str, Any]) -> str | None:
    """Why a results.json object does not match the manifest it carries (None when it does)."""
    found = data.get("manifest")
    if found is None:
        return "it carries no manifest"
    expected = manifest_for(data)
    if isinstance(found, dict) and found.get("results_sha256") != expected["results_sha256"]:
        return "its content is not what its manifest's results_sha256 pins"
    problems = manifest_problems(found, expected, "manifest")
    return problems[0] if problems else None


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
