"""The model comparison's synchronised hover: each unit's aligned partner and value as Python computes
them (reportgen.report.comparison.align and the granularity aggregation of both matrices), and in
headless Chromium the partner outlined and both values and their difference shown, for a prompt the
two models tokenised differently (words aligned by a diff) and one they tokenised alike (token by token)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_fixtures import html_of, make_run, render_context
from test_browser import CDP, browser, open_page, problems, requests  # noqa: F401  (browser is a fixture)

from reportgen.data import RunResult
from reportgen.granularity import aggregate_matrix
from reportgen.render import PlotlyDrawer
from reportgen.report import build_context
from reportgen.report.comparison import Alignment, align

LEFT, RIGHT = "smol", "tiny"
LABELS = {"left": "SmolLM2-135M", "right": "tiny"}


def _two_tokenizers() -> RunResult:
    """make_run, with tiny's capital prompt tokenised otherwise: 'What' + ' is' one token and a
    beginning-of-text token before its chat template (its matrices' rows summed / given a row to
    match), and tiny's shorter response: both aligned per word, no side's index equal to its
    partner's. The inject prompt keeps the same tokens on both sides (token by token)."""
    run = make_run()
    g = run.generation(RIGHT, "capital")
    assert g is not None
    a, b = [i for i, sp in enumerate(g.input_special) if not sp][:2]
    merged = ["<s>", *g.input_tokens[:a], g.input_tokens[a] + g.input_tokens[b], *g.input_tokens[b + 1 :]]
    special = [True, *(sp for i, sp in enumerate(g.input_special) if i != b)]
    g2 = dataclasses.replace(g, input_tokens=tuple(merged), input_special=tuple(special), input_ids=(1, *g.input_ids[:-1]))
    results = []
    for r in run.results:
        if (r.model_id, r.prompt_id) == (RIGHT, "capital") and r.matrix is not None:
            m = np.asarray(r.matrix)
            r = dataclasses.replace(r, matrix=np.vstack([m[:1] / 2, m[:a], m[a] + m[b], m[b + 1 :]]), input_tokens=merged)
        results.append(r)
    return dataclasses.replace(run, generations=[g2 if x is g else x for x in run.generations], results=results)


def _expected(run: RunResult, prompt: str, method: str) -> tuple[Alignment, dict[str, dict[str, np.ndarray]]]:
    """The oracle: Python's alignment, and per side I(x) / I(y) of each unit from the matrix aggregated
    to the alignment's units (row and column sums of Wᵢₙᵀ A Wₒᵤₜ)."""
    ga, gb = run.generation(LEFT, prompt), run.generation(RIGHT, prompt)
    assert ga is not None and gb is not None
    al = align(ga, gb, run.spec.aggregations.granularity)
    mats = {r.model_id: np.asarray(r.matrix) for r in run.results if r.prompt_id == prompt and r.method == method}
    vals = {}
    for side, model, (ui, uo) in (("left", LEFT, (al.left_in, al.left_out)), ("right", RIGHT, (al.right_in, al.right_out))):
        agg = aggregate_matrix(mats[model], ui, uo)
        vals[side] = {"in": np.nansum(agg, 1), "out": np.nansum(agg, 0)}
    return al, vals


def _partners(al: Alignment) -> dict[str, dict[str, list[int | None]]]:
    def side(pairs: dict[int, int], n: int) -> list[int | None]:
        return [pairs.get(i) for i in range(n)]

    return {
        "left": {"in": side(dict(al.rows), len(al.left_in.units)), "out": side(dict(al.cols), len(al.left_out.units))},
        "right": {
            "in": side({j: i for i, j in al.rows}, len(al.right_in.units)),
            "out": side({j: i for i, j in al.cols}, len(al.right_out.units)),
        },
    }


@pytest.fixture(scope="module")
def run() -> RunResult:
    return _two_tokenizers()


@pytest.mark.parametrize(("prompt", "granularity"), [("capital", "word"), ("inject", "token")])
def test_embedded_partners_and_values_equal_pythons_alignment(run: RunResult, prompt: str, granularity: str) -> None:
    ctx = build_context(render_context(run), PlotlyDrawer())
    (c,) = [c for s in ctx.sections for c in s.comparisons if s.prompt_id == prompt]
    for cm in c.methods:
        if cm.key not in ("saliency", "integrated_gradients"):
            continue
        al, vals = _expected(run, prompt, cm.key)
        assert al.granularity == granularity
        assert cm.sync is not None
        got: Any = cm.sync.to_json()
        want = _partners(al)
        for side in ("left", "right"):
            for kind in ("in", "out"):
                unit = got[side][kind]
                assert unit["p"] == want[side][kind], (cm.key, side, kind)
                np.testing.assert_allclose(np.array(unit["v"], dtype=float), vals[side][kind], rtol=1e-12, atol=1e-12)
        if granularity == "token":  # token by token: the values are the matrices' plain row and column sums
            mats = {r.model_id: np.asarray(r.matrix) for r in run.results if r.prompt_id == prompt and r.method == cm.key}
            np.testing.assert_allclose(got["left"]["in"]["v"], mats[LEFT].sum(1), rtol=1e-12)
            np.testing.assert_allclose(got["right"]["out"]["v"], mats[RIGHT].sum(0), rtol=1e-12)
    if granularity == "word":  # tiny's extra first token: input partners shifted by one; ' The' has none
        p = _partners(_expected(run, prompt, "saliency")[0])
        assert p["left"]["in"][0] == 1 and p["right"]["in"][1] == 0 and p["right"]["in"][0] is None
        assert None in p["left"]["out"]


def test_scores_only_method_carries_its_score_per_unit() -> None:
    run = make_run()  # the capital prompt: the same input tokens, one word each; the responses differ
    ctx = build_context(render_context(run), PlotlyDrawer())
    (c,) = [c for s in ctx.sections for c in s.comparisons if s.prompt_id == "capital"]
    (cm,) = [cm for cm in c.methods if cm.key == "probabilistic"]
    assert cm.sync is not None
    got: Any = cm.sync.to_json()
    for side, model in (("left", LEFT), ("right", RIGHT)):
        (r,) = [r for r in run.results_for(model, "capital") if r.method == "probabilistic"]
        g = run.generation(model, "capital")
        assert g is not None and len(got[side]["in"]["v"]) == g.n
        want = [np.nan if x is None else x for x in r.scores["attribution_score"]]
        have = [np.nan if x is None else x for x in got[side]["in"]["v"]]
        np.testing.assert_allclose(have, want, rtol=1e-12)  # NaN where a template token has no score
        assert set(got[side]["out"]["v"]) == {None}  # a per-input score: responses have none
    assert got["left"]["in"]["p"] == list(range(len(got["left"]["in"]["v"])))


# ---- headless Chromium ----------------------------------------------------------------------------

STATE = """
(() => {
  const view = document.querySelector(%s);
  const ro = view.querySelector('.sync-readout');
  const id = sp => sp.closest('.tokens-block').dataset.model + ':' + sp.closest('.tokens').dataset.side + ':' + sp.dataset.i;
  return {text: ro.textContent, unit: ro.dataset.unit || null, left: ro.dataset.leftValue || null,
          right: ro.dataset.rightValue || null, delta: ro.dataset.delta || null,
          hovered: Array.from(view.querySelectorAll('.sync-hovered')).map(id),
          partner: Array.from(view.querySelectorAll('.sync-partner')).map(id),
          focused: document.activeElement && document.activeElement.classList.contains('tok') ? id(document.activeElement) : null};
})()
"""


def _span(view: str, side: str, kind: str, i: int) -> str:
    return f'{view} .tokens-block[data-model="{side}"] .tokens[data-side="{kind}"] .tok[data-i="{i}"]'


def _hover(cdp: CDP, selector: str) -> None:
    """A real pointer move onto the span's centre (its prompt opened and scrolled into view)."""
    x, y = cdp.eval(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        " for (let d = e.parentElement; d; d = d.parentElement) { if (d.tagName === 'DETAILS') d.open = true; }"
        " e.scrollIntoView({block: 'center', behavior: 'instant'});"
        " const b = e.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; })()"
    )
    cdp.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)


def _state(cdp: CDP, view: str) -> dict[str, Any]:
    return dict(cdp.eval(STATE % json.dumps(view)))


def _numbers(text: str) -> tuple[float, float, float]:
    m = re.search(rf"· {re.escape(LABELS['left'])} (\S+) · {re.escape(LABELS['right'])} (\S+) · Δ (\S+)$", text)
    assert m, text
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def _check_pair(state: dict[str, Any], me: str, partner: str, left: float, right: float) -> None:
    assert state["hovered"] == [me] and state["partner"] == [partner], state
    assert float(state["left"]) == pytest.approx(left, rel=1e-12, abs=1e-12)
    assert float(state["right"]) == pytest.approx(right, rel=1e-12, abs=1e-12)
    assert float(state["delta"]) == pytest.approx(left - right, rel=1e-9, abs=1e-12)
    shown = _numbers(state["text"])  # four significant digits on screen
    for s, w in zip(shown, (left, right, left - right), strict=True):
        assert s == pytest.approx(w, rel=1e-3, abs=1e-9), state["text"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, run: RunResult) -> Path:
    path = tmp_path_factory.mktemp("compare") / "report.html"
    path.write_text(html_of(run), "utf-8")
    return path


def _aligned_user(al: Alignment, kind: str) -> tuple[int, int]:
    """The first aligned (left, right) pair of non-template units of ``kind``."""
    units = al.left_in.units if kind == "in" else al.left_out.units
    pairs = al.rows if kind == "in" else al.cols
    return next((i, j) for i, j in pairs if not units[i].special and units[i].core.strip())


@pytest.mark.browser
@pytest.mark.parametrize("prompt", ["capital", "inject"])
def test_hover_both_sides_shows_partner_and_pythons_values(browser: str, page: Path, run: RunResult, prompt: str) -> None:  # noqa: F811
    cdp = open_page(browser, page.as_uri())
    try:
        for method in ("saliency", "integrated_gradients"):
            view = f'#compare-{prompt}-smol-vs-tiny .view[data-key="{method}"]'
            cdp.eval(f"document.querySelector('#compare-{prompt}-smol-vs-tiny .switch button[data-key=\"{method}\"]').click()")
            al, vals = _expected(run, prompt, method)
            for kind in ("in", "out"):
                i, j = _aligned_user(al, kind)
                want = vals["left"][kind][i], vals["right"][kind][j]
                _hover(cdp, _span(view, "left", kind, i))  # the left unit: its right partner
                _check_pair(_state(cdp, view), f"left:{kind}:{i}", f"right:{kind}:{j}", *want)
                _hover(cdp, _span(view, "right", kind, j))  # the right unit: its left partner
                _check_pair(_state(cdp, view), f"right:{kind}:{j}", f"left:{kind}:{i}", *want)
            # the keyboard: focusing a unit does the same
            i, j = al.rows[-1]
            cdp.eval(f"document.querySelector({json.dumps(_span(view, 'right', 'in', j))}).focus()")
            st = _state(cdp, view)
            assert st["focused"] == f"right:in:{j}"
            _check_pair(st, f"right:in:{j}", f"left:in:{i}", vals["left"]["in"][i], vals["right"]["in"][j])
            # leaving the view clears the highlight
            cdp.eval("document.activeElement.blur()")
            cdp.call("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)
            st = _state(cdp, view)
            assert st["hovered"] == [] and st["partner"] == [] and st["unit"] is None
        if prompt == "capital":  # tiny's response lacks ' The': no counterpart, its own value shown
            al, vals = _expected(run, prompt, "integrated_gradients")
            view = '#compare-capital-smol-vs-tiny .view[data-key="integrated_gradients"]'
            k = next(i for i in range(len(al.left_out.units)) if i not in dict(al.cols))
            _hover(cdp, _span(view, "left", "out", k))
            st = _state(cdp, view)
            assert st["hovered"] == [f"left:out:{k}"] and st["partner"] == []
            assert st["text"].endswith(f"no counterpart in {LABELS['right']}"), st["text"]
            assert f"‘{al.left_out.units[k].text.strip()}’" in st["text"]
            shown = float(st["text"].split(f"· {LABELS['left']} ")[1].split(" ")[0])
            assert shown == pytest.approx(vals["left"]["out"][k], rel=1e-3)
        assert cdp.eval("document.querySelectorAll('.side-by-side[data-sync] .tok:not([tabindex=\"0\"])').length") == 0
        assert problems(cdp) == []
        assert [u for u in requests(cdp) if not u.startswith(("file:", "data:", "about:"))] == []  # no host is asked
    finally:
        cdp.close()


def test_reportgen_diff_carries_the_synchronised_hover() -> None:
    from reportgen.diff import diff_html, diff_runs

    html = diff_html(diff_runs(make_run(seed=0), make_run(seed=1)))
    blocks = [json.loads(m) for m in re.findall(r'<script type="application/json" class="sync-data">(.*?)</script>', html)]
    assert blocks and 'data-left="OLD · SmolLM2-135M"' in html
    same = blocks[0]  # OLD and NEW: the same tokens, so every unit is its own partner
    assert same["left"]["in"]["p"] == list(range(len(same["left"]["in"]["v"])))
