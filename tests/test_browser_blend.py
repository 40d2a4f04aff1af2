"""Headless Chromium: method toggles blend colours as reportgen.report.blend says, the eq. 10 view shows
Python's numbers, and the part-of-speech filter dims / isolates / compares the right tokens."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import html_of, make_run
from test_browser import browser, open_page, problems, requests  # noqa: F401  (browser is a fixture)

from reportgen.aggregate import multi_method_mean, token_importance
from reportgen.data import Generation, RunResult
from reportgen.report.blend import PALETTE, blend_rgba

pytestmark = pytest.mark.browser
PANEL = "#panel-smol-capital"


def _labelled(g: Generation) -> Generation:
    """Hand-made labels: user tokens alternate NOUN / VERB (the first one a PERSON), template tokens none."""
    pos_in = [None if sp else ("NOUN" if i % 2 else "VERB") for i, sp in enumerate(g.input_special)]
    ent_in = [None] * g.n
    ent_in[g.user_positions[0]] = "PERSON"
    pos_out = ["VERB" if j % 3 == 0 else "NOUN" for j in range(g.t)]
    lin = {"pipeline": "hand-made", "input_pos": pos_in, "input_ent": ent_in, "output_pos": pos_out, "output_ent": [None] * g.t}
    return dataclasses.replace(g, linguistics=lin)


@pytest.fixture(scope="module")
def run() -> RunResult:
    r = make_run()
    r.generations = [_labelled(g) for g in r.generations]
    return r


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, run: RunResult) -> Path:
    path = tmp_path_factory.mktemp("blend") / "report.html"
    path.write_text(html_of(run), "utf-8")
    return path


def _rgba(css: str) -> tuple[int, int, int, float] | None:
    m = re.match(r"rgba?\(([^)]*)\)", css)
    assert m, css
    p = [float(x) for x in m.group(1).split(",")]
    a = p[3] if len(p) == 4 else 1.0
    return None if a == 0 else (int(p[0]), int(p[1]), int(p[2]), a)


def _intensity(values: np.ndarray, special: list[bool], signed: bool) -> list[float | None]:
    """The oracle: eq. 7 over the user's tokens (|v| / max |v| when signed), rounded as embedded."""
    user = ~np.array(special)
    v = np.abs(values) if signed else values
    lo, hi = v[user].min(), v[user].max()
    s = v / hi if signed else (v - lo) / (hi - lo)
    return [None if sp else round(float(x), 4) for x, sp in zip(s, special, strict=True)]


def _colours(cdp: object, side: str) -> list[tuple[int, int, int, float] | None]:
    got = cdp.eval(  # type: ignore[attr-defined]
        f"Array.from(document.querySelectorAll('{PANEL} details.blend .tokens[data-side={side}] .tok'))"
        ".map(s => getComputedStyle(s).backgroundColor)"
    )
    return [_rgba(c) for c in got]


def _same(got: list[tuple[int, int, int, float] | None], want: list[tuple[int, int, int, float] | None]) -> None:
    """Equal colours: the same RGB, and the opacity to Chromium's 8-bit alpha."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert (g is None) == (w is None), (i, g, w)
        if g is not None and w is not None:
            assert g[:3] == w[:3] and g[3] == pytest.approx(w[3], abs=1 / 255 + 1e-3), (i, g, w)


def _mean_is(cdp: object, mats: dict[str, np.ndarray], on: list[str], special_out: list[bool]) -> None:
    """The eq. 10 view shows I(y) of Python's eq. 10 over exactly the methods ``on``, colours and legend too."""
    ev = cdp.eval  # type: ignore[attr-defined]
    assert ev(f"document.querySelector('{PANEL} details.blend').dataset.blend") == "mean:" + "+".join(on)
    legend = ev(f"(p => p.hidden ? '' : p.textContent)(document.querySelector('{PANEL} .blend-mean-of'))")
    assert "{" + ", ".join(on) + "}" in legend
    _, want_out = token_importance(multi_method_mean([mats[k] for k in on]))
    titles = ev(f"Array.from(document.querySelectorAll('{PANEL} details.blend .tokens[data-side=out] .tok')).map(s => s.title)")
    shown = [float(t.rsplit("mean of methods I = ", 1)[1]) for t in titles]
    assert shown == pytest.approx(want_out, rel=1e-3)
    teal = tuple(json.loads(ev(f"document.querySelector('{PANEL} script.blend-data').textContent"))["mean"]["colour"])
    want = _intensity(np.asarray(want_out), special_out, False)
    _same(_colours(cdp, "out"), [blend_rgba([s], [teal]) for s in want])  # type: ignore[list-item]


def test_blend_and_mean_of_methods(browser: str, page: Path, run: RunResult) -> None:  # noqa: F811
    g = run.generation("smol", "capital")
    assert g is not None
    res = {r.method: r for r in run.results if r.model_id == "smol" and r.prompt_id == "capital"}
    sal, ig = np.asarray(res["saliency"].matrix), np.asarray(res["integrated_gradients"].matrix)
    special_in = list(g.input_special)
    special_out = [False] * g.t
    s_in = [_intensity(np.nansum(sal, 1), special_in, False), _intensity(np.nansum(ig, 1), special_in, True)]
    s_out = [_intensity(np.nansum(sal, 0), special_out, False), _intensity(np.nansum(ig, 0), special_out, True)]
    red, blue = PALETTE[0][1], PALETTE[1][1]
    cdp = open_page(browser, page.as_uri())
    try:
        keys = cdp.eval(f"Array.from(document.querySelectorAll('{PANEL} input.blend-method')).map(i => i.checked)")
        assert keys[:2] == [True, True]  # saliency (red) and integrated gradients (blue) on at load
        if len(keys) > 2:  # attention, off at load
            assert keys[2:] == [False] * (len(keys) - 2)
        _same(_colours(cdp, "in"), [blend_rgba([a, b], [red, blue]) for a, b in zip(*s_in, strict=True)])
        _same(_colours(cdp, "out"), [blend_rgba([a, b], [red, blue]) for a, b in zip(*s_out, strict=True)])
        # the colours really mix: some token is neither pure red nor pure blue
        mixed = [c for c in _colours(cdp, "in") if c is not None and c[:3] not in (red, blue)]
        assert mixed

        # saliency off: integrated gradients alone, in blue
        cdp.eval(f"(() => {{ const t = document.querySelector('{PANEL} input.blend-method[data-m=\"0\"]'); t.click(); }})()")
        assert cdp.eval(f"document.querySelector('{PANEL} details.blend').dataset.blend") == "integrated_gradients"
        _same(_colours(cdp, "in"), [blend_rgba([b], [blue]) for b in s_in[1]])
        # and on again: the page's own blend of the two (the colours at load are rendered in Python)
        cdp.eval(f"document.querySelector('{PANEL} input.blend-method[data-m=\"0\"]').click()")
        assert cdp.eval(f"document.querySelector('{PANEL} details.blend').dataset.blend") == "saliency+integrated_gradients"
        _same(_colours(cdp, "in"), [blend_rgba([a, b], [red, blue]) for a, b in zip(*s_in, strict=True)])
        _same(_colours(cdp, "out"), [blend_rgba([a, b], [red, blue]) for a, b in zip(*s_out, strict=True)])

        # eq. 10: the mean of the min–max-scaled matrices of the methods toggled on, as Python computes it
        mats = {"saliency": sal, "integrated_gradients": ig, "attention": np.asarray(res["attention"].matrix)}
        cdp.eval(f"document.querySelector('{PANEL} input.blend-mean').click()")
        _mean_is(cdp, mats, ["saliency", "integrated_gradients"], special_out)
        cdp.eval(f"document.querySelector('{PANEL} input.blend-method[data-m=\"0\"]').click()")  # saliency off
        _mean_is(cdp, mats, ["integrated_gradients"], special_out)
        cdp.eval(f"document.querySelector('{PANEL} input.blend-method[data-m=\"2\"]').click()")  # attention on
        _mean_is(cdp, mats, ["integrated_gradients", "attention"], special_out)
        cdp.eval(f"document.querySelector('{PANEL} input.blend-method[data-m=\"0\"]').click()")  # all three
        _mean_is(cdp, mats, ["saliency", "integrated_gradients", "attention"], special_out)
        for m in range(3):  # none on: nothing to average, nothing coloured
            cdp.eval(f"document.querySelector('{PANEL} input.blend-method[data-m=\"{m}\"]').click()")
        assert cdp.eval(f"document.querySelector('{PANEL} details.blend').dataset.blend") == "mean:"
        assert all(c is None for c in _colours(cdp, "out"))
        assert "no method is toggled on" in cdp.eval(f"document.querySelector('{PANEL} .blend-mean-of').textContent")
        assert problems(cdp) == []
        assert [u for u in requests(cdp) if not u.startswith(("file:", "data:", "about:"))] == []
    finally:
        cdp.close()


SELECT_VERB = (
    "(() => {{ const s = document.querySelector('{p} select.ling-pos');"
    " Array.from(s.options).forEach(o => {{ o.selected = o.value === 'VERB'; }});"
    " s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()"
)
MODE = (
    "(() => {{ const r = document.querySelector('{p} .ling-modes input[value={m}]'); r.checked = true;"
    " r.dispatchEvent(new Event('change', {{bubbles: true}})); }})()"
)


def test_filter_by_part_of_speech(browser: str, page: Path, run: RunResult) -> None:  # noqa: F811
    g = run.generation("smol", "capital")
    assert g is not None
    verbs_in = [i for i, p in enumerate(g.linguistics["input_pos"]) if p == "VERB"]
    others_in = [i for i in range(g.n) if i not in verbs_in]
    cdp = open_page(browser, page.as_uri())
    try:
        view = f"{PANEL} .method-view[data-key=saliency] .tokens[data-side=in]"

        def marked(cls: str, box: str = view) -> list[int]:
            return list(cdp.eval(f"Array.from(document.querySelectorAll('{box} .tok.{cls}')).map(s => +s.dataset.i)"))

        assert cdp.eval(f"document.querySelectorAll('{PANEL} .ling-note').length") == 0
        cdp.eval(SELECT_VERB.format(p=PANEL))
        assert marked("ling-on") == verbs_in and marked("ling-dim") == others_in  # highlight: the others dimmed
        opacity = cdp.eval(f"getComputedStyle(document.querySelector('{view} .tok.ling-dim')).opacity")
        assert float(opacity) < 0.5
        blend_out = f"{PANEL} details.blend .tokens[data-side=out]"
        assert marked("ling-on", blend_out) == [j for j in range(g.t) if j % 3 == 0]  # the blend view follows too

        cdp.eval(MODE.format(p=PANEL, m="isolate"))
        assert marked("ling-dim") == [] and marked("ling-off") == others_in
        bgs = cdp.eval(f"Array.from(document.querySelectorAll('{view} .tok.ling-off')).map(s => getComputedStyle(s).backgroundColor)")
        assert all(_rgba(c) is None for c in bgs)  # the others lose their colour
        kept = cdp.eval(
            f"Array.from(document.querySelectorAll('{view} .tok:not(.ling-off)')).map(s => getComputedStyle(s).backgroundColor)"
        )
        assert any(_rgba(c) is not None for c in kept)

        cdp.eval(MODE.format(p=PANEL, m="compare"))
        assert marked("ling-off") == [] and marked("ling-dim") == []
        rows = cdp.eval(
            f"Array.from(document.querySelectorAll('{PANEL} table.ling-compare tbody tr')).filter(r => !r.hidden).map(r => r.dataset.label)"
        )
        assert cdp.eval(f"document.querySelector('{PANEL} table.ling-compare').hidden") is False
        assert rows == ["VERB"]
        assert problems(cdp) == []
        assert [u for u in requests(cdp) if not u.startswith(("file:", "data:", "about:"))] == []
    finally:
        cdp.close()


def test_without_labels_the_control_is_absent_and_the_report_says_why(browser: str, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "plain.html"
    path.write_text(html_of(make_run(models=1)), "utf-8")
    cdp = open_page(browser, path.as_uri())
    try:
        assert cdp.eval("document.querySelectorAll('.ling-filter').length") == 0
        note = cdp.eval(f"document.querySelector('{PANEL} .ling-note').textContent")
        assert "no spaCy pipeline" in note and "reportgen[linguistic]" in note
        assert problems(cdp) == []
    finally:
        cdp.close()
