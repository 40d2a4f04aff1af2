"""What ``dbsa`` hands to its detector and views: a typed payload stored in ``AttributionResult.details``.

The method writes ``details=payload.to_json()``; the detector and the views read
:meth:`DbsaPayload.of` (a result fresh from the method, or loaded back from results.json).
JSON keys are those of results.json: per neighbour ``{"text", "E", "p", "n_empty"}``, per
unit ``{"text", "kind", "positions", "neighbours", "effect", "p_value", "q_value",
"significant"}`` plus ``"skipped"``/``"examples"`` when set. Non-finite numbers are ``None``.
Keys the host adds to ``details`` (``from_cache``) are ignored on reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast

from reportgen.data import AttributionResult

#: The method's registered name (the detector and the views read results of this method).
METHOD = "dbsa"

UnitKind = Literal["word", "token", "sentence", "span"]


def finite(x: float | None) -> float | None:
    """``x`` as a float, or None when missing or not finite."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class NeighbourTest:
    """One neighbour of a unit: energy distance E and permutation p-value against the baseline."""

    text: str
    energy: float | None
    p_value: float | None
    n_empty: int  # empty perturbed responses dropped before the test

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "E": self.energy, "p": self.p_value, "n_empty": self.n_empty}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NeighbourTest:
        return cls(text=d["text"], energy=finite(d["E"]), p_value=finite(d["p"]), n_empty=int(d["n_empty"]))


@dataclass(frozen=True)
class Examples:
    """Sampled responses to the original prompt beside those with the unit replaced by ``neighbour``."""

    neighbour: str
    original: tuple[str, ...]
    perturbed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"neighbour": self.neighbour, "original": list(self.original), "perturbed": list(self.perturbed)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Examples:
        return cls(neighbour=d["neighbour"], original=tuple(d["original"]), perturbed=tuple(d["perturbed"]))


@dataclass(frozen=True)
class UnitResult:
    """One perturbed unit: its text, input-token positions, neighbour tests and combined statistics."""

    text: str
    kind: UnitKind
    positions: tuple[int, ...]
    neighbours: tuple[NeighbourTest, ...]
    effect: float | None  # mean energy distance over the neighbours
    p_value: float | None  # the neighbours' p-values combined
    q_value: float | None  # Benjamini–Hochberg across units
    significant: bool
    skipped: str | None = None  # why the unit was not tested
    examples: Examples | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "text": self.text,
            "kind": self.kind,
            "positions": list(self.positions),
            "neighbours": [n.to_json() for n in self.neighbours],
            "effect": self.effect,
            "p_value": self.p_value,
            "q_value": self.q_value,
            "significant": self.significant,
        }
        if self.skipped is not None:
            d["skipped"] = self.skipped
        if self.examples is not None:
            d["examples"] = self.examples.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UnitResult:
        ex = d.get("examples")
        return cls(
            text=d["text"],
            kind=_kind(d["kind"]),
            positions=tuple(int(p) for p in d["positions"]),
            neighbours=tuple(NeighbourTest.from_json(n) for n in d["neighbours"]),
            effect=finite(d["effect"]),
            p_value=finite(d["p_value"]),
            q_value=finite(d["q_value"]),
            significant=bool(d["significant"]),
            skipped=d.get("skipped"),
            examples=Examples.from_json(ex) if ex is not None else None,
        )


@dataclass(frozen=True)
class DbsaPayload:
    """Everything one ``dbsa`` run found, with the settings needed to read it."""

    unit: UnitKind
    units: tuple[UnitResult, ...]
    samples: int  # N responses per prompt
    permutations: int  # B
    neighbours_per_unit: int  # M
    combine: str
    metric: str
    temperature: float
    max_new_tokens: int
    alpha: float
    baseline_examples: tuple[str, ...]
    draws_total: int
    draws_now: int  # draws made by this run (the rest came from the cache)
    embedding_model: str
    sampler: dict[str, Any]  # the sampler's own description (JSON-able)
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "units": [u.to_json() for u in self.units],
            "samples": self.samples,
            "permutations": self.permutations,
            "neighbours_per_unit": self.neighbours_per_unit,
            "combine": self.combine,
            "metric": self.metric,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "alpha": self.alpha,
            "baseline_examples": list(self.baseline_examples),
            "draws_total": self.draws_total,
            "draws_now": self.draws_now,
            "embedding_model": self.embedding_model,
            "sampler": dict(self.sampler),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DbsaPayload:
        return cls(
            unit=_kind(d["unit"]),
            units=tuple(UnitResult.from_json(u) for u in d["units"]),
            samples=int(d["samples"]),
            permutations=int(d["permutations"]),
            neighbours_per_unit=int(d["neighbours_per_unit"]),
            combine=str(d["combine"]),
            metric=str(d["metric"]),
            temperature=float(d["temperature"]),
            max_new_tokens=int(d["max_new_tokens"]),
            alpha=float(d["alpha"]),
            baseline_examples=tuple(d["baseline_examples"]),
            draws_total=int(d["draws_total"]),
            draws_now=int(d["draws_now"]),
            embedding_model=str(d["embedding_model"]),
            sampler=dict(d["sampler"]),
            warnings=tuple(d["warnings"]),
        )

    @classmethod
    def of(cls, result: AttributionResult) -> DbsaPayload:
        """The payload of a successful ``dbsa`` result."""
        if result.method != METHOD or result.status != "ok":
            raise ValueError(f"not a successful {METHOD} result: {result.method} ({result.status})")
        return cls.from_json(result.details)


def _kind(x: Any) -> UnitKind:
    if x not in ("word", "token", "sentence", "span"):
        raise ValueError(f"unknown DBSA unit kind {x!r}")
    return cast(UnitKind, x)
