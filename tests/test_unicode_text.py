"""Hostile text: bidi controls, invisible characters, right-to-left scripts and emoji stay data."""

from __future__ import annotations

import dataclasses

from report_fixtures import html_of, make_run

from reportgen.figures import esc
from reportgen.render import make_jinja_env, markdown_html
from reportgen.report.text import display_token
from reportgen.unicode import make_visible, neutralise

RLO, ZWSP, BOM, ZWJ = "\u202e", "\u200b", "\ufeff", "\u200d"


def test_neutralise_marks_bidi_and_control_characters_only() -> None:
    assert neutralise(f"audit {RLO}drow") == "audit ⟨U+202E⟩drow"
    assert neutralise("bell\x07 and nul\x00") == "bell⟨U+0007⟩ and nul⟨U+0000⟩"
    assert neutralise("line\nnext\ttab") == "line\nnext\ttab"  # layout characters are the callers' business
    family = f"👩{ZWJ}👩{ZWJ}👧 שלום café"
    assert neutralise(family) == family  # joiners and scripts are text, not controls


def test_make_visible_shows_every_invisible_character() -> None:
    assert make_visible(f"{ZWSP}") == "⟨U+200B⟩"
    assert make_visible(f"{BOM}x") == "⟨U+FEFF⟩x"
    assert make_visible(f"a{ZWJ}b") == "a⟨U+200D⟩b"
    assert make_visible("שלום") == "שלום"
    assert display_token(ZWSP) == "⟨U+200B⟩" and display_token(f"{RLO}x") == "⟨U+202E⟩x"
    assert esc(f"<{RLO}>") == "&lt;⟨U+202E⟩&gt;"


def test_every_printed_string_is_neutralised() -> None:
    env = make_jinja_env()
    assert env.from_string("{{ t }}").render(t=f"x{RLO}y") == "x⟨U+202E⟩y"
    assert f"{RLO}" not in str(markdown_html(f"# Title {RLO}reversed"))


def test_report_never_carries_a_bidi_control() -> None:
    run = make_run(models=1)
    spec = run.spec.model_copy(update={"title": f"Quarterly {RLO}audit", "description": f"before{RLO}after{BOM}"})
    g = run.generations[0]
    toks = list(g.input_tokens)
    k = g.user_positions[0]
    toks[k] = f"{RLO}{ZWSP}"
    results = [
        dataclasses.replace(r, input_tokens=list(toks)) if (r.model_id, r.prompt_id) == (g.model_id, g.prompt_id) else r
        for r in run.results
    ]
    gens = [dataclasses.replace(g, input_tokens=tuple(toks)), *run.generations[1:]]
    run = dataclasses.replace(run, spec=spec, generations=gens, results=results)
    html = html_of(run)
    assert RLO not in html and "Quarterly ⟨U+202E⟩audit" in html
    assert "⟨U+202E⟩⟨U+200B⟩" in html  # the token shows what it is


def test_markdown_tables_render() -> None:
    out = str(markdown_html("| a | b |\n|---|---|\n| 1 | <b>2</b> |\n"))
    assert "<table>" in out and "<td>1</td>" in out and "&lt;b&gt;2&lt;/b&gt;" in out
