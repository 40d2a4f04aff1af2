"""Token roles from the chat template's rendering: a system prompt the template writes itself
(SmolLM2's "You are a helpful AI assistant named SmolLM…") is the system's, not the first message's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import pytest

from reportgen.conversation import chat_roles, template_system
from tests.conftest import write_spec

# ChatML with a default system turn when the messages have none (as SmolLM2's and Qwen2.5's templates)
INJECTS = (
    "{% if messages[0]['role'] != 'system' %}<|s|>system\nYou are Tiny, a test model.<|e|>\n{% endif %}"
    "{% for m in messages %}<|s|>{{ m['role'] }}\n{{ m['content'] | trim }}<|e|>\n{% endfor %}<|s|>assistant\n"
)
# the same markup, no system turn of its own
PLAIN = "{% for m in messages %}<|s|>{{ m['role'] }}\n{{ m['content'] }}<|e|>\n{% endfor %}<|s|>assistant\n"
# a system header always written, with nothing of its own in it (as Llama 3.1's date lines, less the text)
HEADER = (
    "<|s|>system\n{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% endif %}<|e|>\n"
    "{% for m in messages %}{% if m['role'] != 'system' %}<|s|>{{ m['role'] }}\n{{ m['content'] }}<|e|>\n{% endif %}{% endfor %}"
)
# a template that refuses a system message
REFUSES = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise('no system role') }}{% endif %}"
    "[{{ m['role'] }}]{{ m['content'] }}{% endfor %}[assistant]"
)


def _render(template: str) -> Any:
    def fail(msg: str) -> None:
        raise ValueError(msg)

    t = jinja2.Environment(autoescape=False, keep_trailing_newline=True).from_string(template)
    return lambda msgs: t.render(messages=msgs, raise_exception=fail, **{"raise": fail})


def _tag_offsets(text: str) -> list[tuple[int, int]]:
    """A fake tokenizer: every <|…|> tag, every word and every run of white space is a token."""
    return [m.span() for m in re.finditer(r"<\|\w\|>|\w+|\s+|[^\w\s<]+|<", text)]


USER = [{"role": "user", "content": "Hi there"}]


def test_the_probe_finds_the_system_prompt_a_template_writes_itself() -> None:
    render = _render(INJECTS)
    text = render(USER)
    span = template_system(render, USER, text)
    assert span is not None and text[span[0] : span[1]] == "You are Tiny, a test model."
    # a spec that gives a system message, a template without a system turn of its own, one that
    # always writes an empty system header, one that refuses the system role: none
    assert template_system(render, [{"role": "system", "content": "Be brief."}, *USER], text) is None
    for template in (PLAIN, HEADER, REFUSES):
        r = _render(template)
        assert template_system(r, USER, r(USER)) is None, template
    assert template_system(render, [], "") is None


def test_chat_roles_give_the_templates_system_prompt_the_system_role() -> None:
    render = _render(INJECTS)
    msgs = [*USER, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    text = render(msgs)
    offsets = _tag_offsets(text)
    roles, turns = chat_roles(offsets, text, msgs, render)
    groups: dict[tuple[str, int], str] = {}
    for (a, b), r, t in zip(offsets, roles, turns, strict=True):
        groups[(r, t)] = groups.get((r, t), "") + text[a:b]
    # a message owns its markup and everything after the content before it (as for spec messages)
    assert groups == {
        ("system", 1): "<|s|>system\nYou are Tiny, a test model.",
        ("user", 1): "<|e|>\n<|s|>user\nHi there",
        ("assistant", 1): "<|e|>\n<|s|>assistant\nHello",
        ("user", 2): "<|e|>\n<|s|>user\nBye",
        ("assistant", 2): "<|e|>\n<|s|>assistant\n",  # the generation prompt of the reply being generated
    }
    # the same text with an explicit system message gives the same roles (the template's prompt is a system turn)
    explicit = [{"role": "system", "content": "You are Tiny, a test model."}, *msgs]
    assert render(explicit) == text and chat_roles(offsets, text, explicit, render) == (roles, turns)
    # without a chat template (render None) nothing is probed: the first message owns the text before it
    assert chat_roles(offsets, text, msgs, None)[0][:3] == ["user"] * 3


def test_smollm2_template_roles_on_a_tiny_model(smollm_tokenizer: Any) -> None:
    """SmolLM2's real chat template, a tiny random model: its default system prompt is the system's."""
    from reportgen.generate import generate
    from reportgen.spec import GenerationSpec, ModelSpec, PromptSpec
    from tests.conftest import TinyLoader

    loaded = TinyLoader(smollm_tokenizer).load(ModelSpec(id="t", source="tiny:1"), base_dir=".", device="cpu")
    g = generate(loaded, PromptSpec(id="p", text="The capital of France is"), GenerationSpec(max_new_tokens=2), seed=0)
    _check_smollm2_roles(g)


def _check_smollm2_roles(g: Any) -> None:
    def text(role: str) -> str:
        return "".join(t for t, r in zip(g.input_tokens, g.input_roles, strict=True) if r == role)

    assert set(g.input_turns) == {1}
    assert "You␣are␣a␣helpful␣AI␣assistant␣named␣SmolLM" in text("system").replace(" ", "␣")
    assert text("system").startswith("<|im_start|>")
    user = text("user")
    assert "The capital of France is" in user.replace("␣", " ") and "SmolLM" not in user
    assert g.input_roles[-1] == "assistant" and "assistant" in text("assistant")


@pytest.mark.slow
def test_smollm2_real_model_marks_its_default_system_prompt() -> None:
    from reportgen.generate import generate
    from reportgen.spec import GenerationSpec, ModelSpec, PromptSpec
    from reportgen_plugins.models.loaders import EmbeddedLoader

    loaded = EmbeddedLoader().load(ModelSpec(id="s", source="embedded:smollm2-135m-instruct"), base_dir=".", device="cpu")
    g = generate(loaded, PromptSpec(id="p", text="The capital of France is"), GenerationSpec(max_new_tokens=2), seed=0)
    _check_smollm2_roles(g)


SPEC = """\
title: roles
models:
  - id: tiny
    source: "tiny:2"
prompts:
  - id: p
    turns:
      - user: "The capital of France is"
      - user: "And of Italy?"
generation: {max_new_tokens: 2}
methods:
  - method: inseq.saliency
report:
  formats: [json, html]
"""


def test_report_legend_names_the_templates_own_system_prompt(tmp_path: Path, smollm_tokenizer: Any) -> None:
    from reportgen import hookimpl
    from reportgen.plugins import Registry, get_plugin_manager
    from reportgen.runner import RunOptions, run_audit
    from tests.conftest import TinyLoader

    class _Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(TinyLoader(smollm_tokenizer))

    pm = get_plugin_manager()
    pm.register(_Plugin(), name="tests-roles")
    run, written = run_audit(write_spec(tmp_path, SPEC), RunOptions(output=str(tmp_path / "out")), Registry(pm))
    (g,) = run.generations
    html = Path(written["html"]).read_text("utf-8")
    assert "the chat template wrote a system prompt of its own" in html
    system = re.findall(r'title="([^"]*)" data-role="system"', html)
    assert len(system) >= g.input_roles.count("system") > 0
    assert all("system (the chat template&#39;s own), turn 1" in t for t in system)
    assert re.search(r'title="[^"]*· user, turn 1" data-role="user"', html) and re.search(r'· user, turn 2" data-role="user"', html)
    # the conversation's timeline: a system row of the template's own, before the spec's turns
    rows = re.findall(r'<tr class="timeline-row[^"]*" data-turn="(\d+)" data-role="(\w+)">(.*?)</tr>', html, re.S)
    assert [(int(t), r) for t, r, _ in rows][:2] == [(1, "system"), (1, "user")]
    body = rows[0][2]
    assert "<em>chat template's own</em>" in body and "You␣are␣a␣helpful␣AI␣assistant" in body.replace(" ", "␣")
    assert f'<td class="num">{g.input_roles.count("system")}</td>' in body
