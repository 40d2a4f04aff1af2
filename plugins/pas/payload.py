"""The typed payload the PAS method hands to its detectors and views.

The method builds a :class:`PasPayload` and stores ``payload.to_json()`` as
``AttributionResult.details``; detectors and views read it back with
:meth:`PasPayload.of`. The JSON layout is the one results.json has always carried (field, then
``str(position)``, then the value), so cached results and earlier results.json files load
unchanged. Keys this payload does not define (the runner's ``from_cache`` flag, for example) are
ignored when reading; top-level fields missing from a hand-made or older result get their empty
defaults.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from reportgen.data import AttributionResult

IntervalKind = Literal["exact", "certified", "estimate"]
"""How a position's AS number and interval were obtained (``PasPayload.interval_kind``):

* ``exact``: every vocabulary item was evaluated in place of the token; no approximation, no
  interval.
* ``certified``: only part of the vocabulary was evaluated; the interval is guaranteed to contain
  the exact AS whatever the unevaluated items do (bounds from their next-token probabilities).
* ``estimate``: the unevaluated part was sampled at random; the interval is a 95 % confidence
  interval that holds for any sample size the adaptive sampler stopped at, and lies inside the
  certified interval. It is never of zero width: a position whose sample cannot narrow the
  certified interval at least by half is reported as ``certified``.

In the last two cases the number itself comes from the evaluated items (and, when sampled, the
weighted sample). :data:`KIND_LABEL` and :data:`KIND_MEANING` say the same for report readers.
"""
Mode = Literal["exact", "fast"]
Which = Literal["prior", "posterior"]

_KINDS: tuple[str, ...] = get_args(IntervalKind)

#: A one-word label per interval kind, for report text.
KIND_LABEL: Mapping[str, str] = {"exact": "exact", "certified": "certified", "estimate": "estimated"}
#: What each interval kind means, in words for a reader who does not know the method.
KIND_MEANING: Mapping[str, str] = {
    "exact": "every token of the vocabulary was tried in place of this one, so the value is exact",
    "certified": (
        "only part of the vocabulary was tried in place of this token (the likeliest replacements first); "
        "the value is computed from those, and the exact value is guaranteed to lie in the interval, "
        "whatever the untried replacements would do"
    ),
    "estimate": (
        "part of the vocabulary was tried and the rest sampled at random; the value is the sample's "
        "estimate and the interval a 95% confidence interval (in at least 95 of 100 runs it contains the "
        "exact value), inside the guaranteed bounds"
    ),
}
_MODES: tuple[str, ...] = get_args(Mode)


def _float(x: Any) -> float:
    """A JSON number as a float (JSON null, written for NaN/inf, reads back as NaN)."""
    return math.nan if x is None else float(x)


def _by_position(d: Mapping[str, Any] | None) -> dict[int, Any]:
    return {int(k): v for k, v in (d or {}).items()}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A vocabulary item at a prompt position and its probability under π_k or ρ_k."""

    token: str
    id: int | None
    p: float

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "id": self.id, "p": self.p}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Candidate:
        tid = d.get("id")
        return cls(token=str(d.get("token", "")), id=None if tid is None else int(tid), p=_float(d.get("p")))


@dataclass(frozen=True, slots=True)
class CandidateLists:
    """The top candidates at one position under the prior π_k and the posterior ρ_k."""

    prior: tuple[Candidate, ...] = ()
    posterior: tuple[Candidate, ...] = ()

    def ranked(self, which: Which) -> list[Candidate]:
        """One list, most probable first (ties keep their recorded order); NaN p left out."""
        cands = self.prior if which == "prior" else self.posterior
        return sorted((c for c in cands if math.isfinite(c.p)), key=lambda c: -c.p)

    def to_json(self) -> dict[str, Any]:
        return {"prior": [c.to_json() for c in self.prior], "posterior": [c.to_json() for c in self.posterior]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CandidateLists:
        return cls(
            prior=tuple(Candidate.from_json(c) for c in d.get("prior") or ()),
            posterior=tuple(Candidate.from_json(c) for c in d.get("posterior") or ()),
        )


@dataclass(frozen=True, slots=True)
class ResponseSample:
    """A candidate substituted at the position and the greedy response it regenerated."""

    candidate: str
    response: str

    def to_json(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "response": self.response}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ResponseSample:
        return cls(candidate=str(d.get("candidate", "")), response=str(d.get("response", "")))


@dataclass(frozen=True, slots=True)
class ReplacementStats:
    """Replacement-entropy counts at one position (methods.md §1.3); the entropy and the
    original-response share themselves are the scores ``replacement_entropy`` and
    ``original_response_pct``."""

    count: int  # candidates regenerated
    original_token_count: int  # candidates that decode to the original token
    original_response_count: int  # candidates that regenerate the original response
    distinct_responses: int
    responses: tuple[ResponseSample, ...] = ()  # the first few, for the report

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "original_token_count": self.original_token_count,
            "original_response_count": self.original_response_count,
            "distinct_responses": self.distinct_responses,
            "responses": [r.to_json() for r in self.responses],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ReplacementStats:
        return cls(
            count=int(d["count"]),
            original_token_count=int(d["original_token_count"]),
            original_response_count=int(d["original_response_count"]),
            distinct_responses=int(d["distinct_responses"]),
            responses=tuple(ResponseSample.from_json(r) for r in d.get("responses") or ()),
        )


@dataclass(frozen=True, slots=True)
class PasPayload:
    """Everything the ``probabilistic`` method says beyond its scores, matrix and intervals.

    Per-position fields are keyed by the prompt position k (an index into the input tokens).
    ``replacement`` is None when replacement entropy was not computed.
    """

    mode: Mode | None = None
    positions: tuple[int, ...] = ()  # the scored positions
    log_p_response: float | None = None  # log P(y | x) of the stored response
    candidates: Mapping[int, CandidateLists] = field(default_factory=dict)
    interval_kind: Mapping[int, IntervalKind] = field(default_factory=dict)
    evaluated_candidates: Mapping[int, int] = field(default_factory=dict)
    vocabulary_size: int | None = None  # |V| of the candidate vocabulary
    replacement: Mapping[int, ReplacementStats] | None = None
    certified_interval: Mapping[int, tuple[float, float]] = field(default_factory=dict)  # fast mode
    skipped: Mapping[int, str] = field(default_factory=dict)  # requested positions not scored, and why

    def replacement_at(self, k: int) -> ReplacementStats | None:
        return (self.replacement or {}).get(k)

    def to_json(self) -> dict[str, Any]:
        """The ``details`` dict of a result (key order as results.json has always had it)."""
        d: dict[str, Any] = {
            "mode": self.mode,
            "positions": list(self.positions),
            "log_p_response": self.log_p_response,
            "candidates": {str(k): c.to_json() for k, c in self.candidates.items()},
            "interval_kind": {str(k): v for k, v in self.interval_kind.items()},
            "evaluated_candidates": {str(k): v for k, v in self.evaluated_candidates.items()},
            "vocabulary_size": self.vocabulary_size,
        }
        if self.replacement is not None:
            d["replacement"] = {str(k): r.to_json() for k, r in self.replacement.items()}
        if self.certified_interval:
            d["certified_interval"] = {str(k): [lo, hi] for k, (lo, hi) in self.certified_interval.items()}
        if self.skipped:
            d["skipped"] = {str(k): v for k, v in self.skipped.items()}
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PasPayload:
        mode = d.get("mode")
        if mode is not None and mode not in _MODES:
            raise ValueError(f"probabilistic details: unknown mode {mode!r} (expected one of {_MODES})")
        kinds = _by_position(d.get("interval_kind"))
        for k, kind in kinds.items():
            if kind not in _KINDS:
                raise ValueError(f"probabilistic details: position {k} has interval kind {kind!r} (expected one of {_KINDS})")
        repl = d.get("replacement")
        size = d.get("vocabulary_size")
        lpr = d.get("log_p_response")
        return cls(
            mode=mode,
            positions=tuple(int(k) for k in d.get("positions") or ()),
            log_p_response=None if lpr is None else float(lpr),
            candidates={k: CandidateLists.from_json(c) for k, c in _by_position(d.get("candidates")).items()},
            interval_kind=kinds,
            evaluated_candidates={k: int(v) for k, v in _by_position(d.get("evaluated_candidates")).items()},
            vocabulary_size=None if size is None else int(size),
            replacement=None if repl is None else {k: ReplacementStats.from_json(r) for k, r in _by_position(repl).items()},
            certified_interval={k: (_float(lo), _float(hi)) for k, (lo, hi) in _by_position(d.get("certified_interval")).items()},
            skipped={k: str(v) for k, v in _by_position(d.get("skipped")).items()},
        )

    @classmethod
    def of(cls, result: AttributionResult) -> PasPayload:
        """The payload of a ``probabilistic`` result, parsed once per result object.

        Every detector and view asks for the payload of the same result; the parse is remembered
        for as long as the result lives and its ``details`` is the same dict (a result whose
        ``details`` was replaced is parsed again).
        """
        key = id(result)
        hit = _PARSED.get(key)
        if hit is not None and hit.result() is result and hit.details is result.details:
            return hit.payload
        payload = cls.from_json(result.details)
        _PARSED[key] = _Parsed(weakref.ref(result, lambda ref: _forget(key, ref)), result.details, payload)
        return payload


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A parsed payload, the result it was parsed from (weakly) and that result's details dict."""

    result: weakref.ref[AttributionResult]
    details: Mapping[str, Any]
    payload: PasPayload


#: id(result) → its parsed payload, dropped when the result is garbage-collected.
_PARSED: dict[int, _Parsed] = {}


def _forget(key: int, ref: weakref.ref[AttributionResult]) -> None:
    if (hit := _PARSED.get(key)) is not None and hit.result is ref:
        _PARSED.pop(key, None)
