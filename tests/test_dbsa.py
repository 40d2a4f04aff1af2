"""DBSA end to end on fakes: a black-box sampler whose answer depends on one word, a hash embedder,
and a tiny random open model with a word-level fast tokenizer."""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from reportgen.cache import Cache
from reportgen.data import AttributionResult, RunResult
from reportgen.errors import SamplerError
from reportgen.generate import generate_via_sampler
from reportgen.plugin_api import AttributionContext, LoadedModel, Sampler
from reportgen.spec import GenerationSpec, PromptSpec
from reportgen_plugins.dbsa.detector import DBSASignificant
from reportgen_plugins.dbsa.method import DBSA, MATRIX_LABEL
from reportgen_plugins.dbsa.neighbours import assign_neighbours, embedding_knn, numeric_neighbours
from reportgen_plugins.dbsa.options import DBSAOptions
from reportgen_plugins.dbsa.payload import DbsaPayload, Examples, NeighbourTest, UnitResult
from reportgen_plugins.dbsa.units import Unit
from reportgen_plugins.dbsa.views import DBSAViews

WORDS = ["paris", "lyon", "rome", "berlin", "madrid", "city", "capital", "nice", "big", "old"]


class FakeSampler(Sampler):
    """Answers about France with 'paris …', anything else with other cities (random filler)."""

    id = "fake"
    chat = True

    def __init__(self) -> None:
        self.calls = 0

    def sample(self, prompt: Any, n: int, *, seed: int, max_new_tokens: int, temperature: float = 1.0) -> list[str]:
        self.calls += 1
        text = prompt[-1]["content"] if isinstance(prompt, list) else prompt
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            head = "paris" if "France" in text else rng.choice(["rome", "berlin", "madrid"])
            if temperature == 0:
                out.append(f"{head} is the capital")
            else:
                out.append(" ".join([head, *rng.sample(WORDS[5:], 2)]))
        return out


def hash_embed(texts: list[str]) -> np.ndarray:
    """Bag of words with a fixed random vector per word, unit norm."""
    out = []
    for t in texts:
        v = np.zeros(32)
        for w in t.split():
            seed = int(hashlib.sha256(w.encode()).hexdigest()[:8], 16)
            v += np.random.default_rng(seed).normal(size=32)
        out.append(v / (np.linalg.norm(v) or 1.0))
    return np.array(out)


NMAP = {
    "What": ["Which", "Who"],
    "is": ["was", "be"],
    "the": ["a", "this"],
    "capital": ["city", "seat"],
    "of": ["in", "for"],
    "France": ["Italy", "Spain"],
    "?": ["!", "."],
}


def api_ctx(tmp_path, **opts: Any) -> tuple[AttributionContext, FakeSampler]:
    s = FakeSampler()
    loaded = LoadedModel(id="api", source="openai:fake", sampler=s)
    gen = generate_via_sampler(loaded, PromptSpec(id="q", text="What is the capital of France?"), GenerationSpec(max_new_tokens=8), 0)
    options = DBSAOptions(**{"neighbour_map": NMAP, "neighbour_source": "map", "samples": 10, "neighbours": 2, **opts})
    # seed 1: with seed 0, Fisher over two neighbours sharing one baseline gives a null unit q=0.03
    # (the dependence caveat in the module docstring); the stats themselves are calibrated (test_dbsa_stats)
    return AttributionContext(model=loaded, generation=gen, options=options, seed=1, cache=Cache(tmp_path)), s


def test_dbsa_black_box_finds_the_word_that_matters(tmp_path):
    ctx, _sampler = api_ctx(tmp_path)
    res = DBSA(embed=hash_embed).attribute(ctx)
    payload = DbsaPayload.of(res)
    units = {u.text: u for u in payload.units}
    assert list(units) == ["What", "is", "the", "capital", "of", "France", "?"]
    fr_unit = units["France"]
    assert fr_unit.q_value is not None and fr_unit.q_value < 0.05 and fr_unit.significant
    assert fr_unit.p_value is not None and fr_unit.p_value < 0.01
    assert fr_unit.effect is not None
    for w in ("What", "is", "the", "capital", "of", "?"):
        u = units[w]
        assert u.q_value is not None and u.q_value > 0.05, w
        assert u.effect is not None and u.effect < fr_unit.effect
    # matrix: n × t, constant columns, label says response-level
    g = ctx.generation
    assert res.matrix.shape == (g.n, g.t)
    assert np.allclose(res.matrix, res.matrix[:, :1])
    assert res.matrix_label == MATRIX_LABEL
    fr = g.input_tokens.index(" France")
    assert fr_unit.positions == (fr,)
    assert res.scores["effect_size"][fr] == pytest.approx(fr_unit.effect)
    assert res.scores["q_value"][fr] == pytest.approx(fr_unit.q_value)
    assert set(res.scores) == {"effect_size", "p_value", "q_value"}
    # per-neighbour evidence, examples and bookkeeping
    assert [n.text for n in fr_unit.neighbours] == ["Italy", "Spain"]
    assert fr_unit.examples is not None and fr_unit.examples.original[0].startswith("paris")
    assert payload.draws_total == 10 * (1 + 7 * 2) == payload.draws_now
    assert payload.samples == 10 and payload.permutations == 1000
    json.dumps(res.to_json(), allow_nan=False)
    # cached: a rerun draws nothing
    again = DbsaPayload.of(DBSA(embed=hash_embed).attribute(api_ctx(tmp_path)[0]))
    assert again.draws_now == 0
    assert again.units == payload.units


def test_dbsa_energy_equals_squared_mean_difference(tmp_path):
    ctx, _ = api_ctx(tmp_path, neighbours=1)
    res = DBSA(embed=hash_embed).attribute(ctx)
    for u in DbsaPayload.of(res).units:
        e = u.neighbours[0].energy
        assert e is not None and e >= 0 and u.effect == pytest.approx(e)


def test_dbsa_warns_and_caps(tmp_path):
    ctx, _ = api_ctx(tmp_path, samples=3)
    payload = DbsaPayload.of(DBSA(embed=hash_embed).attribute(ctx))
    assert any("samples=3" in w for w in payload.warnings)
    single = [u for u in payload.units if len(u.neighbours) == 1]
    assert all(u.p_value is not None and u.p_value >= 0.1 - 1e-9 for u in single)
    ctx, s = api_ctx(tmp_path / "b", max_requests=50)
    with pytest.raises(SamplerError, match=r"needs 150 more draws .* cap allows 50"):
        DBSA(embed=hash_embed).attribute(ctx)
    assert s.calls == 1  # only the reference generation; nothing sampled before the error


def test_map_only_skips_unmapped(tmp_path):
    ctx, _ = api_ctx(tmp_path, neighbour_map={"France": ["Italy"]})
    res = DBSA(embed=hash_embed).attribute(ctx)
    skipped = [u.text for u in DbsaPayload.of(res).units if u.skipped]
    assert skipped == ["What", "is", "the", "capital", "of", "?"]
    assert sum(v is not None for v in res.scores["q_value"]) == 1


def test_detector_and_views(tmp_path):
    ctx, _ = api_ctx(tmp_path)
    res = DBSA(embed=hash_embed).attribute(ctx)
    found = DBSASignificant().detect(res, ctx.generation, {})
    assert [f.token for f in found] == ["France"]
    f = found[0]
    assert f.positions == (ctx.generation.input_tokens.index(" France"),)
    assert f.evidence["q_value"] < 0.05 and "Italy" in f.message
    run = RunResult(spec=None, spec_text="", spec_path="", generations=[ctx.generation], results=[res])
    figs = DBSAViews().figures(run)
    assert [x.id for x in figs] == ["dbsa-api-q-dbsa-effect", "dbsa-api-q-dbsa-responses"]
    bar = figs[0].figure.data[0]
    assert list(bar.text).count("*") == 1
    assert figs[1].figure.data[0].cells.values[0][0] == "France"


def test_numeric_neighbours():
    assert numeric_neighbours("$3.50", 3) == ["$3.15", "$3.85", "$2.80"] or len(numeric_neighbours("$3.50", 3)) == 3
    out = numeric_neighbours("$3.50", 4)
    assert all(o.startswith("$") and len(o.split(".")[1]) == 2 for o in out)
    vals = [float(o[1:]) for o in out]
    assert all(1.75 <= v <= 5.25 and v != 3.5 for v in vals)
    assert numeric_neighbours("word", 3) is None
    assert numeric_neighbours("0", 2) == ["1", "2"]


def test_embedding_knn_brute_force():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6))
    got = embedding_knn(emb, 5, 4, skip={1, 2})
    cos = [(emb[i] @ emb[5]) / (np.linalg.norm(emb[i]) * np.linalg.norm(emb[5])) for i in range(40)]
    expect = [i for i in sorted(range(40), key=lambda i: -cos[i]) if i not in (5, 1, 2)][:4]
    assert got == expect


# --------------------------------------------------------------------------- tiny open model


@pytest.fixture(scope="module")
def tiny_open() -> LoadedModel:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from reportgen.generate import LocalSampler

    vocab = ["<unk>", "<s>", "</s>", "What", "is", "the", "capital", "of", "France", "?", *WORDS, "a", "an", "Italy", "Spain"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(cfg).eval()
    loaded = LoadedModel(id="tiny", source="hf:tiny", model=model, tokenizer=tok, chat_template=False)
    loaded.sampler = LocalSampler(loaded)
    return loaded


def open_ctx(loaded: LoadedModel, tmp_path, **opts: Any) -> AttributionContext:
    from reportgen.generate import generate

    gen = generate(loaded, PromptSpec(id="q", text="What is the capital of France ?"), GenerationSpec(max_new_tokens=4), seed=0)
    options = DBSAOptions(**{"samples": 4, "neighbours": 2, "permutations": 100, **opts})
    return AttributionContext(
        model=loaded, generation=gen, options=options, seed=0, cache=Cache(tmp_path), generation_settings={"max_new_tokens": 4}
    )


def test_open_model_token_units(tiny_open, tmp_path):
    ctx = open_ctx(tiny_open, tmp_path)
    res = DBSA(embed=hash_embed).attribute(ctx)
    g = ctx.generation
    payload = DbsaPayload.of(res)
    assert payload.unit == "token"
    assert [u.positions for u in payload.units] == [(i,) for i in g.user_positions]
    emb = tiny_open.model.get_input_embeddings().weight.detach().numpy()
    special = set(tiny_open.tokenizer.all_special_ids)
    for u in payload.units:
        tid = g.input_ids[u.positions[0]]
        names = [n.text for n in u.neighbours]
        ids = [tiny_open.tokenizer.convert_tokens_to_ids(n) for n in names]
        assert tid not in ids and not special & set(ids) and len(ids) == 2
        assert ids == embedding_knn(emb, tid, 2, special)
    assert res.matrix.shape == (g.n, g.t)
    bos = [i for i, s in enumerate(g.input_special) if s]
    assert all(res.scores["effect_size"][i] is None for i in bos)
    assert all(0 < (u.p_value or 1) <= 1 for u in payload.units)
    assert payload.draws_total == 4 * (1 + 2 * len(g.user_positions))


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_local_sampler_prefills_the_prompt_once_for_all_samples(tiny_open, temperature):
    """N draws of one prompt share one prefill (the prompt's KV cache repeated per row) and give
    exactly the responses of N independent prefills (``generate`` on N copies of the prompt)."""
    model, tok = tiny_open.model, tiny_open.tokenizer
    ids = tok("What is the capital of France ?", return_tensors="pt").input_ids
    calls: list[tuple[int, ...]] = []  # the shape of every forward's input_ids

    def record(_m: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        calls.append(tuple((args or (kw["input_ids"],))[0].shape))

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        got = tiny_open.sampler.sample_ids(ids[0].tolist(), 5, seed=3, max_new_tokens=4, temperature=temperature)
    finally:
        hook.remove()
    L = ids.shape[1]
    assert calls[0] == (1, L - 1) and all(c == (5, 1) for c in calls[1:])  # prompt once; then one token per row and step
    torch.manual_seed(3)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature else {"do_sample": False}
    ref = model.generate(ids.repeat(5, 1), attention_mask=torch.ones(5, L, dtype=torch.long), max_new_tokens=4, pad_token_id=2, **sampling)
    assert got == [tok.decode(row[L:], skip_special_tokens=True) for row in ref]


def test_open_model_word_units_with_map(tiny_open, tmp_path):
    ctx = open_ctx(tiny_open, tmp_path, unit="word", neighbour_map={"France": ["Italy", "Spain"]}, neighbour_source="map")
    res = DBSA(embed=hash_embed).attribute(ctx)
    tested = [u for u in DbsaPayload.of(res).units if not u.skipped]
    assert [u.text for u in tested] == ["France"]
    assert tested[0].positions == (ctx.generation.input_tokens.index("France"),)
    assert tested[0].effect is not None and math.isfinite(tested[0].effect)


def test_word_neighbours_from_embeddings_are_distinct_words() -> None:
    """ " How" and "How" are the same word: a unit gets M distinct neighbours."""
    vocab = ["What", " How", "How", " Why", " banana"]

    class Tok:
        all_special_ids: ClassVar[list[int]] = []

        def decode(self, ids: list[int]) -> str:
            return "".join(vocab[i] for i in ids)

        def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
            return {"input_ids": [vocab.index(text)] if text in vocab else [0, 0]}

    class Model:
        def __init__(self) -> None:
            w = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, 0.12], [0.9, 0.3], [-1.0, 0.0]])
            self.emb = torch.nn.Embedding.from_pretrained(w)

        def get_input_embeddings(self) -> torch.nn.Embedding:
            return self.emb

    loaded = LoadedModel(id="m", source="x", model=Model(), tokenizer=Tok())
    [unit] = assign_neighbours([Unit(text="What", positions=(0,), kind="word")], loaded, DBSAOptions(neighbours=2), "/tmp")
    assert unit.neighbours == ("How", "Why") and unit.skipped is None


# --------------------------------------------------------------------------- typed payload


def sample_payload() -> DbsaPayload:
    tested = UnitResult(
        text="Antananarivo",
        kind="word",
        positions=(3, 4, 5),
        neighbours=(NeighbourTest("Paris", 0.25, 0.001, 0), NeighbourTest("Rome", None, None, 10)),
        effect=0.25,
        p_value=0.002,
        q_value=0.004,
        significant=True,
        examples=Examples("Paris", ("a", "b"), ("c", "d")),
    )
    skipped = UnitResult(
        text="?",
        kind="word",
        positions=(6,),
        neighbours=(),
        effect=None,
        p_value=None,
        q_value=None,
        significant=False,
        skipped="no neighbour_map entry",
    )
    return DbsaPayload(
        unit="word",
        units=(tested, skipped),
        samples=10,
        permutations=1000,
        neighbours_per_unit=2,
        combine="fisher",
        metric="cosine",
        temperature=1.0,
        max_new_tokens=8,
        alpha=0.05,
        baseline_examples=("a", "b", "c"),
        draws_total=50,
        draws_now=20,
        embedding_model="hash_embed",
        sampler={"kind": "fake"},
        warnings=("w",),
    )


def payload_result(payload: DbsaPayload, n: int = 8) -> AttributionResult:
    return AttributionResult(
        method="dbsa",
        model_id="m",
        prompt_id="p",
        options={},
        input_tokens=[f"t{i}" for i in range(n)],
        output_tokens=["x"],
        details=payload.to_json(),
    )


def test_payload_round_trip_and_json_keys() -> None:
    p = sample_payload()
    d = json.loads(json.dumps(p.to_json(), allow_nan=False))
    assert DbsaPayload.from_json(d) == p
    # results.json keeps the keys it had before the payload was typed
    assert set(d) >= {"unit", "units", "samples", "permutations", "neighbours_per_unit", "combine", "alpha", "warnings"}
    assert d["units"][0]["neighbours"][0] == {"text": "Paris", "E": 0.25, "p": 0.001, "n_empty": 0}
    assert d["units"][0]["positions"] == [3, 4, 5] and "skipped" not in d["units"][0]
    assert d["units"][1]["skipped"] == "no neighbour_map entry" and "examples" not in d["units"][1]
    # keys the host adds to details are ignored; a result of another method is refused
    res = payload_result(p)
    res.details = {**res.details, "from_cache": True}
    assert DbsaPayload.of(res) == p
    with pytest.raises(ValueError, match="not a successful dbsa result"):
        DbsaPayload.of(AttributionResult(method="other", model_id="m", prompt_id="p", options={}, input_tokens=[], output_tokens=[]))


def test_finding_points_at_every_token_of_the_word() -> None:
    res = payload_result(sample_payload())
    gen = generate_via_sampler(
        LoadedModel(id="m", source="x", sampler=FakeSampler()), PromptSpec(id="p", text="x"), GenerationSpec(max_new_tokens=2), 0
    )
    [f] = DBSASignificant().detect(res, gen, {})
    assert f.positions == (3, 4, 5) and f.token == "Antananarivo"
    assert f.severity == "high" and f.evidence["neighbours"][0]["E"] == 0.25
    assert "'Paris' (E=0.25, p=0.001)" in f.message and "Rome" not in f.message  # untested neighbours are not quoted
    assert DBSASignificant().detect(res, gen, {"alpha": 0.001}) == []


def reload(res: AttributionResult) -> AttributionResult:
    """``res`` as results.json stores it and ``reportgen render`` loads it back."""
    return AttributionResult.from_json(json.loads(json.dumps(res.to_json(), allow_nan=False)))


def test_detector_and_views_from_results_json(tmp_path):
    ctx, _ = api_ctx(tmp_path)
    res = DBSA(embed=hash_embed).attribute(ctx)
    back = reload(res)
    assert DbsaPayload.of(back) == DbsaPayload.of(res)
    detector = DBSASignificant()
    assert detector.detect(back, ctx.generation, {}) == detector.detect(res, ctx.generation, {})
    figs = DBSAViews().figures(RunResult(spec=None, spec_text="", spec_path="", generations=[ctx.generation], results=[res]))
    figs_back = DBSAViews().figures(RunResult(spec=None, spec_text="", spec_path="", generations=[ctx.generation], results=[back]))
    assert [f.id for f in figs_back] == [f.id for f in figs] and len(figs) == 2
    assert [f.figure.to_plotly_json() for f in figs_back] == [f.figure.to_plotly_json() for f in figs]


def test_payload_round_trip_on_the_tiny_chat_model(smollm_tokenizer: Any, tmp_path) -> None:
    """A real DBSA result on conftest's tiny random Llama with the SmolLM2 tokenizer and chat template."""
    from conftest import tiny_llama

    from reportgen.generate import LocalSampler, generate

    loaded = LoadedModel(
        id="tiny",
        source="tiny:0",
        model=tiny_llama(len(smollm_tokenizer)),
        tokenizer=smollm_tokenizer,
        chat_template=True,
        info={"sha256": "tiny-0"},
    )
    loaded.sampler = LocalSampler(loaded)
    gen = generate(loaded, PromptSpec(id="q", text="Capital of France?"), GenerationSpec(max_new_tokens=3), seed=0)
    opts = DBSAOptions(samples=3, neighbours=1, permutations=100, max_new_tokens=3)
    ctx = AttributionContext(model=loaded, generation=gen, options=opts, seed=0, cache=Cache(tmp_path))
    res = DBSA(embed=hash_embed).attribute(ctx)
    payload = DbsaPayload.of(res)
    assert payload.unit == "token" and [u.positions for u in payload.units] == [(i,) for i in gen.user_positions]
    assert DbsaPayload.from_json(payload.to_json()) == payload
    back = reload(res)
    assert DbsaPayload.of(back) == payload
    assert DBSASignificant().detect(back, gen, {"alpha": 0.99}) == DBSASignificant().detect(res, gen, {"alpha": 0.99})
    run = RunResult(spec=None, spec_text="", spec_path="", generations=[gen], results=[back])
    assert next(f.id for f in DBSAViews().figures(run)) == "dbsa-tiny-q-dbsa-effect"


def test_open_word_units_cover_every_token_of_a_word(smollm_tokenizer: Any) -> None:
    from conftest import tiny_llama

    from reportgen.generate import generate
    from reportgen_plugins.dbsa.units import open_word_units

    loaded = LoadedModel(
        id="tiny", source="tiny:0", model=tiny_llama(len(smollm_tokenizer)), tokenizer=smollm_tokenizer, chat_template=True
    )
    gen = generate(loaded, PromptSpec(id="q", text="Is Antananarivo big?"), GenerationSpec(max_new_tokens=1), seed=0)
    units, _ = open_word_units(loaded, gen)
    assert [u.text for u in units] == ["Is", "Antananarivo", "big", "?"]
    word = units[1]
    assert len(word.positions) > 1
    assert "".join(gen.input_tokens[i] for i in word.positions).strip() == "Antananarivo"
    assert not any(gen.input_special[i] for u in units for i in u.positions)
