"""PAS detectors on hand-built ``probabilistic`` results (details as results.json holds them)."""

from __future__ import annotations

import gc
import math
from typing import Any

import pydantic
import pytest

from reportgen.data import AttributionResult, Finding, Generation
from reportgen_plugins.pas import payload as payload_module
from reportgen_plugins.pas.detectors import (
    DETECTORS,
    KLOutlier,
    KLOutlierOptions,
    NoiseToken,
    NoiseTokenOptions,
    PreferredReplacement,
    PreferredReplacementOptions,
    ResponseBroadened,
    ResponseBroadenedOptions,
    UnstableToken,
    UnstableTokenOptions,
)
from reportgen_plugins.pas.findings import prompt_with_replacement, robust_z
from reportgen_plugins.pas.payload import PasPayload

TEMPLATE_HEAD = [("<|im_start|>", True), ("user", True), ("\n", True)]
USER = ["Pass", "age", ":", " When", " was", " the", " Cass", "ini", " launched", "?"]
TEMPLATE_TAIL = [("<|im_end|>", True), ("\n", True), ("<|im_start|>", True), ("assistant", True), ("\n", True)]
TOKENS = [t for t, _ in TEMPLATE_HEAD] + USER + [t for t, _ in TEMPLATE_TAIL]
SPECIAL = [s for _, s in TEMPLATE_HEAD] + [False] * len(USER) + [s for _, s in TEMPLATE_TAIL]
N = len(TOKENS)
U0 = len(TEMPLATE_HEAD)  # first user position
POS = {tok: U0 + i for i, tok in enumerate(USER)}  # user token → position
V = 49152


def make_generation(tokens: list[str] = TOKENS, special: list[bool] = SPECIAL) -> Generation:
    user_text = "".join(t for t, s in zip(tokens, special, strict=True) if not s)
    return Generation(
        model_id="m",
        prompt_id="p",
        input_ids=tuple(range(100, 100 + len(tokens))),
        input_tokens=tuple(tokens),
        input_special=tuple(special),
        output_ids=(1, 2, 3),
        output_tokens=(" 1997", "?", " Answer"),
        prompt_text=user_text,
        response_text=" 1997? Answer",
    )


def base_scores() -> dict[str, list[float | None]]:
    """Unremarkable user tokens: moderate AS, low entropies, small KL; template tokens unscored."""
    sc: dict[str, list[float | None]] = {
        k: [None] * N
        for k in (
            "attribution_score",
            "entropy_prompt",
            "entropy_prompt_response",
            "kl_posterior_prior",
            "kl_prior_posterior",
            "log_prior_original",
            "log_posterior_original",
        )
    }
    for i, _tok in enumerate(USER):
        k = U0 + i
        sc["attribution_score"][k] = 0.3 + 0.05 * i  # moderately positive, not near zero
        sc["entropy_prompt"][k] = 1.0 + 0.1 * i
        sc["entropy_prompt_response"][k] = 0.8 + 0.1 * i
        sc["kl_posterior_prior"][k] = 0.05 + 0.01 * i
        sc["kl_prior_posterior"][k] = 0.04 + 0.01 * i
        sc["log_prior_original"][k] = math.log(0.5)
        sc["log_posterior_original"][k] = math.log(0.5) + sc["attribution_score"][k]  # type: ignore[operator]
    return sc


def make_result(
    scores: dict[str, list[float | None]] | None = None,
    intervals: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> AttributionResult:
    d = {"mode": "exact", "positions": [U0 + i for i in range(len(USER))], "vocabulary_size": V, "candidates": {}, "interval_kind": {}}
    d.update(details or {})
    return AttributionResult(
        method="probabilistic",
        model_id="m",
        prompt_id="p",
        options={},
        input_tokens=list(TOKENS),
        output_tokens=[" 1997", "?", " Answer"],
        scores=scores if scores is not None else base_scores(),
        intervals=intervals or {},
        details=d,
    )


def set_score(sc: dict[str, list[float | None]], name: str, k: int, v: float | None) -> None:
    sc.setdefault(name, [None] * N)[k] = v


def check_finding(f: Finding, detector: str, k: int) -> None:
    assert f.detector == detector
    assert f.model_id == "m" and f.prompt_id == "p" and f.method == "probabilistic"
    assert f.positions == (k,) and f.evidence["position"] == k
    assert f.token == TOKENS[k] == GEN.input_tokens[k]  # the finding names the token at its position
    assert f.severity in ("high", "medium", "low", "info")
    assert f.title and f.message and f.suggestion
    assert "context" not in f.to_json()  # the report computes the context from the positions


GEN = make_generation()

# ------------------------------------------------------------------ helpers


def test_findings_point_at_token_positions() -> None:
    sc = base_scores()
    for tok in (" the", "Pass"):
        set_score(sc, "attribution_score", POS[tok], 0.01)
        set_score(sc, "entropy_prompt", POS[tok], 9.0)
    out = NoiseToken().detect(make_result(sc), GEN, NoiseTokenOptions())
    assert [(f.positions, f.token) for f in out] == [((POS["Pass"],), "Pass"), ((POS[" the"],), " the")]
    for f in out:
        check_finding(f, "noise_token", f.positions[0])


def test_prompt_with_replacement() -> None:
    assert prompt_with_replacement(GEN, TOKENS, POS["age"], "entence") == ("Passentence: When was the Cassini launched?")
    assert prompt_with_replacement(GEN, TOKENS, POS["?"], " in") == "Passage: When was the Cassini launched in"


def test_robust_z_matches_definition() -> None:
    xs = [1.0, 2.0, 3.0, 4.0, 100.0]
    # median 3, |dev| = [2,1,0,1,97] → MAD 1
    assert robust_z(xs) == pytest.approx([(x - 3.0) / 1.4826 for x in xs])
    assert robust_z([1.0, 1.0, 1.0, 5.0]) == [0.0, 0.0, 0.0, math.inf]


# ------------------------------------------------------------------ noise_token


def test_noise_token_positive_and_severity() -> None:
    sc = base_scores()
    k = POS[" the"]
    set_score(sc, "attribution_score", k, 0.01)
    set_score(sc, "entropy_prompt", k, 0.9 * math.log(V))
    k2 = POS[" was"]
    set_score(sc, "attribution_score", k2, -0.02)
    set_score(sc, "entropy_prompt", k2, 0.5 * math.log(V))
    out = NoiseToken().detect(make_result(sc), GEN, NoiseTokenOptions())
    assert [f.positions[0] for f in out] == [k2, k]
    by = {f.positions[0]: f for f in out}
    check_finding(by[k], "noise_token", k)
    assert by[k].severity == "medium"  # ≥ 75 % of ln V: near uniform
    assert by[k2].severity == "low"
    assert by[k].evidence["entropy_prompt"] == pytest.approx(0.9 * math.log(V))
    assert by[k].evidence["entropy_threshold"] == pytest.approx(0.4 * math.log(V))
    assert "uncertain" not in by[k].message


def test_noise_token_negative() -> None:
    sc = base_scores()
    k = POS[" the"]
    set_score(sc, "attribution_score", k, 0.01)  # near zero but low entropy: fine
    k2 = POS[" was"]
    set_score(sc, "entropy_prompt", k2, 8.0)  # high entropy but AS clearly positive: fine
    assert NoiseToken().detect(make_result(sc), GEN, NoiseTokenOptions()) == []
    # absolute threshold in nats overrides the relative one
    set_score(sc, "entropy_prompt", k, 2.5)
    out = NoiseToken().detect(make_result(sc), GEN, NoiseTokenOptions(entropy_min_nats=2.0))
    assert [f.positions[0] for f in out] == [k]


def test_noise_token_straddling_interval_is_reported_as_uncertain() -> None:
    sc = base_scores()
    k = POS[" the"]
    set_score(sc, "attribution_score", k, 0.15)  # point estimate outside near-zero (0.1) ...
    set_score(sc, "entropy_prompt", k, 9.0)
    ivs: dict[str, Any] = {"attribution_score": [None] * N}
    ivs["attribution_score"][k] = [0.05, 0.25]  # ... but the interval straddles +0.1
    out = NoiseToken().detect(make_result(sc, ivs, {"interval_kind": {str(k): "certified"}}), GEN, NoiseTokenOptions())
    assert len(out) == 1
    f = out[0]
    assert f.severity == "info"
    assert f.evidence["interval"] == [0.05, 0.25]
    assert f.evidence["interval_kind"] == "certified"
    assert "uncertain: the interval [0.05, 0.25] straddles the threshold" in f.message
    # undecided: the message never asserts what the interval leaves open
    assert f.title == "Possibly a noise token (undecided)"
    assert "whether the response depends on it is undecided" in f.message and "does not depend" not in f.message
    assert " ;" not in f.message and "nats) ;" not in f.message


def test_template_tokens_are_skipped_unless_scored() -> None:
    sc = base_scores()
    set_score(sc, "entropy_prompt", 0, 9.0)  # entropy but no AS at a template token
    assert NoiseToken().detect(make_result(sc), GEN, NoiseTokenOptions()) == []
    set_score(sc, "attribution_score", 0, 0.0)  # now the method scored it
    out = NoiseToken().detect(make_result(sc), GEN, NoiseTokenOptions())
    assert [f.positions[0] for f in out] == [0]
    assert out[0].token == "<|im_start|>" == TOKENS[0]


# ------------------------------------------------------------------ preferred_replacement


def passage_details(k: int) -> dict[str, Any]:
    return {
        "candidates": {
            str(k): {
                "prior": [{"token": "age", "id": 100 + k, "p": 0.6}, {"token": "ions", "id": 7, "p": 0.1}],
                "posterior": [
                    {"token": "entence", "id": 9, "p": 0.5},
                    {"token": "age", "id": 100 + k, "p": 0.2},
                    {"token": "ive", "id": 8, "p": 0.15},
                ],
            }
        }
    }


def test_preferred_replacement_names_candidates_and_suggests_edit() -> None:
    sc = base_scores()
    k = POS["age"]
    set_score(sc, "attribution_score", k, math.log(0.2 / 0.6))
    set_score(sc, "log_prior_original", k, math.log(0.6))
    set_score(sc, "log_posterior_original", k, math.log(0.2))
    out = PreferredReplacement().detect(make_result(sc, details=passage_details(k)), GEN, PreferredReplacementOptions())
    assert len(out) == 1
    f = out[0]
    check_finding(f, "preferred_replacement", k)
    assert [c["token"] for c in f.evidence["preferred"]] == ["entence"]  # "ive" (0.15) does not beat 0.2
    assert f.severity == "high"  # 0.5 ≥ 2 × 0.2
    assert f.evidence["suggested_prompt"] == "Passentence: When was the Cassini launched?"
    assert "Passentence: When was the Cassini launched?" in f.suggestion
    assert "entence" in f.message and f.evidence["posterior_original"] == pytest.approx(0.2)
    assert f.evidence["prior_original"] == pytest.approx(0.6)


def test_preferred_replacement_severity_levels() -> None:
    sc = base_scores()
    k = POS["age"]
    set_score(sc, "attribution_score", k, -1.0)
    set_score(sc, "log_posterior_original", k, math.log(0.4))
    det = passage_details(k)  # best candidate 0.5 < 2 × 0.4 → medium
    (f,) = PreferredReplacement().detect(make_result(sc, details=det), GEN, PreferredReplacementOptions())
    assert f.severity == "medium"
    (f,) = PreferredReplacement().detect(make_result(sc), GEN, PreferredReplacementOptions())
    assert f.severity == "low" and f.evidence["preferred"] == []  # no candidates recorded
    assert "suggested_prompt" not in f.evidence


def test_preferred_replacement_negative() -> None:
    sc = base_scores()
    k = POS["age"]
    set_score(sc, "attribution_score", k, -0.3)  # negative but above −0.5
    assert PreferredReplacement().detect(make_result(sc, details=passage_details(k)), GEN, PreferredReplacementOptions()) == []


def test_preferred_replacement_straddling() -> None:
    sc = base_scores()
    k = POS["age"]
    set_score(sc, "attribution_score", k, -0.45)  # not below −0.5 at the point estimate
    set_score(sc, "log_posterior_original", k, math.log(0.2))
    ivs: dict[str, Any] = {"attribution_score": [None] * N}
    ivs["attribution_score"][k] = [-0.7, -0.4]
    (f,) = PreferredReplacement().detect(make_result(sc, ivs, passage_details(k)), GEN, PreferredReplacementOptions())
    assert f.severity == "info"
    assert f.evidence["interval"] == [-0.7, -0.4]
    assert "uncertain: the interval [-0.7, -0.4] straddles the threshold" in f.message
    assert f.title == "Possibly prefers another token (undecided)"
    assert "is undecided" in f.message and "so the response is less likely" not in f.message
    # an interval wholly below the threshold is certain
    ivs["attribution_score"][k] = [-0.9, -0.6]
    set_score(sc, "attribution_score", k, -0.7)
    (f,) = PreferredReplacement().detect(make_result(sc, ivs, passage_details(k)), GEN, PreferredReplacementOptions())
    assert f.severity == "high" and "uncertain" not in f.message
    assert f.title == "Model prefers another token" and "undecided" not in f.message


# ------------------------------------------------------------------ response_broadened


def test_response_broadened_positive_negative_severity() -> None:
    sc = base_scores()
    k = POS[" Cass"]
    set_score(sc, "entropy_prompt", k, 1.0)
    set_score(sc, "entropy_prompt_response", k, 3.0)
    k2 = POS[" was"]
    set_score(sc, "entropy_prompt", k2, 1.0)
    set_score(sc, "entropy_prompt_response", k2, 1.7)
    det = {
        "candidates": {
            str(k): {"prior": [], "posterior": [{"token": " customs", "id": 5, "p": 0.3}, {"token": " security", "id": 6, "p": 0.2}]}
        }
    }
    out = ResponseBroadened().detect(make_result(sc, details=det), GEN, ResponseBroadenedOptions())
    by = {f.positions[0]: f for f in out}
    assert set(by) == {k, k2}
    check_finding(by[k], "response_broadened", k)
    assert by[k].severity == "medium" and by[k2].severity == "low"
    assert by[k].evidence["difference"] == pytest.approx(2.0)
    assert "customs" in by[k].message
    # negative: default scores have H_pr < H_p everywhere
    assert ResponseBroadened().detect(make_result(), GEN, ResponseBroadenedOptions()) == []
    # H_pr slightly above H_p but within the margin
    set_score(sc, "entropy_prompt_response", k2, 1.3)
    out = ResponseBroadened().detect(make_result(sc), GEN, ResponseBroadenedOptions())
    assert [f.positions[0] for f in out] == [k]


def test_response_broadened_straddling_entropy_intervals() -> None:
    sc = base_scores()
    k = POS[" Cass"]
    set_score(sc, "entropy_prompt", k, 1.0)
    set_score(sc, "entropy_prompt_response", k, 1.4)  # difference 0.4 < margin 0.5
    ivs: dict[str, Any] = {"entropy_prompt": [None] * N, "entropy_prompt_response": [None] * N}
    ivs["entropy_prompt"][k] = [0.9, 1.1]
    ivs["entropy_prompt_response"][k] = [1.3, 1.7]  # difference ∈ [0.2, 0.8]
    (f,) = ResponseBroadened().detect(make_result(sc, ivs), GEN, ResponseBroadenedOptions())
    assert f.severity == "info"
    assert f.evidence["interval"] == pytest.approx([0.2, 0.8])
    assert "uncertain: the interval [0.2, 0.8] straddles the threshold" in f.message


# ------------------------------------------------------------------ kl_outlier


def test_kl_outlier_positive_and_severity() -> None:
    sc = base_scores()
    k = POS["?"]
    set_score(sc, "attribution_score", k, 0.02)
    set_score(sc, "kl_posterior_prior", k, 2.0)
    det = {
        "candidates": {str(k): {"prior": [], "posterior": [{"token": " in", "id": 3, "p": 0.4}, {"token": "?", "id": 100 + k, "p": 0.3}]}}
    }
    (f,) = KLOutlier().detect(make_result(sc, details=det), GEN, KLOutlierOptions())
    check_finding(f, "kl_outlier", k)
    kls = [v for v in sc["kl_posterior_prior"] if v is not None]
    z = robust_z(kls)[kls.index(2.0)]
    assert f.evidence["robust_z"] == pytest.approx(z)
    assert f.severity == ("high" if z >= 7.0 else "medium")
    assert f.severity == "high"
    assert "“ in”" in f.message
    # a milder outlier is medium
    set_score(sc, "kl_posterior_prior", k, 0.3)
    kls = [v for v in sc["kl_posterior_prior"] if v is not None]
    z = robust_z(kls)[kls.index(0.3)]
    assert 3.5 <= z < 7.0
    (f,) = KLOutlier().detect(make_result(sc), GEN, KLOutlierOptions(kl_min=0.2))
    assert f.severity == "medium"


def test_kl_outlier_negative_cases() -> None:
    sc = base_scores()
    k = POS["?"]
    set_score(sc, "kl_posterior_prior", k, 2.0)  # outlier but AS (0.75) is not near zero
    assert KLOutlier().detect(make_result(sc), GEN, KLOutlierOptions()) == []
    set_score(sc, "attribution_score", k, 0.0)
    set_score(sc, "kl_posterior_prior", k, 0.3)  # outlier by z but under the absolute floor
    assert KLOutlier().detect(make_result(sc), GEN, KLOutlierOptions()) == []
    # the other direction is used when asked
    set_score(sc, "kl_prior_posterior", k, 3.0)
    out = KLOutlier().detect(make_result(sc), GEN, KLOutlierOptions(direction="prior_posterior"))
    assert [f.positions[0] for f in out] == [k] and "kl_prior_posterior" in out[0].evidence


def test_kl_outlier_straddling() -> None:
    sc = base_scores()
    k = POS["?"]
    set_score(sc, "attribution_score", k, -0.12)
    set_score(sc, "kl_posterior_prior", k, 2.0)
    ivs: dict[str, Any] = {"attribution_score": [None] * N}
    ivs["attribution_score"][k] = [-0.2, -0.05]
    (f,) = KLOutlier().detect(make_result(sc, ivs), GEN, KLOutlierOptions())
    assert f.severity == "info" and f.evidence["threshold"] == -0.1
    assert "uncertain: the interval [-0.2, -0.05] straddles the threshold" in f.message
    assert f.title == "Possibly a KL outlier (undecided)"
    assert "whether its attribution is near zero is undecided" in f.message and "although" not in f.message
    assert " ;" not in f.message


# ------------------------------------------------------------------ unstable_token


def test_unstable_token_only_when_computed() -> None:
    assert UnstableToken().detect(make_result(), GEN, UnstableTokenOptions()) == []


def test_unstable_token_positive_negative_severity() -> None:
    sc = base_scores()
    ka, kb, kc = POS[" When"], POS[" was"], POS[" the"]
    for k in (ka, kb, kc):
        set_score(sc, "replacement_entropy", k, 0.2)
        set_score(sc, "original_response_pct", k, 90.0)
    set_score(sc, "replacement_entropy", ka, 1.561)  # influential token (AS 0.45): expected → low
    set_score(sc, "attribution_score", kb, 0.0)
    set_score(sc, "original_response_pct", kb, 0.0)  # near-zero AS, no candidate reproduces → high
    det = {
        "replacement": {
            str(kb): {
                "count": 3,
                "original_token_count": 1,
                "original_response_count": 0,
                "distinct_responses": 2,
                "responses": [{"candidate": " is", "response": " 2004."}, {"candidate": " was", "response": " 1997? Answer"}],
            }
        }
    }
    out = UnstableToken().detect(make_result(sc, details=det), GEN, UnstableTokenOptions())
    by = {f.positions[0]: f for f in out}
    assert set(by) == {ka, kb}  # kc is stable
    check_finding(by[kb], "unstable_token", kb)
    assert by[ka].severity == "low" and by[kb].severity == "high"
    assert by[kb].evidence["distinct_responses"] == 2
    assert by[kb].evidence["examples"] == [" 2004."]  # the original response is not an example
    set_score(sc, "original_response_pct", kb, 40.0)
    by = {f.positions[0]: f for f in UnstableToken().detect(make_result(sc), GEN, UnstableTokenOptions())}
    assert by[kb].severity == "medium"


def test_detectors_declare_method_and_documented_options() -> None:
    for cls in (NoiseToken, PreferredReplacement, ResponseBroadened, KLOutlier, UnstableToken):
        assert cls.methods == ("probabilistic",)
        assert cls.name and cls.description and cls.__doc__ and "Severity" in cls.__doc__
        for name, field in cls.options_model.model_fields.items():
            assert field.description, f"{cls.name}.{name} undocumented"
        with pytest.raises(pydantic.ValidationError):
            cls.options_model(nonsense=1)


def test_tokens_stay_plain_data() -> None:
    tokens = list(TOKENS)
    k = POS[" the"]
    tokens[k] = "<img src=x onerror=alert(1)>"
    gen = make_generation(tokens)
    sc = base_scores()
    set_score(sc, "attribution_score", k, 0.0)
    set_score(sc, "entropy_prompt", k, 10.0)
    r = make_result(sc)
    r.input_tokens = tokens
    (f,) = NoiseToken().detect(r, gen, NoiseTokenOptions())
    assert f.token == "<img src=x onerror=alert(1)>"  # unescaped data; the renderer escapes
    assert f.positions == (k,) and gen.input_tokens[k] == f.token


# ------------------------------------------------------------------ from a toy Bayes table (oracle)


def bayes_position(prior: list[float], lik: list[float], orig: int) -> dict[str, float]:
    """Closed form at one position: π = prior, ρ ∝ π·P(y|x^(v)); AS = log ρ(x_k) − log π(x_k)."""
    z = sum(p * q for p, q in zip(prior, lik, strict=True))
    post = [p * q / z for p, q in zip(prior, lik, strict=True)]

    def ent(d: list[float]) -> float:
        return -sum(p * math.log(p) for p in d if p > 0)

    def kl(a: list[float], b: list[float]) -> float:
        return sum(p * math.log(p / q) for p, q in zip(a, b, strict=True) if p > 0)

    return {
        "attribution_score": math.log(post[orig]) - math.log(prior[orig]),
        "entropy_prompt": ent(prior),
        "entropy_prompt_response": ent(post),
        "kl_posterior_prior": kl(post, prior),
        "kl_prior_posterior": kl(prior, post),
        "log_prior_original": math.log(prior[orig]),
        "log_posterior_original": math.log(post[orig]),
        "post": post,  # type: ignore[dict-item]
    }


ALL = (NoiseToken, PreferredReplacement, ResponseBroadened, KLOutlier, UnstableToken)


def test_ignored_token_gives_no_findings() -> None:
    """Known-answer test 3: P(y|x^(v)) independent of v → AS = 0, ρ = π, KL = 0: nothing to flag."""
    sc = base_scores()
    k = POS[" the"]
    stats = bayes_position([0.4, 0.3, 0.2, 0.1], [0.05] * 4, orig=0)
    assert stats["attribution_score"] == pytest.approx(0.0, abs=1e-12)
    assert stats["kl_posterior_prior"] == pytest.approx(0.0, abs=1e-12)
    for name, v in stats.items():
        if name != "post":
            set_score(sc, name, k, v)
    r = make_result(sc)
    for cls in ALL:
        assert [f for f in cls().detect(r, GEN, cls.options_model()) if f.positions == (k,)] == []


def test_anomaly3_from_bayes_table() -> None:
    """The response is far likelier with another token at k: AS < 0 and that token is named."""
    sc = base_scores()
    k = POS["age"]
    toks = ["age", "entence", "ive", "ing"]
    prior, lik = [0.6, 0.1, 0.2, 0.1], [0.01, 0.2, 0.01, 0.005]
    stats = bayes_position(prior, lik, orig=0)
    for name, v in stats.items():
        if name != "post":
            set_score(sc, name, k, v)
    post: list[float] = stats["post"]  # type: ignore[assignment]
    det = {
        "candidates": {
            str(k): {
                "prior": [{"token": t, "id": 100 + k if i == 0 else i, "p": p} for i, (t, p) in enumerate(zip(toks, prior, strict=True))],
                "posterior": [
                    {"token": t, "id": 100 + k if i == 0 else i, "p": p} for i, (t, p) in enumerate(zip(toks, post, strict=True))
                ],
            }
        }
    }
    (f,) = PreferredReplacement().detect(make_result(sc, details=det), GEN, PreferredReplacementOptions())
    assert stats["attribution_score"] < -0.5
    assert [c["token"] for c in f.evidence["preferred"]] == ["entence"]
    assert f.evidence["posterior_original"] == pytest.approx(post[0])
    assert f.evidence["preferred"][0]["p"] == pytest.approx(post[1])
    assert f.severity == "high"  # post[1] ≈ 0.69 ≥ 2 × post[0] ≈ 0.21


def test_max_findings_caps_and_summarises_the_rest() -> None:
    sc = base_scores()
    ks = [POS[t] for t in (" When", " was", " the", " Cass", "ini")]
    for i, k in enumerate(ks):
        set_score(sc, "attribution_score", k, -1.0 - i)  # more negative → stronger
    opts = PreferredReplacementOptions(max_findings=2)
    out = PreferredReplacement().detect(make_result(sc), GEN, opts)
    assert len(out) == 3
    kept, summary = out[:2], out[2]
    assert [f.positions[0] for f in kept] == [ks[3], ks[4]]  # the two most negative, in position order
    assert summary.severity == "info" and summary.detector == "preferred_replacement"
    assert summary.positions == tuple(ks[:3]) and summary.evidence["omitted"] == 3
    assert "3 more tokens" in summary.message and "max_findings" in summary.suggestion
    assert summary.evidence["positions"] == list(ks[:3]) and summary.token == ""
    assert summary.evidence["severities"] == ["low"] * 3  # no candidates recorded: low
    summary.to_json()
    # severity beats strength: an uncertain (info) finding is cut before a certain one
    ivs: dict[str, Any] = {"attribution_score": [None] * N}
    ivs["attribution_score"][ks[4]] = [-9.0, 0.0]
    out = PreferredReplacement().detect(make_result(sc, ivs), GEN, opts)
    assert [f.positions[0] for f in out[:2]] == [ks[2], ks[3]]
    # None lists everything; the default (10) is not reached here
    assert len(PreferredReplacement().detect(make_result(sc), GEN, PreferredReplacementOptions(max_findings=None))) == 5
    assert len(PreferredReplacement().detect(make_result(sc), GEN, PreferredReplacementOptions())) == 5


# ------------------------------------------------------------------ payload parsed once per result


def passage_result() -> AttributionResult:
    sc = base_scores()
    k = POS["age"]
    set_score(sc, "attribution_score", k, math.log(0.2 / 0.6))
    set_score(sc, "log_prior_original", k, math.log(0.6))
    set_score(sc, "log_posterior_original", k, math.log(0.2))
    return make_result(sc, details=passage_details(k))


def detect_all(result: AttributionResult) -> list[dict[str, Any]]:
    return [f.to_json() for det in DETECTORS for f in det().detect(result, GEN, det.options_model())]


def test_payload_is_parsed_once_per_result(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = detect_all(passage_result())  # parsed before the counter is installed
    parse = PasPayload.from_json
    calls: list[int] = []

    def counting(cls: type[PasPayload], d: Any) -> PasPayload:
        calls.append(id(d))
        return parse(d)

    monkeypatch.setattr(PasPayload, "from_json", classmethod(counting))
    result = passage_result()
    assert detect_all(result) == expected  # the same findings as without the memo ...
    assert calls == [id(result.details)]  # ... from one parse for all five detectors
    assert detect_all(result) == expected and len(calls) == 1  # a second pass parses nothing
    other = passage_result()  # equal contents, another result: parsed on its own
    assert detect_all(other) == expected and len(calls) == 2
    # a result whose details were replaced is parsed again, and its findings follow the new details
    result.details = {**result.details, "candidates": {}}
    (f,) = PreferredReplacement().detect(result, GEN, PreferredReplacementOptions())
    assert len(calls) == 3 and f.evidence["preferred"] == [] and f.severity == "low"


def test_parsed_payloads_go_with_their_results() -> None:
    result = passage_result()
    PasPayload.of(result)
    assert id(result) in payload_module._PARSED
    key = id(result)
    del result
    gc.collect()
    assert key not in payload_module._PARSED


def test_an_undecided_preferred_replacement_with_a_positive_estimate_claims_no_preference() -> None:
    """A point AS far above the threshold whose wide interval still reaches below it (fast mode
    on a CPU): reported as undecided, never as 'the model prefers …'."""
    sc = base_scores()
    k = POS["age"]
    set_score(sc, "attribution_score", k, 4.7)
    set_score(sc, "log_posterior_original", k, math.log(0.2))
    ivs: dict[str, Any] = {"attribution_score": [None] * N}
    ivs["attribution_score"][k] = [-6.0, 5.0]
    (f,) = PreferredReplacement().detect(make_result(sc, ivs, passage_details(k)), GEN, PreferredReplacementOptions())
    assert f.severity == "info" and f.title == "Possibly prefers another token (undecided)"
    assert f.message.startswith("Whether, given its own response, the model prefers another token over")
    assert "AS = 4.7 nats, an estimate" in f.message and "less likely" not in f.message
