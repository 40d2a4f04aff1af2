"""The PDF/A-3b self-check (``reportgen_plugins.renderers.pdfa_check``): each rule fails when broken.

A small PDF/A-3b is written once per module through the renderer's own writer
(:func:`~reportgen_plugins.renderers.pdf.write_pdfa3b`: text in three fonts, an internal link,
a transparent box, results.json attached) and must pass. Every case then breaks one rule, by
editing the PDF's objects with pypdf (or its bytes, for the byte-level rules), and checks that
the checker names exactly that problem. The PDFs the report renderer writes are checked in
tests/test_pdf.py.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf
import pytest
from pypdf.generic import (
    ArrayObject,
    BooleanObject,
    ByteStringObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    NumberObject,
    TextStringObject,
)

from reportgen_plugins.renderers.pdf import (
    data_only_fetcher,
    one_af_entry_per_file,
    write_pdfa3b,
)
from reportgen_plugins.renderers.pdfa_check import pdfa_problems

SAMPLE_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Self-check sample</title>
<meta name="author" content="reportgen tests">
<meta name="description" content="A small PDF/A-3b for the self-check">
<meta name="keywords" content="pdfa, self-check">
<meta name="generator" content="reportgen tests">
<meta name="dcterms.created" content="2025-01-02T03:04:05+00:00">
<meta name="dcterms.modified" content="2025-01-02T03:05:15+00:00">
<style>
  body { font-family: "DejaVu Sans", sans-serif; }
  code { font-family: "DejaVu Sans Mono", monospace; }
  .veil { opacity: 0.5; background: #c00; width: 40mm; height: 10mm; }
</style></head>
<body><h1 id="top">Sample</h1>
<p>Text with <b>bold</b>, <code>mono</code> and a <a href="#top">link to the top</a>.</p>
<div class="veil"></div>
</body></html>
"""
RESULTS = b'{\n "schema_version": "1.0",\n "results": []\n}'
WHEN = dt.datetime(2025, 1, 2, 3, 5, 15, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    weasyprint = pytest.importorskip("weasyprint")
    out = tmp_path_factory.mktemp("pdfa") / "good.pdf"
    attachment = weasyprint.Attachment(
        file_obj=io.BytesIO(RESULTS),
        name="results.json",
        description="results",
        relationship="Data",
        created=WHEN,
        modified=WHEN,
    )
    doc = weasyprint.HTML(string=SAMPLE_HTML, url_fetcher=data_only_fetcher(), base_url=".").render()
    write_pdfa3b(doc, str(out), [attachment], b"0123456789abcdef0123456789abcdef", WHEN)
    return out


def test_sample_passes(good: Path) -> None:
    assert pdfa_problems(good) == []


def test_pypdf_round_trip_passes(good: Path, tmp_path: Path) -> None:
    """The cases below edit through pypdf's writer: unedited, its output must pass too."""
    assert pdfa_problems(_edited(good, tmp_path, lambda w: None)) == []


def test_finisher_lists_each_file_once() -> None:
    class Pdf:
        def __init__(self) -> None:
            self.catalog: dict[str, Any] = {"AF": ["12 0 R", "12 0 R", "14 0 R", "12 0 R"]}

    pdf = Pdf()
    one_af_entry_per_file(None, pdf)
    assert pdf.catalog["AF"] == ["12 0 R", "14 0 R"]


def test_colour_emoji_stay_pdfa_and_deterministic(tmp_path: Path) -> None:
    """Colour emoji are drawn as PNG images (WeasyPrint asks to interpolate them, which PDF/A
    forbids) from a font WeasyPrint re-saves with fontTools (stamped with the clock unless
    SOURCE_DATE_EPOCH is set): the writer must still give a PDF/A-3b, the same bytes each time."""
    weasyprint = pytest.importorskip("weasyprint")
    if not any("Noto Color Emoji" in f for f in _font_families()):
        pytest.skip("Noto Color Emoji is not installed")
    html = SAMPLE_HTML.replace("</p>", " and an emoji \U0001f600.</p>").replace(
        'font-family: "DejaVu Sans", sans-serif;', 'font-family: "DejaVu Sans", "Noto Color Emoji", sans-serif;'
    )
    written = []
    for k in range(2):
        if k:
            time.sleep(1.1)  # font timestamps have a resolution of one second
        doc = weasyprint.HTML(string=html, url_fetcher=data_only_fetcher(), base_url=".").render()
        out = tmp_path / f"emoji{k}.pdf"
        write_pdfa3b(doc, str(out), [], b"0123456789abcdef0123456789abcdef", WHEN)
        written.append(out)
    reader = pypdf.PdfReader(str(written[0]))
    images = [x.get_object() for x in reader.pages[0]["/Resources"]["/XObject"].values() if x.get_object().get("/Subtype") == "/Image"]
    assert images, "the emoji was not drawn as an image"
    assert pdfa_problems(written[0]) == []
    assert written[0].read_bytes() == written[1].read_bytes()


def _font_families() -> list[str]:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return []
    return subprocess.run([fc_list, ":", "family"], check=False, capture_output=True, text=True, timeout=60).stdout.splitlines()


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"this is not a PDF at all")
    problems = pdfa_problems(bad)
    assert any("cannot be read as a PDF" in p for p in problems)
    assert any("%PDF-1.n header" in p for p in problems)


# --------------------------------------------------------------------------- helpers


def _edited(good: Path, tmp_path: Path, edit: Callable[[Any], None]) -> Path:
    w = pypdf.PdfWriter(clone_from=str(good))
    edit(w)
    out = tmp_path / "edited.pdf"
    with out.open("wb") as fh:
        w.write(fh)
    return out


def _name(s: str) -> NameObject:
    return NameObject(s)


def _dict(**entries: Any) -> DictionaryObject:
    d = DictionaryObject()
    for k, v in entries.items():
        d[NameObject("/" + k)] = NameObject(v) if isinstance(v, str) and v.startswith("/") else v
    return d


def _stream(w: Any, data: bytes, **entries: Any) -> Any:
    s = DecodedStreamObject()
    s.set_data(data)
    s.update(_dict(**entries))
    return w._add_object(s)


def _resources(w: Any) -> Any:
    return w.pages[0]["/Resources"]


def _table(res: Any, key: str) -> Any:
    if key not in res:
        res[NameObject(key)] = DictionaryObject()
    return res[key]


def _type0(w: Any) -> tuple[Any, Any, Any]:
    """The first Type 0 font of page 1, its CID font and the CID font's descriptor."""
    fonts = _resources(w)["/Font"]
    t0 = next(f.get_object() for f in fonts.values() if f.get_object()["/Subtype"] == "/Type0")
    cid = t0["/DescendantFonts"][0].get_object()
    return t0, cid, cid["/FontDescriptor"]


def _filespec(w: Any) -> Any:
    return w.root_object["/Names"]["/EmbeddedFiles"]["/Names"][1].get_object()


def _ef_stream(w: Any) -> Any:
    return _filespec(w)["/EF"]["/F"].get_object()


def _link(w: Any) -> Any:
    return next(a.get_object() for a in w.pages[0]["/Annots"] if a.get_object()["/Subtype"] == "/Link")


def _set_xmp(w: Any, change: Callable[[str], str]) -> None:
    text = w.root_object["/Metadata"].get_object().get_data().decode("utf-8")
    changed = change(text)
    assert changed != text, "the XMP edit changed nothing"
    w.root_object[NameObject("/Metadata")] = _stream(w, changed.encode("utf-8"), Type="/Metadata", Subtype="/XML")


def _add_form(w: Any, content: bytes, Group: DictionaryObject | None = None, **resources: Any) -> None:
    form = _stream(
        w,
        content,
        Type="/XObject",
        Subtype="/Form",
        BBox=ArrayObject([NumberObject(0), NumberObject(0), NumberObject(10), NumberObject(10)]),
    )
    if resources:
        form.get_object()[NameObject("/Resources")] = _dict(**resources)
    if Group is not None:
        form.get_object()[NameObject("/Group")] = Group
    _table(_resources(w), "/XObject")[NameObject("/Xtest")] = form


def _add_font(w: Any, font: DictionaryObject) -> None:
    _table(_resources(w), "/Font")[NameObject("/Ftest")] = w._add_object(font)


def _helvetica() -> DictionaryObject:
    return _dict(Type="/Font", Subtype="/Type1", BaseFont="/Helvetica")


def _type3(w: Any, resources: DictionaryObject | None = None) -> DictionaryObject:
    glyph = _stream(w, b"500 0 0 0 500 500 d1 0 0 500 500 re f")
    font = _dict(
        Type="/Font",
        Subtype="/Type3",
        FontBBox=ArrayObject([NumberObject(0), NumberObject(0), NumberObject(500), NumberObject(500)]),
        FontMatrix=ArrayObject(
            [FloatObject(0.001), NumberObject(0), NumberObject(0), FloatObject(0.001), NumberObject(0), NumberObject(0)]
        ),
        CharProcs=_dict(square=glyph),
        FirstChar=NumberObject(65),
        LastChar=NumberObject(65),
        Widths=ArrayObject([NumberObject(500)]),
        Encoding=_dict(Type="/Encoding", Differences=ArrayObject([NumberObject(65), NameObject("/square")])),
    )
    if resources is not None:
        font[NameObject("/Resources")] = resources
    return font


def _add_gstate(w: Any, **entries: Any) -> None:
    _table(_resources(w), "/ExtGState")[NameObject("/GStest")] = w._add_object(_dict(Type="/ExtGState", **entries))


def _add_image(w: Any, **entries: Any) -> None:
    image = _stream(
        w,
        b"\x00\x00\x00",
        Type="/XObject",
        Subtype="/Image",
        Width=NumberObject(1),
        Height=NumberObject(1),
        BitsPerComponent=NumberObject(8),
        ColorSpace="/DeviceRGB",
        **entries,
    )
    _table(_resources(w), "/XObject")[NameObject("/Imtest")] = image


def _add_annotation(w: Any, annot: DictionaryObject) -> None:
    w.pages[0]["/Annots"].append(w._add_object(annot))


def _rect(*v: float) -> ArrayObject:
    return ArrayObject([FloatObject(x) for x in v])


def _drop_first_output_intent_key(key: str) -> Callable[[Any], None]:
    return lambda w: w.root_object["/OutputIntents"][0].get_object().pop(NameObject(key))


# --------------------------------------------------------------------------- one case per rule

#: (case id, edit of the pypdf writer, text one of the problems contains, how many problems). Without a
#: usable output intent, three problems follow: the intent itself, the transparent box (no page group
#: colour space) and DeviceRGB colour.
CASES: list[tuple[str, Callable[[Any], None], str, int]] = [
    # file structure
    ("no-document-id", lambda w: setattr(w, "_ID", None), "no document ID", 1),
    # XMP metadata
    ("no-xmp", lambda w: w.root_object.pop(NameObject("/Metadata")), "no XMP metadata stream", 1),
    ("xmp-part-2", lambda w: _set_xmp(w, lambda t: t.replace('pdfaid:part="3"', 'pdfaid:part="2"')), "declares pdfaid:part '2'", 1),
    ("xmp-no-part", lambda w: _set_xmp(w, lambda t: t.replace(' pdfaid:part="3"', "")), "has no pdfaid:part", 1),
    (
        "xmp-conformance-u",
        lambda w: _set_xmp(w, lambda t: t.replace('pdfaid:conformance="B"', 'pdfaid:conformance="U"')),
        "declares pdfaid:conformance 'U'",
        1,
    ),
    (
        "xmp-pdfaid-wrong-namespace",
        lambda w: _set_xmp(w, lambda t: t.replace("http://www.aiim.org/pdfa/ns/id/", "http://www.aiim.org/pdfa/ns/id")),
        "pdfaid",
        3,
    ),  # no pdfaid:part, no pdfaid:conformance, an undeclared namespace
    (
        "xmp-bytes-attribute",
        lambda w: _set_xmp(w, lambda t: t.replace('<?xpacket begin=""', '<?xpacket begin="" bytes="1024"')),
        "'bytes' or 'encoding' attribute",
        1,
    ),
    ("xmp-not-xml", lambda w: _set_xmp(w, lambda t: t.replace("</rdf:RDF>", "")), "not well-formed XML", 1),
    (
        "xmp-undeclared-schema",
        lambda w: _set_xmp(
            w,
            lambda t: t.replace(
                "</rdf:RDF>",
                '<rdf:Description rdf:about="" xmlns:acme="http://example.com/acme/1.0/"><acme:Audit>x</acme:Audit></rdf:Description></rdf:RDF>',
            ),
        ),
        "http://example.com/acme/1.0/ without a PDF/A extension schema",
        1,
    ),
    (
        "info-title-differs",
        lambda w: w.add_metadata({"/Title": "Another title"}),
        "/Title 'Another title' does not match the XMP dc:title",
        1,
    ),
    ("info-author-differs", lambda w: w.add_metadata({"/Author": "Someone else"}), "/Author", 1),
    ("info-moddate-differs", lambda w: w.add_metadata({"/ModDate": "D:20250102030516+00'00'"}), "/ModDate", 1),
    ("info-creationdate-no-zone", lambda w: w.add_metadata({"/CreationDate": "D:20250102030405"}), "/CreationDate", 1),
    (
        "info-producer-not-in-xmp",
        lambda w: _set_xmp(w, lambda t: t.replace(' pdf:Producer="WeasyPrint', ' pdf:Other="WeasyPrint')),
        "has /Producer 'WeasyPrint",
        1,
    ),
    # output intent
    ("no-output-intent", lambda w: w.root_object.pop(NameObject("/OutputIntents")), "output intent", 3),
    (
        "output-intent-not-pdfa",
        lambda w: w.root_object["/OutputIntents"][0].get_object().__setitem__(NameObject("/S"), NameObject("/GTS_PDFX")),
        "output intent",
        3,
    ),
    ("output-intent-no-profile", _drop_first_output_intent_key("/DestOutputProfile"), "ICC profile", 3),
    ("output-intent-no-identifier", _drop_first_output_intent_key("/OutputConditionIdentifier"), "/OutputConditionIdentifier", 1),
    (
        "output-intent-not-icc",
        lambda w: (
            w.root_object["/OutputIntents"][0]
            .get_object()
            .__setitem__(NameObject("/DestOutputProfile"), _stream(w, b"not an ICC profile" * 10, N=NumberObject(3)))
        ),
        "not an ICC profile",
        3,
    ),
    (
        "output-intent-n-mismatch",
        lambda w: (
            w.root_object["/OutputIntents"][0]
            .get_object()["/DestOutputProfile"]
            .get_object()
            .__setitem__(NameObject("/N"), NumberObject(4))
        ),
        "/N 4",
        1,
    ),
    # fonts
    ("cid-font-not-embedded", lambda w: _type0(w)[2].pop(NameObject("/FontFile2")), "is not embedded", 1),
    ("cid-font-no-descriptor", lambda w: _type0(w)[1].pop(NameObject("/FontDescriptor")), "has no font descriptor", 1),
    (
        "cid-font-wrong-program",
        lambda w: _type0(w)[2].__setitem__(NameObject("/FontFile"), _type0(w)[2].pop(NameObject("/FontFile2"))),
        "embeds a FontFile program, which is not a CIDFontType2 font program",
        1,
    ),
    ("cid-font-empty-program", lambda w: _type0(w)[2].__setitem__(NameObject("/FontFile2"), _stream(w, b"")), "font program is empty", 1),
    ("cid-font-no-cidtogidmap", lambda w: _type0(w)[1].pop(NameObject("/CIDToGIDMap")), "no /CIDToGIDMap", 1),
    ("type0-no-descendant", lambda w: _type0(w)[0].__setitem__(NameObject("/DescendantFonts"), ArrayObject()), "exactly one descendant", 1),
    ("type1-standard-font", lambda w: _add_font(w, _helvetica()), "'Helvetica' (Type1) is not embedded", 1),
    (
        "truetype-no-fontfile",
        lambda w: _add_font(
            w, _dict(Type="/Font", Subtype="/TrueType", BaseFont="/Arial", FontDescriptor=_dict(Type="/FontDescriptor", FontName="/Arial"))
        ),
        "'Arial' (TrueType) is not embedded: its font descriptor has no FontFile",
        1,
    ),
    (
        "type3-glyphs-use-unembedded-font",
        lambda w: _add_font(w, _type3(w, _dict(Font=_dict(F1=w._add_object(_helvetica()))))),
        "'Helvetica' (Type1) is not embedded",
        1,
    ),
    # actions, JavaScript, multimedia, forms
    (
        "javascript-open-action",
        lambda w: w.root_object.__setitem__(NameObject("/OpenAction"), _dict(S="/JavaScript", JS=TextStringObject("app.alert(1)"))),
        "JavaScript",
        2,
    ),
    (
        "javascript-name-tree",
        lambda w: w.root_object["/Names"].__setitem__(NameObject("/JavaScript"), _dict(Names=ArrayObject())),
        "JavaScript name tree",
        1,
    ),
    (
        "launch-action",
        lambda w: _link(w).__setitem__(NameObject("/A"), _dict(S="/Launch", F=TextStringObject("calc.exe"))),
        "a Launch action is not allowed",
        1,
    ),
    (
        "chained-action",
        lambda w: _link(w).__setitem__(
            NameObject("/A"), _dict(S="/URI", URI=TextStringObject("https://example.com"), Next=_dict(S="/Named", N="/Print"))
        ),
        "the named action /Print",
        1,
    ),
    (
        "additional-actions",
        lambda w: w.pages[0].__setitem__(NameObject("/AA"), _dict(O=_dict(S="/Named", N="/NextPage"))),
        "additional actions (/AA)",
        1,
    ),
    (
        "screen-annotation",
        lambda w: _add_annotation(w, _dict(Type="/Annot", Subtype="/Screen", Rect=_rect(0, 0, 10, 10), F=NumberObject(4))),
        "embedded multimedia",
        1,
    ),
    (
        "rendition-object",
        lambda w: w.root_object.__setitem__(NameObject("/Extra"), _dict(Type="/Rendition", S="/MR")),
        "embedded multimedia (Rendition)",
        1,
    ),
    ("xfa-form", lambda w: w.root_object.__setitem__(NameObject("/AcroForm"), _dict(Fields=ArrayObject(), XFA=ArrayObject())), "XFA", 1),
    # annotations
    ("annotation-not-printed", lambda w: _link(w).__setitem__(NameObject("/F"), NumberObject(0)), "not flagged to print", 1),
    ("annotation-hidden", lambda w: _link(w).__setitem__(NameObject("/F"), NumberObject(6)), "Hidden", 1),
    ("annotation-no-flags", lambda w: _link(w).pop(NameObject("/F")), "has no /F flags", 1),
    (
        "annotation-no-appearance",
        lambda w: _add_annotation(w, _dict(Type="/Annot", Subtype="/Square", Rect=_rect(0, 0, 10, 10), F=NumberObject(4))),
        "no normal appearance stream",
        1,
    ),
    # embedded files
    ("af-lists-file-twice", lambda w: w.root_object["/AF"].append(w.root_object["/AF"][0]), "is listed 2 times in the catalog's /AF", 1),
    ("af-missing", lambda w: w.root_object.pop(NameObject("/AF")), "is not listed in the catalog's /AF", 1),
    (
        "af-entry-not-a-file",
        lambda w: w.root_object["/AF"].append(w._add_object(_dict(Type="/Filespec", F=TextStringObject("x")))),
        "not the file specification of an embedded file",
        1,
    ),
    ("no-afrelationship", lambda w: _filespec(w).pop(NameObject("/AFRelationship")), "has no /AFRelationship", 1),
    (
        "bad-afrelationship",
        lambda w: _filespec(w).__setitem__(NameObject("/AFRelationship"), NameObject("/Evidence")),
        "not a defined value",
        1,
    ),
    ("no-uf", lambda w: _filespec(w).pop(NameObject("/UF")), "needs both /F and /UF", 1),
    ("no-mime-type", lambda w: _ef_stream(w).pop(NameObject("/Subtype")), "has no MIME type", 1),
    ("no-moddate", lambda w: _ef_stream(w)["/Params"].pop(NameObject("/ModDate")), "no /Params with a /ModDate", 1),
    (
        "bad-moddate",
        lambda w: _ef_stream(w)["/Params"].__setitem__(NameObject("/ModDate"), TextStringObject("yesterday")),
        "malformed /ModDate",
        1,
    ),
    (
        "checksum-mismatch",
        lambda w: _ef_stream(w)["/Params"].__setitem__(NameObject("/CheckSum"), ByteStringObject(b"\0" * 16)),
        "/CheckSum does not match",
        1,
    ),
    ("size-mismatch", lambda w: _ef_stream(w)["/Params"].__setitem__(NameObject("/Size"), NumberObject(1)), "/Size 1 is not its length", 1),
    (
        "unassociated-attachment",
        lambda w: _add_annotation(
            w,
            _dict(
                Type="/Annot",
                Subtype="/FileAttachment",
                Rect=_rect(0, 0, 0, 0),
                F=NumberObject(4),
                FS=_dict(
                    Type="/Filespec",
                    F=TextStringObject("a.txt"),
                    UF=TextStringObject("a.txt"),
                    AFRelationship="/Supplement",
                    EF=_dict(
                        F=_stream(
                            w,
                            b"hello",
                            Type="/EmbeddedFile",
                            Subtype="/text/plain",
                            Params=_dict(ModDate=TextStringObject("D:20250102030515Z")),
                        )
                    ),
                ),
            ),
        ),
        "'a.txt' is not associated",
        1,
    ),
    # streams and graphics states
    ("lzw-filter", lambda w: _add_image(w, Filter="/LZWDecode"), "LZWDecode filter", 1),
    ("external-stream", lambda w: _add_image(w, F=TextStringObject("pixels.raw")), "external file", 1),
    ("image-interpolate", lambda w: _add_image(w, Interpolate=BooleanObject(True)), "/Interpolate true", 1),
    ("image-alternates", lambda w: _add_image(w, Alternates=ArrayObject()), "/Alternates", 1),
    (
        "postscript-xobject",
        lambda w: _table(_resources(w), "/XObject").__setitem__(
            NameObject("/PStest"), _stream(w, b"showpage", Type="/XObject", Subtype="/PS")
        ),
        "PostScript XObject",
        1,
    ),
    ("transfer-function", lambda w: _add_gstate(w, TR="/Identity"), "transfer function (/TR)", 1),
    ("halftone-phase", lambda w: _add_gstate(w, HTP=ArrayObject([NumberObject(0), NumberObject(0)])), "halftone phase", 1),
    ("blend-mode", lambda w: _add_gstate(w, BM="/Dissolve"), "blend mode /Dissolve", 1),
    ("soft-mask-name", lambda w: _add_gstate(w, SMask="/Luminosity"), "/SMask is /Luminosity", 1),
    # transparency and colour
    ("transparency-without-intent", lambda w: w.root_object.pop(NameObject("/OutputIntents")), "uses transparency", 3),
    (
        "cmyk-operator-with-rgb-intent",
        lambda w: _add_form(w, b"0 0 0 1 k 0 0 10 10 re f"),
        "DeviceCMYK colour is used (first in page 1) but the output intent's profile is RGB",
        1,
    ),
    (
        "cmyk-colour-space-with-rgb-intent",
        lambda w: _add_form(
            w,
            b"/CS0 cs 1 sc 0 0 10 10 re f",
            ColorSpace=_dict(
                CS0=ArrayObject([NameObject("/Indexed"), NameObject("/DeviceCMYK"), NumberObject(0), ByteStringObject(b"\0\0\0\xff")])
            ),
        ),
        "DeviceCMYK colour is used",
        1,
    ),
    (
        "cmyk-group-with-rgb-intent",
        lambda w: _add_form(w, b"0 g 0 0 10 10 re f", Group=_dict(Type="/Group", S="/Transparency", CS="/DeviceCMYK")),
        "DeviceCMYK colour is used",
        1,
    ),
    ("unparsable-content", lambda w: _add_form(w, b"BI /W 1 /H 1 ID"), "cannot be parsed", 1),
]


@pytest.mark.parametrize(("edit", "expected", "count"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_fails_when_broken(good: Path, tmp_path: Path, edit: Callable[[Any], None], expected: str, count: int) -> None:
    problems = pdfa_problems(_edited(good, tmp_path, edit))
    assert problems, "the broken rule was not reported"
    assert any(expected in p for p in problems), problems
    assert len(problems) == count, problems


def test_type3_fonts_need_no_font_program(good: Path, tmp_path: Path) -> None:
    assert pdfa_problems(_edited(good, tmp_path, lambda w: _add_font(w, _type3(w)))) == []


def test_declared_extension_schema_is_accepted(good: Path, tmp_path: Path) -> None:
    schema = (
        '<rdf:Description rdf:about="" xmlns:pdfaExtension="http://www.aiim.org/pdfa/ns/extension/" '
        'xmlns:pdfaSchema="http://www.aiim.org/pdfa/ns/schema#" xmlns:pdfaProperty="http://www.aiim.org/pdfa/ns/property#">'
        '<pdfaExtension:schemas><rdf:Bag><rdf:li rdf:parseType="Resource">'
        "<pdfaSchema:schema>Acme audit</pdfaSchema:schema>"
        "<pdfaSchema:namespaceURI>http://example.com/acme/1.0/</pdfaSchema:namespaceURI>"
        "<pdfaSchema:prefix>acme</pdfaSchema:prefix>"
        "</rdf:li></rdf:Bag></pdfaExtension:schemas></rdf:Description>"
        '<rdf:Description rdf:about="" xmlns:acme="http://example.com/acme/1.0/"><acme:Audit>x</acme:Audit></rdf:Description>'
    )
    edited = _edited(good, tmp_path, lambda w: _set_xmp(w, lambda t: t.replace("</rdf:RDF>", schema + "</rdf:RDF>")))
    assert pdfa_problems(edited) == []


def test_page_group_colour_space_satisfies_the_transparency_rule(good: Path, tmp_path: Path) -> None:
    def edit(w: Any) -> None:
        w.root_object.pop(NameObject("/OutputIntents"))
        w.pages[0][NameObject("/Group")] = _dict(Type="/Group", S="/Transparency", CS="/DeviceRGB")

    problems = pdfa_problems(_edited(good, tmp_path, edit))
    assert not any("uses transparency" in p for p in problems) and len(problems) == 2, problems


def test_gray_with_rgb_intent_is_fine(good: Path, tmp_path: Path) -> None:
    assert pdfa_problems(_edited(good, tmp_path, lambda w: _add_form(w, b"0.5 g 0 0 10 10 re f"))) == []


def test_encrypted(good: Path, tmp_path: Path) -> None:
    problems = pdfa_problems(_edited(good, tmp_path, lambda w: w.encrypt("secret")))
    assert problems == ["The file is encrypted; PDF/A forbids encryption (nothing else was checked)."]


# --------------------------------------------------------------------------- byte-level rules


def _second_line(data: bytes) -> tuple[int, int]:
    start = data.index(b"\n") + 1
    return start, data.index(b"\n", start)


def test_header_without_binary_comment(good: Path, tmp_path: Path) -> None:
    data = good.read_bytes()
    start, end = _second_line(data)
    broken = tmp_path / "plain-comment.pdf"
    broken.write_bytes(data[:start] + b"%" + b"a" * (end - start - 1) + data[end:])  # same length: offsets unchanged
    assert pdfa_problems(broken) == [
        "The header is not followed by a comment line of at least four bytes above 127 (it marks the file as binary)."
    ]


def test_wrong_header_version(good: Path, tmp_path: Path) -> None:
    data = good.read_bytes()
    broken = tmp_path / "pdf2.pdf"
    broken.write_bytes(b"%PDF-2.0" + data[8:])
    assert pdfa_problems(broken) == ["The file does not start with a %PDF-1.n header line (n from 0 to 7)."]


def test_data_after_eof(good: Path, tmp_path: Path) -> None:
    broken = tmp_path / "trailing.pdf"
    broken.write_bytes(good.read_bytes() + b"trailing junk\n")
    assert pdfa_problems(broken) == ["15 bytes follow the last %%EOF marker; only an end-of-line may."]
