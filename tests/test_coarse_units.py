"""Coarse units (word / sentence / spans) for PAS and DBSA.

Oracles: PAS over a 1-token unit equals token mode; PAS over a 2-token unit (exact enumeration of
V² fillers) equals the brute-force enumeration of every sequence of a tiny Llama (V = 6) with both
tokens replaced; the sampled estimate approaches it; unit segmentation by hand.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pydantic
import pytest

from reportgen.cache import Cache
from reportgen.data import TokenText
from reportgen.generate import generate_via_sampler
from reportgen.plugin_api import AttributionContext, LoadedModel
from reportgen.prompt_units import prompt_units
from reportgen.spec import GenerationSpec, PromptSpec
from reportgen_plugins.dbsa.method import DBSA
from reportgen_plugins.dbsa.options import DBSAOptions
from reportgen_plugins.dbsa.payload import DbsaPayload
from reportgen_plugins.pas.engine import PrefixScorer
from reportgen_plugins.pas.estimators import logsumexp, position_stats
from reportgen_plugins.pas.method import UNIT_CAPTION, PASOptions
from reportgen_plugins.pas.units import sampled_unit
from tests.test_dbsa import NMAP, FakeSampler, hash_embed, open_ctx, tiny_open  # noqa: F401 - tiny_open is a fixture
from tests.test_probabilistic import _joint_log_probs, make_generation, run, tiny_llama

TOKENS = ["<s>", "Hello", " world", ".", " How", " are", " you", "?", "\n", "Fine", "</s>"]
SPECIAL = [True] + [False] * 9 + [True]


def test_word_sentence_and_token_units() -> None:
    words = prompt_units(TOKENS, SPECIAL, "word")
    assert [u.positions for u in words] == [(1,), (2,), (3,), (4,), (5,), (6,), (7,), (8, 9)]  # "\n" joins "Fine"
    assert [u.text for u in words][:3] == ["Hello", " world", "."]
    sentences = prompt_units(TOKENS, SPECIAL, "sentence")
    assert [u.positions for u in sentences] == [(1, 2, 3), (4, 5, 6, 7), (8, 9)]
    assert sentences[1].text == " How are you?"
    assert [u.positions for u in prompt_units(TOKENS, SPECIAL, "token")] == [(i,) for i in range(1, 10)]


def test_tokens_across_words_and_byte_marks() -> None:
    toks = ["<s>", "un", "believ", "able", " caf", TokenText("⟨C3⟩", [(0, 4)]), "é", "!"]
    special = [True] + [False] * 7
    words = prompt_units(toks, special, "word")
    assert [u.positions for u in words] == [(1, 2, 3), (4, 5, 6), (7,)]
    assert words[1].text == " café"


def test_span_units() -> None:
    text = "".join(TOKENS)
    units = prompt_units(TOKENS, SPECIAL, "spans", ["How are", [text.index("Fine"), len(text) - 4]])
    assert [u.positions for u in units] == [(4, 5), (9,)]
    with pytest.raises(ValueError, match="does not occur"):
        prompt_units(TOKENS, SPECIAL, "spans", ["absent"])
    with pytest.raises(ValueError, match="overlap"):
        prompt_units(TOKENS, SPECIAL, "spans", ["How are", "are you"])


def test_options_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match="non-empty spans"):
        PASOptions(units="spans")
    with pytest.raises(pydantic.ValidationError, match="only read with units: spans"):
        PASOptions(units="word", spans=["x"])
    with pytest.raises(pydantic.ValidationError, match="positions"):
        PASOptions(units="sentence", positions=[1, 2])
    with pytest.raises(pydantic.ValidationError, match="units: token"):
        PASOptions(units="word", replacement_entropy=True)
    with pytest.raises(pydantic.ValidationError):
        PASOptions(units="paragraph")


# ---------------------------------------------------------------- PAS oracles on a V = 6 Llama
V = 6
X, Y = [0, 4, 2, 5, 3], [3, 1]  # input tokens render as "0","4","2","5","3": character i is token i


@pytest.fixture(scope="module")
def llama6():
    return tiny_llama(V, seed=3, init=0.6)


def test_one_token_unit_equals_token_mode(llama6) -> None:
    tok = run(llama6, make_generation(X, Y), mode="exact")
    unit = run(llama6, make_generation(X, Y), mode="exact", units="spans", spans=[[2, 3]])
    assert unit.scores["attribution_score"][2] == pytest.approx(tok.scores["attribution_score"][2], abs=1e-12)
    assert np.allclose(unit.matrix[2], tok.matrix[2])
    assert unit.scores["attribution_score"][1] is None  # outside every span
    (row,) = unit.details["units"]["rows"]
    assert row["positions"] == [2] and row["estimate"] == "exact" and row["fillers"] == V


def brute_force_unit_as(model, x: list[int], y: list[int], unit: list[int]) -> float:
    """AS_U = log P(y|x) − log Σ_w π_U(w) P(y|x^(w)) by enumerating every sequence."""
    n = len(x)
    seqs, logp = _joint_log_probs(model, x[0], V, n + len(y))
    others = [i for i in range(1, n) if i not in unit]
    m_prompt = np.all(seqs[:, others] == np.array(x)[others], axis=1)
    m_y = np.all(seqs[:, n:] == np.array(y), axis=1)
    d = logsumexp(logp[m_prompt & m_y]) - logsumexp(logp[m_prompt])
    m_x = np.all(seqs[:, 1:n] == np.array(x)[1:], axis=1)
    return float(logsumexp(logp[m_x & m_y]) - logsumexp(logp[m_x]) - d)


def test_two_token_unit_equals_brute_force(llama6) -> None:
    r = run(llama6, make_generation(X, Y), mode="exact", units="spans", spans=[[2, 4]])
    want = brute_force_unit_as(llama6, X, Y, [2, 3])
    assert r.scores["attribution_score"][2] == pytest.approx(want, abs=1e-6)
    assert r.scores["attribution_score"][3] == r.scores["attribution_score"][2]  # every token shows the unit's score
    assert np.nansum(r.matrix[2]) == pytest.approx(r.scores["attribution_score"][2], abs=1e-9)  # the row telescopes to AS_U
    (row,) = r.details["units"]["rows"]
    assert row["fillers"] == V * V and row["text"] == "25"
    assert UNIT_CAPTION in r.matrix_label and "per span" in r.matrix_label
    assert r.details["candidates"]["2"]["prior"][0]["token"]  # fillers listed as text
    r.to_json()


def test_sampled_unit_sums_are_unbiased_and_the_estimate_consistent(llama6) -> None:
    sc = PrefixScorer(llama6, X, Y)
    every = sc.score_fillers(1, np.array(list(itertools.product(range(V), repeat=3))))
    exact_den, exact_num = np.exp(logsumexp(every[:, 1])), np.exp(logsumexp(every[:, -1]))
    den, num = [], []
    for seed in range(24):
        sup = sampled_unit(sc, 1, 3, 200, np.random.default_rng(seed), None)
        st = position_stats(sup.l_cum, 0, sup.logw)
        den.append(np.exp(st.d_den))
        num.append(np.exp(st.d_num))
    for got, want in ((den, exact_den), (num, exact_num)):  # the weighted sums: unbiased, within 4 standard errors
        assert abs(np.mean(got) - want) <= 4 * np.std(got, ddof=1) / np.sqrt(len(got))
    want_as = brute_force_unit_as(llama6, X, Y, [1, 2, 3])
    r = run(llama6, make_generation(X, Y), mode="fast", units="spans", spans=[[1, 4]], unit_samples=1000)
    (row,) = r.details["units"]["rows"]
    assert row["estimate"] == "sampled" and row["draws"] >= 1000
    assert r.scores["attribution_score"][1] == pytest.approx(want_as, abs=0.15)  # spread of 4 seeds at 1000 draws: ±0.04
    assert r.intervals["attribution_score"][1] is None  # no interval is claimed for a sampled unit


# ---------------------------------------------------------------- DBSA
def test_dbsa_options_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match="unit: spans needs"):
        DBSAOptions(unit="spans")
    with pytest.raises(pydantic.ValidationError, match="only read with unit: spans"):
        DBSAOptions(unit="word", spans=["x"])


def test_dbsa_sentence_units_on_a_black_box_model(tmp_path) -> None:
    s = FakeSampler()
    loaded = LoadedModel(id="api", source="openai:fake", sampler=s)
    prompt = PromptSpec(id="q", text="Be brief. What is the capital of France?")
    gen = generate_via_sampler(loaded, prompt, GenerationSpec(max_new_tokens=8), 0)
    opts = DBSAOptions(unit="sentence", neighbour_map=NMAP, neighbour_source="map", samples=10, neighbours=2)
    res = DBSA(embed=hash_embed).attribute(AttributionContext(model=loaded, generation=gen, options=opts, seed=1, cache=Cache(tmp_path)))
    payload = DbsaPayload.of(res)
    assert payload.unit == "sentence"
    first, second = payload.units
    assert first.text == "Be brief." and first.skipped  # no word of it is in the map
    assert second.text == "What is the capital of France?" and second.kind == "sentence"
    # the k-th neighbour replaces every mapped word by its k-th neighbour; punctuation stays
    assert [n.text for n in second.neighbours] == ["Which was a city in Italy?", "Who be this seat for Spain?"]
    assert second.significant
    for pos in second.positions:  # every token of the unit shows the unit's effect
        assert res.scores["effect_size"][pos] == pytest.approx(second.effect)
    assert {gen.input_tokens[p].strip() for p in second.positions} == {"What", "is", "the", "capital", "of", "France", "?"}


def test_dbsa_span_units_on_an_open_model(tiny_open: LoadedModel, tmp_path: Any) -> None:  # noqa: F811
    ctx = open_ctx(tiny_open, tmp_path, unit="spans", spans=["capital of France"], neighbour_map=NMAP, neighbour_source="map")
    res = DBSA(embed=hash_embed).attribute(ctx)
    (unit,) = DbsaPayload.of(res).units
    g = ctx.generation
    assert unit.kind == "span" and unit.text == "capital of France"
    assert unit.positions == tuple(g.input_tokens.index(t) for t in ("capital", "of", "France"))
    assert [n.text for n in unit.neighbours] == ["city in Italy", "seat for Spain"]
    assert all(res.scores["effect_size"][i] is None for i in range(g.n) if i not in unit.positions)
