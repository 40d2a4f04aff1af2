"""``reportgen verify``: check that reports are intact and show their run's numbers.

Every report carries its run's manifest (:mod:`reportgen.manifest`). For each file given:

- **results.json**: it parses and passes the reader's checks; its ``manifest`` is the one
  recomputed from the rest of the file (``results_sha256`` over RFC 8785 canonical JSON, spec
  digest, run id, model file digests, versions), and ``provenance.spec_sha256`` is the digest of
  its ``spec_text``.
- **report.html**: its ``<script id="reportgen-evidence">`` block holds a manifest and results
  that agree as above; then the page is rendered again from those results and compared with the
  page: every text, attribute (token colours, hover titles), table cell, figure's Plotly data and
  layout, hover matrix and inlined script. A difference names where it is (the panel, method,
  token, row and cell, or the figure, trace and index) and both values.
- **report.pdf**: its attached ``results.json`` and ``manifest.json`` agree as above, the
  attached ``provenance.intoto.json`` names that results.json and run; then the PDF is rendered
  again from the attachment and compared: identical bytes, else each page's text (a difference
  names the page and both lines) and drawing.
- **provenance.intoto.json**: each subject found beside it has the digest it names.
- **signatures** (:mod:`reportgen.signing_check`): a signed PDF's revision before the signature
  is what is compared with a fresh rendering (and named by the provenance statement), and the
  signature must verify and cover the whole file; a DSSE envelope ``NAME.dsse.json`` beside any
  other file must verify and name the file's sha256. With ``cert`` (trusted signer or CA
  certificates) every file must be signed by a certificate that chains to one of them; without,
  a signature found is named as "not checked against a trusted certificate".

Given several files (or a report folder), they must be of one run with the same results; with
``spec``, its text must be the one the run used. A provenance statement beside a report is
checked too. What cannot be checked here: that the numbers are what the model computes (rerun
the audit and compare results.json, byte for byte apart from the run-dependent fields), who
made the report unless it is signed and ``cert`` is given, and, for a report rendered by another
reportgen or plugin version, the page itself (a fresh rendering may differ; the versions are named in the message).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from reportgen import __version__
from reportgen.errors import ReportgenError, VerifyInputError
from reportgen.manifest import (
    EVIDENCE_ID,
    MANIFEST_NAME,
    manifest_for,
    manifest_problems,
    results_digest,
    results_from_evidence,
    sha256_hex,
)
from reportgen.signing_check import Trust, load_trust, pdf_byte_ranges, unsigned_revision
from reportgen.signing_dsse import SUFFIX as ENVELOPE_SUFFIX
from reportgen.signing_dsse import envelope_path
from reportgen.statement import PREDICATE_TYPE, STATEMENT_NAME, STATEMENT_TYPE

#: Differences listed per file before the rest are counted.
MAX_LISTED = 8
RESULTS_NAME = "results.json"
_EVIDENCE = re.compile(r'<script type="application/json" id="' + re.escape(EVIDENCE_ID) + r'">(.*?)</script>', re.DOTALL)


@dataclass
class FileCheck:
    """What ``verify`` found about one file."""

    path: Path
    kind: str  # html | pdf | results | statement
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)  # each verified signature: who, when, trusted or not
    manifest: dict[str, Any] | None = None
    results: dict[str, Any] | None = None  # the results.json object it carries (or is)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        self.problems.append(f"{self.path.name}: {message}")


@dataclass
class Verification:
    files: list[FileCheck]
    problems: list[str] = field(default_factory=list)  # across files, and the spec

    @property
    def ok(self) -> bool:
        return not self.problems and all(f.ok for f in self.files)

    def all_problems(self) -> list[str]:
        return [p for f in self.files for p in f.problems] + self.problems


# --------------------------------------------------------------------------- entry point


def expand(paths: Iterable[Path]) -> list[Path]:
    """The files to verify: each file given, and reportgen's report files in each folder given."""
    out: list[Path] = []
    for p in paths:
        if p.name.endswith(ENVELOPE_SUFFIX):  # a signature envelope stands for the file it signs
            p = p.with_name(p.name[: -len(ENVELOPE_SUFFIX)])
        if p.is_dir():
            found = [p / n for n in ("report.html", "report.pdf", RESULTS_NAME, STATEMENT_NAME) if (p / n).is_file()]
            found += sorted(q for q in p.iterdir() if q.is_file() and q.suffix in (".html", ".pdf") and q not in found)
            if not found:
                raise VerifyInputError(f"{p}: no report in this folder (report.html, report.pdf, results.json)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise VerifyInputError(f"{p}: no such file or folder")
    return list(dict.fromkeys(out))


def kind_of(path: Path, raw: bytes) -> str:
    name = path.name.lower()
    if name.endswith((".html", ".htm")):
        return "html"
    if name.endswith(".pdf") or raw.startswith(b"%PDF"):
        return "pdf"
    if name.endswith(".intoto.json") or b'"_type"' in raw[:200]:
        return "statement"
    if name.endswith(".json"):
        return "results"
    if raw.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    raise VerifyInputError(f"{path}: not a reportgen report (.html, .pdf, results.json or provenance.intoto.json)")


def verify(paths: Sequence[Path], *, spec: Path | None = None, registry: Any | None = None, cert: Path | None = None) -> Verification:
    """Check every report in ``paths`` (files or folders), each alone and against each other.

    With ``cert`` (PEM or DER certificates of trusted signers or CAs), every file must carry a
    signature by a certificate that chains to one of them.
    """
    trust = load_trust(cert) if cert is not None else None
    files = expand(paths)
    checks: list[FileCheck] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise VerifyInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        kind = kind_of(path, raw)
        check = FileCheck(path, kind)
        if kind == "results":
            _verify_results(check, raw)
        elif kind == "html":
            _verify_html(check, raw, registry)
        elif kind == "pdf":
            _verify_pdf(check, raw, registry)
        else:
            _verify_statement(check, raw)
        _verify_signature(check, raw, trust)
        checks.append(check)
    result = Verification(checks)
    _cross_check(result)
    for check in [c for c in checks if c.kind in ("html", "pdf", "results")]:
        beside = check.path.parent / STATEMENT_NAME
        if beside.is_file() and beside.resolve() not in {c.path.resolve() for c in checks}:
            _check_against_statement(check, beside)
    if spec is not None:
        _verify_spec(result, spec)
    return result


# --------------------------------------------------------------------------- results and manifests


def _check_results_data(check: FileCheck, data: dict[str, Any], carried: Any, where: str) -> bool:
    """The results object against the manifest carried beside it (or in it); True when they agree."""
    if carried is None:
        check.fail(f"carries no manifest{where}: it was removed, or the file was written before reportgen 1.1")
        return False
    expected = manifest_for(data)
    problems = manifest_problems(carried, expected, "manifest")
    if not problems:
        check.manifest = expected
        check.checked.append("manifest (results sha256, spec sha256, run id, model files, versions)")
        return True
    check.manifest = carried if isinstance(carried, dict) else None
    pinned = carried.get("results_sha256") if isinstance(carried, Mapping) else None
    if isinstance(pinned, str) and pinned != expected["results_sha256"]:
        check.fail(
            f"the results{where} are not the ones its manifest pins: their canonical sha256 is "
            f"{expected['results_sha256']}, the manifest says {pinned} "
            + (
                f"(they are from another run: run id {expected['run_id']}, the manifest names {carried.get('run_id')})"
                if isinstance(carried, Mapping) and carried.get("run_id") != expected["run_id"]
                else "(a value was changed after the run)"
            )
        )
        problems = [p for p in problems if not p.startswith(("manifest.results_sha256", "manifest.run_id"))]
    for p in problems:
        check.fail(p + where)
    return False


def _read_results(check: FileCheck, raw: bytes, name: str) -> dict[str, Any] | None:
    from reportgen.results import read_json

    try:
        return read_json(raw, name)
    except ReportgenError as exc:
        check.problems.append(str(exc))  # names the file (and what inside it) already
        return None


def _parses(check: FileCheck, raw: bytes, name: str) -> Any:
    """The RunResult of results bytes, or None (a problem is recorded)."""
    from reportgen.results import parse_run

    try:
        return parse_run(raw, name)
    except ReportgenError as exc:
        check.problems.append(str(exc))
        return None


def _verify_results(check: FileCheck, raw: bytes) -> None:
    data = _read_results(check, raw, check.path.name)
    if data is None:
        return
    check.results = data
    _check_results_data(check, data, data.get("manifest"), "")
    if _parses(check, raw, check.path.name) is not None:
        check.checked.append("format (fields, types, lengths, the stored spec)")
    _spec_digest_consistent(check, data, "")


def _spec_digest_consistent(check: FileCheck, data: Mapping[str, Any], where: str) -> None:
    prov = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    assert isinstance(prov, Mapping)
    stated, text = prov.get("spec_sha256"), data.get("spec_text")
    if isinstance(stated, str) and isinstance(text, str) and stated != sha256_hex(text.encode("utf-8")):
        check.fail(f"provenance.spec_sha256{where} is not the sha256 of its spec_text (the spec text was edited)")


# --------------------------------------------------------------------------- HTML


def _verify_html(check: FileCheck, raw: bytes, registry: Any | None) -> None:
    try:
        page = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        check.fail(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return
    blocks = _EVIDENCE.findall(page)
    if not blocks:
        check.fail(
            f'carries no manifest: no <script type="application/json" id="{EVIDENCE_ID}"> block '
            "(it was removed, or this is not a reportgen 1.1 report)"
        )
        return
    if len(blocks) > 1:
        check.fail(f'has {len(blocks)} <script id="{EVIDENCE_ID}"> blocks; a report has one')
        return
    try:
        block = json.loads(blocks[0])
        results = results_from_evidence(block) if isinstance(block, dict) else None
    except ValueError as exc:
        check.fail(f'the <script id="{EVIDENCE_ID}"> block cannot be read: {exc}')
        return
    if results is None or not isinstance(block, dict):
        check.fail(f'the <script id="{EVIDENCE_ID}"> block is not a JSON object')
        return
    name = f"{check.path.name} (embedded {RESULTS_NAME})"
    data = _read_results(check, results, name)
    if data is None:
        return
    check.results = data
    if block.get("results_sha256_file") != sha256_hex(results):
        check.fail(
            f"the embedded {RESULTS_NAME} has sha256 {sha256_hex(results)}; the block says "
            f"{block.get('results_sha256_file')} (the embedded data was changed)"
        )
    agree = _check_results_data(check, data, block.get("manifest"), " (embedded)")
    if agree and data.get("manifest") != block.get("manifest"):
        check.fail(f"the manifest inside the embedded {RESULTS_NAME} differs from the page's manifest")
        agree = False
    _spec_digest_consistent(check, data, " (embedded)")
    if not agree:
        check.notes.append("the page was not compared with the embedded results: the manifest does not confirm them")
        return
    run = _parses(check, results, name)
    if run is None:
        return
    expected = _fresh_html(run, registry, results)
    if expected == page:
        check.checked.append("every number, token colour, hover title, figure and table on the page (identical to a fresh rendering)")
        return
    differences = html_differences(page, expected)
    if not differences:
        differences = ["the page differs from a fresh rendering of its embedded results (outside any element)"]
    _list(check, differences, "the page differs from a fresh rendering of its embedded results")
    _version_notes(check, page, run)


def _fresh_html(run: Any, registry: Any | None, results: bytes) -> str:
    return _fresh("html", run, registry, results).decode("utf-8")


_FRESH: dict[tuple[str, str, str], bytes] = {}


def _fresh(fmt: str, run: Any, registry: Any | None, results: bytes, command: Sequence[str] | None = None) -> bytes:
    """The ``fmt`` report of ``run`` rendered now by the installed renderer (memoised per results).

    ``command`` is the command line the report's provenance statement records (a PDF attaches
    one), so that the fresh rendering attaches the same statement.
    """
    from reportgen.plugins import get_registry
    from reportgen.runner import render_context
    from reportgen.statement import reset_command, set_command

    key = (fmt, sha256_hex(results), json.dumps(list(command or ())))
    if key not in _FRESH:
        reg = registry or get_registry()
        renderer = reg.renderers.get(fmt)
        if renderer is None:
            raise VerifyInputError(f"cannot verify a {fmt} report here: no {fmt!r} renderer is installed")
        token = set_command(command or ())
        try:
            with tempfile.TemporaryDirectory(prefix="reportgen-verify-") as tmp:
                out = Path(tmp) / f"report.{fmt}"
                renderer.render(render_context(reg, run), str(out))
                _FRESH[key] = out.read_bytes()
        finally:
            reset_command(token)
    return _FRESH[key]


def _list(check: FileCheck, differences: list[str], head: str) -> None:
    for d in differences[:MAX_LISTED]:
        check.fail(d)
    if len(differences) > MAX_LISTED:
        check.fail(f"{head}: {len(differences) - MAX_LISTED} more difference(s) not listed")


def _version_notes(check: FileCheck, page: str, run: Any) -> None:
    """Name version differences that could explain a page that differs from a fresh rendering."""
    m = re.search(r'<meta name="generator" content="reportgen ([^"]+)">', page)
    made_with = m.group(1) if m else None
    if made_with and made_with != __version__:
        check.notes.append(f"the report was rendered by reportgen {made_with}; this is reportgen {__version__}")
    try:
        from reportgen.plugins import get_registry

        installed = {p.name: p.version for p in get_registry().plugins()}
    except Exception:  # noqa: BLE001 - a note only
        return
    pinned = (check.manifest or {}).get("plugins") or {}
    for name, version in sorted(pinned.items()):
        if name in installed and installed[name] != version:
            check.notes.append(f"plugin {name} was {version} in the run; {installed[name]} is installed here")
        elif name not in installed:
            check.notes.append(f"plugin {name} ({version}) of the run is not installed here")


# --------------------------------------------------------------------------- comparing two pages


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_SIDES = {"in": "input tokens", "out": "output tokens"}


class _Flat(HTMLParser):
    """A page as a list of (where, what, value): every text, attribute and script's data.

    ``where`` names the place as a reader finds it: the innermost element with an id, then the
    method view, token side and token, table row (by its header cell when it has one) and cell,
    or a definition's term.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[tuple[str, str, str]] = []
        self.stack: list[tuple[str, str | None]] = []
        self.counts: list[dict[str, int]] = [{}]
        self.raw: tuple[str, dict[str, str]] | None = None
        self.buf: list[str] = []
        self.n_scripts = 0
        self.term = ""  # the text of the last <dt>

    def where(self, extra: str | None = None) -> str:
        """The innermost element with an id, and the labelled elements inside it."""
        parts = [label for _, label in self.stack if label]
        if extra:
            parts.append(extra)
        ids = [i for i, label in enumerate(parts) if label.startswith("#")]
        return " › ".join(parts[ids[-1] if ids else 0 :]) or "(page)"

    def label(self, tag: str, a: Mapping[str, str], index: int) -> str | None:
        if tag == "span" and "data-i" in a:
            return f"token #{a['data-i']}"
        if "id" in a and a["id"] != EVIDENCE_ID:
            return f"#{a['id']}"
        if "data-key" in a:
            return f'method "{a["data-key"]}"'
        if "data-side" in a:
            return _SIDES.get(a["data-side"], a["data-side"])
        if tag == "dd":
            return f'"{self.term}"' if self.term else f"dd {index}"
        if tag == "tr":
            return f"row {index}"
        if tag in ("td", "th"):
            return f"cell {index}"
        if tag in ("table", "details", "figure", "section", "article", "li", "dl"):
            return f"{tag} {index}"
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        counts = self.counts[-1]
        counts[tag] = counts.get(tag, 0) + 1
        label = self.label(tag, a, counts[tag])
        if tag in _VOID:
            for k in sorted(a):
                self.items.append((self.where(label or f"<{tag}>"), f"attribute {k}", a[k]))
            return
        self.stack.append((tag, label))
        self.counts.append({})
        for k in sorted(a):
            if tag == "script" and k == "id" and a[k] == EVIDENCE_ID:
                continue
            self.items.append((self.where(None if label else f"<{tag}>"), f"attribute {k}", a[k]))
        if tag in ("script", "style"):
            self.raw = (tag, a)
            self.buf = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.raw is not None and tag == self.raw[0]:
            self._raw_content(self.raw[0], self.raw[1], "".join(self.buf))
            self.raw = None
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                del self.counts[i + 1 :]
                return

    def handle_data(self, data: str) -> None:
        if self.raw is not None:
            self.buf.append(data)
            return
        if not data.strip():
            return
        if self.stack and self.stack[-1][0] == "dt":
            self.term = data.strip()
        if self.stack and self.stack[-1][0] == "th" and len(self.stack) > 1 and self.stack[-2][0] == "tr":
            tag, _ = self.stack[-2]
            self.stack[-2] = (tag, f'row "{data.strip()[:40]}"')  # a row is named by its header cell
        self.items.append((self.where(), "text", data))

    def _raw_content(self, tag: str, attrs: Mapping[str, str], content: str) -> None:
        where = self.where()
        if attrs.get("id") == EVIDENCE_ID:
            return  # checked on its own
        if tag == "script" and "Plotly.newPlot(" in content:
            fig = _plotly_call(content)
            if fig is not None:
                fid, traces, layout = fig
                at = f'figure "{fid}"'
                for i, tr in enumerate(traces if isinstance(traces, list) else []):
                    name = tr.get("name") if isinstance(tr, dict) else None
                    label = f"trace {i}" + (f" ({name!r})" if isinstance(name, str) and name else "")
                    self.items.extend((at, f"{label} {p}", v) for p, v in _leaves(tr))
                self.items.extend((at, f"layout {p}", v) for p, v in _leaves(layout))
                return
        if tag == "script" and attrs.get("type") == "application/json":
            try:
                value = json.loads(content)
            except ValueError:
                value = None
            if value is not None:
                self.items.extend((where, f"data {p}", v) for p, v in _leaves(value))
                return
        self.n_scripts += 1
        what = "inlined stylesheet" if tag == "style" else "inlined script"
        self.items.append((where, f"{what} #{self.n_scripts} (sha256)", hashlib.sha256(content.encode("utf-8")).hexdigest()))


def _plotly_call(script: str) -> tuple[str, Any, Any] | None:
    """(div id, data, layout) of a ``Plotly.newPlot("id", data, layout, config)`` call."""
    dec = json.JSONDecoder()
    at = script.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    args: list[Any] = []
    try:
        for _ in range(3):
            while script[at] in " \t\r\n,":
                at += 1
            value, at = dec.raw_decode(script, at)
            args.append(value)
    except (ValueError, IndexError):
        return None
    return str(args[0]), args[1], args[2]


def _typed_array(v: Mapping[str, Any]) -> Any:
    """Plotly's base64 typed arrays (``{"dtype", "bdata", "shape"}``) as nested lists."""
    import base64

    import numpy as np

    try:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            arr = arr.reshape([int(s) for s in str(shape).split(",")])
        return arr.tolist()
    except (ValueError, TypeError, KeyError):
        return v


def _leaves(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        value = _typed_array(value)
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _leaves(value[k], f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        if not value:
            yield path, "[]"
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path or "(value)", json.dumps(value, ensure_ascii=False)


def _shown(value: str, other: str, limit: int = 90, *, raw: bool = False) -> str:
    """``value`` quoted (as it is when ``raw``: JSON text); long values cut around where they
    first differ from ``other``."""
    quote = (lambda t: t) if raw else (lambda t: json.dumps(t, ensure_ascii=False))
    if len(value) <= limit:
        return quote(value)
    i = next((k for k, (a, b) in enumerate(zip(value, other, strict=False)) if a != b), min(len(value), len(other)))
    lo = max(0, i - limit // 2)
    piece = value[lo : lo + limit]
    return ("…" if lo else "") + quote(piece) + ("…" if lo + limit < len(value) else "")


def _keyed(items: list[tuple[str, str, str]]) -> dict[tuple[str, str, int], str]:
    """Items keyed by place, what, and which occurrence of that pair (in page order)."""
    seen: dict[tuple[str, str], int] = {}
    out: dict[tuple[str, str, int], str] = {}
    for where, what, value in items:
        n = seen.get((where, what), 0)
        seen[(where, what)] = n + 1
        out[(where, what, n)] = value
    return out


def html_differences(page: str, expected: str) -> list[str]:
    """Where ``page`` differs from ``expected`` (a fresh rendering of its embedded results), in page order.

    Both pages are flattened into (place, what, value) items and matched by place, so one changed
    number is one difference and a missing or extra element does not shift everything after it.
    """
    a, b = _Flat(), _Flat()
    a.feed(page)
    a.close()
    b.feed(expected)
    b.close()
    got, want = _keyed(a.items), _keyed(b.items)
    out: list[str] = []
    for key, value in got.items():
        where, what, _ = key
        raw = not what.startswith(("text", "attribute"))
        if key not in want:
            out.append(
                f"{where}: the report has {what} {_shown(value, '', raw=raw)}, which a fresh rendering of the embedded results lacks"
            )
        elif want[key] != value:
            out.append(
                f"{where}: {what} is {_shown(value, want[key], raw=raw)} in the report; "
                f"the embedded results give {_shown(want[key], value, raw=raw)}"
            )
    for key, value in want.items():
        if key not in got:
            where, what, _ = key
            raw = not what.startswith(("text", "attribute"))
            out.append(f"{where}: the report lacks {what} {_shown(value, '', raw=raw)}, which the embedded results give")
    return out


# --------------------------------------------------------------------------- PDF


def _attachments(reader: Any) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, bodies in reader.attachments.items():
        if bodies:
            out[str(name)] = bytes(bodies[0])
    return out


def _verify_pdf(check: FileCheck, raw: bytes, registry: Any | None) -> None:
    try:
        import pypdf
    except ImportError:
        check.fail("cannot be verified here: reading a PDF needs pypdf (pip install pypdf)")
        return
    try:
        reader = pypdf.PdfReader(io.BytesIO(raw))
        files = _attachments(reader)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
        check.fail(f"cannot be read as a PDF ({type(exc).__name__}: {exc})")
        return
    if RESULTS_NAME not in files:
        check.fail(f"has no attached {RESULTS_NAME} (attached: {', '.join(sorted(files)) or 'nothing'})")
        return
    results = files[RESULTS_NAME]
    name = f"{check.path.name} (attached {RESULTS_NAME})"
    data = _read_results(check, results, name)
    if data is None:
        return
    check.results = data
    carried: Any = None
    if MANIFEST_NAME in files:
        try:
            carried = json.loads(files[MANIFEST_NAME])
        except ValueError as exc:
            check.fail(f"the attached {MANIFEST_NAME} is not JSON ({exc})")
            return
    agree = _check_results_data(check, data, carried, f" (attached {MANIFEST_NAME})" if carried is None else " (attached)")
    if agree and data.get("manifest") != carried:
        check.fail(f"the manifest inside the attached {RESULTS_NAME} differs from the attached {MANIFEST_NAME}")
        agree = False
    _spec_digest_consistent(check, data, " (attached)")
    if STATEMENT_NAME in files:
        _statement_names(check, files[STATEMENT_NAME], {RESULTS_NAME: results}, carried, f"attached {STATEMENT_NAME}")
    else:
        check.fail(f"has no attached {STATEMENT_NAME} (the provenance statement)")
    if not agree:
        check.notes.append("the pages were not compared with the attached results: the manifest does not confirm them")
        return
    run = _parses(check, results, name)
    if run is None:
        return
    fresh = _fresh_pdf(run, registry, results, _recorded_command(files.get(STATEMENT_NAME)))
    if fresh == raw:
        check.checked.append("every page, figure and table (identical to a fresh rendering of the attached results)")
        return
    differences = pdf_differences(reader, pypdf.PdfReader(io.BytesIO(fresh)))
    if not differences and fresh == _unsigned(reader, raw):
        check.checked.append(
            "every page, figure and table (the revision before the signature is identical to a fresh rendering "
            "of the attached results; the signature's revision changes no page)"
        )
        return
    if not differences:
        check.notes.append(
            "its bytes differ from a fresh rendering, but every page's text and drawing are the same (re-saved by another program?)"
        )
        check.checked.append("every page's text and drawing (same as a fresh rendering of the attached results)")
        return
    _list(check, differences, "the pages differ from a fresh rendering of the attached results")
    version = reader.metadata.get("/Producer") if reader.metadata else None
    if version:
        check.notes.append(f"PDF producer: {version}")


def _unsigned(reader: Any, raw: bytes) -> bytes | None:
    """A signed PDF's revision before its first signature (None when unsigned or unreadable)."""
    try:
        return unsigned_revision(raw, pdf_byte_ranges(reader))
    except Exception:  # noqa: BLE001 - pypdf raises many kinds on a damaged file; read as unsigned
        return None


def _unsigned_digest(name: str, raw: bytes) -> str | None:
    """The sha256 of a signed PDF's revision before the signature (None for any other file)."""
    if not name.lower().endswith(".pdf"):
        return None
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(raw))
    except Exception:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
        return None
    unsigned = _unsigned(reader, raw)
    return sha256_hex(unsigned) if unsigned is not None else None


def _fresh_pdf(run: Any, registry: Any | None, results: bytes, command: Sequence[str] | None) -> bytes:
    return _fresh("pdf", run, registry, results, command)


def _recorded_command(statement: bytes | None) -> list[str] | None:
    """The command line a provenance statement records (None when it records none)."""
    try:
        st = json.loads(statement) if statement else {}
        cmd = st["predicate"]["buildDefinition"]["externalParameters"].get("command")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return [str(c) for c in cmd] if isinstance(cmd, list) else None


def _page_text(page: Any) -> str:
    try:
        return str(page.extract_text())
    except Exception as exc:  # noqa: BLE001
        return f"(text cannot be extracted: {type(exc).__name__})"


def pdf_differences(report: Any, fresh: Any) -> list[str]:
    """Where a PDF differs from a fresh rendering: page count, each page's text, then drawing."""
    out: list[str] = []
    if len(report.pages) != len(fresh.pages):
        out.append(f"has {len(report.pages)} pages; a fresh rendering of the attached results has {len(fresh.pages)}")
    for i, (a, b) in enumerate(zip(report.pages, fresh.pages, strict=False), start=1):
        ta, tb = _page_text(a), _page_text(b)
        if ta != tb:
            la, lb = ta.splitlines(), tb.splitlines()
            k = next((j for j, (u, v) in enumerate(zip(la, lb, strict=False)) if u != v), min(len(la), len(lb)))
            got = la[k].replace("\ufeff", "") if k < len(la) else "(nothing)"  # WeasyPrint's text may carry a BOM
            want = lb[k].replace("\ufeff", "") if k < len(lb) else "(nothing)"
            out.append(f"page {i}, line {k + 1}: the report prints {_shown(got, want)}; the attached results give {_shown(want, got)}")
            continue
        try:
            ca, cb = a.get_contents(), b.get_contents()
            da = ca.get_data() if ca is not None else b""
            db = cb.get_data() if cb is not None else b""
        except Exception as exc:  # noqa: BLE001 - a page pypdf cannot decode is named, not fatal
            out.append(f"page {i}: its drawing cannot be compared ({type(exc).__name__})")
            continue
        if da != db:
            out.append(
                f"page {i}: the drawing (figures, colours or layout) differs from a fresh rendering of the attached results; "
                "its text is the same"
            )
    return out


# --------------------------------------------------------------------------- provenance statements


def _statement_names(check: FileCheck, raw: bytes, subjects: Mapping[str, bytes], manifest: Any, where: str) -> None:
    """A statement's subjects, run id and results digest against what it accompanies."""
    try:
        st = json.loads(raw)
    except ValueError as exc:
        check.fail(f"the {where} is not JSON ({exc})")
        return
    digests = {s.get("name"): (s.get("digest") or {}).get("sha256") for s in st.get("subject") or [] if isinstance(s, dict)}
    for name, body in subjects.items():
        if digests.get(name) != sha256_hex(body):
            check.fail(f"the {where} names {name} with sha256 {digests.get(name)}; it has {sha256_hex(body)}")
    if isinstance(manifest, Mapping):
        meta = ((st.get("predicate") or {}).get("runDetails") or {}).get("metadata") or {}
        if meta.get("invocationId") != manifest.get("run_id"):
            check.fail(f"the {where} is about run {meta.get('invocationId')}; the manifest names run {manifest.get('run_id')}")
    check.checked.append(where)


def _verify_statement(check: FileCheck, raw: bytes) -> None:
    try:
        st = json.loads(raw)
    except ValueError as exc:
        check.fail(f"not JSON ({exc})")
        return
    if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE:
        check.fail(f"not an in-toto Statement v1 (_type is {st.get('_type') if isinstance(st, dict) else None!r})")
        return
    if st.get("predicateType") != PREDICATE_TYPE:
        check.notes.append(f"predicateType {st.get('predicateType')!r} (reportgen writes {PREDICATE_TYPE})")
    found = 0
    for s in st.get("subject") or []:
        name = s.get("name") if isinstance(s, dict) else None
        want = (s.get("digest") or {}).get("sha256") if isinstance(s, dict) else None
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            check.fail(f"subject {name!r} is not a file name beside it")
            continue
        target = check.path.parent / name
        if not target.is_file():
            check.notes.append(f"subject {name} is not beside it: not checked")
            continue
        found += 1
        body = target.read_bytes()
        got = sha256_hex(body)
        if got != want and _unsigned_digest(name, body) == want:
            continue  # a PDF signed after the run: the statement names the revision before the signature
        if got != want:
            check.fail(f"{name} has sha256 {got}; the statement names {want} (the file changed after the run)")
    check.checked.append(f"{found} subject digest(s)")


def _check_against_statement(check: FileCheck, statement: Path) -> None:
    """A report beside a provenance statement that names it must have the digest it names."""
    try:
        st = json.loads(statement.read_bytes())
        subjects = {s["name"]: s["digest"]["sha256"] for s in st.get("subject") or []}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        check.notes.append(f"{STATEMENT_NAME} beside it cannot be read: not checked against it")
        return
    want = subjects.get(check.path.name)
    if want is None:
        return
    raw = check.path.read_bytes()
    got = sha256_hex(raw)
    if got != want and _unsigned_digest(check.path.name, raw) == want:
        check.checked.append(f"sha256 of the revision before the signature, named in {STATEMENT_NAME} beside it")
        return
    if got != want:
        check.fail(f"its sha256 is {got}; {STATEMENT_NAME} beside it names {want} (the file changed after the run)")
    else:
        check.checked.append(f"sha256 named in {STATEMENT_NAME} beside it")


# --------------------------------------------------------------------------- signatures


def _can_check_signatures() -> bool:
    from reportgen.signing import SigningError, require_extra

    try:
        require_extra()
    except SigningError:
        return False
    return True


def _verify_signature(check: FileCheck, raw: bytes, trust: Trust | None) -> None:
    """The file's signature (PAdES inside a PDF, else ``NAME.dsse.json`` beside it); required with ``trust``."""
    from reportgen.signing import EXTRA_HINT
    from reportgen.signing_check import SignatureCheck, check_envelope, check_pdf

    if check.kind == "pdf":
        import pypdf

        try:
            signed = bool(pdf_byte_ranges(pypdf.PdfReader(io.BytesIO(raw))))
        except Exception:  # noqa: BLE001 - an unreadable PDF is reported by the PDF check
            signed = False
        what = "no PAdES signature in it"
    else:
        envelope = envelope_path(check.path)
        signed = envelope.is_file()
        what = f"no {envelope.name} beside it"
    if not signed:
        if trust is not None:
            check.fail(f"is not signed ({what})")
        return
    if not _can_check_signatures():
        check.notes.append(f"it is signed, but the signature cannot be checked here: {EXTRA_HINT}")
        return
    found: list[SignatureCheck]
    if check.kind == "pdf":
        found = check_pdf(raw, trust)
    else:
        found = [check_envelope(check.path, envelope_path(check.path).read_bytes(), raw, trust)]
    for sig in found:
        if sig.problems:
            check.fail("signature: " + "; ".join(sig.problems))
        else:
            check.signatures.append(sig.describe(trust.source if trust else None))


# --------------------------------------------------------------------------- across files, and the spec


def json_differences(a: Any, b: Any, path: str = "", limit: int = MAX_LISTED) -> list[str]:
    """JSON paths at which ``a`` and ``b`` differ (at most ``limit``)."""
    out: list[str] = []

    def walk(x: Any, y: Any, p: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k, "(missing)"), y.get(k, "(missing)"), f"{p}.{k}" if p else str(k))
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{p}[{i}]")
        elif x != y or type(x) is not type(y):
            sx, sy = json.dumps(x, ensure_ascii=False)[:80], json.dumps(y, ensure_ascii=False)[:80]
            out.append(f"{p or '(root)'}: {sx} vs {sy}")

    walk(a, b, path)
    return out


def _cross_check(result: Verification) -> None:
    carriers = [c for c in result.files if c.results is not None and c.manifest is not None]
    if len(carriers) < 2:
        return
    first = carriers[0]
    for other in carriers[1:]:
        ma, mb = first.manifest or {}, other.manifest or {}
        if ma.get("run_id") != mb.get("run_id"):
            result.problems.append(f"{other.path.name} is from run {mb.get('run_id')}; {first.path.name} is from run {ma.get('run_id')}")
        if results_digest(first.results or {}) != results_digest(other.results or {}):
            diffs = json_differences(first.results, other.results)
            shown = "; ".join(d for d in diffs if not d.startswith("manifest."))[:600]
            result.problems.append(f"{other.path.name} and {first.path.name} carry different results ({shown or 'the manifests differ'})")


def _verify_spec(result: Verification, spec: Path) -> None:
    try:
        text = spec.read_text("utf-8")  # as `reportgen run` reads it (universal newlines)
    except (OSError, UnicodeDecodeError) as exc:
        raise VerifyInputError(f"--spec: {spec}: cannot read ({exc})") from None
    digest = sha256_hex(text.encode("utf-8"))
    for check in result.files:
        pinned = (check.manifest or {}).get("spec_sha256")
        if pinned is None:
            continue
        if pinned == digest:
            check.checked.append(f"the spec {spec.name}")
            continue
        stored = (check.results or {}).get("spec_text")
        where = ""
        if isinstance(stored, str):
            la, lb = text.splitlines(), stored.splitlines()
            k = next((j for j, (u, v) in enumerate(zip(la, lb, strict=False)) if u != v), min(len(la), len(lb)))
            mine = la[k] if k < len(la) else "(end of file)"
            theirs = lb[k] if k < len(lb) else "(end of file)"
            where = f"; first difference at line {k + 1}: {mine!r} here, {theirs!r} in the run"
        result.problems.append(f"{spec.name}: sha256 {digest}; {check.path.name} was made from a spec with sha256 {pinned}{where}")


def summary_lines(result: Verification) -> list[str]:
    """What the CLI prints: one line per file, its problems and notes indented."""
    lines: list[str] = []
    for c in result.files:
        run = (c.manifest or {}).get("run_id")
        head = f"{c.path}: {'ok' if c.ok else 'FAILED'}" + (f" (run {run})" if run else "")
        lines.append(head)
        lines.extend(f"  signed: {s}" for s in c.signatures)
        if c.ok and c.checked:
            lines.append("  checked: " + "; ".join(c.checked))
        lines.extend(f"  - {p}" for p in c.problems)
        lines.extend(f"  note: {n}" for n in c.notes)
    lines.extend(f"- {p}" for p in result.problems)
    return lines
