"""Word and sentence granularity: units, shares and aggregated matrices against hand-computed cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reportgen.data import TokenText
from reportgen.granularity import (
    aggregate_matrix,
    aggregate_vector,
    char_spans,
    plain_text,
    sentence_spans,
    units,
    word_spans,
)


def words(text: str) -> list[str]:
    return [text[a:b] for a, b in word_spans(text)]


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def test_word_segmentation_is_unicode_aware() -> None:
    assert words("Hello, world!") == ["Hello", ",", "world", "!"]
    assert words("don't stop") == ["don", "'", "t", "stop"]
    assert words("café naïve Ünïcödé") == ["café", "naïve", "Ünïcödé"]
    assert words("cafe\u0301 x") == ["cafe\u0301", "x"]  # a combining accent stays in its word
    assert words("Привет мир") == ["Привет", "мир"]
    assert words("東京は晴れ") == ["東", "京", "は", "晴", "れ"]  # no spaces: one unit per character
    assert words("AI研究") == ["AI", "研", "究"]
    assert words("ok👍🏽 👨\u200d👩\u200d👧!") == ["ok", "👍🏽", "👨\u200d👩\u200d👧", "!"]  # one emoji, one unit
    assert words("  \n ") == []


def test_sentence_segmentation() -> None:
    assert sentences('Hi there. How are you?" Fine!') == ["Hi there.", 'How are you?"', "Fine!"]
    assert sentences("v1.2 is out... Yes") == ["v1.2 is out...", "Yes"]  # no split inside 1.2
    assert sentences("今日は晴れ。明日は雨") == ["今日は晴れ。", "明日は雨"]
    assert sentences("line one\nline two") == ["line one", "line two"]
    assert sentences("no end") == ["no end"]


def test_char_spans_leave_byte_marks_out() -> None:
    toks = ["I ", TokenText("⟨F0 9F⟩", [(0, 7)]), "👍", "!"]
    assert plain_text(toks) == "I 👍!"
    assert char_spans(toks) == [(0, 2), (2, 2), (2, 3), (3, 4)]


def test_token_granularity_is_the_identity() -> None:
    toks = ["<s>", "Hel", "lo", " world"]
    special = [True, False, False, False]
    u = units(toks, special, "token")
    assert np.array_equal(u.weights, np.eye(4))
    a = np.arange(12, dtype=float).reshape(4, 3)
    cols = units(["a", "b", "c"], [False] * 3, "token")
    assert np.array_equal(aggregate_matrix(a, u, cols), a)


def test_token_spanning_a_word_boundary_is_split_by_characters() -> None:
    # "Hello world": tokens "Hel" | "lo wor" | "ld"; "lo wor" covers 2 letters of Hello, 3 of world
    toks = ["Hel", "lo wor", "ld"]
    u = units(toks, [False] * 3, "word")
    assert [x.core for x in u.units] == ["Hello", "world"]
    assert [x.text for x in u.units] == ["Hello", " world"]  # white space goes with the next word
    assert np.allclose(u.weights, [[1, 0], [0.4, 0.6], [0, 1]])
    a = np.array([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]])  # input tokens × 2 output tokens
    out = units(["x", "y"], [False, False], "token")
    got = aggregate_matrix(a, u, out)
    # Hello: 1 + 0.4·10 = 5, 2 + 0.4·20 = 10; world: 0.6·10 + 100 = 106, 0.6·20 + 200 = 212
    assert np.allclose(got, [[5.0, 10.0], [106.0, 212.0]])
    assert np.isclose(got.sum(), a.sum())


def test_both_sides_aggregate_and_totals_are_preserved() -> None:
    rng = np.random.default_rng(0)
    ins = ["<|im_start|>", "user", "\n", "The", " cat", "'s", " mat", ".", " Dog", "s run", "!", "<|im_end|>"]
    special = [True, True, True] + [False] * 8 + [True]
    outs = ["Yes", ",", " it", " is", ". ", "No", "pe."]
    a = rng.normal(size=(len(ins), len(outs)))
    for g in ("word", "sentence"):
        ru, cu = units(ins, special, g), units(outs, [False] * len(outs), g)  # type: ignore[arg-type]
        assert np.allclose(ru.weights.sum(axis=1), 1.0) and np.allclose(cu.weights.sum(axis=1), 1.0)
        got = aggregate_matrix(a, ru, cu)
        assert np.isclose(got.sum(), a.sum())
        assert np.allclose(got.sum(axis=1), aggregate_vector(list(a.sum(axis=1)), ru))  # I(x) per unit
        assert np.allclose(got.sum(axis=0), aggregate_vector(list(a.sum(axis=0)), cu))  # I(y) per unit
    su = units(ins, special, "sentence")
    assert [x.core for x in su.units] == ["<|im_start|>", "user", "\n", "The cat's mat.", "Dogs run!", "<|im_end|>"]
    assert [x.special for x in su.units] == [True, True, True, False, False, True]
    # " Dog" | "s run" | "!": "s run" covers s (Dogs) and run → all in sentence 2
    assert su.weights[ins.index("s run")].tolist() == [0, 0, 0, 0, 1, 0]
    cs = units(outs, [False] * len(outs), "sentence")
    assert [x.core for x in cs.units] == ["Yes, it is.", "Nope."]
    # ". " covers "." of sentence 1 and a space before sentence 2: the visible character decides
    assert cs.weights[4].tolist() == [1, 0]


def test_template_tokens_are_units_of_their_own_and_runs_do_not_merge() -> None:
    toks = ["ab", "<sep>", "cd"]
    u = units(toks, [False, True, False], "word")
    assert [(x.core, x.special) for x in u.units] == [("ab", False), ("<sep>", True), ("cd", False)]
    assert np.array_equal(u.weights, np.eye(3))


def test_byte_split_emoji_goes_to_the_word_of_its_character() -> None:
    # "I 👍!" where 👍 is split over two tokens: the first shows ⟨F0 9F⟩, the second completes it
    toks = ["I", " ", TokenText("⟨F0 9F⟩", [(0, 7)]), "👍", "!"]
    u = units(toks, [False] * 5, "word")
    assert [x.core for x in u.units] == ["I", "👍", "!"]
    assert np.allclose(u.weights, [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    # a token with text and a trailing mark: "ok⟨E6⟩" then "東" → 2 chars of ok, 1 byte-char of 東
    toks2 = [TokenText("ok⟨E6⟩", [(2, 6)]), "東"]
    u2 = units(toks2, [False, False], "word")
    assert [x.core for x in u2.units] == ["ok", "東"]
    assert np.allclose(u2.weights, [[2 / 3, 1 / 3], [0, 1]])


def test_cjk_tokens_spanning_characters() -> None:
    toks = ["東京", "は晴", "れ"]
    u = units(toks, [False] * 3, "word")
    assert [x.core for x in u.units] == ["東", "京", "は", "晴", "れ"]
    assert np.allclose(u.weights, [[0.5, 0.5, 0, 0, 0], [0, 0, 0.5, 0.5, 0], [0, 0, 0, 0, 1]])
    a = np.array([[4.0], [2.0], [8.0]])
    got = aggregate_matrix(a, u, units(["x"], [False], "token"))
    assert np.allclose(got[:, 0], [2, 2, 1, 1, 8])


def test_whitespace_only_tokens_and_empty_tokens() -> None:
    toks = ["Hi", "\n\n", "", "there", "  "]
    u = units(toks, [False] * 5, "word")
    assert [x.core for x in u.units] == ["Hi", "there"]
    assert [x.text for x in u.units] == ["Hi", "\n\nthere  "]
    assert np.allclose(u.weights, [[1, 0], [0, 1], [0, 1], [0, 1], [0, 1]])
    blank = units(["  ", "\n"], [False, False], "word")  # nothing but white space: one unit
    assert len(blank.units) == 1 and np.allclose(blank.weights, [[1], [1]])


def test_nan_cells_do_not_count() -> None:
    toks = ["Hel", "lo"]
    u = units(toks, [False, False], "word")
    out = units(["a", "b"], [False, False], "token")
    a = np.array([[np.nan, np.nan], [3.0, np.nan]])
    got = aggregate_matrix(a, u, out)
    assert got[0, 0] == 3.0 and np.isnan(got[0, 1])
    assert aggregate_vector([None, 2.0], u) == [2.0]
    assert aggregate_vector([None, None], u) == [None]


def test_shape_mismatch_and_unknown_granularity() -> None:
    u = units(["a"], [False], "word")
    with pytest.raises(ValueError, match="does not match"):
        aggregate_matrix(np.zeros((2, 1)), u, u)
    with pytest.raises(ValueError, match="unknown granularity"):
        units(["a"], [False], "phrase")  # type: ignore[arg-type]


def test_method_views_per_word_when_the_spec_asks() -> None:
    import dataclasses

    from reportgen.render import PlotlyDrawer
    from reportgen.report import build_context
    from tests.report_fixtures import make_run, render_context

    run = make_run(models=1)
    aggs = run.spec.aggregations.model_copy(update={"granularity": "word"})
    worded = dataclasses.replace(run, spec=run.spec.model_copy(update={"aggregations": aggs}))
    ctx = build_context(render_context(worded), PlotlyDrawer())
    panel = next(p for s in ctx.sections for p in s.panels if p.prompt_id == "inject")
    view = next(v for v in panel.methods if v.method == "saliency")
    g = run.generation("smol", "inject")
    r = next(r for r in run.results_for("smol", "inject") if r.method == "saliency")
    assert g is not None and view.hover is not None and view.heatmap is not None
    u_in = units(g.input_tokens, g.input_special, "word")
    assert [t.title.split(" ")[0] for t in view.input_toks] == [f"input#{i}" for i in range(len(u_in.units))]
    assert "Summarise" in [str(t.text) for t in view.input_toks]  # "Summ" + "arise": one word
    assert len(view.hover.matrix) == len(u_in.units) and "per word" in view.heatmap.html
    total = sum(x for row in view.hover.matrix for x in row if x is not None)
    assert total == pytest.approx(float(np.nansum(np.asarray(r.matrix))), rel=1e-5)


def test_real_tokenizer_display_tokens_map_onto_words(smollm_tokenizer: object) -> None:
    """SmolLM2's byte-level BPE splits emoji and CJK characters over several tokens (byte marks)."""
    from reportgen.generate import token_texts

    text = "Café 👍🏽 東京タワー is tall. Really?"
    ids = smollm_tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
    _, display = token_texts(smollm_tokenizer, ids)
    assert display is not None
    toks: list[str] = display
    assert any(getattr(t, "byte_spans", ()) for t in toks)  # the case this test is about
    assert plain_text(toks) == text
    u = units(toks, [False] * len(toks), "word")
    assert [x.core for x in u.units] == words(text) == ["Café", "👍🏽", "東", "京", "タ", "ワ", "ー", "is", "tall", ".", "Really", "?"]
    assert np.allclose(u.weights.sum(axis=1), 1.0)
    spans = char_spans(toks)
    for x in u.units:  # every token with a share covers a character of the unit, or a byte of one
        for k in x.tokens:
            a, b = spans[k]
            covers = a < x.end and b > x.start
            byte_of = bool(getattr(toks[k], "byte_spans", ())) and (x.start <= a < x.end or x.start <= b < x.end)
            assert covers or byte_of, (x, toks[k])
    s = units(toks, [False] * len(toks), "sentence")
    assert [x.core for x in s.units] == ["Café 👍🏽 東京タワー is tall.", "Really?"]


def _brute_shares(tokens: list[str]) -> np.ndarray:
    """The share rule written out character by character (the oracle for the vectorised code)."""
    text = "".join(tokens)
    spans = word_spans(text) or [(0, len(text))]

    def owner(c: int) -> int:
        inside = [u for u, (a, b) in enumerate(spans) if a <= c < b]
        after = [u for u, (a, _) in enumerate(spans) if a > c]
        return inside[0] if inside else (after[0] if after else len(spans) - 1)

    w = np.zeros((len(tokens), len(spans)))
    at = 0
    for k, tok in enumerate(tokens):
        chars = list(range(at, at + len(tok)))
        use = [c for c in chars if not text[c].isspace()] or chars or [min(at, len(text) - 1)]
        for c in use:
            w[k, owner(c)] += 1 / len(use)
        at += len(tok)
    return w


def test_shares_match_a_character_by_character_oracle() -> None:
    rng = np.random.default_rng(7)
    pieces = ["the", "Hello", "naïve", " ", "  ", "\n", ",", ".", "東", "京", "👍🏽", "x1", "'", "?"]
    for _ in range(40):
        text = "".join(rng.choice(pieces, int(rng.integers(1, 25))))
        cuts = sorted(set(rng.integers(0, len(text) + 1, int(rng.integers(0, 12))).tolist()) | {0, len(text)})
        toks = [text[a:b] for a, b in itertools.pairwise(cuts)] + [""] * int(rng.integers(0, 2))
        u = units(toks, [False] * len(toks), "word")
        want = _brute_shares(toks)
        assert np.allclose(u.weights, want), (text, toks)
        a = rng.normal(size=(len(toks), 3))
        assert np.allclose(aggregate_matrix(a, u, units(["a", "b", "c"], [False] * 3, "token")), want.T @ a)
