"""DBSA end to end on fakes: a black-box sampler whose answer depends on one word, a hash embedder,
and a tiny random open model with a word-level fast tokenizer."""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

import numpy as np
import pytest
import torch

from reportgen.cache import Cache
from reportgen.data import RunResult
from reportgen.errors import SamplerError
from reportgen.plugin_api import AttributionContext, LoadedModel, Sampler
from reportgen.samplers import generate_via_sampler
from reportgen.spec import GenerationSpec, PromptSpec
from reportgen_plugins.dbsa.method import (
    DBSA,
    DBSAOptions,
    DBSASignificant,
    DBSAViews,
    MATRIX_LABEL,
    embedding_knn,
    numeric_neighbours,
)

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
                out.append(" ".join([head] + rng.sample(WORDS[5:], 2)))
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
    ctx, sampler = api_ctx(tmp_path)
    res = DBSA(embed=hash_embed).attribute(ctx)
    units = {u["text"]: u for u in res.details["units"]}
    assert list(units) == ["What", "is", "the", "capital", "of", "France", "?"]
    assert units["France"]["q_value"] < 0.05 and units["France"]["significant"]
    assert units["France"]["p_value"] < 0.01
    for w in ("What", "is", "the", "capital", "of", "?"):
        assert units[w]["q_value"] > 0.05, w
        assert units[w]["effect"] < units["France"]["effect"]
    # matrix: n × t, constant columns, label says response-level
    g = ctx.generation
    assert res.matrix.shape == (g.n, g.t)
    assert np.allclose(res.matrix, res.matrix[:, :1])
    assert res.matrix_label == MATRIX_LABEL
    fr = g.input_tokens.index(" France")
    assert res.scores["effect_size"][fr] == pytest.approx(units["France"]["effect"])
    assert res.scores["q_value"][fr] == pytest.approx(units["France"]["q_value"])
    assert set(res.scores) == {"effect_size", "p_value", "q_value"}
    # per-neighbour evidence, examples and bookkeeping
    assert [r["text"] for r in units["France"]["neighbours"]] == ["Italy", "Spain"]
    assert units["France"]["examples"]["original"][0].startswith("paris")
    assert res.details["draws_total"] == 10 * (1 + 7 * 2) == res.details["draws_now"]
    assert res.details["samples"] == 10 and res.details["permutations"] == 1000
    json.dumps(res.to_json(), allow_nan=False)
    # cached: a rerun draws nothing
    res2 = DBSA(embed=hash_embed).attribute(api_ctx(tmp_path)[0])
    assert res2.details["draws_now"] == 0
    assert res2.details["units"] == res.details["units"]


def test_dbsa_energy_equals_squared_mean_difference(tmp_path):
    ctx, _ = api_ctx(tmp_path, neighbours=1)
    res = DBSA(embed=hash_embed).attribute(ctx)
    for u in res.details["units"]:
        e = u["neighbours"][0]["E"]
        assert e >= 0 and u["effect"] == pytest.approx(e)


def test_dbsa_warns_and_caps(tmp_path):
    ctx, _ = api_ctx(tmp_path, samples=3)
    res = DBSA(embed=hash_embed).attribute(ctx)
    assert any("samples=3" in w for w in res.details["warnings"])
    assert all(u["p_value"] >= 0.1 - 1e-9 for u in res.details["units"] if u["neighbours"] and len(u["neighbours"]) == 1)
    ctx, s = api_ctx(tmp_path / "b", max_requests=50)
    with pytest.raises(SamplerError, match=r"needs 150 more draws .* cap allows 50"):
        DBSA(embed=hash_embed).attribute(ctx)
    assert s.calls == 1  # only the reference generation; nothing sampled before the error


def test_map_only_skips_unmapped(tmp_path):
    ctx, _ = api_ctx(tmp_path, neighbour_map={"France": ["Italy"]})
    res = DBSA(embed=hash_embed).attribute(ctx)
    skipped = [u["text"] for u in res.details["units"] if u.get("skipped")]
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

    from reportgen.samplers import LocalSampler

    vocab = ["<unk>", "<s>", "</s>", "What", "is", "the", "capital", "of", "France", "?", *WORDS, "a", "an", "Italy", "Spain"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    loaded = LoadedModel(id="tiny", source="hf:tiny", model=model, tokenizer=tok, chat_template=False)
    loaded.sampler = LocalSampler(loaded)
    return loaded


def open_ctx(loaded: LoadedModel, tmp_path, **opts: Any) -> AttributionContext:
    from reportgen.generate import generate

    gen = generate(loaded, PromptSpec(id="q", text="What is the capital of France ?"), GenerationSpec(max_new_tokens=4), seed=0)
    options = DBSAOptions(**{"samples": 4, "neighbours": 2, "permutations": 100, **opts})
    return AttributionContext(model=loaded, generation=gen, options=options, seed=0, cache=Cache(tmp_path),
                              generation_settings={"max_new_tokens": 4})


def test_open_model_token_units(tiny_open, tmp_path):
    ctx = open_ctx(tiny_open, tmp_path)
    res = DBSA(embed=hash_embed).attribute(ctx)
    g = ctx.generation
    assert res.details["unit"] == "token"
    assert [u["positions"][0] for u in res.details["units"]] == g.user_positions
    emb = tiny_open.model.get_input_embeddings().weight.detach().numpy()
    special = set(tiny_open.tokenizer.all_special_ids)
    for u in res.details["units"]:
        tid = g.input_ids[u["positions"][0]]
        names = [r["text"] for r in u["neighbours"]]
        ids = [tiny_open.tokenizer.convert_tokens_to_ids(n) for n in names]
        assert tid not in ids and not special & set(ids) and len(ids) == 2
        assert ids == embedding_knn(emb, tid, 2, special)
    assert res.matrix.shape == (g.n, g.t)
    bos = [i for i, s in enumerate(g.input_special) if s]
    assert all(res.scores["effect_size"][i] is None for i in bos)
    assert all(0 < (u["p_value"] or 1) <= 1 for u in res.details["units"])
    assert res.details["draws_total"] == 4 * (1 + 2 * len(g.user_positions))


def test_open_model_word_units_with_map(tiny_open, tmp_path):
    ctx = open_ctx(tiny_open, tmp_path, unit="word", neighbour_map={"France": ["Italy", "Spain"]}, neighbour_source="map")
    res = DBSA(embed=hash_embed).attribute(ctx)
    tested = [u for u in res.details["units"] if not u.get("skipped")]
    assert [u["text"] for u in tested] == ["France"]
    assert tested[0]["positions"] == [ctx.generation.input_tokens.index("France")]
    assert math.isfinite(tested[0]["effect"])


def test_word_neighbours_from_embeddings_are_distinct_words() -> None:
    """" How" and "How" are the same word: a unit gets M distinct neighbours."""
    import torch

    from reportgen.plugin_api import LoadedModel
    from reportgen_plugins.dbsa.method import DBSAOptions, Unit, assign_neighbours

    vocab = ["What", " How", "How", " Why", " banana"]

    class Tok:
        all_special_ids: list[int] = []

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
    unit = Unit(text="What", positions=[0], kind="word")
    assign_neighbours([unit], loaded, DBSAOptions(neighbours=2), "/tmp")
    assert unit.neighbours == ["How", "Why"]
