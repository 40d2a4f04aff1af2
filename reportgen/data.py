"""Typed data passed between pipeline stages (generation, attribution, detection, rendering)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self

Severity = Literal["high", "medium", "low", "info"]
SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2, "info": 3}


class TokenText(str):
    """A token's display form that knows which of its characters are a byte mark.

    A byte-level tokenizer can split one character over several tokens. The display form
    shows each character on the token where its last byte arrives; a token holding bytes of a
    character that a later token completes shows them as a mark, ``⟨F0 9F⟩`` (see
    :func:`reportgen.generate.display_pieces`). ``byte_spans`` are the (start, end) character
    offsets of those marks, so a report can style them apart from text a prompt typed itself.
    To every other caller it is the plain string.
    """

    byte_spans: tuple[tuple[int, int], ...]

    def __new__(cls, text: str, byte_spans: Iterable[Sequence[int]] = ()) -> Self:
        obj = super().__new__(cls, text)
        obj.byte_spans = tuple((int(a), int(b)) for a, b in byte_spans)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (TokenText, (str(self), self.byte_spans))


def byte_spans(tokens: Sequence[str]) -> list[list[int]]:
    """``[token index, start, end]`` of every byte mark in ``tokens`` (results.json form)."""
    return [[i, a, b] for i, t in enumerate(tokens) for a, b in getattr(t, "byte_spans", ())]


def with_byte_spans(tokens: Iterable[str], spans: Iterable[Sequence[int]] | None) -> list[str]:
    """``tokens`` as plain strings, each one with byte marks (``[index, start, end]``) a :class:`TokenText`."""
    out: list[str] = [str(t) for t in tokens]
    by_token: dict[int, list[tuple[int, int]]] = {}
    for i, a, b in spans or ():
        if 0 <= int(i) < len(out) and 0 <= int(a) < int(b) <= len(out[int(i)]):
            by_token.setdefault(int(i), []).append((int(a), int(b)))
    for i, sp in by_token.items():
        out[i] = TokenText(out[i], sorted(sp))
    return out


@dataclass(frozen=True)
class Generation:
    """One model's response to one prompt, generated once and shared by every method.

    ``input_ids`` is the full model input (chat template and special tokens included);
    ``input_special[i]`` is True for template/special tokens, False for user content.

    ``input_tokens``/``output_tokens`` are display forms: the characters each token covers,
    so that they read back as the text the model saw, with bytes of a character split over
    several tokens shown as a mark on the tokens before the one that completes it (a
    :class:`TokenText` knows where). ``input_raw``/``output_raw`` are the tokenizer's own
    token strings (``Ġthe``, ``<0xE2>``); empty in results.json written before they were kept.
    Methods work on the ids.

    ``input_roles``/``input_turns`` give every input token's chat role (system, user, assistant,
    tool) and 1-based conversation turn (:mod:`reportgen.conversation`); every output token is the
    assistant's, in the last turn. ``messages`` are the messages the input was built from, each
    with its ``turn`` and whether the model ``generated`` it (an earlier reply, eq. 8). All three
    are empty in files written before roles were kept, and left out of the JSON when empty.
    """

    model_id: str
    prompt_id: str
    input_ids: tuple[int, ...]
    input_tokens: tuple[str, ...]
    input_special: tuple[bool, ...]
    output_ids: tuple[int, ...]
    output_tokens: tuple[str, ...]
    prompt_text: str
    response_text: str
    step_scores: dict[str, tuple[float, ...]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    input_raw: tuple[str, ...] = ()
    output_raw: tuple[str, ...] = ()
    input_roles: tuple[str, ...] = ()
    input_turns: tuple[int, ...] = ()
    messages: tuple[dict[str, Any], ...] = ()
    linguistics: dict[str, Any] = field(default_factory=dict)  # reportgen.linguistics labels; empty when off

    @property
    def n(self) -> int:
        return len(self.input_ids)

    @property
    def t(self) -> int:
        return len(self.output_ids)

    @property
    def user_positions(self) -> list[int]:
        return [i for i, s in enumerate(self.input_special) if not s]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["step_scores"] = {k: list(v) for k, v in self.step_scores.items()}
        for side in ("input", "output"):
            tokens = getattr(self, f"{side}_tokens")
            d[f"{side}_tokens"] = [str(t) for t in tokens]
            d[f"{side}_byte_spans"] = byte_spans(tokens)
            d[f"{side}_raw"] = [str(t) for t in getattr(self, f"{side}_raw")]
        if not d["linguistics"]:
            del d["linguistics"]
        for k in ("input_roles", "input_turns", "messages"):
            if d[k]:
                d[k] = list(d[k])
            else:
                del d[k]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Generation:
        """A generation from its JSON (results.json or the cache; older files lack raw tokens and byte spans)."""
        d = dict(d)
        for k in ("input_ids", "input_special", "output_ids"):
            d[k] = tuple(d[k])
        for k in ("input_raw", "output_raw", "input_roles", "input_turns"):
            d[k] = tuple(d.get(k, ()))
        d["messages"] = tuple(dict(m) for m in d.get("messages", ()))
        for side in ("input", "output"):
            d[f"{side}_tokens"] = tuple(with_byte_spans(d[f"{side}_tokens"], d.pop(f"{side}_byte_spans", None)))
        d["step_scores"] = {k: tuple(v) for k, v in d.get("step_scores", {}).items()}
        return cls(**d)


def _clean(x: Any) -> Any:
    """Make numbers JSON-safe: numpy → python, NaN/inf → None."""
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def to_jsonable(x: Any) -> Any:
    """Public alias of the JSON cleaner (numpy arrays, NaN → null)."""
    return _clean(x)


def jsonable_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A mapping made JSON-safe (keys as strings, numpy → python, NaN/inf → None)."""
    out: dict[str, Any] = _clean(d)
    return out


@dataclass
class AttributionResult:
    """What one method says about one (model, prompt) generation.

    ``matrix`` is A (n input tokens × t output tokens, seed 001 §3.1), already reduced to
    one number per cell (dimensional aggregation, eq. 9); NaN where a method is undefined.
    ``scores`` are named vectors over the n input tokens (None/NaN where not scored).
    ``intervals`` gives, per score name, [lo, hi] per input token where a bound or a
    confidence interval is known (for example fast-mode AS).
    ``details`` holds JSON-able method-specific evidence (candidates, neighbours, samples).
    ``input_tokens``/``output_tokens`` are display forms and ``input_raw``/``output_raw`` the
    tokenizer's token strings, as in :class:`Generation`.
    """

    method: str
    model_id: str
    prompt_id: str
    options: dict[str, Any]
    input_tokens: list[str]
    output_tokens: list[str]
    matrix: np.ndarray | None = None
    matrix_label: str = ""
    signed: bool = False
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    intervals: dict[str, list[list[float | None] | None]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    status: Literal["ok", "unavailable", "failed"] = "ok"
    reason: str | None = None
    label: str | None = None  # display name when a spec lists one method twice
    input_raw: list[str] = field(default_factory=list)  # the tokenizer's own token strings
    output_raw: list[str] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        return self.label or self.method

    @classmethod
    def for_generation(cls, generation: Generation, method: str, options: Any, **fields: Any) -> AttributionResult:
        """A result about ``generation``: ids and tokens copied from it; ``options`` a model or dict."""
        opts = options.model_dump() if hasattr(options, "model_dump") else dict(options or {})
        fields.setdefault("input_raw", list(generation.input_raw))
        fields.setdefault("output_raw", list(generation.output_raw))
        return cls(
            method=method,
            model_id=generation.model_id,
            prompt_id=generation.prompt_id,
            options=opts,
            input_tokens=list(generation.input_tokens),
            output_tokens=list(generation.output_tokens),
            **fields,
        )

    def to_json(self) -> dict[str, Any]:
        from reportgen.aggregate import token_importance

        agg: dict[str, Any] = {}
        if self.matrix is not None:
            ix, iy = token_importance(self.matrix)
            agg = {"token_importance": {"input": ix, "output": iy}}
        return jsonable_dict(
            {
                "method": self.method,
                "label": self.label,
                "model": self.model_id,
                "prompt": self.prompt_id,
                "options": self.options,
                "status": self.status,
                "reason": self.reason,
                "input": _tokens_json(self.input_tokens, self.input_raw),
                "output": _tokens_json(self.output_tokens, self.output_raw),
                "attribution": {
                    "raw": self.matrix,
                    "label": self.matrix_label,
                    "signed": self.signed,
                    "aggregated": agg,
                },
                "scores": self.scores,
                "intervals": self.intervals,
                "details": self.details,
                "timings": self.timings,
            }
        )

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AttributionResult:
        raw = d["attribution"]["raw"]
        matrix = None
        if raw is not None:
            matrix = np.array([[np.nan if v is None else v for v in row] for row in raw], dtype=np.float64).reshape(
                len(d["input"]["tokens"]), len(d["output"]["tokens"])
            )
        return cls(
            method=d["method"],
            label=d.get("label"),
            model_id=d["model"],
            prompt_id=d["prompt"],
            options=d.get("options", {}),
            input_tokens=with_byte_spans(d["input"]["tokens"], d["input"].get("byte_spans")),
            output_tokens=with_byte_spans(d["output"]["tokens"], d["output"].get("byte_spans")),
            input_raw=[str(t) for t in d["input"].get("raw", ())],
            output_raw=[str(t) for t in d["output"].get("raw", ())],
            matrix=matrix,
            matrix_label=d["attribution"].get("label", ""),
            signed=bool(d["attribution"].get("signed", False)),
            scores=d.get("scores", {}),
            intervals=d.get("intervals", {}),
            details=d.get("details", {}),
            timings=d.get("timings", {}),
            status=d.get("status", "ok"),
            reason=d.get("reason"),
        )


def _tokens_json(tokens: Sequence[str], raw: Sequence[str]) -> dict[str, Any]:
    return {"tokens": [str(t) for t in tokens], "raw": [str(t) for t in raw], "byte_spans": byte_spans(tokens)}


@dataclass(frozen=True)
class Finding:
    """One anomaly a detector found, with the numbers behind it and what to try.

    ``positions`` are indices into the generation's input tokens; the report shows them in
    their context (computed from the generation, never from text the detector marked up).
    ``token`` is the text of those tokens as the detector names them in its message.
    """

    detector: str
    severity: Severity
    model_id: str
    prompt_id: str
    method: str
    positions: tuple[int, ...]
    token: str
    evidence: dict[str, Any]
    message: str
    suggestion: str = ""
    title: str = ""

    def to_json(self) -> dict[str, Any]:
        return jsonable_dict(asdict(self))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Finding:
        d = dict(d)
        d.pop("context", None)  # results.json before 1.1 carried a marked-up context string
        d["positions"] = tuple(d["positions"])
        return cls(**d)


@dataclass(frozen=True)
class FigureSpec:
    """A Plotly figure for the report, with a stable id and a caption.

    ``figure`` is a plotly ``go.Figure`` (or its dict). ``section`` is "summary" or
    "prompt"; prompt figures carry the (model_id, prompt_id) they belong to.
    """

    id: str
    title: str
    caption: str
    figure: Any
    section: Literal["summary", "prompt", "anomalies"] = "prompt"
    model_id: str | None = None
    prompt_id: str | None = None
    order: int = 100


# --------------------------------------------------------------------------- evaluation

#: Which direction of a metric is better ("none": neither; the metric describes, it does not judge).
Better = Literal["higher", "lower", "none"]
EvaluationStatus = Literal["ok", "unavailable", "failed"]


def _num(x: Any) -> float | None:
    """A finite float, or None (NaN, infinities and None alike)."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def _nums(xs: Iterable[Any]) -> tuple[float | None, ...]:
    return tuple(_num(x) for x in xs)


@dataclass(frozen=True)
class MetricInfo:
    """One metric an evaluator reports.

    ``name`` is its key in every ``values`` mapping; ``label`` a short column heading;
    ``better`` which direction is better; ``description`` what it means, in plain words;
    ``scorecard`` whether the report's scorecard shows it (the rest are in results.json).
    """

    name: str
    label: str
    better: Better
    description: str
    unit: str = ""
    scorecard: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MetricInfo:
        return cls(
            name=str(d["name"]),
            label=str(d.get("label", d["name"])),
            better=d.get("better", "none"),
            description=str(d.get("description", "")),
            unit=str(d.get("unit", "")),
            scorecard=bool(d.get("scorecard", True)),
        )


@dataclass(frozen=True)
class Estimate:
    """A mean over prompts: ``value``, a bootstrap interval [``lo``, ``hi``] (None when it
    cannot be formed, e.g. from one prompt) and ``n``, the number of prompts behind it."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"value": _num(self.value), "lo": _num(self.lo), "hi": _num(self.hi), "n": int(self.n)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Estimate:
        return cls(_num(d.get("value")), _num(d.get("lo")), _num(d.get("hi")), int(d.get("n", 0)))


@dataclass(frozen=True)
class PromptMetrics:
    """One method's metrics on one (model, prompt).

    ``values``: metric name → number (None where undefined). ``curves``: curve name (e.g.
    ``deletion``, ``insertion``) → the change in the target (nats) after perturbing the first
    ``steps[i]`` fraction of the method's ranked user tokens. ``signed``: the method's tokens were
    ranked by signed value (True) or by size. ``note``: why a metric is missing, if one is.
    """

    method: str
    prompt_id: str
    values: dict[str, float | None]
    curves: dict[str, tuple[float | None, ...]] = field(default_factory=dict)
    steps: tuple[float, ...] = ()
    signed: bool = False
    reference: bool = False
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "prompt": self.prompt_id,
            "signed": self.signed,
            "reference": self.reference,
            "values": {k: _num(v) for k, v in self.values.items()},
            "curves": {k: list(_nums(v)) for k, v in self.curves.items()},
            "steps": [float(s) for s in self.steps],
            "note": self.note,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PromptMetrics:
        return cls(
            method=str(d["method"]),
            prompt_id=str(d["prompt"]),
            signed=bool(d.get("signed", False)),
            reference=bool(d.get("reference", False)),
            values={str(k): _num(v) for k, v in (d.get("values") or {}).items()},
            curves={str(k): _nums(v) for k, v in (d.get("curves") or {}).items()},
            steps=tuple(float(s) for s in d.get("steps") or ()),
            note=str(d.get("note", "")),
        )


@dataclass(frozen=True)
class MethodScore:
    """One method over every scored prompt of a model: each metric as an :class:`Estimate`,
    and its mean curves on the evaluation's ``curve_grid``. ``reference`` marks a baseline
    (a random token order) that is shown for comparison and never recommended."""

    method: str
    values: dict[str, Estimate]
    curves: dict[str, tuple[float | None, ...]] = field(default_factory=dict)
    signed: bool = False
    reference: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "signed": self.signed,
            "reference": self.reference,
            "values": {k: v.to_json() for k, v in self.values.items()},
            "curves": {k: list(_nums(v)) for k, v in self.curves.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MethodScore:
        return cls(
            method=str(d["method"]),
            signed=bool(d.get("signed", False)),
            reference=bool(d.get("reference", False)),
            values={str(k): Estimate.from_json(v) for k, v in (d.get("values") or {}).items()},
            curves={str(k): _nums(v) for k, v in (d.get("curves") or {}).items()},
        )


@dataclass(frozen=True)
class AgreementMatrix:
    """Rank correlation between methods' token importances: on one prompt (``prompt_id``), or
    averaged over ``n`` prompts (``prompt_id`` None). Rows and columns follow ``methods``."""

    prompt_id: str | None
    methods: tuple[str, ...]
    spearman: tuple[tuple[float | None, ...], ...]
    kendall: tuple[tuple[float | None, ...], ...]
    n: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt_id,
            "methods": list(self.methods),
            "n": int(self.n),
            "spearman": [list(_nums(r)) for r in self.spearman],
            "kendall": [list(_nums(r)) for r in self.kendall],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AgreementMatrix:
        return cls(
            prompt_id=None if d.get("prompt") is None else str(d["prompt"]),
            methods=tuple(str(m) for m in d.get("methods") or ()),
            n=int(d.get("n", 1)),
            spearman=tuple(_nums(r) for r in d.get("spearman") or ()),
            kendall=tuple(_nums(r) for r in d.get("kendall") or ()),
        )

    def value(self, a: str, b: str, kind: Literal["spearman", "kendall"] = "kendall") -> float | None:
        """The coefficient between methods ``a`` and ``b`` (None when either is absent)."""
        if a not in self.methods or b not in self.methods:
            return None
        m = self.kendall if kind == "kendall" else self.spearman
        return m[self.methods.index(a)][self.methods.index(b)]


@dataclass(frozen=True)
class Recommendation:
    """What an evaluation lets a reader conclude, in plain words.

    ``verdict``: ``recommend`` (one method is measurably the most faithful), ``no_clear_winner``,
    ``too_thin`` (too few prompts to tell) or ``none`` (nothing could be scored). ``headline`` is
    one sentence for the report's summary; ``evidence`` the numbers behind it, one line each.
    """

    verdict: Literal["recommend", "no_clear_winner", "too_thin", "none"]
    method: str | None
    headline: str
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "method": self.method, "headline": self.headline, "evidence": list(self.evidence)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Recommendation:
        return cls(
            verdict=d.get("verdict", "none"),
            method=None if d.get("method") is None else str(d["method"]),
            headline=str(d.get("headline", "")),
            evidence=tuple(str(e) for e in d.get("evidence") or ()),
        )


@dataclass(frozen=True)
class Evaluation:
    """What one evaluator measured about the attribution methods on one model.

    ``metrics`` describes every metric (direction, meaning); ``prompts`` holds each method's
    metrics per prompt, ``scores`` their means over prompts with bootstrap intervals, ``agreement``
    the rank correlations between methods (per prompt, and averaged), ``curve_grid`` the fractions
    of user tokens at which ``scores[].curves`` are given. ``perturbation`` says in plain words
    what perturbing a token meant, ``ranking`` how signed and unsigned methods were ranked.
    ``settings`` are the spec's evaluation settings as used (seed included); ``details`` holds
    evaluator-specific evidence (e.g. how the bounds were found, forwards per prompt).
    """

    evaluator: str
    model_id: str
    status: EvaluationStatus = "ok"
    reason: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    perturbation: str = ""
    ranking: str = ""
    metrics: tuple[MetricInfo, ...] = ()
    prompts: tuple[PromptMetrics, ...] = ()
    scores: tuple[MethodScore, ...] = ()
    agreement: tuple[AgreementMatrix, ...] = ()
    curve_grid: tuple[float, ...] = ()
    recommendation: Recommendation | None = None
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> MetricInfo | None:
        return next((m for m in self.metrics if m.name == name), None)

    def pooled_agreement(self) -> AgreementMatrix | None:
        """The agreement averaged over prompts (None when none was computed)."""
        return next((a for a in self.agreement if a.prompt_id is None), None)

    def to_json(self) -> dict[str, Any]:
        return jsonable_dict(
            {
                "evaluator": self.evaluator,
                "model": self.model_id,
                "status": self.status,
                "reason": self.reason,
                "settings": self.settings,
                "perturbation": self.perturbation,
                "ranking": self.ranking,
                "metrics": [m.to_json() for m in self.metrics],
                "prompts": [p.to_json() for p in self.prompts],
                "scores": [s.to_json() for s in self.scores],
                "agreement": [a.to_json() for a in self.agreement],
                "curve_grid": [float(x) for x in self.curve_grid],
                "recommendation": None if self.recommendation is None else self.recommendation.to_json(),
                "timings": self.timings,
                "details": self.details,
            }
        )

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Evaluation:
        rec = d.get("recommendation")
        return cls(
            evaluator=str(d["evaluator"]),
            model_id=str(d["model"]),
            status=d.get("status", "ok"),
            reason=None if d.get("reason") is None else str(d["reason"]),
            settings=dict(d.get("settings") or {}),
            perturbation=str(d.get("perturbation", "")),
            ranking=str(d.get("ranking", "")),
            metrics=tuple(MetricInfo.from_json(m) for m in d.get("metrics") or ()),
            prompts=tuple(PromptMetrics.from_json(p) for p in d.get("prompts") or ()),
            scores=tuple(MethodScore.from_json(s) for s in d.get("scores") or ()),
            agreement=tuple(AgreementMatrix.from_json(a) for a in d.get("agreement") or ()),
            curve_grid=tuple(float(x) for x in d.get("curve_grid") or ()),
            recommendation=None if not isinstance(rec, dict) else Recommendation.from_json(rec),
            timings={str(k): float(v) for k, v in (d.get("timings") or {}).items() if v is not None},
            details=dict(d.get("details") or {}),
        )


@dataclass
class RunResult:
    """Everything one audit run produced; results.json is its serialisation."""

    spec: Any  # reportgen.spec.AuditSpec
    spec_text: str
    spec_path: str
    generations: list[Generation]
    results: list[AttributionResult]
    findings: list[Finding] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    created_at: str = ""
    completed_at: str = ""
    evaluations: list[Evaluation] = field(default_factory=list)  # evaluators' metric tables, per model

    def generation(self, model_id: str, prompt_id: str) -> Generation | None:
        for g in self.generations:
            if g.model_id == model_id and g.prompt_id == prompt_id:
                return g
        return None

    def results_for(self, model_id: str, prompt_id: str) -> list[AttributionResult]:
        return [r for r in self.results if r.model_id == model_id and r.prompt_id == prompt_id]
