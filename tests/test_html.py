"""The HTML report: structure, self-containment, escaping, determinism, figure helpers."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import re
from html.parser import HTMLParser
from typing import Any

import jinja2
import numpy as np
import pytest
from report_fixtures import DETECTORS, INJECT_IMG, INJECT_SCRIPT, html_of, make_figures, make_run, render_context

from reportgen import hookimpl
from reportgen.aggregate import intensity, token_importance
from reportgen.data import FigureSpec
from reportgen.figures import block_factors, block_mean, downsample, heatmap, slug, token_colours
from reportgen.render import PACK_ESCAPED, PlotlyDrawer, make_jinja_env, markdown_html, pack7, plotly_div, plotly_js, script_json
from reportgen.report import build_context
from reportgen.results import dumps, run_to_json
from reportgen_plugins.renderers.html import HtmlRenderer


class Page(HTMLParser):
    """Collects every element (tag, attrs), the text of each <script>, and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "script":
            self._script, self._buf = a, []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._buf)))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._buf.append(data)
        else:
            self.text.append(data)

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.elements if a.get("id")]

    def visible_text(self) -> str:
        return "".join(self.text)


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    return p


@pytest.fixture(scope="module")
def run() -> Any:
    return make_run()


@pytest.fixture(scope="module")
def html(run: Any) -> str:
    return html_of(run, make_figures())


@pytest.fixture(scope="module")
def page(html: str) -> Page:
    return parse(html)


# --------------------------------------------------------------------------- structure


def test_one_div_per_heatmap(run: Any, page: Page) -> None:
    ids = page.ids()
    expected = [
        f"heatmap-{slug(r.model_id)}-{slug(r.prompt_id)}-{slug(r.display_name)}"
        for r in run.results
        if r.status == "ok" and r.matrix is not None
    ]
    assert expected, "fixture has matrices"
    for e in expected:
        assert ids.count(e) == 1, e
    heat_divs = [
        a["id"] for t, a in page.elements if t == "div" and "plotly-graph-div" in (a.get("class") or "") and a["id"].startswith("heatmap-")
    ]
    assert sorted(heat_divs) == sorted(expected)
    assert len(ids) == len(set(ids)), "ids are unique"


def unpack7(text: str, size: int) -> bytes:
    """Reference decoder of :func:`reportgen.render.pack7` (what report.js's unpack7 does)."""
    bits: list[str] = []
    for ch in text:
        c = ord(ch)
        vals = [c] if c < 128 else [PACK_ESCAPED[(c - 128) >> 7], (c - 128) & 127]
        bits += [format(v, "07b") for v in vals]
    flat = "".join(bits)
    return bytes(int(flat[8 * k : 8 * k + 8], 2) for k in range(size))


@pytest.mark.parametrize("data", [b"", b"\x00", b"<", b"\r\r\r", bytes(range(256)), bytes([0x78] * 17), bytes(1000)])
def test_pack7_round_trip(data: bytes) -> None:
    text = pack7(data)
    assert not any(ord(ch) in PACK_ESCAPED for ch in text)  # no NUL, CR or "<" in the page
    assert all(ord(ch) < 0x80 + 128 * len(PACK_ESCAPED) for ch in text)
    assert unpack7(text, len(data)) == data
    assert len(text) <= (8 * len(data)) // 7 + 1


def test_pack7_random_bytes() -> None:
    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 8, 9, 63, 1001):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert unpack7(pack7(data), size) == data


def packed_plotly(page: Page) -> str:
    """The plotly.js bundle a page inlines, unpacked and decompressed (exactly one)."""
    packed = [(a, s) for a, s in page.scripts if a.get("id") == "plotly-packed"]
    assert len(packed) == 1
    attrs, text = packed[0]
    assert attrs.get("type") == "text/plain"  # data, not run by the browser as it is
    return gzip.decompress(unpack7(text, int(attrs["data-bytes"]))).decode("utf-8")


def test_plotly_js_inlined_once_compressed(html: str, page: Page) -> None:
    cartesian = plotly_js("cartesian")
    assert cartesian[:60] not in html  # not as plain text
    # heatmaps, bars and lines only: the partial bundle, at under a tenth of the full bundle's size
    assert packed_plotly(page) == cartesian
    assert len(cartesian) < 0.32 * len(plotly_js("full")) and len(html.encode("utf-8")) < 1_000_000
    assert html.index('id="plotly-packed"') < html.index('class="plotly-graph-div')


def test_vendored_bundle_is_the_plotly_packages_version() -> None:
    from reportgen.render import CARTESIAN_BUNDLE, bundle_version, read_asset

    js = plotly_js("cartesian")
    assert hashlib.sha256(js.encode("utf-8")).hexdigest() in read_asset("vendor/README.md")
    assert CARTESIAN_BUNDLE.split("/")[-1] in read_asset("vendor/README.md")
    assert bundle_version(js) == bundle_version(plotly_js("full")) == "4.1.1"


def test_a_figure_outside_the_partial_bundle_gets_the_full_bundle() -> None:
    import plotly.graph_objects as go

    from reportgen.render import plotly_bundle

    assert plotly_bundle({"heatmap", "bar", "scatter"}) == "cartesian" and plotly_bundle(set()) == "cartesian"
    assert plotly_bundle({"heatmap", "table"}) == "full"
    seen: set[str] = set()
    plotly_div(go.Figure(go.Table(cells={"values": [["a"]]})), "t", trace_types=seen)
    plotly_div(go.Figure(go.Heatmap(z=[[1]])), "h", trace_types=seen)
    assert seen == {"table", "heatmap"}
    run = make_run(models=1)
    table = FigureSpec(id="tbl", title="A table", caption="", figure=go.Figure(go.Table(cells={"values": [["a"]]})), section="summary")
    assert packed_plotly(parse(html_of(run, [*make_figures(), table]))) == plotly_js("full")


def test_no_external_src_or_href(page: Page) -> None:
    for tag, attrs in page.elements:
        for name in ("src", "href", "action", "formaction", "poster", "data"):
            v = attrs.get(name)
            if v is None:
                continue
            assert v.startswith(("#", "data:")), (tag, name, v)
    assert not any(t in ("link", "iframe", "object", "embed", "img") for t, _ in page.elements)


def test_injected_text_is_escaped(html: str, page: Page) -> None:
    # No element created from data: no <img>, no event handler attribute, no extra script.
    assert not any(t == "img" for t, _ in page.elements)
    assert not any(k.startswith("on") for _, a in page.elements for k in a)
    for attrs, body in page.scripts:
        low = body.lower()
        assert "<script" not in low and "</script" not in low
        assert "alert(1)" not in body or attrs.get("type") == "application/json" or "\\u003c" in body
    n_scripts = html.lower().count("<script")
    assert n_scripts == len(page.scripts)
    # The literal text is there, escaped, and reads back as text.
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    text = page.visible_text()
    assert INJECT_SCRIPT in text
    assert INJECT_IMG in text
    assert "sampler <b>crashed</b>" in text  # a failed method's reason is data too


def test_plotly_json_escapes_script_end() -> None:
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=[[1]], x=["</script><script>alert(1)</script>"], y=["a"]), layout={"title": INJECT_SCRIPT})
    div = str(plotly_div(fig, "x"))
    p = parse(div)
    assert len(p.scripts) == 1
    assert "</script" not in p.scripts[0][1].lower()
    assert "\\u003c\\u002fscript\\u003e" in div


def test_script_json_escapes() -> None:
    s = str(script_json({"t": "</script><!--&\u2028"}))
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    import json

    assert json.loads(s) == {"t": "</script><!--&\u2028"}


def test_narrative_markdown(html: str, page: Page) -> None:
    assert "<strong>two</strong>" in html and "<em>two</em>" in html
    assert "&lt;script&gt;alert(" in html
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html
    assert not any("alert('md')" in body for attrs, body in page.scripts if attrs.get("type") != "application/json")  # data, not code
    assert '<a href="#anomalies">the anomalies</a>' in html
    assert "[an external site](https://example.com)" in page.visible_text()
    # placement: "Scope" before the results, "Conclusions" after
    assert html.index('id="narrative-scope"') < html.index('id="results"') < html.index('id="narrative-conclusions"')


def test_markdown_raw_html_not_passed() -> None:
    out = str(markdown_html('<div onclick="x()">hi</div>\n\n![i](http://h/x.png)'))
    assert "<div" not in out and "&lt;div" in out
    assert "<img" not in out


def test_findings_sorted_with_evidence(page: Page, html: str) -> None:
    text = page.visible_text()
    pos = [html.index(f'id="finding-{k}"') for k in (1, 2, 3)]
    assert pos == sorted(pos)
    sevs = re.findall(r'class="finding sev-border-(\w+)" id="finding-\d"', html)
    assert sevs == ["high", "medium", "info"]
    assert "2.34568" in text and "nested.z" in text  # evidence numbers, nested keys flattened
    assert "Check whether the token is redundant." in text
    assert 'href="#panel-smol-capital"' in html


def test_no_findings_says_what_was_checked() -> None:
    p = parse(html_of(make_run(findings=False), []))
    t = p.visible_text()
    assert "No anomalies were found." in t
    assert "detector kl_outlier: read probabilistic results" in t
    assert "detector dbsa_significant: had nothing to read (it reads dbsa, which this audit did not run)" in t


def test_summary_status_and_timings(page: Page) -> None:
    t = page.visible_text()
    assert "attention needs attn_implementation='eager'" in t
    assert "unavailable" in t and "ok 1/2" in t
    assert "65.0 s" in t  # run timings
    assert "embedded:smollm2-135m-instruct" in t


def test_provenance(page: Page, html: str, run: Any) -> None:
    t = page.visible_text()
    for key in ("packages.torch", "models.smol.file_sha256", "spec_sha256", "seed", "device", "python"):
        assert key in t
    assert "2025-01-02T03:04:05+00:00" in t and "2025-01-02T03:05:15+00:00" in t
    pre = re.search(r'<pre class="spec">(.*?)</pre>', html, re.S)
    assert pre is not None
    import html as htmlmod

    assert htmlmod.unescape(pre.group(1)) == run.spec_text


def test_token_views_mute_special_and_show_exact_scores(run: Any, page: Page) -> None:
    spans = [a for t, a in page.elements if t == "span" and "tok" in (a.get("class") or "").split()]
    special = [a for a in spans if "special" in (a.get("class") or "")]
    assert special and all("style" not in a for a in special)
    r = next(x for x in run.results if x.method == "saliency" and x.model_id == "smol" and x.prompt_id == "capital")
    ix, _ = token_importance(r.matrix)
    titles = [a["title"] for a in spans if a.get("title", "").startswith("input#3 ")]
    assert any(f"I(x) = {ix[3]:.9g}" in tt for tt in titles)


def test_method_switch_and_window_controls(page: Page, html: str) -> None:
    panel = 'id="panel-smol-capital"'
    assert panel in html
    buttons = [a for t, a in page.elements if t == "button" and a.get("data-key")]
    assert {a["data-key"] for a in buttons} >= {"saliency", "integrated_gradients", "attention", "probabilistic"}
    ranges = [a for t, a in page.elements if t == "input" and a.get("type") == "range"]
    assert ranges and all(int(a["max"]) >= 1 for a in ranges)
    data = [s for a, s in page.scripts if a.get("type") == "application/json"]
    assert data and all("<" not in s for s in data)


def test_model_comparison_and_difference() -> None:
    run = make_run()
    ctx = build_context(render_context(run, [], DETECTORS), PlotlyDrawer())
    comps = [c for s in ctx.sections for c in s.comparisons]
    assert [c.id for c in comps] == ["compare-capital-smol-vs-tiny", "compare-inject-smol-vs-tiny"]
    html = html_of(run, [])
    assert 'id="diff-inject-saliency-smol-minus-tiny"' in html
    one = html_of(make_run(models=1), [])
    assert "compare-" not in one and "diff-" not in one


def test_plugin_figures_placed_by_section(html: str) -> None:
    assert html.index('id="summary-overview"') < html.index('id="anomalies"')
    assert html.index('id="anomalies"') < html.index('id="anomaly-scatter"') < html.index('id="results"')
    p = html.index('id="panel-smol-inject"')
    assert p < html.index('id="pas-as-smol-inject"') < html.index('id="panel-tiny-inject"')


def test_deterministic(run: Any) -> None:
    a = html_of(run, make_figures())
    b = html_of(make_run(), make_figures())
    assert a == b


def test_renderer_writes_file(tmp_path: Any, run: Any) -> None:
    out = tmp_path / "report.html.tmp"
    HtmlRenderer().render(render_context(run), str(out))
    assert out.read_text("utf-8").startswith("<!DOCTYPE html>")


def test_downsampled_heatmap_note() -> None:
    run = make_run()
    run = dataclasses.replace(
        run, spec=run.spec.model_copy(update={"report": run.spec.report.model_copy(update={"max_heatmap_cells": 100})})
    )
    html = html_of(run, [])
    assert "exceed report.max_heatmap_cells=100" in html


# --------------------------------------------------------------------------- jinja environment


def _pm() -> Any:
    from reportgen.plugins import get_plugin_manager

    return get_plugin_manager(load_entrypoints=False)


def test_jinja_env_is_safe() -> None:
    env = make_jinja_env()
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert env.get_template("partials/narrative.html").environment.autoescape is not False
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ nope }}").render()


def test_prepare_jinja_env_hook_and_registration() -> None:
    import reportgen_plugins.renderers as mod

    class Extra:
        @hookimpl
        def reportgen_prepare_jinja_env(self, env: jinja2.Environment) -> None:
            env.filters["shout"] = lambda s: str(s).upper()

    pm = _pm()
    pm.register(mod, name="renderers")
    pm.register(Extra(), name="extra")
    env = make_jinja_env(pm)
    assert env.from_string("{{ 'a<'|shout }}").render() == "A&lt;"
    from reportgen.plugins import Registry

    assert isinstance(Registry(pm).renderers["html"], HtmlRenderer)


# --------------------------------------------------------------------------- figure helpers (oracles)


def test_token_colours_unsigned_is_eq7_over_user_tokens() -> None:
    vals = [10.0, 1.0, 3.0, 2.0, None]
    special = [True, False, False, False, False]
    cs = token_colours(vals, special, signed=False)
    ref = intensity(np.array([1.0, 3.0, 2.0]))
    assert [c.strength for c in cs[1:4]] == pytest.approx(list(ref))
    assert cs[0].strength == 1.0  # special token clipped into [0, 1]
    assert cs[4].css == ""
    assert cs[1].css == ""  # intensity 0: no colour


def test_token_colours_signed() -> None:
    cs = token_colours([2.0, -1.0, 0.0], None, signed=True)
    assert [c.strength for c in cs] == [1.0, -0.5, 0.0]
    assert cs[0].css.startswith("rgba(178,24,43,") and cs[1].css.startswith("rgba(33,102,172,")


def test_block_mean_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(13, 7))
    a[2, 3] = np.nan
    fr, fc = block_factors(13, 7, 20)
    assert math.ceil(13 / fr) * math.ceil(7 / fc) <= 20
    got = block_mean(a, fr, fc)
    for bi in range(got.shape[0]):
        for bj in range(got.shape[1]):
            cells = [a[i, j] for i in range(bi * fr, min(13, (bi + 1) * fr)) for j in range(bj * fc, min(7, (bj + 1) * fc))]
            cells = [c for c in cells if not np.isnan(c)]
            assert got[bi, bj] == pytest.approx(sum(cells) / len(cells))


def test_downsample_noop_and_labels_unique() -> None:
    a = np.arange(12.0).reshape(4, 3)
    ds = downsample(a, ["a", "a", "b", "<b>"], ["x", "x", "y"], 100)
    assert not ds.reduced and np.array_equal(ds.matrix, a)
    assert len(set(ds.row_labels)) == 4 and ds.row_labels[3] == "3: &lt;b&gt;"


def test_heatmap_signed_is_symmetric() -> None:
    fig, _ = heatmap(np.array([[1.0, -3.0]]), ["a"], ["x", "y"], signed=True)
    tr = fig.data[0]
    assert tr.zmid == 0 and tr.zmin == -3 and tr.zmax == 3


def test_figure_spec_with_dict_figure_renders() -> None:
    fs = FigureSpec(id="dict fig!", title="t", caption="c", figure={"data": [{"type": "bar", "y": [1]}], "layout": {}}, section="summary")
    html = html_of(make_run(models=1), [fs])
    assert 'id="dict-fig"' in html


def test_scores_only_method_colours_input_by_primary_score(run: Any) -> None:
    ctx = build_context(render_context(run, [], DETECTORS), PlotlyDrawer())
    panel = next(p for s in ctx.sections for p in s.panels if p.id == "panel-smol-capital")
    mv = next(m for m in panel.methods if m.key == "probabilistic")
    assert mv.heatmap is None and "coloured by attribution_score" in mv.heatmap_note
    r = next(x for x in run.results if x.method == "probabilistic" and x.model_id == "smol" and x.prompt_id == "capital")
    cs = token_colours(r.scores["attribution_score"], run.generation("smol", "capital").input_special, signed=True)
    for tok, c in zip(mv.input_toks, cs, strict=True):
        assert tok.css == ("" if tok.special else c.css)
    assert mv.scores is not None and mv.scores.names == ("attribution_score", "entropy_prompt")


def test_generated_special_tokens_are_muted(run: Any) -> None:
    from reportgen.report.text import output_special

    g = run.generation("smol", "capital")
    assert output_special(g, [" Paris", "<|im_end|>", "\n", "user"]) == [False, True, False, True]
    assert output_special(g) == [False] * g.t


def test_unplaceable_figures_are_not_lost() -> None:
    import plotly.graph_objects as go

    figs = [
        FigureSpec(id="orphan", title="Orphan", caption="", figure=go.Figure(), section="prompt", model_id="nope", prompt_id="capital"),
    ]
    html = html_of(make_run(models=1), figs)
    assert html.index('id="other-figures"') < html.index('id="orphan"') < html.index('id="provenance"')


def test_finding_context_comes_from_positions(run: Any) -> None:
    from reportgen.report.text import finding_context

    g = run.generation("smol", "capital")
    user = g.user_positions
    k = user[2]
    before, marked, after = finding_context(g, (k,))
    assert marked == g.input_tokens[k]
    assert before == "".join(g.input_tokens[i] for i in user[:2])
    assert after.startswith(g.input_tokens[user[3]])
    # a span of two tokens is marked whole; positions that are not one span are listed
    assert finding_context(g, (k, k + 1))[1] == g.input_tokens[k] + g.input_tokens[k + 1]
    listed = finding_context(g, (user[0], user[3]))
    assert listed[0] == listed[2] == "" and f"({user[0]})" in listed[1] and f"({user[3]})" in listed[1]
    assert finding_context(g, (g.n + 5,)) == ("", "", "")
    assert finding_context(None, (1,)) == ("", "", "")


def test_no_findings_names_what_each_detector_read() -> None:
    run = make_run(findings=False)
    dets = {"kl_outlier": ("probabilistic",), "dbsa_significant": ("dbsa",), "any": ()}
    ctx = build_context(render_context(run, [], dets), PlotlyDrawer())
    assert ctx.summary.checked[1:] == (
        "detector any: reads every method's results",
        "detector dbsa_significant: had nothing to read (it reads dbsa, which this audit did not run)",
        "detector kl_outlier: read probabilistic results",
    )
    assert ctx.summary.nothing_checked is False
    ctx = build_context(render_context(run, [], {"dbsa_significant": ("dbsa",)}), PlotlyDrawer())
    assert ctx.summary.nothing_checked is True
    html = html_of(run, [], {"dbsa_significant": ("dbsa",)})
    assert "no detector had results it could read" in html
    bare = build_context(render_context(run, [], {}), PlotlyDrawer())
    assert "no anomaly detector is installed" in bare.summary.checked


def test_edge_cases_render() -> None:
    """Empty response, all-NaN matrix, mismatched shape, a generation with no results."""
    run = make_run(models=1, findings=False)
    g0 = run.generation("smol", "capital")
    empty = dataclasses.replace(g0, output_ids=(), output_tokens=(), response_text="", step_scores={})
    gens = [empty, run.generation("smol", "inject")]
    base = {"model_id": "smol", "prompt_id": "capital", "options": {}, "input_tokens": list(g0.input_tokens), "output_tokens": []}
    from reportgen.data import AttributionResult

    results = [
        AttributionResult(method="saliency", matrix=np.zeros((g0.n, 0)), **base),
        AttributionResult(method="attention", matrix=np.full((g0.n, 0), np.nan), **base),
        AttributionResult(
            method="integrated_gradients",
            model_id="smol",
            prompt_id="inject",
            options={},
            input_tokens=list(gens[1].input_tokens),
            output_tokens=list(gens[1].output_tokens),
            matrix=np.full((gens[1].n, gens[1].t), np.nan),
            signed=True,
        ),
        AttributionResult(
            method="probabilistic",
            model_id="smol",
            prompt_id="inject",
            options={},
            input_tokens=list(gens[1].input_tokens),
            output_tokens=list(gens[1].output_tokens),
            matrix=np.ones((2, 2)),
        ),
    ]
    run = dataclasses.replace(run, generations=gens, results=results)
    html = html_of(run, [])
    p = parse(html)
    assert 'id="heatmap-smol-inject-integrated_gradients"' in html
    assert "does not match the tokens" in p.visible_text()
    assert "No attribution method" not in p.visible_text()
    assert "The response is empty" in p.visible_text()


def test_user_template_override(tmp_path: Any) -> None:
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "narrative.html").write_text('{% extends "default:partials/narrative.html" %}', "utf-8")
    (tmp_path / "report.html").write_text('OVERRIDE {% include "partials/narrative.html" %}', "utf-8")
    env = make_jinja_env(user_dir=tmp_path)
    from markupsafe import Markup

    from reportgen.report.model import Narrative

    out = env.get_template("report.html").render(n=Narrative("n-1", "<T>", Markup("<p>x</p>")))
    assert out.startswith("OVERRIDE") and 'id="n-1"' in out and "&lt;T&gt;" in out


def test_malformed_plugin_figure_does_not_break_report() -> None:
    fs = FigureSpec(id="broken", title="Broken", caption="", figure={"data": [{"type": "nonsense<b>"}]}, section="summary")
    html = html_of(make_run(models=1), [fs])
    p = parse(html)
    assert "This figure could not be drawn: ValueError" in p.visible_text()
    assert 'id="broken"' in html and "<b>" not in html.split('id="broken"')[1][:300]


def test_flatten_formats_numbers() -> None:
    from reportgen.report.text import flatten

    rows = flatten({"b": {"iv": [-6.29427433013916, 40.321630646239655, None]}, "a": 1, "c": ["x", 2], "d": 0.1234567})
    assert rows == [("a", "1"), ("b.iv", "[-6.29427, 40.3216, —]"), ("c", '["x", 2]'), ("d", "0.123457")]
    # records (a detector's candidate tokens): readable fields, token spaces shown, not raw JSON
    top = [{"id": 4649, "p": 0.998745278, "token": " France"}, {"id": 3, "p": 0.25, "token": "\n"}]
    assert flatten({"top": top}) == [("top", "id 4649, p 0.998745, token “␣France”; id 3, p 0.25, token “⏎”")]


def test_info_findings_collapsed(html: str) -> None:
    heads = re.findall(r'id="(finding-\d)">\s*<details class="finding-body"( open)?>', html)
    assert heads == [("finding-1", " open"), ("finding-2", " open"), ("finding-3", "")]


def test_run_id_and_results_digest_are_visible(run: Any, page: Page) -> None:
    """A reader matches the page to its results.json: run id and sha256 in the header, whole in provenance."""
    sha = hashlib.sha256(dumps(run).encode("utf-8")).hexdigest()
    run_id = run_to_json(run)["manifest"]["run_id"]
    text = re.sub(r"\s+", " ", page.visible_text())
    assert f"Run {run_id} · results.json sha256 {sha[:16]}…" in text
    assert re.search(f"run_id ?{run_id}", text) and re.search(f"results.json sha256 ?{sha}", text)  # the provenance table
    rebuilt = dataclasses.replace(run, provenance={**run.provenance, "rebuilt": {"at": "", "from": "results.json", "sha256": "cd" * 32}})
    text = re.sub(r"\s+", " ", parse(html_of(rebuilt)).visible_text())
    assert f"Run {run_id} · results.json sha256 {'cd' * 8}…" in text  # the file it was rebuilt from


def test_spaces_in_tokens_are_visible_in_score_tables_and_findings(page: Page, html: str) -> None:
    text = page.visible_text()
    assert "In the Token column ␣ marks a space" in text
    assert '<code class="tokcode">␣is</code>' in html and '<code class="tokcode">␣capital</code>' in html
    assert '<code class="tokcode"> capital</code>' not in html
    assert 'smol · capital · <code class="tokcode">␣France</code>' in html  # the finding's token
    strip = re.findall(r'<span class="tok[^"]*" data-i="\d+"[^>]*>([^<]*)</span>', html)
    assert " Paris" in strip and not any("␣" in t for t in strip)  # running text keeps its spaces
