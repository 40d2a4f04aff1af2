"""The model comparison marks each token's chat role as the prompt's panels do (``data-role`` and the
role and turn on hover): token by token when both models tokenised alike, per word otherwise (a word
takes its tokens' role; one whose tokens belong to different messages stays unmarked)."""

from __future__ import annotations

import dataclasses
import re

from report_fixtures import html_of
from test_browser_compare import LEFT, RIGHT, _two_tokenizers

from reportgen.data import Generation, RunResult
from reportgen.granularity import units
from reportgen.report.comparison import mark_roles
from reportgen.report.text import token_views


def _roles(g: Generation) -> Generation:
    """Roles by hand: a beginning-of-text token 'system', the user message with the markup that opens
    it 'user', from the last '<|im_start|>' on (the reply's generation prompt) 'assistant'."""
    last = max(i for i, t in enumerate(g.input_tokens) if t == "<|im_start|>")
    roles = ["system" if t == "<s>" else "assistant" if i >= last else "user" for i, t in enumerate(g.input_tokens)]
    turns = [1] * g.n
    return dataclasses.replace(g, input_roles=tuple(roles), input_turns=tuple(turns))


def _run() -> RunResult:
    """Both models with roles; tiny's capital prompt as a chat of one user message, so its 'system'
    token is a system prompt the chat template wrote itself (named so on hover)."""
    run = _two_tokenizers()
    gens = [_roles(g) for g in run.generations]
    user = ({"role": "user", "content": "What is the capital of France?", "turn": 1},)
    gens = [dataclasses.replace(g, messages=user) if (g.model_id, g.prompt_id) == (RIGHT, "capital") else g for g in gens]
    return dataclasses.replace(run, generations=gens)


def _spans(html: str, article: str, model: str, side: str) -> list[tuple[int, str | None, str]]:
    """(index, data-role, title) of the first method view's spans of one side of a comparison."""
    body = html.split(f'id="{article}"', 1)[1].split("</article>", 1)[0]
    block = body.split(f'<div class="tokens-block" data-model="{model}">', 1)[1]
    box = block.split(f'<div class="tokens" data-side="{side}">', 1)[1].split("</div>", 1)[0]
    spans = re.findall(r'<span class="tok[^"]*" data-i="(\d+)" title="([^"]*)"(?: data-role="(\w+)")?', box)
    return [(int(i), role or None, title) for i, title, role in spans]


def _panel_roles(html: str, model: str, prompt: str) -> list[str]:
    body = html.split(f'id="panel-{model}-{prompt}"', 1)[1]
    box = body.split('<div class="tokens" data-side="in">', 1)[1].split("</div>", 1)[0]
    return re.findall(r'data-role="(\w+)"', box)


def test_token_by_token_roles_are_the_tokens_roles_as_in_the_panels() -> None:
    run = _run()
    html = html_of(run)
    for model in (LEFT, RIGHT):
        g = run.generation(model, "inject")
        assert g is not None
        side = "left" if model == LEFT else "right"
        ins = _spans(html, "compare-inject-smol-vs-tiny", side, "in")
        assert [r for _, r, _ in ins] == list(g.input_roles) == _panel_roles(html, model, "inject")
        assert all(title.endswith(f" · {role}, turn 1") for _, role, title in ins)
        outs = _spans(html, "compare-inject-smol-vs-tiny", side, "out")
        assert len(outs) == g.t and {r for _, r, _ in outs} == {"assistant"}


def test_words_take_the_role_of_their_tokens() -> None:
    html = html_of(_run())
    right = _spans(html, "compare-capital-smol-vs-tiny", "right", "in")
    # tiny's units: '<s>', the user message's markup and words ('What is' is one token, two words), the reply's prompt
    assert [r for _, r, _ in right] == ["system"] + ["user"] * 12 + ["assistant"] * 3
    own = " · system (the chat template's own), turn 1".replace("'", "&#39;")
    assert right[0][2].endswith(own)  # as the panel names it
    panel = html.split(f'id="panel-{RIGHT}-capital"', 1)[1].split("</article>", 1)[0]
    assert re.search(r'<span class="tok special" data-i="0" title="[^"]*' + re.escape(own) + '" data-role="system"', panel)
    left = _spans(html, "compare-capital-smol-vs-tiny", "left", "in")
    assert [r for _, r, _ in left] == ["user"] * 12 + ["assistant"] * 3
    assert {r for _, r, _ in _spans(html, "compare-capital-smol-vs-tiny", "left", "out")} == {"assistant"}


def test_a_word_across_two_messages_is_left_unmarked() -> None:
    tokens, special = ["Summ", "arise", " now"], [False] * 3
    us = units(tokens, special, "word")
    toks = token_views(us.texts, us.special, None, False, "", "input")
    marked = mark_roles(toks, us, (["system", "user", "user"], ["system", "user", "user"], [1, 1, 2]))
    assert [(t.text, t.role) for t in marked] == [("Summarise", ""), (" now", "user")]
    assert marked[1].title.endswith(" · user, turn 2") and marked[0].title == toks[0].title
