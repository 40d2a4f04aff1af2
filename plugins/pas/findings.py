"""What every PAS detector shares: score vectors and intervals, the finding builder, capping.

Findings are plain data and point at token positions; the report shows them in context.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from reportgen.data import (
    SEVERITY_ORDER,
    AttributionResult,
    Finding,
    Generation,
    Severity,
)
from reportgen.plugin_api import Options
from reportgen_plugins.pas.payload import Candidate, PasPayload, Which

#: 1.4826 · MAD estimates the standard deviation of a normal sample.
MAD_TO_SIGMA = 1.4826


def _finite(x: Any) -> float | None:
    """``x`` as a float, or None when missing/NaN/inf."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def score_vector(result: AttributionResult, name: str, n: int | None = None) -> list[float | None]:
    """The named score as a list of floats/None of length ``n`` (all None when absent)."""
    n = len(result.input_tokens) if n is None else n
    raw = result.scores.get(name)
    if raw is None:
        return [None] * n
    out = [_finite(v) for v in list(raw)[:n]]
    return out + [None] * (n - len(out))


def interval_at(result: AttributionResult, name: str, k: int) -> tuple[float, float] | None:
    """``intervals[name][k]`` as (lo, hi), or None where no interval is known."""
    ivs = result.intervals.get(name)
    pair = ivs[k] if ivs and k < len(ivs) else None
    if pair is None or len(pair) != 2:
        return None
    lo, hi = _finite(pair[0]), _finite(pair[1])
    if lo is None or hi is None:
        return None
    return (min(lo, hi), max(lo, hi))


def straddles(interval: tuple[float, float] | None, threshold: float) -> bool:
    """True when the threshold lies strictly inside the interval."""
    return interval is not None and interval[0] < threshold < interval[1]


def fmt(x: float) -> str:
    """A short, stable rendering of a number for messages."""
    return f"{x:.3g}"


def display_tokens(result: AttributionResult, generation: Generation) -> list[str]:
    """Display strings of the input tokens (the generation's when they line up)."""
    if len(generation.input_tokens) == len(result.input_tokens):
        return list(generation.input_tokens)
    return list(result.input_tokens)


def _special(generation: Generation, n: int) -> list[bool]:
    sp = list(generation.input_special)
    return sp if len(sp) == n else [False] * n


def _plain(text: str) -> str:
    """One-line plain text: newlines and tabs become visible marks."""
    return text.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", "⇥")


def prompt_with_replacement(generation: Generation, tokens: list[str], k: int, replacement: str) -> str:
    """The user prompt with token k replaced by ``replacement``, as a plain string.

    The user-content tokens are joined; when they spell ``generation.prompt_text`` the edit is
    made at the token's character offset in the original text, otherwise in the joined tokens.
    """
    special = _special(generation, len(tokens))
    user = [i for i in range(len(tokens)) if not special[i]]
    if k not in user:  # a scored template token: edit the joined display text
        user = sorted(set(user) | {k})
    offset = 0
    for i in user:
        if i == k:
            break
        offset += len(tokens[i])
    joined = "".join(tokens[i] for i in user)
    base = generation.prompt_text if joined == generation.prompt_text else joined
    return base[:offset] + replacement + base[offset + len(tokens[k]) :]


@dataclass
class Scored:
    """What every detector needs about one result, computed once."""

    result: AttributionResult
    payload: PasPayload
    tokens: list[str]
    as_: list[float | None]

    @classmethod
    def of(cls, result: AttributionResult, generation: Generation) -> Scored:
        tokens = display_tokens(result, generation)
        as_ = score_vector(result, "attribution_score", len(tokens))
        return cls(result, PasPayload.of(result), tokens, as_)

    def vec(self, name: str) -> list[float | None]:
        return score_vector(self.result, name, len(self.tokens))

    def candidates(self, k: int, which: Which) -> list[Candidate]:
        """The recorded top candidates at k under the prior or posterior, most probable first."""
        lists = self.payload.candidates.get(k)
        return lists.ranked(which) if lists is not None else []

    def positions(self, *names: str) -> list[int]:
        """Positions where every named score is finite (template tokens included only if scored)."""
        vecs = [self.vec(n) for n in names]
        return [k for k in range(len(self.tokens)) if all(v[k] is not None for v in vecs)]

    def finding(
        self,
        detector: str,
        severity: Severity,
        k: int,
        *,
        title: str,
        message: str,
        suggestion: str,
        evidence: dict[str, Any],
    ) -> Finding:
        ev: dict[str, Any] = {"position": k, "attribution_score": self.as_[k]}
        kind = self.payload.interval_kind.get(k)
        if kind is not None:
            ev["interval_kind"] = kind
        if self.result.label:
            ev["label"] = self.result.label  # the spec listed the method more than once
        ev.update(evidence)
        return Finding(
            detector=detector,
            severity=severity,
            model_id=self.result.model_id,
            prompt_id=self.result.prompt_id,
            method=self.result.method,
            positions=(k,),
            token=self.tokens[k],
            evidence=ev,
            title=title,
            message=message,
            suggestion=suggestion,
        )


def mark_uncertain(
    evidence: dict[str, Any],
    message: str,
    interval: tuple[float, float],
    threshold: float,
    *,
    score: str = "AS",
    record_threshold: bool = True,
) -> tuple[Severity, str]:
    """A finding whose interval straddles its detector's threshold: severity ``info``, the interval
    (and, unless the evidence names the threshold otherwise, the threshold) in ``evidence``, and the
    message with the "uncertain: …" note. Returns the severity and the message."""
    evidence["interval"] = list(interval)
    if record_threshold:
        evidence["threshold"] = threshold
    lo, hi = interval
    return "info", f"{message} (uncertain: the interval [{fmt(lo)}, {fmt(hi)}] straddles the threshold {score} = {fmt(threshold)} nats)"


def near_zero_test(result: AttributionResult, k: int, value: float, limit: float) -> tuple[bool, tuple[tuple[float, float], float] | None]:
    """Is |AS| ≤ limit? Returns the point test and, when the AS interval straddles ±limit, that
    interval and the straddled threshold."""
    iv = interval_at(result, "attribution_score", k)
    for thr in (-limit, limit):
        if iv is not None and straddles(iv, thr):
            return abs(value) <= limit, (iv, thr)
    return abs(value) <= limit, None


def quote(token: str) -> str:
    return "“" + _plain(token) + "”"


def cands_text(cands: list[Candidate]) -> str:
    return ", ".join(f"{quote(c.token)} (p={fmt(c.p)})" for c in cands)


class CappedOptions(Options):
    """Options every PAS detector shares."""

    max_findings: int | None = Field(
        10,
        ge=1,
        description="Per result, list at most this many findings (the most severe, then the strongest); "
        "the rest are summarised in one 'info' finding that names their positions. None lists all.",
    )


def cap_findings(detector: str, findings: list[Finding], limit: int | None, strength: Callable[[Finding], float]) -> list[Finding]:
    """Keep the ``limit`` most severe/strongest findings (in position order) and summarise the rest.

    ``strength(finding) -> float`` orders findings of equal severity (larger first). Nothing is
    dropped silently: the omitted positions are listed in one extra ``info`` finding.
    """
    if limit is None or len(findings) <= limit:
        return findings
    ranked = sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], -strength(f), f.positions))
    kept, rest = ranked[:limit], ranked[limit:]
    kept.sort(key=lambda f: f.positions)
    rest.sort(key=lambda f: f.positions)
    first = rest[0]
    summary = Finding(
        detector=detector,
        severity="info",
        model_id=first.model_id,
        prompt_id=first.prompt_id,
        method=first.method,
        positions=tuple(p for f in rest for p in f.positions),
        token="",
        evidence={
            "omitted": len(rest),
            "max_findings": limit,
            "positions": [p for f in rest for p in f.positions],
            "severities": [f.severity for f in rest],
        },
        title=f"{len(rest)} more tokens",
        message=f"{len(rest)} more tokens also met the thresholds of {detector}; only the {limit} most severe are listed.",
        suggestion=f"Set detectors.{detector}.max_findings in the audit spec to list them all.",
    )
    return [*kept, summary]


def robust_z(values: list[float]) -> list[float]:
    """(x − median)/(1.4826·MAD); when MAD = 0, values above the median get +inf, others 0."""
    xs = sorted(values)
    m = len(xs)
    med = xs[m // 2] if m % 2 else 0.5 * (xs[m // 2 - 1] + xs[m // 2])
    dev = sorted(abs(x - med) for x in values)
    mad = dev[m // 2] if m % 2 else 0.5 * (dev[m // 2 - 1] + dev[m // 2])
    if mad == 0:
        return [math.inf if x > med else (-math.inf if x < med else 0.0) for x in values]
    return [(x - med) / (MAD_TO_SIGMA * mad) for x in values]
