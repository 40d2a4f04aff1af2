"""Anomaly detectors over Probabilistic Attribution Score (PAS) results (seed 003 §4.2–4.3).

Each detector reads one ``probabilistic`` :class:`~reportgen.data.AttributionResult` and the
:class:`~reportgen.data.Generation` it explains, and returns plain-data
:class:`~reportgen.data.Finding` objects (tokens are data: no HTML is built here).

Scores used (all in nats, vectors over the n input tokens, ``None`` where not scored):

* ``attribution_score`` AS_k = log ρ_k(x_k) − log π_k(x_k)
* ``entropy_prompt`` H_p(k) = H(π_k), ``entropy_prompt_response`` H_pr(k) = H(ρ_k)
* ``kl_posterior_prior`` KL(ρ_k ‖ π_k), ``kl_prior_posterior`` KL(π_k ‖ ρ_k)
* ``replacement_entropy`` and ``original_response_pct`` (seed 003 §4.3, optional)

Detectors (each one's options are its documented thresholds):

* ``noise_token``: |AS| near zero with a high prompt-only entropy H_p (the model has no
  firm expectation for the token and the response says nothing about it: pure noise / poor
  convergence, §4.2.1).
* ``preferred_replacement``: AS clearly negative and the model, given its own response,
  prefers other tokens (Anomaly 3: "Passage" → "Sentence"); names them and suggests the edit.
* ``response_broadened``: H_pr > H_p + margin, the response broadened the token's
  distribution (Anomaly 2: " police" → " customs"/" security").
* ``kl_outlier``: KL(ρ‖π) a robust outlier over the prompt's tokens at near-zero AS (Anomaly 1).
* ``unstable_token``: replacement entropy high or original-response share low (§4.3).

Interval straddling: where a result carries an interval for a score a detector thresholds
(``intervals["attribution_score"][k] = [lo, hi]`` from fast/certified modes), and the
interval straddles that threshold, the finding is still reported (even when the point
estimate alone would not trigger it), its severity drops to ``info``, ``evidence["interval"]``
holds the interval, and the message says "uncertain: the interval [lo, hi] straddles the
threshold …". Nothing is silently dropped or silently asserted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from reportgen.data import SEVERITY_ORDER, AttributionResult, Finding, Generation, Severity
from reportgen.plugin_api import Detector, Options

METHOD = "probabilistic"
#: Default number of tokens shown on each side of a flagged token in ``Finding.context``.
CONTEXT_WIDTH = 4
#: 1.4826 · MAD estimates the standard deviation of a normal sample.
MAD_TO_SIGMA = 1.4826


# --------------------------------------------------------------------------- helpers


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
    if not ivs or k >= len(ivs) or ivs[k] is None:
        return None
    pair = ivs[k]
    if len(pair) != 2:
        return None
    lo, hi = _finite(pair[0]), _finite(pair[1])
    if lo is None or hi is None:
        return None
    return (min(lo, hi), max(lo, hi))


def interval_kind(result: AttributionResult, k: int) -> str | None:
    """"exact" | "certified" | "estimate" for position k, where the method said."""
    kinds = result.details.get("interval_kind") or {}
    kind = kinds.get(str(k))
    return str(kind) if kind is not None else None


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


def token_context(
    tokens: list[str], special: list[bool], k: int, width: int = CONTEXT_WIDTH
) -> str:
    """Plain-text context around token k, marked with «»: ``…the «Passage» below…``.

    Template/special tokens are left out of the window (they are not what the user wrote),
    unless k itself is one.
    """
    before: list[str] = []
    i = k - 1
    while i >= 0 and len(before) < width:
        if not special[i]:
            before.insert(0, tokens[i])
        i -= 1
    more_before = any(not special[j] for j in range(0, i + 1))
    after: list[str] = []
    j = k + 1
    while j < len(tokens) and len(after) < width:
        if not special[j]:
            after.append(tokens[j])
        j += 1
    more_after = any(not special[m] for m in range(j, len(tokens)))
    text = "".join(before) + "«" + tokens[k] + "»" + "".join(after)
    return ("…" if more_before else "") + _plain(text) + ("…" if more_after else "")


def candidates_at(result: AttributionResult, k: int, which: str) -> list[dict[str, Any]]:
    """Top candidates ``{"token","id","p"}`` at position k from details (prior/posterior)."""
    cands = (result.details.get("candidates") or {}).get(str(k)) or {}
    out = []
    for c in cands.get(which) or []:
        p = _finite(c.get("p"))
        if p is not None:
            out.append({"token": str(c.get("token", "")), "id": c.get("id"), "p": p})
    out.sort(key=lambda c: -c["p"])
    return out


def prompt_with_replacement(
    generation: Generation, tokens: list[str], k: int, replacement: str
) -> str:
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
class _Scored:
    """What every detector needs about one result, computed once."""

    result: AttributionResult
    generation: Generation
    tokens: list[str]
    special: list[bool]
    as_: list[float | None]

    @classmethod
    def of(cls, result: AttributionResult, generation: Generation) -> _Scored:
        tokens = display_tokens(result, generation)
        n = len(tokens)
        return cls(result, generation, tokens, _special(generation, n), score_vector(result, "attribution_score", n))

    def vec(self, name: str) -> list[float | None]:
        return score_vector(self.result, name, len(self.tokens))

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
        ev = {"position": k, "attribution_score": self.as_[k]}
        kind = interval_kind(self.result, k)
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


def _uncertain_note(interval: tuple[float, float], threshold: float, score: str = "AS") -> str:
    return (
        f"uncertain: the interval [{fmt(interval[0])}, {fmt(interval[1])}] straddles the "
        f"threshold {score} = {fmt(threshold)} nats"
    )


def _near_zero_test(
    result: AttributionResult, k: int, value: float, limit: float
) -> tuple[bool, tuple[float, float] | None, float | None]:
    """Is |AS| ≤ limit? Returns (point test, interval if it straddles ±limit, the straddled threshold)."""
    iv = interval_at(result, "attribution_score", k)
    for thr in (-limit, limit):
        if straddles(iv, thr):
            return abs(value) <= limit, iv, thr
    return abs(value) <= limit, None, None


def _quote(token: str) -> str:
    return "“" + _plain(token) + "”"


def _cands_text(cands: list[dict[str, Any]]) -> str:
    return ", ".join(f"{_quote(c['token'])} (p={fmt(c['p'])})" for c in cands)


class CappedOptions(Options):
    """Options every PAS detector shares."""

    max_findings: int | None = Field(
        10,
        ge=1,
        description="Per result, list at most this many findings (the most severe, then the strongest); "
        "the rest are summarised in one 'info' finding that names their positions. None lists all.",
    )


def cap_findings(
    detector: str, findings: list[Finding], limit: int | None, strength: Any
) -> list[Finding]:
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
    listed = ", ".join(f"{_quote(f.token)} ({f.positions[0]})" for f in rest[:12])
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
        message=f"{len(rest)} more tokens also met the thresholds of {detector}; only the {limit} most "
        "severe are listed.",
        suggestion=f"Set detectors.{detector}.max_findings in the audit spec to list them all.",
    )
    return kept + [summary]


# --------------------------------------------------------------------------- detectors


class NoiseTokenOptions(CappedOptions):
    """Thresholds of ``noise_token``."""

    near_zero: float = Field(0.1, ge=0, description="|AS| ≤ this (nats) counts as near zero.")
    entropy_min_nats: float | None = Field(
        None, gt=0, description="H_p ≥ this (nats) counts as high; overrides entropy_min_fraction."
    )
    entropy_min_fraction: float = Field(
        0.4, gt=0, le=1, description="H_p ≥ this fraction of ln V counts as high (V from the result)."
    )
    fallback_entropy_nats: float = Field(
        4.0, gt=0, description="High-entropy threshold when the result does not record V."
    )
    noise_fraction: float = Field(
        0.75, gt=0, le=1, description="H_p ≥ this fraction of ln V makes the finding 'medium' (near uniform)."
    )


class NoiseToken(Detector):
    """|AS| near zero with high prompt-only entropy H_p: the token is noise to the model.

    Severity: ``medium`` when H_p ≥ noise_fraction · ln V (the prior over replacements is close
    to uniform), ``low`` otherwise, ``info`` when the AS interval straddles ±near_zero.
    """

    name: ClassVar[str] = "noise_token"
    description: ClassVar[str] = "Near-zero AS with high contextual entropy H_p (poor convergence, pure noise)."
    options_model: ClassVar[type[Options]] = NoiseTokenOptions
    methods: ClassVar[tuple[str, ...]] = (METHOD,)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        o: NoiseTokenOptions = options or NoiseTokenOptions()
        s = _Scored.of(result, generation)
        hp = s.vec("entropy_prompt")
        v = _finite(result.details.get("vocabulary_size"))
        ln_v = math.log(v) if v and v > 1 else None
        if o.entropy_min_nats is not None:
            h_min = o.entropy_min_nats
        elif ln_v is not None:
            h_min = o.entropy_min_fraction * ln_v
        else:
            h_min = o.fallback_entropy_nats
        out = []
        for k in s.positions("attribution_score", "entropy_prompt"):
            a, h = s.as_[k], hp[k]
            assert a is not None and h is not None
            if h < h_min:
                continue
            point, iv, thr = _near_zero_test(result, k, a, o.near_zero)
            if not point and iv is None:
                continue
            rel = h / ln_v if ln_v else None
            sev: Severity = "medium" if rel is not None and rel >= o.noise_fraction else "low"
            ev: dict[str, Any] = {"entropy_prompt": h, "entropy_threshold": h_min, "near_zero": o.near_zero}
            if rel is not None:
                ev["entropy_fraction_of_max"] = rel
            msg = (
                f"The model has no firm expectation for {_quote(s.tokens[k])} "
                f"(H_p = {fmt(h)} nats{f', {rel:.0%} of the maximum' if rel is not None else ''}) "
                f"and the response does not depend on it (AS = {fmt(a)} nats)"
            )
            if iv is not None:
                sev = "info"
                ev["interval"] = list(iv)
                ev["threshold"] = thr
                msg += f" ({_uncertain_note(iv, thr)})"
            out.append(
                s.finding(
                    self.name,
                    sev,
                    k,
                    title="Noise token",
                    message=msg + ".",
                    suggestion="Check whether the token is needed; if the word matters, phrase it so the "
                    "model can anticipate it, or try a better-trained model.",
                    evidence=ev,
                )
            )
        return cap_findings(self.name, out, o.max_findings, lambda f: f.evidence["entropy_prompt"])


class PreferredReplacementOptions(CappedOptions):
    """Thresholds of ``preferred_replacement``."""

    threshold: float = Field(0.5, gt=0, description="AS < −threshold (nats) counts as clearly negative.")
    max_candidates: int = Field(3, ge=1, le=20, description="How many preferred tokens to name.")
    dominance: float = Field(
        2.0, ge=1, description="Top candidate's posterior ≥ dominance × the original's makes it 'high'."
    )


class PreferredReplacement(Detector):
    """AS < −threshold: given its own response, the model would rather have seen other tokens.

    Names the posterior candidates (prompt + response) that beat the original token and
    suggests the prompt with the token replaced by the best of them (seed 003 Anomaly 3).

    Severity: ``high`` when the best candidate's posterior probability is ≥ dominance × the
    original's; ``medium`` when some candidate beats the original; ``low`` when none of the
    listed candidates beats it (or no candidates were recorded); ``info`` when the AS interval
    straddles −threshold.
    """

    name: ClassVar[str] = "preferred_replacement"
    description: ClassVar[str] = "Negative AS: the model prefers other tokens here given its response."
    options_model: ClassVar[type[Options]] = PreferredReplacementOptions
    methods: ClassVar[tuple[str, ...]] = (METHOD,)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        o: PreferredReplacementOptions = options or PreferredReplacementOptions()
        s = _Scored.of(result, generation)
        lpo = s.vec("log_posterior_original")
        lpr = s.vec("log_prior_original")
        ids = list(generation.input_ids) if len(generation.input_ids) == len(s.tokens) else [None] * len(s.tokens)
        thr = -o.threshold
        out = []
        for k in s.positions("attribution_score"):
            a = s.as_[k]
            assert a is not None
            iv = interval_at(result, "attribution_score", k)
            uncertain = straddles(iv, thr)
            if not (a < thr or uncertain):
                continue
            p_orig = math.exp(lpo[k]) if lpo[k] is not None else None
            post = candidates_at(result, k, "posterior")
            better = [
                c
                for c in post
                if not (ids[k] is not None and c["id"] == ids[k])
                and c["token"] != s.tokens[k]
                and (p_orig is None or c["p"] > p_orig)
            ][: o.max_candidates]
            ev: dict[str, Any] = {"threshold": thr, "preferred": better}
            if p_orig is not None:
                ev["posterior_original"] = p_orig
            if lpr[k] is not None:
                ev["prior_original"] = math.exp(lpr[k])  # type: ignore[arg-type]
            if better and p_orig is not None and better[0]["p"] >= o.dominance * p_orig:
                sev: Severity = "high"
            elif better:
                sev = "medium"
            else:
                sev = "low"
            tok = _quote(s.tokens[k])
            if better:
                msg = (
                    f"Given its own response the model prefers {_cands_text(better)} over {tok}"
                    + (f" (p={fmt(p_orig)})" if p_orig is not None else "")
                    + f", so the response is less likely with this token than with a typical replacement "
                    f"(AS = {fmt(a)} nats)"
                )
                edit = prompt_with_replacement(generation, s.tokens, k, better[0]["token"])
                ev["suggested_prompt"] = edit
                sugg = (
                    f"Try the prompt with {tok} replaced by {_quote(better[0]['token'])} (or reword the "
                    f"whole word it belongs to): {_quote(edit)}"
                )
            else:
                msg = (
                    f"Given its own response the model finds {tok} less likely than without it "
                    f"(AS = {fmt(a)} nats), although no recorded candidate outranks it"
                )
                sugg = "Look at the candidate list for this token and consider rephrasing around it."
            if uncertain:
                assert iv is not None
                sev = "info"
                ev["interval"] = list(iv)
                msg += f" ({_uncertain_note(iv, thr)})"
            out.append(
                s.finding(self.name, sev, k, title="Model prefers another token", message=msg + ".",
                          suggestion=sugg, evidence=ev)
            )
        return cap_findings(self.name, out, o.max_findings, lambda f: -f.evidence["attribution_score"])


class ResponseBroadenedOptions(CappedOptions):
    """Thresholds of ``response_broadened``."""

    margin: float = Field(0.5, ge=0, description="H_pr > H_p + margin (nats) is flagged.")
    strong_margin: float = Field(1.5, ge=0, description="H_pr − H_p ≥ this (nats) makes it 'medium'.")
    max_candidates: int = Field(3, ge=1, le=20, description="How many posterior candidates to name.")


class ResponseBroadened(Detector):
    """H_pr > H_p + margin: adding the response broadened the token's distribution (Anomaly 2).

    Usually the response narrows the replacement distribution; broadening means the response
    makes other tokens here plausible (e.g. US "customs"/"security" for "police").

    Severity: ``medium`` when H_pr − H_p ≥ strong_margin, ``low`` otherwise, ``info`` when
    intervals for both entropies are known and their difference straddles the margin.
    """

    name: ClassVar[str] = "response_broadened"
    description: ClassVar[str] = "H_pr > H_p + margin: the response broadened the token's distribution."
    options_model: ClassVar[type[Options]] = ResponseBroadenedOptions
    methods: ClassVar[tuple[str, ...]] = (METHOD,)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        o: ResponseBroadenedOptions = options or ResponseBroadenedOptions()
        s = _Scored.of(result, generation)
        hp, hpr = s.vec("entropy_prompt"), s.vec("entropy_prompt_response")
        out = []
        for k in s.positions("entropy_prompt", "entropy_prompt_response"):
            d = hpr[k] - hp[k]  # type: ignore[operator]
            ip, ipr = interval_at(result, "entropy_prompt", k), interval_at(result, "entropy_prompt_response", k)
            div = (ipr[0] - ip[1], ipr[1] - ip[0]) if ip and ipr else None
            uncertain = straddles(div, o.margin)
            if not (d > o.margin or uncertain):
                continue
            sev: Severity = "medium" if d >= o.strong_margin else "low"
            post = candidates_at(result, k, "posterior")[: o.max_candidates]
            ev: dict[str, Any] = {
                "entropy_prompt": hp[k],
                "entropy_prompt_response": hpr[k],
                "difference": d,
                "margin": o.margin,
                "posterior_top": post,
            }
            msg = (
                f"The response broadened what the model expects at {_quote(s.tokens[k])} "
                f"(H_pr = {fmt(hpr[k])} > H_p = {fmt(hp[k])} nats)"  # type: ignore[arg-type]
            )
            if post:
                msg += f"; with the response it considers {_cands_text(post)}"
            if uncertain:
                assert div is not None
                sev = "info"
                ev["interval"] = list(div)
                msg += f" ({_uncertain_note(div, o.margin, 'H_pr − H_p')})"
            out.append(
                s.finding(self.name, sev, k, title="Response broadened the token's distribution",
                          message=msg + ".",
                          suggestion="Check the listed alternatives: the response may read the prompt "
                          "in another sense (dialect, domain); make the intended word unambiguous.",
                          evidence=ev)
            )
        return cap_findings(self.name, out, o.max_findings, lambda f: f.evidence["difference"])


class KLOutlierOptions(CappedOptions):
    """Thresholds of ``kl_outlier``."""

    direction: Literal["posterior_prior", "prior_posterior"] = Field(
        "posterior_prior", description="KL(ρ‖π) (posterior_prior) or KL(π‖ρ)."
    )
    z_min: float = Field(3.5, gt=0, description="Robust z = (KL − median)/(1.4826·MAD) ≥ this.")
    kl_min: float = Field(0.5, ge=0, description="Absolute floor: KL ≥ this (nats).")
    near_zero: float = Field(0.1, ge=0, description="|AS| ≤ this (nats) counts as near zero.")
    min_tokens: int = Field(5, ge=3, description="Fewer scored tokens than this: no z-scores, no findings.")
    max_candidates: int = Field(5, ge=1, le=20, description="How many posterior candidates to name.")


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


class KLOutlier(Detector):
    """A token whose KL between posterior and prior is an outlier although AS ≈ 0 (Anomaly 1).

    Near-zero AS normally comes with near-zero KL. A large KL at AS ≈ 0 means the response
    reshuffles the candidates for this token while leaving the original's probability alone:
    the model would have been "happier" with a rephrasing (Cassini: "?" → " in").

    Severity: ``high`` when z ≥ 2·z_min, ``medium`` otherwise, ``info`` when the AS interval
    straddles ±near_zero.
    """

    name: ClassVar[str] = "kl_outlier"
    description: ClassVar[str] = "KL(posterior‖prior) is a robust outlier at near-zero AS."
    options_model: ClassVar[type[Options]] = KLOutlierOptions
    methods: ClassVar[tuple[str, ...]] = (METHOD,)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        o: KLOutlierOptions = options or KLOutlierOptions()
        s = _Scored.of(result, generation)
        key = f"kl_{o.direction}"
        kl = s.vec(key)
        pos = s.positions("attribution_score", key)
        if len(pos) < o.min_tokens:
            return []
        zs = dict(zip(pos, robust_z([kl[k] for k in pos]), strict=True))  # type: ignore[misc]
        label = "KL(ρ‖π)" if o.direction == "posterior_prior" else "KL(π‖ρ)"
        out = []
        for k in pos:
            a, v, z = s.as_[k], kl[k], zs[k]
            assert a is not None and v is not None
            if v < o.kl_min or z < o.z_min:
                continue
            point, iv, thr = _near_zero_test(result, k, a, o.near_zero)
            if not point and iv is None:
                continue
            sev: Severity = "high" if z >= 2 * o.z_min else "medium"
            post = candidates_at(result, k, "posterior")[: o.max_candidates]
            ev: dict[str, Any] = {
                key: v,
                "robust_z": z,
                "kl_min": o.kl_min,
                "z_min": o.z_min,
                "near_zero": o.near_zero,
                "posterior_top": post,
            }
            msg = (
                f"Adding the response changes the model's candidates for {_quote(s.tokens[k])} a lot "
                f"({label} = {fmt(v)} nats, robust z = {fmt(z)}) although its attribution is near zero "
                f"(AS = {fmt(a)} nats)"
            )
            if post:
                msg += f"; with the response it considers {_cands_text(post)}"
            if iv is not None:
                sev = "info"
                ev["interval"] = list(iv)
                ev["threshold"] = thr
                msg += f" ({_uncertain_note(iv, thr)})"
            out.append(
                s.finding(self.name, sev, k, title="KL outlier at near-zero attribution", message=msg + ".",
                          suggestion="Read the response against the candidates: the model may have "
                          "preferred a slight rephrasing here; try the top candidate in the prompt.",
                          evidence=ev)
            )
        return cap_findings(self.name, out, o.max_findings, lambda f: f.evidence["robust_z"])


def _instability(f: Finding) -> float:
    """Ranks unstable_token findings: replacement entropy plus the share of changed responses."""
    e, p = f.evidence.get("replacement_entropy"), f.evidence.get("original_response_pct")
    return (e or 0.0) + 1.0 - (100.0 if p is None else p) / 100.0


class UnstableTokenOptions(CappedOptions):
    """Thresholds of ``unstable_token`` (only where replacement statistics were computed)."""

    entropy_max: float = Field(1.0, ge=0, description="Replacement entropy > this (nats) is flagged.")
    original_pct_min: float = Field(50.0, ge=0, le=100, description="Original-response share < this (%) is flagged.")
    near_zero: float = Field(0.1, ge=0, description="|AS| ≤ this (nats): instability is unexpected → 'medium'.")
    max_examples: int = Field(2, ge=0, le=10, description="Alternative responses quoted in evidence.")


class UnstableToken(Detector):
    """Replacing the token by its plausible candidates changes the response (seed 003 §4.3).

    Severity: ``high`` when no candidate reproduces the original response and AS is near zero
    (the response hinges on a token the attribution calls unimportant); ``medium`` when AS is
    near zero; ``low`` otherwise (instability is expected at influential tokens).
    """

    name: ClassVar[str] = "unstable_token"
    description: ClassVar[str] = "High replacement entropy or low original-response share."
    options_model: ClassVar[type[Options]] = UnstableTokenOptions
    methods: ClassVar[tuple[str, ...]] = (METHOD,)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        o: UnstableTokenOptions = options or UnstableTokenOptions()
        s = _Scored.of(result, generation)
        ent, pct = s.vec("replacement_entropy"), s.vec("original_response_pct")
        repl = result.details.get("replacement") or {}
        out = []
        for k in range(len(s.tokens)):
            e, p = ent[k], pct[k]
            if e is None and p is None:
                continue
            reasons = []
            if e is not None and e > o.entropy_max:
                reasons.append(f"replacement entropy {fmt(e)} nats")
            if p is not None and p < o.original_pct_min:
                reasons.append(
                    "no replacement gives the original response" if p == 0
                    else f"only {p:.0f}% of replacements give the original response"
                )
            if not reasons:
                continue
            a = s.as_[k]
            near = a is not None and abs(a) <= o.near_zero
            if near and p is not None and p == 0:
                sev: Severity = "high"
            elif near:
                sev = "medium"
            else:
                sev = "low"
            info = repl.get(str(k)) or {}
            ev: dict[str, Any] = {
                "replacement_entropy": e,
                "original_response_pct": p,
                "entropy_max": o.entropy_max,
                "original_pct_min": o.original_pct_min,
            }
            for f in ("count", "original_token_count", "original_response_count", "distinct_responses"):
                if f in info:
                    ev[f] = info[f]
            examples = [
                str(r.get("response", ""))[:200]
                for r in info.get("responses") or []
                if str(r.get("response", "")) != generation.response_text
            ]
            ev["examples"] = list(dict.fromkeys(examples))[: o.max_examples]
            tail = (
                " although its attribution is near zero" if near
                else (f" (AS = {fmt(a)} nats)" if a is not None else "")
            )
            msg = (
                f"Replacing {_quote(s.tokens[k])} by the model's own likely candidates changes the "
                f"response ({'; '.join(reasons)}){tail}"
            )
            out.append(
                s.finding(self.name, sev, k, title="Response unstable under replacement", message=msg + ".",
                          suggestion="The response hinges on this token: check that it says what you mean "
                          "and compare the alternative responses in the evidence.",
                          evidence=ev)
            )
        return cap_findings(self.name, out, o.max_findings, _instability)


DETECTORS: tuple[type[Detector], ...] = (
    NoiseToken,
    PreferredReplacement,
    ResponseBroadened,
    KLOutlier,
    UnstableToken,
)
