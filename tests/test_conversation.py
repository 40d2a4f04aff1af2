"""Conversations: eq. 8 input construction, token roles and turns, eq. 11 temporal weighting,
turn shares, the spec's checks, a two-turn run on a tiny model and its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reportgen.conversation import content_spans, message_turns, temporal_matrix, token_roles, turn_messages, turn_shares
from reportgen.errors import SpecError
from reportgen.spec import Message, PromptSpec, validate_text
from tests import test_browser
from tests.conftest import write_spec


def _prompt(**kw: Any) -> PromptSpec:
    return PromptSpec.model_validate({"id": "c", **kw})


# --------------------------------------------------------------------------- eq. 8


def test_eq8_turn_inputs_hold_earlier_inputs_and_the_models_own_replies() -> None:
    p = _prompt(
        system="S",
        turns=[{"user": "U1"}, {"user": "U2", "assistant": "PINNED"}, {"tool": "T3", "user": "U3"}],
    )
    outs = ["Y1", None]
    assert turn_messages(p, outs, 1) == [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}]
    assert turn_messages(p, outs, 3) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "Y1"},  # the model's own output of turn 1
        {"role": "user", "content": "U2"},
        {"role": "assistant", "content": "PINNED"},  # pinned in the spec
        {"role": "tool", "content": "T3"},
        {"role": "user", "content": "U3"},
    ]
    with pytest.raises(ValueError, match="turn 1"):
        turn_messages(p, [None, None], 2)


def test_spec_messages_name_the_replies_the_model_writes() -> None:
    from reportgen.conversation import spec_messages

    p = _prompt(system="S", turns=[{"user": "U1"}, {"user": "U2", "assistant": "P"}, {"tool": "T", "user": "U3"}])
    assert spec_messages(p) == [
        ("system", "S"),
        ("user", "U1"),
        ("assistant", "(the model's own reply to turn 1)"),
        ("user", "U2"),
        ("assistant", "P"),
        ("tool", "T"),
        ("user", "U3"),
    ]
    assert spec_messages(_prompt(text="hi")) == [("user", "hi")]


def test_message_turns_and_token_roles_on_a_hand_built_template() -> None:
    roles = ["system", "user", "assistant", "tool", "user"]
    assert message_turns(roles) == [1, 1, 1, 2, 2]
    contents = ["S", "hi", "yo", "T", "hi"]
    # a fake template: "<s>S</s><u>hi</u><a>yo</a><t>T</t><u>hi</u><a>"
    text = "".join(f"<{r[0]}>{c}</{r[0]}>" for r, c in zip(roles, contents, strict=True)) + "<a>"
    spans = content_spans(text, contents)
    assert [text[a:b] for a, b in (s for s in spans if s is not None)] == contents  # the second "hi" is found after the first
    # fake tokenizer: one token per tag and per content
    offsets = []
    pos = 0
    for piece in text.replace(">", ">\0").replace("<", "\0<").split("\0"):
        if piece:
            offsets.append((pos, pos + len(piece)))
            pos += len(piece)
    r, t = token_roles(offsets, spans, roles)
    pieces = [text[a:b] for a, b in offsets]
    got = list(zip(pieces, r, t, strict=True))
    assert got[:3] == [("<s>", "system", 1), ("S", "system", 1), ("</s>", "user", 1)]  # markup after a content goes with the next message
    assert ("yo", "assistant", 1) in got and ("T", "tool", 2) in got
    assert got[-1] == ("<a>", "assistant", 2)  # the generation prompt: the reply being generated, turn 2
    assert r.count("tool") == 3 and t.count(2) == 8  # </a> <t> T </t> <u> hi </u> <a>


def test_content_spans_tolerate_a_template_that_strips_white_space() -> None:
    assert content_spans("<a>reply</a>", [" reply\n"]) == [(3, 8)]
    assert content_spans("<a>x</a>", ["missing"]) == [None]


# --------------------------------------------------------------------------- eq. 11 and shares


def test_temporal_weights_from_alpha_or_decay() -> None:
    assert _prompt(turns=[{"user": "a"}, {"user": "b"}, {"user": "c"}], temporal={"decay": 0.5}).temporal.weights(3) == [0.25, 0.5, 1.0]  # type: ignore[union-attr]
    assert _prompt(turns=[{"user": "a"}, {"user": "b"}], temporal={"alpha": [2, 0]}).temporal.weights(2) == [2.0, 0.0]  # type: ignore[union-attr]


def test_eq11_temporal_matrix_by_hand() -> None:
    a = np.array([[1.0, -2.0], [3.0, 4.0], [-5.0, np.nan]])
    turns = [1, 2, 2]
    got = temporal_matrix(a, turns, [0.5, 2.0])
    # Σ_t α_t A^t, A^t = A on the rows of turn t: row 0 · 0.5, rows 1–2 · 2
    want = 0.5 * np.array([[1.0, -2.0], [0, 0], [0, 0]]) + 2.0 * np.array([[0, 0], [3.0, 4.0], [-5.0, np.nan]])
    assert np.allclose(got, want, equal_nan=True)


def test_turn_shares_by_hand() -> None:
    a = np.array([[1.0, -1.0], [2.0, 0.0], [np.nan, 4.0], [1.0, 1.0]])
    roles = ["system", "user", "assistant", "user"]
    turns = [1, 1, 1, 2]
    shares = turn_shares(a, roles, turns, [1.0, 3.0])
    # Σ|A| per row: 2, 2, 4 (NaN skipped), 2 → total 10; α-weighted: 2, 2, 4, 6 → total 14
    got = [(s.turn, s.role, s.tokens, s.share, s.weighted) for s in shares]
    assert got == [
        (1, "system", 1, pytest.approx(0.2), pytest.approx(2 / 14)),
        (1, "user", 1, pytest.approx(0.2), pytest.approx(2 / 14)),
        (1, "assistant", 1, pytest.approx(0.4), pytest.approx(4 / 14)),
        (2, "user", 1, pytest.approx(0.2), pytest.approx(6 / 14)),
    ]
    assert all(s.share is None for s in turn_shares(np.zeros((2, 1)), ["user"] * 2, [1, 1], [1.0]))


# --------------------------------------------------------------------------- spec


BASE = """\
models:
  - id: tiny
    source: "tiny:1"
methods:
  - method: inseq.saliency
prompts:
  - id: chat
{body}
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    turns: []", "'turns' is empty"),
        ("    turns:\n      - user: a\n        assistant: b", "cannot be pinned"),
        ("    turns:\n      - assistant: b\n      - user: c", "needs 'user' or 'tool'"),
        ("    turns:\n      - user: a\n    temporal: {alpha: [1, 2]}", "one per turn (1)"),
        ("    turns:\n      - user: a\n    temporal: {alpha: [-1]}", "greater than or equal to 0"),
        ("    turns:\n      - user: a\n    temporal: {decay: 0.5, alpha: [1]}", "exactly one of 'alpha' or 'decay'"),
        ("    text: hi\n    temporal: {decay: 0.5}", "go with 'turns'"),
        ("    text: hi\n    turns:\n      - user: a", "exactly one of 'text', 'messages' or 'turns'"),
    ],
)
def test_spec_errors_are_placed(body: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        validate_text(BASE.format(body=body), "a.yaml")
    assert any(p.startswith("a.yaml:") and message in p for p in err.value.problems), err.value.problems


# --------------------------------------------------------------------------- a run on a tiny model

SPEC = """\
title: conversation
models:
  - id: tiny
    source: "tiny:2"
prompts:
  - id: chat
    system: "Answer briefly."
    turns:
      - user: "What is the capital of France?"
      - user: "And of Italy?"
    temporal: {decay: 0.5}
generation: {max_new_tokens: 3}
methods:
  - method: inseq.saliency
  - method: inseq.input_x_gradient
report:
  formats: [json, html]
"""


@pytest.fixture(scope="module")
def conversation_run(tmp_path_factory: pytest.TempPathFactory, smollm_tokenizer: Any) -> tuple[Any, dict[str, str], Path]:
    from reportgen import hookimpl
    from reportgen.plugins import Registry, get_plugin_manager
    from reportgen.runner import RunOptions, run_audit
    from tests.conftest import TinyLoader

    loader = TinyLoader(smollm_tokenizer)

    class _Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(_Plugin(), name="tests-conversation")
    tmp = tmp_path_factory.mktemp("conv")
    spec = write_spec(tmp, SPEC)
    run, written = run_audit(spec, RunOptions(output=str(tmp / "out")), Registry(pm))
    return run, written, tmp


def test_runner_builds_turn_two_from_the_models_own_turn_one_reply(conversation_run: Any, smollm_tokenizer: Any) -> None:
    from reportgen.conversation import turn_messages
    from reportgen.generate import generate
    from reportgen.spec import GenerationSpec, Message

    run, written, _tmp = conversation_run
    (g,) = run.generations
    msgs = g.messages
    assert [(m["role"], m["turn"], m["generated"]) for m in msgs] == [
        ("system", 1, False),
        ("user", 1, False),
        ("assistant", 1, True),
        ("user", 2, False),
    ]
    # turn 1 generated on its own gives exactly the reply the runner put into turn 2's input
    from tests.conftest import TinyLoader

    loaded = TinyLoader(smollm_tokenizer).load(run.spec.models[0], base_dir=".", device="cpu")
    p = run.spec.prompts[0]
    first = generate(
        loaded, PromptSpec(id="chat", messages=[Message(**m) for m in turn_messages(p, [], 1)]), GenerationSpec(max_new_tokens=3), seed=0
    )
    assert msgs[2]["content"] == first.response_text
    # every input token has a role and a turn; the earlier reply's tokens are the assistant's, turn 1
    assert len(g.input_roles) == len(g.input_turns) == g.n
    reply = [i for i in range(g.n) if g.input_roles[i] == "assistant" and g.input_turns[i] == 1]
    assert reply and first.response_text.strip() in "".join(g.input_tokens[i] for i in reply)
    assert set(g.input_roles) == {"system", "user", "assistant"}
    assert g.input_turns[-1] == 2 and g.input_roles[-1] == "assistant"  # the generation prompt
    data = json.loads(Path(written["json"]).read_text("utf-8"))
    rec = data["generations"][0]
    assert rec["input_roles"] == list(g.input_roles) and rec["input_turns"] == list(g.input_turns)
    assert [m["generated"] for m in rec["messages"]] == [False, False, True, False]


def test_results_json_without_roles_still_loads(conversation_run: Any, tmp_path: Path) -> None:
    from reportgen.results import load_run

    _run, written, _tmp = conversation_run
    data = json.loads(Path(written["json"]).read_text("utf-8"))
    for g in data["generations"]:
        for k in ("input_roles", "input_turns", "messages"):
            g.pop(k)
    data["schema_version"] = "1.1"
    old = tmp_path / "results.json"
    old.write_text(json.dumps(data), encoding="utf-8")
    back = load_run(old)
    assert back.generations[0].input_roles == () and back.generations[0].messages == ()


# --------------------------------------------------------------------------- the report


def _oracle_shares(matrix: Any, roles: list[str], turns: list[int]) -> dict[tuple[int, str], float]:
    """Σ|A| per (turn, role) over Σ|A|, cell by cell."""
    total = 0.0
    per: dict[tuple[int, str], float] = {}
    for i, row in enumerate(matrix):
        for v in row:
            if v == v:  # not NaN
                total += abs(v)
                per[(turns[i], roles[i])] = per.get((turns[i], roles[i]), 0.0) + abs(v)
    return {k: v / total for k, v in per.items()}


def test_html_timeline_shows_each_turns_share(conversation_run: Any) -> None:
    import re

    run, written, _tmp = conversation_run
    (g,) = run.generations
    html = Path(written["html"]).read_text("utf-8")
    assert 'class="conversation"' in html and "Temporal aggregation (eq. 11)" in html
    assert "α_t = 0.5^(K−t) with K = 2" in html
    sal = next(r for r in run.results if r.method == "inseq.saliency")
    want = _oracle_shares(sal.matrix, list(g.input_roles), list(g.input_turns))
    table = html[html.index('<table class="timeline">') : html.index("</table>", html.index('<table class="timeline">'))]
    rows = re.findall(r'<tr class="timeline-row[^"]*" data-turn="(\d+)" data-role="(\w+)">(.*?)</tr>', table, re.S)
    assert [(int(t), r) for t, r, _ in rows] == [*want.keys(), (2, "assistant")] or len(rows) == len(want) + 1
    for t, r, body in rows[:-1]:
        cells = re.findall(r'<td class="num share">([^<]*)</td>', body)
        assert cells[0] == f"{100 * want[(int(t), r)]:.1f} %"  # saliency is the first method
    # eq. 11 weighted shares of the two turns: α = (0.5, 1)
    per_turn = {t: sum(v for (tt, _r), v in want.items() if tt == t) for t in (1, 2)}
    z = 0.5 * per_turn[1] + per_turn[2]
    weighted = re.findall(r'<td class="num weighted">([^<]*)</td>', html)
    assert weighted[0] == f"{100 * 0.5 * per_turn[1] / z:.1f} %" and weighted[2] == f"{100 * per_turn[2] / z:.1f} %"
    # every input token of the panels carries its role
    assert html.count('data-role="system"') >= g.input_roles.count("system")
    assert "Roles: a line under every token" in html
    # …in every view of the input and the response (method views, the blend, the plain tokens)
    views = re.findall(r'<div class="tokens" data-side="(\w+)">(.*?)</div>', html, re.S)
    assert views and all(body.count('<span class="tok') == body.count("data-role=") for _side, body in views)
    # the prompt's messages as the spec gives them, the model's own reply named, not quoted
    assert "(the model&#39;s own reply to turn 1)" in html


def test_pdf_prints_the_timeline_and_temporal_tables(conversation_run: Any) -> None:
    from reportgen_plugins.renderers.pdf import KaleidoExporter, SvgDrawer, render_html_for_pdf
    from tests.report_fixtures import render_context

    run, _written, _tmp = conversation_run
    html = render_html_for_pdf(render_context(run), SvgDrawer(KaleidoExporter(False)))
    assert '<div class="conversation"' in html and '<details class="conversation"' not in html  # print: no collapsing
    # system, user 1, the generated reply 1, user 2, the template opening reply 2, and reply 2 (the attributed output)
    assert html.count('<tr class="timeline-row') == 6
    assert "Temporal aggregation (eq. 11)" in html and '<td class="num alpha">0.5</td>' in html


browser = test_browser.browser  # the headless Chromium fixture (tests/test_browser.py)


@pytest.mark.browser
def test_browser_opens_the_conversation_timeline(conversation_run: Any, browser: str) -> None:
    _run, written, _tmp = conversation_run
    cdp = test_browser.open_page(browser, Path(written["html"]).as_uri())
    try:
        box = "document.querySelector('details.conversation')"
        assert cdp.eval(f"{box}.open") is True
        cdp.eval(f"{box}.querySelector('summary').click()")  # close it, then open it again as a reader would
        assert cdp.eval(f"{box}.open") is False
        cdp.eval(f"{box}.querySelector('summary').click()")
        assert cdp.eval(f"{box}.open") is True
        assert cdp.eval(f"{box}.querySelector('table.timeline').getBoundingClientRect().height") > 0
        assert cdp.eval(f"{box}.querySelectorAll('tr.timeline-row').length") >= 4
        assert cdp.eval("document.querySelectorAll('.tok[data-role=assistant]').length") > 0
        assert test_browser.problems(cdp) == []
        assert [u for u in test_browser.requests(cdp) if not u.startswith(("file:", "data:", "about:"))] == []
    finally:
        cdp.close()


# --------------------------------------------------------------------------- templates and black-box models


class _Template:
    """A fake tokenizer whose chat template knows only system, user and assistant messages."""

    def __init__(self, drop_tool: bool = False) -> None:
        self.drop_tool = drop_tool

    def apply_chat_template(self, messages: list[dict[str, str]], **_kw: Any) -> str:
        out = []
        for m in messages:
            if m["role"] == "tool":
                if self.drop_tool:
                    continue
                raise ValueError("Conversation roles must alternate user/assistant")
            out.append(f"<{m['role']}>{m['content']}")
        return "".join(out) + "<assistant>"


def test_a_template_without_tool_support_is_a_clear_spec_error() -> None:
    from reportgen.generate import render_prompt

    p = PromptSpec(id="c", messages=[{"role": "tool", "content": "42"}, {"role": "user", "content": "sum?"}])  # type: ignore[list-item]
    with pytest.raises(SpecError, match=r"prompt 'c': the model's chat template cannot render these messages \(roles tool, user\)"):
        render_prompt(_Template(), p, True)
    with pytest.raises(SpecError, match="leaves out 'tool' messages"):
        render_prompt(_Template(drop_tool=True), p, True)
    text, _spans = render_prompt(_Template(), p, False)  # no template: contents joined by blank lines
    assert text == "42\n\nsum?"


def test_black_box_pseudo_tokens_carry_roles_and_turns() -> None:
    from reportgen.generate import generate_via_sampler
    from reportgen.plugin_api import LoadedModel
    from reportgen.spec import GenerationSpec

    class Echo:
        chat = True

        def sample(self, payload: Any, n: int, **_kw: Any) -> list[str]:
            return ["fine thanks"] * n

    loaded = LoadedModel(id="api", source="x:y", model=None, tokenizer=None, chat_template=False, device="cpu", info={})
    loaded.sampler = Echo()  # type: ignore[assignment]
    msgs = [
        Message(**m)
        for m in turn_messages(_prompt(system="Be kind.", turns=[{"user": "Hi there"}, {"user": "How are you?"}]), ["Hello you"], 2)
    ]
    g = generate_via_sampler(loaded, PromptSpec(id="c", messages=msgs), GenerationSpec(max_new_tokens=4), seed=0)
    groups: dict[tuple[str, int], str] = {}
    for tok, role, turn in zip(g.input_tokens, g.input_roles, g.input_turns, strict=True):
        groups[(role, turn)] = groups.get((role, turn), "") + tok
    # a separator between messages belongs to the message after it
    assert groups == {
        ("system", 1): "Be kind.",
        ("user", 1): "\n\nHi there",
        ("assistant", 1): "\n\nHello you",
        ("user", 2): "\n\nHow are you?",
    }
    assert list(groups) == [("system", 1), ("user", 1), ("assistant", 1), ("user", 2)]  # in input order
