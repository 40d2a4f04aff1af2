"""The declarative audit spec: YAML in, typed and validated ``AuditSpec`` out.

Every error names the file, line, column and field path, and exits with code 2 before
any model loads. Plugin names (methods, detectors, formats, model schemes) are checked
against the plugin manager, listing the valid choices; each model loader's ``check`` hook
judges its sources (an unknown ``embedded:`` name).

Plugin option models are validated with a pydantic validation context (``info.context``
in a validator, see :func:`options_context`): ``dimension_aggregation`` (a name → the
registered dimensional aggregation, or None) and ``dimension_aggregations`` (every
registered name), so an option that names an aggregation is checked like any other
constraint.

Given a :class:`RunTarget` (what ``reportgen validate`` and ``reportgen run`` pass), the
run's environment is checked too, before any model loads: every device exists and is
available to this torch build, the output folder is a folder that can be written (tried
by creating and removing a temporary file; nothing is created when it does not exist
yet), and no report file name is taken by a folder.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from reportgen.errors import PluginError, SpecError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

#: What ``fail_on`` / ``--fail-on`` accept: a failed method job, or a finding of this severity or worse.
GateLevel = Literal["failed", "high", "medium", "low", "info"]
GATE_LEVELS: tuple[str, ...] = ("failed", "high", "medium", "low", "info")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NarrativeSection(_Strict):
    """A free-text section of the report, written in Markdown (raw HTML is not passed through)."""

    title: str = Field(description="Section heading.")
    markdown: str = Field(description="Body in Markdown (CommonMark).")
    placement: Literal["before", "after"] = Field("before", description="Show before the results (after the summary) or after them.")


class ModelSpec(_Strict):
    """A model to audit."""

    id: str = Field(pattern=ID_PATTERN, description="Short id used in the report and results.json.")
    source: str = Field(
        description="Where the weights come from: embedded:<name>, hf:<folder or cached hub id>, gguf:<file>, "
        "or openai:<model name> for an OpenAI-compatible HTTP endpoint (black-box)."
    )
    label: str | None = Field(None, description="Display name (defaults to the id).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype for open models.")
    device: str | None = Field(None, description="cpu, cuda, cuda:1 … (default: the run's device).")
    chat_template: Literal["auto", "on", "off"] = Field(
        "auto", description="Apply the tokenizer's chat template (auto: when the model has one)."
    )
    trust_remote_code: bool = Field(False, description="Allow custom modelling code from an hf: folder. Off by default.")
    revision: str | None = Field(None, description="hf: revision to load from the local cache.")
    attn_implementation: Literal["eager", "sdpa"] = Field(
        "eager", description="Attention kernel; eager is needed for attention-based methods."
    )
    # openai: (black-box HTTP) settings
    base_url: str | None = Field(None, description="openai: base URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(
        None, description="openai: name of the environment variable holding the API key (the key is never written)."
    )
    timeout_s: float = Field(60.0, gt=0, description="openai: per-request timeout in seconds.")
    max_retries: int = Field(3, ge=0, le=10, description="openai: retries with exponential backoff.")
    concurrency: int = Field(4, ge=1, le=64, description="openai: requests in flight at once.")
    max_requests: int | None = Field(None, ge=1, description="openai: hard cap on requests this run may send.")

    @field_validator("source")
    @classmethod
    def _source_has_scheme(cls, v: str) -> str:
        if ":" not in v or not v.split(":", 1)[1]:
            raise ValueError("expected '<scheme>:<name>', e.g. embedded:smollm2-135m-instruct")
        return v

    @model_validator(mode="after")
    def _openai_needs_url(self) -> ModelSpec:
        if self.source.startswith("openai:") and not self.base_url:
            raise ValueError("an openai: model needs base_url")
        return self

    @property
    def scheme(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def display(self) -> str:
        return self.label or self.id


class Message(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Turn(_Strict):
    """One conversation turn: its input (a tool result and/or a user message, in that order) and,
    optionally, a pinned assistant reply used instead of the model's own output (eq. 8)."""

    user: str | None = None
    tool: str | None = Field(None, description="A tool result given to the model before this turn's user message.")
    assistant: str | None = Field(None, description="Pinned reply text; by default the model's own output is used.")

    @model_validator(mode="after")
    def _has_input(self) -> Turn:
        if self.user is None and self.tool is None:
            raise ValueError("a turn needs 'user' or 'tool' text")
        return self


class TemporalSpec(_Strict):
    """Eq. 11 turn weights α_t: one per turn (``alpha``) or ``decay`` d, α_t = d^(K−t) (the last turn weighs 1)."""

    alpha: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = None
    decay: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_of(self) -> TemporalSpec:
        if (self.alpha is None) == (self.decay is None):
            raise ValueError("give exactly one of 'alpha' or 'decay'")
        return self

    def weights(self, k: int) -> list[float]:
        if self.alpha is not None:
            return list(self.alpha)
        d = float(self.decay or 0.0)
        return [d ** (k - t) for t in range(1, k + 1)]


class PromptSpec(_Strict):
    """A prompt: single-turn ``text``, chat ``messages`` or a conversation's ``turns`` (exactly one)."""

    id: str = Field(pattern=ID_PATTERN)
    text: str | None = Field(None, description="Single-turn user text.")
    messages: list[Message] | None = Field(None, description="Chat messages (system/user/assistant/tool).")
    turns: list[Turn] | None = Field(None, description="A multi-turn conversation, generated turn by turn (eq. 8).")
    system: str | None = Field(None, description="System message of a conversation (with 'turns').")
    temporal: TemporalSpec | None = Field(None, description="Eq. 11 turn weights of a conversation (with 'turns').")
    label: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PromptSpec:
        if sum(x is not None for x in (self.text, self.messages, self.turns)) != 1:
            raise ValueError("give exactly one of 'text', 'messages' or 'turns'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty")
        if self.turns is None:
            if self.system is not None or self.temporal is not None:
                raise ValueError("'system' and 'temporal' go with 'turns'")
            return self
        if not self.turns:
            raise ValueError("'turns' is empty")
        if self.turns[-1].assistant is not None:
            raise ValueError("the last turn's reply is what the model generates: it cannot be pinned ('assistant')")
        if self.temporal is not None and self.temporal.alpha is not None and len(self.temporal.alpha) != len(self.turns):
            raise ValueError(f"temporal.alpha has {len(self.temporal.alpha)} weight(s); give one per turn ({len(self.turns)})")
        return self

    @property
    def user_text(self) -> str:
        if self.text is not None:
            return self.text
        if self.turns is not None:
            return "\n".join(t.user for t in self.turns if t.user is not None)
        return "\n".join(m.content for m in self.messages or [] if m.role == "user")


class GenerationSpec(_Strict):
    """How the one response per (model, prompt) is generated. Greedy by default."""

    max_new_tokens: int = Field(20, ge=1, le=2048)
    do_sample: bool = Field(False, description="Sample instead of greedy decoding (uses the run seed).")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)


class MethodSpec(_Strict):
    """An attribution method and its options (validated by the method's plugin)."""

    method: str = Field(description="Registered method name; `reportgen plugins` lists them.")
    id: str | None = Field(None, pattern=ID_PATTERN, description="Label when one method is listed twice.")
    options: dict[str, Any] = Field(default_factory=dict)
    models: list[str] | None = Field(None, description="Restrict to these model ids (default: all).")

    @property
    def label(self) -> str:
        return self.id or self.method


class AggregationSpec(_Strict):
    """How per-dimension attributions are reduced and how token importance is computed (seed 001)."""

    dimension: str = Field("l2", description="Eq. 9: reduce the hidden dimension: l2, sum, mean or a plugin aggregation's name.")
    token_importance: Literal["sum", "abs_sum"] = Field(
        "sum", description="Eq. 6 I(x_i)=Σ_j A_ij (sum) or Σ_j |A_ij| (abs_sum) for signed methods."
    )
    window: int = Field(1, ge=1, description="Eqs. 4–5 context window c (clamped to ⌊min(n,t)/2⌋).")
    granularity: Literal["token", "word", "sentence"] = Field(
        "token",
        description="Units of every attribution view (colours, heatmaps, hover, comparisons): token, word or sentence "
        "(each token's attribution split by the characters it covers, summed per unit); two models that tokenise "
        "differently are compared at least per word.",
    )


class ReportSpec(_Strict):
    formats: list[str] = Field(default_factory=lambda: ["html", "json"], description="html, json, pdf.")
    output: str = Field("reports/audit", description="Output folder (relative to the spec's folder).")
    title: str | None = None
    max_heatmap_cells: int = Field(20000, ge=100, description="Heatmaps larger than this are downsampled.")


class EvaluationSpec(_Strict):
    """How faithful is each method to the model? Off unless the spec has an ``evaluation:`` block.

    Evaluators (``faithfulness`` by default) run after the attribution jobs while the model is
    loaded; every method is scored on the same seeded perturbations.
    """

    evaluators: list[str] = Field(
        default_factory=lambda: ["faithfulness"], description="Registered evaluators to run; `reportgen plugins` lists them."
    )
    metrics: list[str] = Field(
        default_factory=list,
        description="Metric families to compute (empty: all): infidelity, deletion, insertion, comprehensiveness, "
        "sufficiency, agreement, concentration.",
    )
    k: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 10.0, 20.0, 50.0],
        description="Percentages of the user's tokens for comprehensiveness and sufficiency (each in (0, 100]).",
    )
    operator: Literal["replace", "mask", "delete"] = Field(
        "replace", description="What perturbing a token means: replace it, mask it with the pad/unk token, or delete it."
    )
    replacement: Literal["neutral", "prior"] = Field(
        "neutral",
        description="operator replace: a single-space token (neutral), or the model's most probable other token "
        "at that position given the text before it (prior).",
    )
    perturbations: int = Field(32, ge=1, le=4096, description="Random token subsets drawn for infidelity.")
    seed: int | None = Field(None, ge=0, description="Seed of every draw (default: the run's seed).")
    target: Literal["response", "token"] = Field(
        "response",
        description="response: log-probability of the whole stored response; token: each response token's "
        "log-probability against that token's column of the attribution matrix.",
    )
    methods: list[str] | None = Field(None, description="Method labels to score (default: every method).")
    bootstrap: int = Field(1000, ge=0, le=100_000, description="Bootstrap resamples for intervals over prompts.")
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Evaluator name → its options (e.g. faithfulness: {beam_width: 5})."
    )

    @field_validator("k")
    @classmethod
    def _k_percent(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one percentage")
        for x in v:
            if not 0 < x <= 100:
                raise ValueError(f"{x} is not a percentage in (0, 100]")
        return sorted(set(v))


class ExecutorSpec(_Strict):
    """Where the (model, chunk of prompts) shards of a run are computed.

    ``local`` (the default) runs them in this process, one model after the other; ``ray`` hands
    them to a Ray cluster (``pip install 'reportgen[ray]'``): each task loads its model once,
    generates and runs every method for its prompts, and writes what it finished to the cache.
    """

    kind: Literal["local", "ray"] = Field("local", description="local (this process) or ray (a Ray cluster).")
    address: str | None = Field(
        None,
        description="ray: the cluster to join: auto (a cluster started with `ray start` on this machine's network), "
        "ray://<head>:10001 (Ray Client) or <head>:6379; default: start a private local cluster for the run.",
    )
    gpus_per_worker: float = Field(0, ge=0, description="ray: GPUs each task reserves (fractions share a GPU).")
    prompts_per_task: int = Field(8, ge=1, le=10_000, description="ray: prompts of one model per task (the unit of work and of retry).")
    max_retries: int = Field(3, ge=0, le=100, description="ray: times a task whose worker died is retried before its jobs fail.")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None or v == "auto" or re.fullmatch(r"(ray://)?[A-Za-z0-9_.\[\]:-]+:[0-9]{1,5}", v):
            return v
        raise ValueError(f"{v!r} is not a Ray address; use auto, ray://<head>:<port> or <head>:<port>")


class CacheSpec(_Strict):
    """Where finished work is cached and how large the cache may grow (README, "Cache").

    ``REPORTGEN_CACHE_DIR`` and ``REPORTGEN_CACHE_MAX_SIZE`` override ``dir`` and ``max_size``.
    """

    enabled: bool = Field(True, description="false: recompute everything and cache nothing (like --no-cache).")
    dir: str = Field(".reportgen-cache", min_length=1, description="Cache folder, relative to the spec's folder.")
    max_size: int | None = Field(
        None,
        description="Largest size of the cache's entries: bytes, or a number with a unit (500MB, 2GB, 1.5GiB); "
        "least recently used entries are pruned after a run (default 2GB).",
    )

    @field_validator("max_size", mode="before", json_schema_input_type=int | str | None)
    @classmethod
    def _size(cls, v: Any) -> int | None:
        from reportgen.cache_admin import parse_size

        if v is None:
            return None
        size = parse_size(v)
        if size == 0:
            raise ValueError("a cache of 0 bytes keeps nothing; use cache: false to turn it off")
        return size


class LinguisticsSpec(_Strict):
    enabled: Literal["auto"] | bool = Field(
        "auto",
        description="Part-of-speech and entity labels on the tokens (reportgen.linguistics): auto uses spaCy when "
        "the 'linguistic' extra is installed; true requires it (a spec error without it).",
    )


class AuditSpec(_Strict):
    """The whole audit: models × prompts × methods, thresholds and report settings."""

    title: str
    description: str | None = None
    narrative: list[NarrativeSection] = Field(default_factory=list)
    models: list[ModelSpec] = Field(min_length=1)
    prompts: list[PromptSpec] = Field(min_length=1)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    methods: list[MethodSpec] = Field(min_length=1)
    aggregations: AggregationSpec = Field(default_factory=AggregationSpec)
    detectors: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Detector name → thresholds; all detectors run with defaults unless disabled."
    )
    disable_detectors: list[str] = Field(default_factory=list)
    report: ReportSpec = Field(default_factory=ReportSpec)
    evaluation: EvaluationSpec | None = Field(None, description="Faithfulness scorecard of the methods (off unless given).")
    seed: int = Field(0, ge=0)
    device: str = Field("cpu", description="cpu, cuda, cuda:1, mps … (checked against this torch build before any model loads).")
    cache: CacheSpec = Field(
        default_factory=CacheSpec, description="Cache folder (a string), false to turn the cache off, or {dir, max_size}."
    )
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec, description="Where the jobs run: local (default) or a Ray cluster.")
    linguistics: LinguisticsSpec = Field(default_factory=LinguisticsSpec, description="Part-of-speech and entity labels (optional extra).")
    fail_on: list[GateLevel] = Field(
        default_factory=list,
        description="CI gate: `reportgen run` exits 7 after writing the reports when a method job failed (failed) "
        "or a finding of this severity or worse exists (high, medium, low, info). `--fail-on` adds to this list.",
    )

    @field_validator("cache", mode="before", json_schema_input_type=str | bool | CacheSpec)
    @classmethod
    def _cache_forms(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return {"enabled": v}
        return {"dir": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _unique_ids(self) -> AuditSpec:
        for kind, items in (("models", self.models), ("prompts", self.prompts)):
            seen: set[str] = set()
            for it in items:
                if it.id in seen:
                    raise ValueError(f"duplicate {kind[:-1]} id {it.id!r}")
                seen.add(it.id)
        labels = [m.label for m in self.methods]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"method {min(dup)!r} is listed twice: give each an 'id'")
        model_ids = {m.id for m in self.models}
        for m in self.methods:
            for mid in m.models or []:
                if mid not in model_ids:
                    raise ValueError(f"method {m.label!r} names unknown model {mid!r}")
        if self.evaluation is not None:
            for label in self.evaluation.methods or []:
                if label not in labels:
                    raise ValueError(f"evaluation.methods names {label!r}, which is not a method label of this spec")
        return self


# --------------------------------------------------------------------------- loading


def _locate(node: Any, loc: tuple[Any, ...]) -> tuple[int, int] | None:
    """Line/column (1-based) of the deepest node on ``loc`` that exists in the YAML tree."""
    best: tuple[int, int] | None = None
    cur = node
    for part in loc:
        if isinstance(cur, CommentedMap) and part in cur:
            line, col = cur.lc.key(part)
            best = (line + 1, col + 1)
            cur = cur[part]
        elif isinstance(cur, CommentedSeq) and isinstance(part, int) and 0 <= part < len(cur):
            line, col = cur.lc.item(part)
            best = (line + 1, col + 1)
            cur = cur[part]
        else:
            break
    if best is None and hasattr(node, "lc"):
        best = (node.lc.line + 1, node.lc.col + 1)
    return best


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _to_plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_plain(v) for v in node]
    return node


def parse_yaml(text: str, filename: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise SpecError(f"{where}: YAML syntax error: {exc.problem or exc}") from None
    except YAMLError as exc:  # ruamel raises a few non-marked errors (e.g. duplicate keys)
        raise SpecError(f"{filename}: YAML error: {exc}") from None


#: UTF-16 surrogate code points: YAML's ``"\\u…"`` escapes name UTF-16 code units, so a character
#: above U+FFFF written as two escapes (``"\\ud83d\\udc69"``) parses as a pair of surrogates.
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escaped(text: str) -> str:
    """``text`` with each surrogate written as its ``\\uXXXX`` escape (printable in any message)."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _rejoin_surrogates(node: Any, where: Callable[[tuple[Any, ...]], str], loc: tuple[Any, ...] = ()) -> list[str]:
    """Rejoin every high+low surrogate pair in the parsed YAML's strings into its character (in
    place); return one problem per string that still holds a lone surrogate (or a key that holds one)."""
    problems: list[str] = []

    def fix(value: str, at: tuple[Any, ...]) -> str:
        value = _SURROGATE_PAIR.sub(lambda m: m.group().encode("utf-16-le", "surrogatepass").decode("utf-16-le"), value)
        lone = _SURROGATE.search(value)
        if lone:
            problems.append(
                f"{where(at)}: {_escaped(_fmt_loc(at))}: lone UTF-16 surrogate \\u{ord(lone.group()):04x} "
                "(a \\u escape without its other half); write the character itself, \\U followed by 8 hex digits, "
                "or both halves of the pair"
            )
        return value

    if isinstance(node, dict):
        for key in list(node):
            if isinstance(key, str) and _SURROGATE.search(key):
                problems.append(f"{where(loc)}: {_escaped(_fmt_loc((*loc, key)))}: a key holds a UTF-16 surrogate escape")
            elif isinstance(node[key], str):
                node[key] = fix(node[key], (*loc, key))
            else:
                problems.extend(_rejoin_surrogates(node[key], where, (*loc, key)))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str):
                node[i] = fix(item, (*loc, i))
            else:
                problems.extend(_rejoin_surrogates(item, where, (*loc, i)))
    return problems


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; valid choices: {', '.join(sorted(choices)) or '(none installed)'}"


@dataclass(frozen=True)
class RunTarget:
    """Where and how a run will write: the spec's settings unless the command line overrides them.

    ``output`` (``-o``, relative to the working directory), ``formats`` (``-f``), ``device``
    (``--device``) and ``executor`` (``--executor``, the executor's kind) replace the spec's
    values; None keeps them. Passing a target to :func:`load_spec` checks the environment as
    well (devices, output folder, report files, Ray installed for ``kind: ray``).
    """

    output: str | None = None
    formats: tuple[str, ...] | None = None
    device: str | None = None
    executor: Literal["local", "ray"] | None = None
    use_cache: bool = True  # False (--no-cache): the cache folder is not checked


def output_dir(spec: AuditSpec, spec_path: str | Path, override: str | None = None) -> Path:
    """The folder a run writes to: ``override`` (relative to the working directory), else the
    spec's ``report.output`` (relative to the spec's folder)."""
    if override:
        return Path(override)
    return Path(spec_path).resolve().parent / spec.report.output


def report_filename(fmt: str, registry: Any) -> str:
    """The file a format is written to inside the output folder."""
    if fmt == "json":
        return "results.json"
    renderer = registry.renderers.get(fmt)
    return f"report.{getattr(renderer, 'extension', '') or fmt}"


def options_context(registry: Any) -> dict[str, Any]:
    """The pydantic validation context plugin option models are validated with (see the module doc)."""
    return {
        "dimension_aggregation": registry.dimension_aggregation,
        "dimension_aggregations": tuple(registry.dimension_aggregations()),
    }


def device_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a torch device here (None when it can)."""
    if name == "cpu":
        return None
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        return f"unknown device {name!r}; use cpu, cuda, cuda:<index> or mps"
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            gpu_build = bool(torch.version.cuda or getattr(torch.version, "hip", None))
            why = "no GPU is visible to this torch build" if gpu_build else f"torch {torch.__version__} is a CPU-only build"
            return f"device {name!r} is not available: {why}; use cpu"
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            return f"device {name!r} does not exist: {count} CUDA device(s) visible (cuda:0 to cuda:{count - 1})"
        return None
    if dev.type == "mps":
        return None if torch.backends.mps.is_available() else f"device {name!r} is not available on this machine; use cpu"
    return f"device type {dev.type!r} is not supported; use cpu, cuda, cuda:<index> or mps"


def output_problem(out: Path) -> str | None:
    """Why a run could not write into the folder ``out`` (None when it can).

    Nothing is created: the nearest existing folder on the way to ``out`` is tried by
    creating and removing a temporary file in it.
    """
    target = Path(os.path.abspath(out))
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        if existing == target:
            return f"{out} is a file, not a folder"
        return f"{out} cannot be created: {existing} is a file"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".reportgen-write-check-", dir=existing)
    except OSError as exc:
        where = "" if existing == target else f" ({existing} cannot be written)"
        return f"{out} is not writable{where}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(tmp)
    return None


def load_spec(
    path: str | Path, registry: Any | None = None, *, check_formats: bool = True, target: RunTarget | None = None
) -> tuple[AuditSpec, str]:
    """Read, parse and validate a spec file; return the spec and its text.

    With a plugin ``registry`` (``reportgen.plugins.Registry``), plugin names and method
    options are validated too; with a ``target`` as well, the run's environment (see the
    module doc). Raises ``SpecError`` listing every problem with its place.
    """
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return validate_text(text, str(path), registry, check_formats=check_formats, target=target), text


def validate_text(
    text: str, filename: str, registry: Any | None = None, *, check_formats: bool = True, target: RunTarget | None = None
) -> AuditSpec:
    tree = parse_yaml(text, filename)
    if not isinstance(tree, dict):
        raise SpecError(f"{filename}:1:1: the spec must be a mapping (title:, models:, prompts:, methods: …)")
    problems: list[str] = []

    def where(loc: tuple[Any, ...]) -> str:
        lc = _locate(tree, loc)
        return f"{filename}:{lc[0]}:{lc[1]}" if lc else filename

    surrogates = _rejoin_surrogates(tree, where)
    if surrogates:
        raise SpecError(f"{filename}: invalid audit spec ({len(surrogates)} problem(s))", surrogates)
    try:
        spec = AuditSpec.model_validate(_to_plain(tree))
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            elif err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
                msg = f"got {err.get('input')!r}; expected {err['ctx']['expected']}"
            problems.append(f"{where(loc)}: {_fmt_loc(loc)}: {msg}")
        raise SpecError(f"{filename}: invalid audit spec ({len(problems)} problem(s))", problems) from None

    cli: list[str] = []
    if registry is not None:
        if target is not None and target.formats is not None:
            check_formats = False
        problems.extend(_check_plugins(spec, registry, where, check_formats))
        from reportgen.linguistics import spec_problem

        if (why := spec_problem(spec.linguistics.enabled)) is not None:
            problems.append(f"{where(('linguistics', 'enabled'))}: linguistics.enabled: {why}")
        if target is not None:
            spec_problems, cli = _check_target(spec, registry, where, filename, target)
            problems.extend(spec_problems)
    if problems or cli:
        head = f"{filename}: invalid audit spec" if problems else f"{filename}: cannot run with these options"
        raise SpecError(f"{head} ({len(problems) + len(cli)} problem(s))", problems + cli)
    return spec


def _check_target(
    spec: AuditSpec, registry: Any, where: Callable[[tuple[Any, ...]], str], filename: str, target: RunTarget
) -> tuple[list[str], list[str]]:
    """(problems placed in the spec, problems with command-line options)."""
    problems: list[str] = []
    cli: list[str] = []
    if target.device is not None:
        why = device_problem(target.device)
        if why:
            cli.append(f"--device: {why}")
    else:
        why = device_problem(spec.device)
        if why:
            problems.append(f"{where(('device',))}: device: {why}")
    for i, m in enumerate(spec.models):
        why = device_problem(m.device) if m.device else None
        if why:
            problems.append(f"{where(('models', i, 'device'))}: models[{i}].device: {why}")
    if target.formats is not None:
        for f in target.formats:
            if f not in registry.renderers:
                cli.append(f"--format: unknown format {f!r}{_suggest(f, sorted(registry.renderers))}")
    if (target.executor or spec.executor.kind) == "ray" and importlib.util.find_spec("ray") is None:
        why = "the ray executor needs Ray, which is not installed: pip install 'reportgen[ray]'"
        (cli if target.executor else problems).append(
            f"--executor: {why}" if target.executor else f"{where(('executor', 'kind'))}: executor.kind: {why}"
        )
    if target.use_cache and spec.cache.enabled:
        _check_cache(spec, filename, where, problems, cli)
    out = output_dir(spec, filename, target.output)
    why = output_problem(out)
    if why:
        (cli if target.output else problems).append(
            f"--output: {why}" if target.output else f"{where(('report', 'output'))}: report.output: {why}"
        )
    elif out.is_dir():
        formats = list(target.formats) if target.formats is not None else spec.report.formats
        for i, f in enumerate(formats):
            if f not in registry.renderers:
                continue
            taken = out / report_filename(f, registry)
            if taken.is_dir():
                msg = f"{taken} is a folder; the {f} report is written to that name: move or rename the folder"
                if target.formats is not None:
                    cli.append(f"--format: {msg}")
                else:
                    problems.append(f"{where(('report', 'formats', i))}: report.formats[{i}]: {msg}")
    return problems, cli


def _check_cache(spec: AuditSpec, filename: str, where: Callable[[tuple[Any, ...]], str], problems: list[str], cli: list[str]) -> None:
    """The cache folder and size limit the run would use (the environment overrides the spec)."""
    from reportgen.cache_admin import folder_problem, resolve_settings

    try:
        settings = resolve_settings(spec.cache, Path(filename).resolve().parent)
    except ValueError as exc:  # REPORTGEN_CACHE_MAX_SIZE
        cli.append(str(exc))
        return
    why = folder_problem(settings.root)
    if why is None:
        return
    if settings.root_from in ("spec", "default"):
        problems.append(f"{where(('cache', 'dir'))}: cache.dir: {why}")
    else:
        cli.append(f"{settings.root_from}: {why}")


def _check_plugins(spec: AuditSpec, registry: Any, where: Any, check_formats: bool = True) -> list[str]:
    problems: list[str] = []
    schemes = sorted(registry.model_loaders)
    for i, m in enumerate(spec.models):
        loader = registry.model_loaders.get(m.scheme)
        if loader is None:
            problems.append(
                f"{where(('models', i, 'source'))}: models[{i}].source: unknown model source "
                f"{m.scheme + ':'!r}{_suggest(m.scheme, schemes)}"
            )
            continue
        check = getattr(loader, "check", None)
        try:
            messages = list(check(m)) if check is not None else []
        except Exception as exc:  # noqa: BLE001 - a broken plugin is a plugin error (exit 3), not a crash
            raise PluginError(
                f"model loader {m.scheme + ':'!r} (plugin {getattr(loader, 'plugin', '?')!r}) failed to check "
                f"models[{i}]: {type(exc).__name__}: {exc}"
            ) from None
        for msg in messages:
            problems.append(f"{where(('models', i, 'source'))}: models[{i}].source: {msg}")
    context = options_context(registry)
    for i, ms in enumerate(spec.methods):
        meth = registry.methods.get(ms.method)  # loads deferred methods only for a name with their prefix
        if meth is None:
            methods = sorted(registry.methods)
            problems.append(
                f"{where(('methods', i, 'method'))}: methods[{i}].method: unknown method {ms.method!r}{_suggest(ms.method, methods)}"
            )
            continue
        try:
            meth.options_model.model_validate(ms.options, context=context)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("methods", i, "options", *err["loc"])
                msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    fields = sorted(meth.options_model.model_fields)
                    msg += f" for {ms.method}; valid options: {', '.join(fields) or '(none)'}"
                problems.append(f"{where(loc)}: {_fmt_loc(loc)}: {msg}")
    detectors = sorted(registry.detectors)
    for name, opts in spec.detectors.items():
        det = registry.detectors.get(name)
        if det is None:
            problems.append(f"{where(('detectors', name))}: detectors.{name}: unknown detector{_suggest(name, detectors)}")
            continue
        try:
            det.options_model.model_validate(opts or {}, context=context)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("detectors", name, *err["loc"])
                msg = "unknown threshold" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
                problems.append(f"{where(loc)}: {_fmt_loc(loc)}: {msg}")
    for i, name in enumerate(spec.disable_detectors):
        if name not in registry.detectors:
            problems.append(f"{where(('disable_detectors', i))}: disable_detectors[{i}]: unknown detector{_suggest(name, detectors)}")
    problems.extend(_check_evaluation(spec, registry, where, context))
    dim = spec.aggregations.dimension
    if registry.dimension_aggregation(dim) is None:
        names = [n.removeprefix("dimension.") for n in registry.dimension_aggregations()]
        problems.append(
            f"{where(('aggregations', 'dimension'))}: aggregations.dimension: unknown dimensional aggregation {dim!r}{_suggest(dim, names)}"
        )
    formats = sorted(registry.renderers)
    for i, f in enumerate(spec.report.formats if check_formats else []):
        if f not in registry.renderers:
            problems.append(f"{where(('report', 'formats', i))}: report.formats[{i}]: unknown format {f!r}{_suggest(f, formats)}")
    return problems


def _check_evaluation(spec: AuditSpec, registry: Any, where: Any, context: dict[str, Any]) -> list[str]:
    """Evaluator names, metric names and evaluator options of the ``evaluation:`` block."""
    ev = spec.evaluation
    if ev is None:
        return []
    problems: list[str] = []
    installed: dict[str, Any] = dict(getattr(registry, "evaluators", {}))
    offered: set[str] = set()
    for i, name in enumerate(ev.evaluators):
        evaluator = installed.get(name)
        if evaluator is None:
            problems.append(
                f"{where(('evaluation', 'evaluators', i))}: evaluation.evaluators[{i}]: unknown evaluator "
                f"{name!r}{_suggest(name, sorted(installed))}"
            )
            continue
        offered |= set(evaluator.metrics)
    if not problems:
        for i, metric in enumerate(ev.metrics):
            if metric not in offered:
                problems.append(
                    f"{where(('evaluation', 'metrics', i))}: evaluation.metrics[{i}]: unknown metric {metric!r}"
                    f"{_suggest(metric, sorted(offered))}"
                )
    for name, opts in ev.options.items():
        evaluator = installed.get(name)
        if name not in ev.evaluators or evaluator is None:
            problems.append(
                f"{where(('evaluation', 'options', name))}: evaluation.options.{name}: not an evaluator this spec runs"
                f"{_suggest(name, list(ev.evaluators))}"
            )
            continue
        try:
            evaluator.options_model.model_validate(opts or {}, context=context)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("evaluation", "options", name, *err["loc"])
                msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg += f" for {name}; valid options: {', '.join(sorted(evaluator.options_model.model_fields)) or '(none)'}"
                problems.append(f"{where(loc)}: {_fmt_loc(loc)}: {msg}")
    return problems


def json_schema() -> str:
    """JSON Schema of the audit spec (for editor completion)."""
    schema = AuditSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "reportgen audit spec"
    return json.dumps(schema, indent=2, sort_keys=False)
