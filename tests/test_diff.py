"""Cross-tokenizer comparison per word, and ``reportgen diff OLD NEW`` (no model loaded)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from reportgen import hookimpl
from reportgen.cli import main
from reportgen.data import Finding, Generation
from reportgen.diff import diff_json, diff_runs
from reportgen.plugins import Registry, get_plugin_manager
from reportgen.render import PlotlyDrawer
from reportgen.report import build_context
from reportgen.report.comparison import align, delta
from reportgen.runner import RunOptions, run_audit
from tests.conftest import REPO, TinyLoader
from tests.report_fixtures import make_run, render_context

TEMPLATE = ["<|im_start|>", "user", "\n"]


def gen(model: str, user: list[str], out: list[str], template: list[str] = TEMPLATE) -> Generation:
    toks = [*template, *user]
    return Generation(
        model_id=model,
        prompt_id="p",
        input_ids=tuple(range(len(toks))),
        input_tokens=tuple(toks),
        input_special=tuple([True] * len(template) + [False] * len(user)),
        output_ids=tuple(range(len(out))),
        output_tokens=tuple(out),
        prompt_text="".join(user),
        response_text="".join(out),
    )


def test_different_tokenizers_are_compared_per_word() -> None:
    # "Hello world" cut two ways; the same one-token response
    a = gen("smol", ["Hel", "lo wor", "ld"], [" Hi"])
    b = gen("gemma", ["Hello", " world"], [" Hi"], template=["<start_of_turn>", "user", "\n"])
    al = align(a, b)
    assert al.granularity == "word"
    assert [al.left_in.units[i].core for i, _ in al.rows] == ["user", "\n", "Hello", "world"]  # <|im_start|> ≠ <start_of_turn>
    ma = np.array([[9.0], [0.0], [0.0], [1.0], [10.0], [100.0]])
    mb = np.array([[7.0], [0.0], [0.0], [3.0], [50.0]])
    d = delta(al, ma, mb)
    # smol per word: Hello = 1 + 0.4·10 = 5, world = 0.6·10 + 100 = 106; gemma: Hello 3, world 50
    assert d.rows == ("user", "\n", "Hello", " world")
    assert np.allclose(d.matrix[:, 0], [0.0, 0.0, 2.0, 56.0])
    assert "per word" in al.note("smol", "gemma") and "inputs differ" in al.note("smol", "gemma")


def test_different_responses_are_aligned_by_a_word_diff_not_by_position() -> None:
    a = gen("m1", ["Capital", "?"], [" The", " capital", " is", " Paris", "."])
    b = gen("m2", ["Capital", "?"], [" Paris", " is", " the", " capital", "."])
    al = align(a, b)
    assert al.granularity == "word"
    matched = [(al.left_out.units[i].core, al.right_out.units[j].core) for i, j in al.cols]
    assert matched == [("capital", "capital"), (".", ".")]  # matched by text, in order; never position 0 ↔ 0
    assert al.cols == ((1, 3), (4, 4))
    ma = np.arange(25, dtype=float).reshape(5, 5)  # 3 template + 2 user tokens, one word each
    mb = np.arange(25, 50, dtype=float).reshape(5, 5)
    d = delta(al, ma, mb)
    for k, (i, j) in enumerate(al.cols):
        assert np.allclose(d.matrix[:, k], ma[:, i] - mb[:, j])  # one token per word here
    assert "responses differ" in al.note("m1", "m2")


def test_same_tokens_stay_token_level_and_spec_granularity_is_honoured() -> None:
    a = gen("m1", ["Hel", "lo"], [" A", ".", " B", "."])
    b = dataclasses.replace(a, model_id="m2")
    assert align(a, b).granularity == "token"
    s = align(a, b, "sentence")
    assert s.granularity == "sentence" and [u.core for u in s.left_out.units] == ["A.", "B."]


def test_report_comparison_per_word_when_tokenisations_differ() -> None:
    run = make_run()
    g = run.generation("tiny", "capital")
    assert g is not None
    user = [i for i, sp in enumerate(g.input_special) if not sp]
    merged = list(g.input_tokens)  # "What is" as one token: another tokenizer
    merged[user[0]] = merged[user[0]] + merged[user[1]]
    del merged[user[1]]
    special = [sp for i, sp in enumerate(g.input_special) if i != user[1]]
    g2 = dataclasses.replace(g, input_tokens=tuple(merged), input_special=tuple(special), input_ids=g.input_ids[:-1])
    results = []
    for r in run.results:
        if (r.model_id, r.prompt_id) == ("tiny", "capital") and r.matrix is not None:
            m = np.asarray(r.matrix)
            m = np.vstack([m[: user[0]], m[user[0]] + m[user[1]], m[user[1] + 1 :]])
            r = dataclasses.replace(r, matrix=m, input_tokens=merged)
        results.append(r)
    run2 = dataclasses.replace(run, generations=[g2 if x is g else x for x in run.generations], results=results)
    ctx = build_context(render_context(run2), PlotlyDrawer())
    (c,) = [c for s in ctx.sections for c in s.comparisons if s.prompt_id == "capital"]
    sal = next(cm for cm in c.methods if cm.key == "saliency")
    assert sal.diff is not None and "per word" in sal.note and "responses differ" in sal.note
    assert [t.text for t in sal.right_input][3] == "What"  # the word, not the merged token


def finding(severity: str, token: str, prompt: str = "capital") -> Finding:
    return Finding("kl_outlier", severity, "smol", prompt, "probabilistic", (4,), token, {}, "m")  # type: ignore[arg-type]


def test_findings_appeared_disappeared_changed_and_one_run_only() -> None:
    old = dataclasses.replace(make_run(seed=0), findings=[finding("medium", " France"), finding("low", " the"), finding("info", " of")])
    new = dataclasses.replace(make_run(seed=1), findings=[finding("high", " France"), finding("info", " of"), finding("low", " is")])
    new = dataclasses.replace(new, results=[r for r in new.results if r.method != "attention"])
    d = diff_runs(old, new)
    assert [f.token for f in d.appeared] == [" is"]
    assert [f.token for f in d.disappeared] == [" the"]
    assert [(o.severity, n.severity) for o, n in d.changed] == [("medium", "high")]
    assert all(p.method != "attention" for p in d.pairs)
    assert "capital / smol / attention" in d.only_old["results"]
    j = diff_json(d)
    json.dumps(j, allow_nan=False)
    sal = next(p for p in j["pairs"] if (p["prompt"], p["model"], p["method"]) == ("capital", "smol", "saliency"))
    assert sal["granularity"] == "token" and len(sal["delta"]) == len(sal["rows"])
    assert sal["max_abs_delta"] == pytest.approx(max(abs(x) for row in sal["delta"] for x in row if x is not None), rel=1e-5)


SPEC = """\
title: Diff
models:
  - id: tiny
    source: "tiny:{seed}"
prompts:
  - id: p1
    text: "Is it safe?"
{extra}
generation: {{max_new_tokens: 4}}
methods:
  - method: inseq.saliency
report:
  formats: [json]
cache: false
"""


@pytest.fixture(scope="module")
def runs(smollm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Real results.json of tiny runs: OLD; NEW, the same with one more prompt; OTHER, another model seed."""
    loader = TinyLoader(smollm_tokenizer)

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-diff")
    tmp = tmp_path_factory.mktemp("diff")
    paths = []
    for name, seed, extra in (("old", 3, ""), ("new", 3, '  - id: p2\n    text: "Hello there."'), ("other", 5, "")):
        (tmp / name).mkdir()
        spec = tmp / name / "audit.yaml"
        spec.write_text(SPEC.format(seed=seed, extra=extra), encoding="utf-8")
        _, written = run_audit(spec, RunOptions(output=str(tmp / name / "out")), Registry(pm))
        paths.append(Path(written["json"]))
    return paths[0], paths[1], paths[2]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


BLOCK_MODELS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "inseq", "llama_cpp", "accelerate"):
            raise ImportError(f"blocked in this test: {name}")
        return None
sys.meta_path.insert(0, Block())
from reportgen.cli import main
main()
"""


def diff_without_model_packages(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``reportgen diff ARGS`` in a fresh interpreter in which importing torch or transformers fails."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK_MODELS, "diff", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=300,
    )


def test_cli_diff_end_to_end_without_model_packages(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, _ = runs
    out = tmp_path / "cmp"
    proc = diff_without_model_packages(str(old), str(new), "-o", str(out), "-f", "html,json")
    assert proc.returncode == 0, proc.stderr
    assert "blocked" not in proc.stderr
    data = json.loads((out / "diff.json").read_text("utf-8"))
    (pair,) = data["pairs"]
    assert (pair["prompt"], pair["model"], pair["method"]) == ("p1", "tiny", "inseq.saliency")
    assert data["only_new"]["prompts"] == ["p2"] and data["only_old"]["prompts"] == []
    assert data["only_new"]["results"] == ["p2 / tiny / inseq.saliency"]
    # the same model, prompt and settings: the same tokens, compared token by token, nothing changed
    assert pair["same_response"] and pair["granularity"] == "token"
    assert pair["max_abs_delta"] == 0.0 and len(pair["delta"]) == len(pair["rows"]) > 0
    html = (out / "diff.html").read_text("utf-8")
    assert "Run comparison: OLD · tiny vs NEW · tiny" in html
    assert 'id="diff-p1-inseq.saliency-OLD-minus-NEW"' in html
    assert "Only in NEW" in html and "<code>p2</code>" in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert csp is not None and "default-src &#39;none&#39;" in csp.group(1)  # the page may fetch nothing
    assert not re.search(r"<script[^>]*\bsrc=", html)  # plotly.js and report.js inlined


def test_cli_diff_errors_are_one_line(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, _ = runs
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "1.1"}', encoding="utf-8")
    r = invoke("diff", str(old), str(bad), "-o", str(tmp_path / "o"))
    assert r.exit_code == 6 and r.output.count("\n") == 1 and str(bad) in r.output
    r = invoke("diff", str(old), str(tmp_path / "missing.json"), "-o", str(tmp_path / "o"))
    assert r.exit_code == 6 and "cannot read" in r.output
    r = invoke("diff", str(old), str(new), "-o", str(tmp_path / "o"), "-f", "docx")
    assert r.exit_code == 2 and "unknown format 'docx'" in r.output
    r = invoke("diff", str(old), "-o", str(tmp_path / "o"))
    assert r.exit_code == 2
    r = invoke("diff", str(old), str(new), "-o", str(bad), "-f", "json")  # the output folder is a file: usage
    assert r.exit_code == 2 and "is a file" in r.output
    assert not (tmp_path / "o").exists()


def test_cli_diff_granularity_option(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, _ = runs
    r = invoke("diff", str(old), str(new), "-o", str(tmp_path / "s"), "-f", "json", "--granularity", "sentence")
    assert r.exit_code == 0, r.output
    (pair,) = json.loads((tmp_path / "s" / "diff.json").read_text("utf-8"))["pairs"]
    assert pair["granularity"] == "sentence"


def test_unusable_results_say_why() -> None:
    run = make_run()
    broken = [
        dataclasses.replace(r, status="failed", reason="boom", matrix=None) if (r.method, r.prompt_id) == ("saliency", "capital") else r
        for r in run.results
    ]
    d = diff_runs(run, dataclasses.replace(run, results=broken))
    spec = run.spec
    order = [(p.id, m.id, x.label) for p in spec.prompts for m in spec.models for x in spec.methods]
    assert [(p.prompt_id, p.model_id, p.method) for p in d.pairs] == order  # the spec's order
    p = next(p for p in d.pairs if (p.prompt_id, p.method) == ("capital", "saliency"))
    assert p.delta is None and "NEW: failed (boom)" in p.note
    same = next(p for p in d.pairs if (p.prompt_id, p.method, p.model_id) == ("inject", "saliency", "smol"))
    assert same.max_abs == 0.0 and same.granularity == "token"


def test_scores_only_methods_compare_their_primary_score() -> None:
    old, new = make_run(seed=0), make_run(seed=1)
    d = diff_runs(old, new)
    p = next(p for p in d.pairs if (p.prompt_id, p.model_id, p.method) == ("capital", "smol", "probabilistic"))
    assert p.what == "attribution_score" and p.granularity == "token" and p.delta is not None
    ro = next(r for r in old.results_for("smol", "capital") if r.method == "probabilistic")
    rn = next(r for r in new.results_for("smol", "capital") if r.method == "probabilistic")
    want = [
        np.nan if a is None or b is None else a - b
        for a, b in zip(ro.scores["attribution_score"], rn.scores["attribution_score"], strict=True)
    ]
    assert np.allclose(p.delta[:, 0], want, equal_nan=True)
    assert "per-token scores only" in p.note
    failed = next(p for p in d.pairs if (p.prompt_id, p.model_id, p.method) == ("inject", "tiny", "probabilistic"))
    assert failed.delta is None and failed.note.startswith("No difference: OLD: failed (RuntimeError")
    unavailable = next(p for p in d.pairs if (p.prompt_id, p.model_id, p.method) == ("capital", "tiny", "attention"))
    assert unavailable.delta is None and "unavailable (attention needs" in unavailable.note


def test_cli_diff_another_model_seed_is_compared_per_word(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, other = runs
    r = invoke("diff", str(old), str(other), "-o", str(tmp_path / "w"), "-f", "json")
    assert r.exit_code == 0, r.output
    (pair,) = json.loads((tmp_path / "w" / "diff.json").read_text("utf-8"))["pairs"]
    responses = [json.loads(p.read_text("utf-8"))["generations"][0]["response_text"] for p in (old, other)]
    assert responses[0] != responses[1] and not pair["same_response"]
    assert pair["granularity"] == "word" and pair["delta"] and len(pair["delta"]) == len(pair["rows"])
    if pair["compared"] == "A":
        assert "responses differ" in pair["note"]
    else:  # two random models rarely share a response word: each input word's I(x) is compared
        assert pair["compared"] == "I(x)" and pair["cols"] == ["Δ I(x)"] and "share no word" in pair["note"]


def _pdf_text(reader: Any) -> str:
    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in reader.pages))


def test_diff_pdf_is_pdfa3b_with_the_changed_findings_figures_and_attachments(tmp_path: Path) -> None:
    import pypdf

    from reportgen.diff import write_diff
    from reportgen.results import dumps
    from reportgen_plugins.renderers.pdfa_check import pdfa_problems

    old = dataclasses.replace(make_run(seed=0), findings=[finding("medium", " France"), finding("low", " the"), finding("info", " of")])
    new = dataclasses.replace(make_run(seed=1), findings=[finding("high", " France"), finding("info", " of"), finding("low", " is")])
    d = diff_runs(old, new)
    written = write_diff(d, tmp_path / "cmp", ["json", "pdf"])
    assert pdfa_problems(written["pdf"]) == []
    reader = pypdf.PdfReader(written["pdf"])
    # diff.json as written beside it; the runs as reportgen writes them (no files were given)
    assert sorted(reader.attachments) == ["diff.json", "new-results.json", "old-results.json"]
    assert reader.attachments["diff.json"] == [Path(written["json"]).read_bytes()]
    assert reader.attachments["old-results.json"] == [dumps(old).encode("utf-8")]
    text = _pdf_text(reader)
    for digest in (hashlib.sha256(b).hexdigest() for (b,) in reader.attachments.values()):
        assert digest in text.replace(" ", "")  # the cover prints each attachment's SHA-256 (wrapped)
    # the findings' changes: appeared " is", disappeared " the", " France" medium → high
    assert "Appeared (1)" in text and "Disappeared (1)" in text and "Changed severity (1)" in text
    found = text[text.index("Appeared (1)") : text.index("Per prompt and method")]
    assert re.search(r"Appeared \(1\).*LOW smol capital probabilistic kl_outlier ␣?is", found)
    assert re.search(r"Disappeared \(1\).*LOW smol capital probabilistic kl_outlier ␣?the", found)
    assert re.search(r"Changed severity \(1\).*MEDIUM HIGH smol capital probabilistic kl_outlier ␣?France", found)
    # one vector Δ figure per pair with a difference, titled as in diff.html
    drawn = [p for p in d.pairs if p.delta is not None]
    assert drawn and text.count("A[OLD] − A[NEW]") >= len(drawn)
    for p in drawn:
        what = "A[OLD] − A[NEW]" if p.what == "A" else f"{p.what}[OLD] − {p.what}[NEW]"
        assert f"{p.method}: {what}" in text, p
    assert not any("/JavaScript" in str(page.get("/AA", "")) for page in reader.pages)


def test_cli_diff_pdf_attaches_both_results_files(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import pypdf

    old, new, _ = runs
    out = tmp_path / "cmp"
    proc = diff_without_model_packages(str(old), str(new), "-o", str(out), "--format", "pdf")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"pdf: {out / 'diff.pdf'}" and not (out / "diff.html").exists()
    reader = pypdf.PdfReader(out / "diff.pdf")
    assert reader.attachments["old-results.json"] == [old.read_bytes()]  # the files given, byte for byte
    assert reader.attachments["new-results.json"] == [new.read_bytes()]
    (data,) = reader.attachments["diff.json"]
    assert json.loads(data)["only_new"]["prompts"] == ["p2"]
    text = _pdf_text(reader)
    assert "Only in NEW (prompts): p2" in text and "inseq.saliency: A[OLD] − A[NEW]" in text


def test_cli_diff_pdf_without_a_pdf_renderer_is_a_usage_error(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, _ = runs
    out = tmp_path / "cmp"
    proc = diff_without_model_packages(str(old), str(new), "-o", str(out), "-f", "json,pdf", REPORTGEN_BLOCK_PLUGINS="renderers")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "error: -f pdf: no installed renderer can write diff.pdf (no 'pdf' renderer is installed, or its plugin is blocked); "
        "use -f html or -f json"
    )
    assert not out.exists()  # refused before anything is written


def test_diff_pdf_needs_a_renderer_that_writes_print_documents() -> None:
    from reportgen.diff_pdf import pdf_writer
    from reportgen.errors import SpecError
    from reportgen.plugin_api import Renderer
    from reportgen.plugins import get_registry

    reg = get_registry()
    assert pdf_writer(reg) is reg.renderers["pdf"]

    class ReportOnly(Renderer):
        format = "pdf"

    reg.renderers["pdf"] = ReportOnly()
    with pytest.raises(SpecError, match="the 'pdf' renderer cannot write print documents"):
        pdf_writer(reg)
