"""Anomaly detectors over Probabilistic Attribution Score (PAS) results (seed 003 §4.2–4.3).

Each detector reads one ``probabilistic`` :class:`~reportgen.data.AttributionResult` and the
:class:`~reportgen.data.Generation` it explains, and returns plain-data
:class:`~reportgen.data.Finding` objects (tokens are data: no HTML is built here). A finding
points at token positions (``Finding.positions``, with ``Finding.token`` their text); the report
shows them in context. Candidates, interval kinds, replacement counts and the vocabulary size
come from the method's typed :class:`~reportgen_plugins.pas.payload.PasPayload`.

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
from typing import Any, ClassVar, Literal

from pydantic import Field

from reportgen.data import AttributionResult, Finding, Generation, Severity
from reportgen.plugin_api import Detector, Options
from reportgen_plugins.pas.findings import (
    CappedOptions,
    Scored,
    cands_text,
    cap_findings,
    fmt,
    interval_at,
    mark_uncertain,
    near_zero_test,
    prompt_with_replacement,
    quote,
    robust_z,
    straddles,
)

METHOD = "probabilistic"


class NoiseTokenOptions(CappedOptions):
    """Thresholds of ``noise_token``."""

    near_zero: float = Field(0.1, ge=0, description="|AS| ≤ this (nats) counts as near zero.")
    entropy_min_nats: float | None = Field(None, gt=0, description="H_p ≥ this (nats) counts as high; overrides entropy_min_fraction.")
    entropy_min_fraction: float = Field(0.4, gt=0, le=1, description="H_p ≥ this fraction of ln V counts as high (V from the result).")
    fallback_entropy_nats: float = Field(4.0, gt=0, description="High-entropy threshold when the result does not record V.")
    noise_fraction: float = Field(0.75, gt=0, le=1, description="H_p ≥ this fraction of ln V makes the finding 'medium' (near uniform).")


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
        s = Scored.of(result, generation)
        hp = s.vec("entropy_prompt")
        v = s.payload.vocabulary_size
        ln_v = math.log(v) if v is not None and v > 1 else None
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
            point, straddled = near_zero_test(result, k, a, o.near_zero)
            if not point and straddled is None:
                continue
            rel = h / ln_v if ln_v else None
            sev: Severity = "medium" if rel is not None and rel >= o.noise_fraction else "low"
            ev: dict[str, Any] = {"entropy_prompt": h, "entropy_threshold": h_min, "near_zero": o.near_zero}
            if rel is not None:
                ev["entropy_fraction_of_max"] = rel
            msg = (
                f"The model has no firm expectation for {quote(s.tokens[k])} "
                f"(H_p = {fmt(h)} nats{f', {rel:.0%} of the maximum' if rel is not None else ''})"
                + (
                    f" and the response does not depend on it (AS = {fmt(a)} nats)"
                    if straddled is None
                    else f"; whether the response depends on it is undecided (AS = {fmt(a)} nats, an estimate)"
                )
            )
            if straddled is not None:
                sev, msg = mark_uncertain(ev, msg, *straddled)
            out.append(
                s.finding(
                    self.name,
                    sev,
                    k,
                    title="Noise token" if straddled is None else "Possibly a noise token (undecided)",
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
    dominance: float = Field(2.0, ge=1, description="Top candidate's posterior ≥ dominance × the original's makes it 'high'.")


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
        s = Scored.of(result, generation)
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
            lpo_k, lpr_k = lpo[k], lpr[k]
            p_orig = math.exp(lpo_k) if lpo_k is not None else None
            better = [
                c
                for c in s.candidates(k, "posterior")
                if not (ids[k] is not None and c.id == ids[k]) and c.token != s.tokens[k] and (p_orig is None or c.p > p_orig)
            ][: o.max_candidates]
            ev: dict[str, Any] = {"threshold": thr, "preferred": [c.to_json() for c in better]}
            if p_orig is not None:
                ev["posterior_original"] = p_orig
            if lpr_k is not None:
                ev["prior_original"] = math.exp(lpr_k)
            if better and p_orig is not None and better[0].p >= o.dominance * p_orig:
                sev: Severity = "high"
            elif better:
                sev = "medium"
            else:
                sev = "low"
            tok = quote(s.tokens[k])
            if better:
                msg = (
                    f"Given its own response the model prefers {cands_text(better)} over {tok}"
                    + (f" (p={fmt(p_orig)})" if p_orig is not None else "")
                    + f", so the response is less likely with this token than with a typical replacement "
                    f"(AS = {fmt(a)} nats)"
                )
                edit = prompt_with_replacement(generation, s.tokens, k, better[0].token)
                ev["suggested_prompt"] = edit
                sugg = (
                    f"Try the prompt with {tok} replaced by {quote(better[0].token)} (or reword the "
                    f"whole word it belongs to): {quote(edit)}"
                )
            else:
                msg = (
                    f"Given its own response the model finds {tok} less likely than without it "
                    f"(AS = {fmt(a)} nats), although no recorded candidate outranks it"
                )
                sugg = "Look at the candidate list for this token and consider rephrasing around it."
            title = "Model prefers another token"
            if uncertain:
                assert iv is not None
                msg = (
                    f"Whether, given its own response, the model prefers another token over {tok} "
                    f"is undecided (AS = {fmt(a)} nats, an estimate)"
                )
                if better:
                    msg += f"; recorded candidates it ranks above {tok}: {cands_text(better)}"
                sev, msg = mark_uncertain(ev, msg, iv, thr)
                title = "Possibly prefers another token (undecided)"
            out.append(s.finding(self.name, sev, k, title=title, message=msg + ".", suggestion=sugg, evidence=ev))
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
        s = Scored.of(result, generation)
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
            post = s.candidates(k, "posterior")[: o.max_candidates]
            ev: dict[str, Any] = {
                "entropy_prompt": hp[k],
                "entropy_prompt_response": hpr[k],
                "difference": d,
                "margin": o.margin,
                "posterior_top": [c.to_json() for c in post],
            }
            msg = (
                f"The response broadened what the model expects at {quote(s.tokens[k])} "
                f"(H_pr = {fmt(hpr[k])} > H_p = {fmt(hp[k])} nats)"  # type: ignore[arg-type]
            )
            if post:
                msg += f"; with the response it considers {cands_text(post)}"
            if uncertain:
                assert div is not None
                sev, msg = mark_uncertain(ev, msg, div, o.margin, score="H_pr − H_p", record_threshold=False)
            out.append(
                s.finding(
                    self.name,
                    sev,
                    k,
                    title="Response broadened the token's distribution",
                    message=msg + ".",
                    suggestion="Check the listed alternatives: the response may read the prompt "
                    "in another sense (dialect, domain); make the intended word unambiguous.",
                    evidence=ev,
                )
            )
        return cap_findings(self.name, out, o.max_findings, lambda f: f.evidence["difference"])


class KLOutlierOptions(CappedOptions):
    """Thresholds of ``kl_outlier``."""

    direction: Literal["posterior_prior", "prior_posterior"] = Field("posterior_prior", description="KL(ρ‖π) (posterior_prior) or KL(π‖ρ).")
    z_min: float = Field(3.5, gt=0, description="Robust z = (KL − median)/(1.4826·MAD) ≥ this.")
    kl_min: float = Field(0.5, ge=0, description="Absolute floor: KL ≥ this (nats).")
    near_zero: float = Field(0.1, ge=0, description="|AS| ≤ this (nats) counts as near zero.")
    min_tokens: int = Field(5, ge=3, description="Fewer scored tokens than this: no z-scores, no findings.")
    max_candidates: int = Field(5, ge=1, le=20, description="How many posterior candidates to name.")


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
        s = Scored.of(result, generation)
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
            point, straddled = near_zero_test(result, k, a, o.near_zero)
            if not point and straddled is None:
                continue
            sev: Severity = "high" if z >= 2 * o.z_min else "medium"
            post = s.candidates(k, "posterior")[: o.max_candidates]
            ev: dict[str, Any] = {
                key: v,
                "robust_z": z,
                "kl_min": o.kl_min,
                "z_min": o.z_min,
                "near_zero": o.near_zero,
                "posterior_top": [c.to_json() for c in post],
            }
            msg = (
                f"Adding the response changes the model's candidates for {quote(s.tokens[k])} a lot "
                f"({label} = {fmt(v)} nats, robust z = {fmt(z)})"
                + (
                    f" although its attribution is near zero (AS = {fmt(a)} nats)"
                    if straddled is None
                    else f"; whether its attribution is near zero is undecided (AS = {fmt(a)} nats, an estimate)"
                )
            )
            if post:
                msg += f"; with the response it considers {cands_text(post)}"
            if straddled is not None:
                sev, msg = mark_uncertain(ev, msg, *straddled)
            out.append(
                s.finding(
                    self.name,
                    sev,
                    k,
                    title="KL outlier at near-zero attribution" if straddled is None else "Possibly a KL outlier (undecided)",
                    message=msg + ".",
                    suggestion="Read the response against the candidates: the model may have "
                    "preferred a slight rephrasing here; try the top candidate in the prompt.",
                    evidence=ev,
                )
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
        s = Scored.of(result, generation)
        ent, pct = s.vec("replacement_entropy"), s.vec("original_response_pct")
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
                    "no replacement gives the original response" if p == 0 else f"only {p:.0f}% of replacements give the original response"
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
            ev: dict[str, Any] = {
                "replacement_entropy": e,
                "original_response_pct": p,
                "entropy_max": o.entropy_max,
                "original_pct_min": o.original_pct_min,
            }
            stats = s.payload.replacement_at(k)
            if stats is not None:
                ev.update(
                    count=stats.count,
                    original_token_count=stats.original_token_count,
                    original_response_count=stats.original_response_count,
                    distinct_responses=stats.distinct_responses,
                )
            examples = [r.response[:200] for r in (stats.responses if stats is not None else ()) if r.response != generation.response_text]
            ev["examples"] = list(dict.fromkeys(examples))[: o.max_examples]
            tail = " although its attribution is near zero" if near else (f" (AS = {fmt(a)} nats)" if a is not None else "")
            msg = f"Replacing {quote(s.tokens[k])} by the model's own likely candidates changes the response ({'; '.join(reasons)}){tail}"
            out.append(
                s.finding(
                    self.name,
                    sev,
                    k,
                    title="Response unstable under replacement",
                    message=msg + ".",
                    suggestion="The response hinges on this token: check that it says what you mean "
                    "and compare the alternative responses in the evidence.",
                    evidence=ev,
                )
            )
        return cap_findings(self.name, out, o.max_findings, _instability)


DETECTORS: tuple[type[Detector], ...] = (
    NoiseToken,
    PreferredReplacement,
    ResponseBroadened,
    KLOutlier,
    UnstableToken,
)
