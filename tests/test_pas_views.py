"""PAS figures built from hand-made ``probabilistic`` results."""

from __future__ import annotations

import json
import math
from typing import Any

import plotly.graph_objects as go
import pytest

from reportgen.data import AttributionResult, FigureSpec, Generation, RunResult
from reportgen_plugins.pas.detectors import DETECTORS
from reportgen_plugins.pas.payload import PasPayload
from reportgen_plugins.pas.views import (
    ORDER,
    PASViews,
    _View,
    anomalous_positions,
    esc,
    tick,
)

XSS = "<img src=x onerror=alert(1)>"
TOKENS = ["<|im_start|>", "user", "\n", "Pass", "age", ":", " When", XSS, " launched", "?", "<|im_end|>", "\n"]
SPECIAL = [True, True, True, False, False, False, False, False, False, False, True, True]
N = len(TOKENS)
USER = [k for k in range(N) if not SPECIAL[k]]  # 3..9
V = 49152


def make_generation(model: str = "m", prompt: str = "p") -> Generation:
    return Generation(
        model_id=model,
        prompt_id=prompt,
        input_ids=tuple(range(100, 100 + N)),
        input_tokens=tuple(TOKENS),
        input_special=tuple(SPECIAL),
        output_ids=(1, 2),
        output_tokens=(" 1997", "?"),
        prompt_text="".join(TOKENS[k] for k in USER),
        response_text=" 1997?",
    )


def make_result(model: str = "m", prompt: str = "p", *, replacement: bool = True, intervals: bool = True, **kw: Any) -> AttributionResult:
    AS = [None] * N
    vals = {3: 0.8, 4: -1.2, 5: 0.05, 6: 1.5, 7: 0.01, 8: 2.0, 9: -0.02}
    for k, a in vals.items():
        AS[k] = a

    def vec(f: Any) -> list[float | None]:
        return [None if AS[k] is None else f(k) for k in range(N)]

    scores: dict[str, list[float | None]] = {
        "attribution_score": AS,
        "entropy_prompt": vec(lambda k: 1.0 + 0.2 * k),
        "entropy_prompt_response": vec(lambda k: 0.5 + 0.1 * k),
        "kl_posterior_prior": vec(lambda k: 3.0 if k == 9 else 0.1 * abs(AS[k])),
        "kl_prior_posterior": vec(lambda k: 0.05 * k),
        "log_prior_original": vec(lambda k: math.log(0.5)),
        "log_posterior_original": vec(lambda k: math.log(0.5) + AS[k]),
    }
    ivs: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    if intervals:
        iv: list[Any] = [None] * N
        iv[5] = [-0.1, 0.2]  # straddles 0
        iv[6] = [1.2, 1.9]
        iv[4] = [-1.2, -1.2]
        ivs["attribution_score"] = iv
        kinds = {"4": "exact", "5": "estimate", "6": "certified"}
    cands = {
        str(k): {
            "prior": [{"token": TOKENS[k], "id": 100 + k, "p": 0.5}, {"token": " alt", "id": 7, "p": 0.2}],
            "posterior": [{"token": " other", "id": 8, "p": 0.6}, {"token": XSS if k != 7 else " x", "id": 9, "p": 0.1}],
        }
        for k in USER
    }
    details: dict[str, Any] = {
        "mode": "fast",
        "positions": USER,
        "candidates": cands,
        "interval_kind": kinds,
        "vocabulary_size": V,
    }
    if replacement:
        scores["replacement_entropy"] = vec(lambda k: 0.3 * abs(AS[k]))
        scores["original_response_pct"] = vec(lambda k: 100.0 - 30 * abs(AS[k]))
        details["replacement"] = {
            str(k): {"count": k, "original_token_count": 1, "original_response_count": 1, "distinct_responses": 2, "responses": []}
            for k in USER
        }
    return AttributionResult(
        method="probabilistic",
        model_id=model,
        prompt_id=prompt,
        options={},
        input_tokens=list(TOKENS),
        output_tokens=[" 1997", "?"],
        scores=scores,
        intervals=ivs,
        details=details,
        **kw,
    )


def make_run(results: list[AttributionResult], gens: list[Generation] | None = None) -> RunResult:
    return RunResult(spec=None, spec_text="", spec_path="", generations=gens or [make_generation()], results=results)


def by_id(figs: list[FigureSpec]) -> dict[str, FigureSpec]:
    return {f.id: f for f in figs}


def test_five_figures_with_stable_ids_and_order() -> None:
    figs = PASViews().figures(make_run([make_result()]))
    assert [f.id for f in figs] == [
        "pas-as-m-p",
        "pas-entropy-m-p",
        "pas-kl-m-p",
        "pas-candidates-m-p",
        "pas-replacement-m-p",
    ]
    assert [f.order for f in figs] == sorted(f.order for f in figs) == list(ORDER.values())
    for f in figs:
        assert isinstance(f.figure, go.Figure)
        assert f.section == "prompt" and f.model_id == "m" and f.prompt_id == "p"
        assert f.title and f.caption
    # deterministic: same input, same JSON
    again = PASViews().figures(make_run([make_result()]))
    assert [f.figure.to_json() for f in figs] == [f.figure.to_json() for f in again]


def test_only_ok_probabilistic_results() -> None:
    other = make_result()
    other.method = "integrated_gradients"
    failed = make_result(prompt="q")
    failed.status = "failed"
    assert PASViews().figures(make_run([other, failed])) == []


def test_ids_are_slugged_and_unique() -> None:
    r1 = make_result(model="org/model 1", prompt="p")
    r2 = make_result(model="org/model 1", prompt="p", label="fast")
    r3 = make_result(model="org/model 1", prompt="p")  # a duplicate gets a suffix, not a clash
    gen = make_generation(model="org/model 1")
    ids = [f.id for f in PASViews().figures(make_run([r1, r2, r3], [gen])) if f.id.startswith("pas-as")]
    assert ids == ["pas-as-org-model-1-p", "pas-as-org-model-1-p-fast", "pas-as-org-model-1-p-2"]


def test_as_bar_chart() -> None:
    fig = by_id(PASViews().figures(make_run([make_result()])))["pas-as-m-p"].figure
    bar, star = fig.data
    assert len(bar.x) == len(bar.y) == len(USER) == len(bar.customdata)
    assert list(bar.y) == [0.8, -1.2, 0.05, 1.5, 0.01, 2.0, -0.02]
    # the report's one signed scale: positive AS red like the token colours and heatmaps, negative blue
    from reportgen.figures import DIVERGING, NEG_RGB, POS_RGB

    assert [tuple(c) for c in bar.marker.colorscale] == [tuple(c) for c in DIVERGING]
    assert DIVERGING[-1][1] == "#{:02x}{:02x}{:02x}".format(*POS_RGB) and DIVERGING[0][1] == "#{:02x}{:02x}{:02x}".format(*NEG_RGB)
    assert bar.marker.cmin == -2.0 and bar.marker.cmax == 2.0 and bar.marker.cmid == 0
    # error bars from intervals: position 5 (index 2) has [-0.1, 0.2] around 0.05
    assert bar.error_y.array[2] == pytest.approx(0.15) and bar.error_y.arrayminus[2] == pytest.approx(0.15)
    assert bar.error_y.array[0] == 0.0  # no interval → no bar
    assert list(bar.marker.pattern.shape) == ["", "", "/", "", "", "", ""]  # only [-0.1, 0.2] straddles 0
    assert list(star.x) == [2] and star.name == "interval straddles 0"
    assert list(bar.customdata[2][2:5]) == ["[-0.1, 0.2]", "estimated", "yes: sign uncertain"]
    assert list(bar.customdata[3][2:4]) == ["[1.2, 1.9]", "certified"]
    assert list(bar.customdata[1][2:4]) == ["[-1.2, -1.2]", "exact"]
    assert bar.customdata[0][3] == "n/a"  # no interval, no kind
    assert "%{customdata[0]}" in bar.hovertemplate and "%{customdata[2]}" in bar.hovertemplate
    assert list(fig.layout.xaxis.tickvals) == list(range(len(USER)))
    assert fig.layout.xaxis.ticktext[0] == "Pass"
    assert "nats" in fig.layout.yaxis.title.text


def test_each_token_says_how_its_number_was_obtained() -> None:
    """Hover text and captions explain exact / certified / estimated in plain words, without
    references to the paper or its equations."""
    figs = by_id(PASViews().figures(make_run([make_result()])))
    bar = figs["pas-as-m-p"].figure.data[0]
    assert "%{customdata[5]}" in bar.hovertemplate
    hover = {row[3]: row[5].replace("<br>", " ") for row in bar.customdata}
    assert hover["estimated"].startswith("estimated: ") and "95% confidence interval" in hover["estimated"]
    assert "sampled at random" in hover["estimated"]
    assert hover["certified"].startswith("certified: ") and "guaranteed to lie in the interval" in hover["certified"]
    assert hover["exact"].startswith("exact: ") and "every token of the vocabulary" in hover["exact"]
    assert "not recorded" in hover["n/a"]
    assert all(len(line) <= 64 for row in bar.customdata for line in row[5].split("<br>"))
    cap = figs["pas-as-m-p"].caption
    assert "Exact (1 token): every token of the vocabulary was tried in its place" in cap
    assert "Certified (1 token): only part of the vocabulary was tried" in cap
    assert "error bar is guaranteed to contain the exact value." in cap
    assert "Estimated (1 token): part of the vocabulary was tried and the rest sampled at random" in cap
    assert "95% confidence interval" in cap
    for fid in ("pas-entropy-m-p", "pas-kl-m-p", "pas-candidates-m-p"):
        assert "certified or estimated" in figs[fid].caption and "approximate" in figs[fid].caption
    for kind in ("pas-entropy-m-p", "pas-kl-m-p"):
        assert all("numbers: %{customdata[" in t.hovertemplate for t in figs[kind].figure.data)
    ent = figs["pas-entropy-m-p"].figure.data[0]
    assert [row[2] for row in ent.customdata][:4] == ["unspecified", "exact", "estimated", "certified"]
    for f in figs.values():  # no paper, figure or equation references in the captions
        for word in ("seed", "eq.", "Eq.", "Fig.", "paper", "§"):
            assert word not in f.caption, (f.id, word)
    # a result with every number exact: no approximation notes, one kind in the caption
    r = make_result(intervals=False)
    r.details["interval_kind"] = {str(k): "exact" for k in USER}
    figs = by_id(PASViews().figures(make_run([r])))
    assert "Exact (7 tokens):" in figs["pas-as-m-p"].caption and "ertified" not in figs["pas-as-m-p"].caption
    assert "approximate" not in figs["pas-kl-m-p"].caption


def test_as_chart_without_intervals() -> None:
    fig = by_id(PASViews().figures(make_run([make_result(intervals=False)])))["pas-as-m-p"].figure
    bar, star = fig.data
    assert bar.error_y.visible is False and list(star.x) == []
    assert set(bar.marker.pattern.shape) == {""}


def test_entropy_and_kl_figures() -> None:
    figs = by_id(PASViews().figures(make_run([make_result()])))
    ent = figs["pas-entropy-m-p"].figure
    assert [t.name for t in ent.data] == ["H_p (prompt only)", "H_pr (prompt + response)"]
    for t in ent.data:
        assert len(t.x) == len(t.y) == len(t.customdata) == len(USER)
        assert "%{customdata[0]}" in t.hovertemplate
    assert ent.data[0].y[0] == pytest.approx(1.6) and ent.data[0].x[0] == 0.8
    assert "nats" in ent.layout.xaxis.title.text and "nats" in ent.layout.yaxis.title.text
    kl = figs["pas-kl-m-p"].figure
    assert len(kl.data) == 2 and all(t.type == "bar" and t.showlegend is not False for t in kl.data)
    assert kl.layout.barmode == "group"
    assert [len(t.y) for t in kl.data] == [len(USER)] * 2
    assert kl.data[0].y[-1] == 3.0 and kl.data[1].y[0] == pytest.approx(0.15)
    assert "nats" in kl.layout.yaxis.title.text


def test_candidate_figure_top_three_positions() -> None:
    r = make_result()
    v = _View(r, make_generation())
    # max(|AS|, KL(ρ‖π)): pos 9 has KL 3.0, pos 8 AS 2.0, pos 6 AS 1.5
    assert anomalous_positions(v) == [6, 8, 9]
    fig = by_id(PASViews().figures(make_run([r])))["pas-candidates-m-p"].figure
    assert len(fig.data) == 6  # prior + posterior per position
    assert [t.showlegend for t in fig.data] == [True, True, False, False, False, False]
    prior, post = fig.data[0], fig.data[1]
    # rows: original first, then by max probability: " other" (0.6), " alt" (0.2), XSS (0.1)
    assert list(fig.layout.xaxis.ticktext) == ["When (original)", "other", "alt", tick(XSS)]
    assert tick(XSS) == "&lt;img src=x on…"  # trimmed, escaped
    assert list(prior.y) == [0.5, None, 0.2, None]
    assert list(post.y[2:]) == [None, 0.1]
    assert post.y[0] == pytest.approx(0.5 * math.exp(1.5), rel=1e-5) and post.y[1] == 0.6
    assert prior.marker.line.color[0] == "black"  # the original is outlined
    assert "position 6" in fig.layout.annotations[0].text


def test_replacement_figure_only_when_computed() -> None:
    figs = by_id(PASViews().figures(make_run([make_result(replacement=False)])))
    assert "pas-replacement-m-p" not in figs
    fig = by_id(PASViews().figures(make_run([make_result()])))["pas-replacement-m-p"].figure
    ent, pct = fig.data
    assert len(ent.x) == len(ent.y) == len(pct.y) == len(USER)
    assert ent.y[1] == pytest.approx(0.36) and pct.y[1] == pytest.approx(64.0)
    assert ent.marker.size[0] < ent.marker.size[-1]  # size grows with the candidate count (3 … 9)
    assert "nats" in fig.layout.yaxis.title.text and "%" in fig.layout.yaxis2.title.text


def test_tokens_are_escaped_in_figures() -> None:
    figs = PASViews().figures(make_run([make_result()]))
    for f in figs:
        text = f.figure.to_json()
        assert "<img" not in text and "onerror=alert(1)>" not in text, f.id
    as_fig = by_id(figs)["pas-as-m-p"].figure
    idx = USER.index(7)
    assert as_fig.data[0].customdata[idx][0] == "&lt;img src=x onerror=alert(1)&gt;"
    assert as_fig.layout.xaxis.ticktext[idx].startswith("&lt;img")
    ent = by_id(figs)["pas-entropy-m-p"].figure
    assert ent.data[0].customdata[idx][0] == "&lt;img src=x onerror=alert(1)&gt;"
    # template-token display text is escaped too (it never reaches a figure unscored, but hover
    # text built from any token goes through the same function)
    assert esc("<|im_start|>\n") == "&lt;|im_start|&gt;⏎"


def test_figures_are_small() -> None:
    figs = PASViews().figures(make_run([make_result()]))
    total = sum(len(json.dumps(f.figure.to_plotly_json(), default=str)) for f in figs)
    assert total < 60_000


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_plotly_renders_escaped_tokens_as_literal_text(tmp_path: Any) -> None:
    """In a real browser: the token shows literally in tick and hover text; no <img> is created."""
    import os
    import re
    import subprocess

    import plotly

    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not installed")
    with open(os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js"), encoding="utf-8") as fh:
        js = fh.read()
    fig = by_id(PASViews().figures(make_run([make_result()])))["pas-as-m-p"].figure
    idx = USER.index(7)
    page = tmp_path / "p.html"
    page.write_text(
        "<html><head><title>ok</title><script>" + js + "</script></head><body>"
        '<div id="g" style="width:800px;height:400px"></div><script>var f='
        + fig.to_json().replace("</", "<\\/")
        + ";Plotly.newPlot('g',f.data,f.layout).then(function(){Plotly.Fx.hover('g',[{curveNumber:0,pointNumber:"
        + str(idx)
        + "}]);setTimeout(function(){var d=document.createElement('pre');d.id='res';"
        "d.textContent=JSON.stringify({imgs:document.querySelectorAll('img').length,"
        "ticks:Array.from(document.querySelectorAll('.xtick text')).map(t=>t.textContent),"
        "hover:Array.from(document.querySelectorAll('.hoverlayer text')).map(t=>t.textContent)});"
        "document.body.appendChild(d);},300);});</script></body></html>",
        encoding="utf-8",
    )
    out = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'prof'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    m = re.search(r'<pre id="res">(.*?)</pre>', out)
    assert m, out[-2000:]
    import html as _html

    res = json.loads(_html.unescape(m.group(1)))
    assert res["imgs"] == 0
    assert res["ticks"][idx] == "<img src=x on…"
    assert any("«<img src=x onerror=alert(1)>»" in h for h in res["hover"]), res["hover"]


def test_contract_with_the_probabilistic_method() -> None:
    """The real ``probabilistic`` plugin on a tiny random Llama: detectors and views accept its
    results as they are (fast mode: intervals; replacement entropy on)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    prob = pytest.importorskip("reportgen_plugins.pas.method")
    from reportgen.cache import Cache
    from reportgen.plugin_api import AttributionContext, LoadedModel

    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(
        vocab_size=16,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        max_position_embeddings=64,
        initializer_range=0.4,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    x, y = [0, 5, 9, 3, 12, 7, 4, 8], [4, 11, 2]
    gen = Generation(
        model_id="toy",
        prompt_id="p",
        input_ids=tuple(x),
        input_tokens=tuple(str(i) for i in x),
        input_special=(True,) + (False,) * (len(x) - 1),
        output_ids=tuple(y),
        output_tokens=tuple(str(i) for i in y),
        prompt_text="",
        response_text="",
        settings={"max_new_tokens": len(y), "do_sample": False},
    )
    loaded = LoadedModel(id="toy", source="toy:", model=model, tokenizer=None)
    for opts in ({"mode": "fast", "max_candidates": 4, "tail_samples": 4, "replacement_entropy": True, "replacement_max_candidates": 4},):
        o = prob.PASOptions(**opts)
        r = prob.ProbabilisticMethod().attribute(AttributionContext(model=loaded, generation=gen, options=o, seed=0, cache=Cache(None)))
        assert r.status == "ok", r.reason
        for cls in DETECTORS:
            for f in cls().detect(r, gen, cls.options_model()):
                json.dumps(f.to_json())
                assert f.positions[0] in range(1, len(x))  # template token 0 not scored
        figs = PASViews().figures(make_run([r], [gen]))
        assert [f.id for f in figs] == [f"pas-{k}-toy-p" for k in ORDER]
        assert len(figs[0].figure.data[0].y) == len(x) - 1
        assert_same_from_json(r, gen)


def findings_and_figures(r: AttributionResult, gen: Generation) -> tuple[list[Any], list[str]]:
    finds = [f.to_json() for cls in DETECTORS for f in cls().detect(r, gen, cls.options_model(max_findings=None))]
    return finds, [f.figure.to_json() for f in PASViews().figures(make_run([r], [gen]))]


def assert_same_from_json(r: AttributionResult, gen: Generation) -> None:
    """A result read back from results.json has the same payload and drives the detectors and
    the views exactly as the live result does."""
    back = AttributionResult.from_json(json.loads(json.dumps(r.to_json())))
    assert PasPayload.of(back) == PasPayload.of(r)
    assert findings_and_figures(back, gen) == findings_and_figures(r, gen)


def test_result_loaded_back_from_json_drives_detectors_and_views_the_same() -> None:
    r, gen = make_result(), make_generation()
    finds, figs = findings_and_figures(r, gen)
    assert len(figs) == 5 and {f["detector"] for f in finds} >= {"kl_outlier", "preferred_replacement", "unstable_token"}
    assert_same_from_json(r, gen)
