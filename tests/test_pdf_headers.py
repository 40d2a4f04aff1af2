"""Table headers in the PDF wrap between words only: at spaces and after the ``_`` / ``.`` inside
identifiers, never inside a word, never hyphenated (``templates/pdf/print.css`` and
:func:`breakable_headers`). Read back from a PDF laid out with the report's own stylesheets."""

from __future__ import annotations

import io
import re

import pytest

from reportgen.render import read_asset
from reportgen_plugins.renderers.pdf import breakable_headers

pypdf = pytest.importorskip("pypdf")
weasyprint = pytest.importorskip("weasyprint")

#: Score names of the probabilistic method: seven long identifiers in one table, as in the report.
NAMES = [
    "attribution_score",
    "entropy_prompt",
    "entropy_prompt_response",
    "kl_posterior_prior",
    "kl_prior_posterior",
    "log_posterior_original",
    "log_prior_original",
]
METHODS = ["inseq.saliency", "inseq.input_x_gradient", "jacobian.semantic", "jacobian.fisher", "Spearman correlation"]


def test_breakable_headers_marks_identifier_joints_in_plain_headers_only() -> None:
    html = '<th>entropy_prompt_response</th><th class="n">inseq.input_x_gradient</th><th>1.00</th><td>a_b</td><thead><th><b>a_b</b></th>'
    assert breakable_headers(html) == (
        "<th>entropy_<wbr>prompt_<wbr>response</th>"
        '<th class="n">inseq.<wbr>input_<wbr>x_<wbr>gradient</th><th>1.00</th><td>a_b</td><thead><th><b>a_b</b></th>'
    )


def _pdf_text(headers: list[str]) -> str:
    row = "".join(f"<td>{k}.{k:03d}e-04</td>" for k in range(len(headers)))
    table = (
        '<table class="data compact scores-table"><thead><tr><th>#</th><th>Token</th>'
        + "".join(f"<th>{h}</th>" for h in headers)
        + f"</tr></thead><tbody><tr><td>24</td><td>What</td>{row}</tr></tbody></table>"
    )
    css = read_asset("report.css") + read_asset("pdf/print.css")
    html = f"<html><head><style>{css}</style></head><body>{table}</body></html>"
    out = io.BytesIO()
    weasyprint.HTML(string=breakable_headers(html)).write_pdf(out)
    return pypdf.PdfReader(out).pages[0].extract_text().replace("\u200b", "")


@pytest.mark.parametrize("headers", [NAMES, METHODS], ids=["scores", "methods"])
def test_pdf_table_headers_wrap_between_words_only(headers: list[str]) -> None:
    text = _pdf_text(headers)
    words = {w.upper() for h in headers for w in re.split(r"[_.\s]+", h) if w}
    head = text[: text.index("24")]  # the header row, before the first data row
    pieces = [p for p in re.split(r"[_.\s]+", head.upper()) if p]
    assert pieces, text
    for p in pieces:
        assert p in words | {"#", "TOKEN"}, f"header cut inside a word: {p!r} in {head!r}"
    assert "-\n" not in head  # nothing hyphenated
    assert len(head.splitlines()) > 1  # the narrow columns did wrap (at the joints)
