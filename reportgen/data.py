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
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Generation:
        """A generation from its JSON (results.json or the cache; older files lack raw tokens and byte spans)."""
        d = dict(d)
        for k in ("input_ids", "input_special", "output_ids"):
            d[k] = tuple(d[k])
        for k in ("input_raw", "output_raw"):
            d[k] = tuple(d.get(k, ()))
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
            matrix = np.array(
                [[np.nan if v is None else v for v in row] for row in raw], dtype=np.float64
            ).reshape(len(d["input"]["tokens"]), len(d["output"]["tokens"]))
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

    def generation(self, model_id: str, prompt_id: str) -> Generation | None:
        for g in self.generations:
            if g.model_id == model_id and g.prompt_id == prompt_id:
                return g
        return None

    def results_for(self, model_id: str, prompt_id: str) -> list[AttributionResult]:
        return [r for r in self.results if r.model_id == model_id and r.prompt_id == prompt_id]
