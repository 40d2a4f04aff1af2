"""A PDF/A-3b self-check: the rules archival PDFs most often break, read with pypdf.

This is not a validator (veraPDF is the reference and is not available offline); it checks, on
the PDF's objects rather than its bytes, the rules a generator most easily gets wrong:

- file structure: ``%PDF-1.n`` header followed by a binary comment, nothing after the last
  ``%%EOF``, no encryption, a document ``/ID``;
- XMP metadata: present and well formed, ``pdfaid:part`` 3 and ``pdfaid:conformance`` B, no
  ``bytes``/``encoding`` in the packet header, every property in a predefined schema or one
  declared as a PDF/A extension schema, and the document information dictionary consistent
  with it (title, author, subject, keywords, creator, producer, creation and modification dates);
- an output intent ``/GTS_PDFA1`` with an embedded, plausible ICC output profile, and device
  colours (in colour spaces, content streams and inline images) consistent with it;
- every font embedded: each simple and CID font (Type 0 descendants included) has a font
  descriptor with ``FontFile``/``FontFile2``/``FontFile3`` of the right kind and a non-empty
  program; CIDFontType2 fonts have a ``CIDToGIDMap``; Type 3 fonts need no program, but the
  fonts their glyphs use are checked like any other;
- no JavaScript, no additional actions (``/AA``), no Launch or other forbidden actions, no
  multimedia (Movie, Sound, Screen, 3D, RichMedia, renditions), no XFA, annotations printable
  and with appearance streams;
- embedded files: each listed in an ``/AF`` array (the catalog's for document attachments)
  exactly once, with ``/F`` and ``/UF``, a valid ``/AFRelationship``, a MIME ``/Subtype`` and
  ``/Params`` with a ``/ModDate``; a ``/CheckSum`` or ``/Size``, when present, matches the data;
- streams and graphics states: no LZW or Crypt filters, no external stream data, no PostScript
  or reference XObjects, no image alternates or interpolation, no transfer functions or
  halftone phases, standard blend modes only, soft masks as dictionaries or ``/None``, and pages
  with transparency carry a group colour space when there is no output intent.

:func:`pdfa_problems` returns the problems found as plain English sentences (an empty list when
none is found). A rule that cannot be evaluated on a damaged file is reported as a problem too,
never as a pass.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    BooleanObject,
    ByteStringObject,
    ContentStream,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NumberObject,
    StreamObject,
    TextStringObject,
)

__all__ = ["pdfa_problems"]

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
PDFAID = "http://www.aiim.org/pdfa/ns/id/"
PDFA_SCHEMA = "http://www.aiim.org/pdfa/ns/schema#"
DC = "http://purl.org/dc/elements/1.1/"
XMP = "http://ns.adobe.com/xap/1.0/"
PDF = "http://ns.adobe.com/pdf/1.3/"

#: Schemas PDF/A accepts without an extension schema (XMP 2005 predefined schemas, PDF/A's own).
PREDEFINED_XMP_NAMESPACES = frozenset(
    {
        DC,
        XMP,
        PDF,
        PDFAID,
        "http://ns.adobe.com/xap/1.0/rights/",
        "http://ns.adobe.com/xap/1.0/mm/",
        "http://ns.adobe.com/xap/1.0/bj/",
        "http://ns.adobe.com/xap/1.0/t/pg/",
        "http://ns.adobe.com/xmp/1.0/DynamicMedia/",
        "http://ns.adobe.com/photoshop/1.0/",
        "http://ns.adobe.com/camera-raw-settings/1.0/",
        "http://ns.adobe.com/tiff/1.0/",
        "http://ns.adobe.com/exif/1.0/",
        "http://ns.adobe.com/exif/1.0/aux/",
        "http://www.aiim.org/pdfa/ns/extension/",
    }
)

#: Document information entries and the XMP property each must agree with.
INFO_TO_XMP = (
    ("/Title", (DC, "title"), "dc:title"),
    ("/Author", (DC, "creator"), "dc:creator"),
    ("/Subject", (DC, "description"), "dc:description"),
    ("/Keywords", (PDF, "Keywords"), "pdf:Keywords"),
    ("/Creator", (XMP, "CreatorTool"), "xmp:CreatorTool"),
    ("/Producer", (PDF, "Producer"), "pdf:Producer"),
    ("/CreationDate", (XMP, "CreateDate"), "xmp:CreateDate"),
    ("/ModDate", (XMP, "ModifyDate"), "xmp:ModifyDate"),
)

FONT_SUBTYPES = frozenset({"/Type0", "/Type1", "/MMType1", "/Type3", "/TrueType", "/CIDFontType0", "/CIDFontType2"})
#: Which font-program keys (and FontFile3 subtypes) fit each font type.
FONT_PROGRAMS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "/Type1": (("/FontFile", None), ("/FontFile3", "/Type1C"), ("/FontFile3", "/OpenType")),
    "/MMType1": (("/FontFile", None), ("/FontFile3", "/Type1C"), ("/FontFile3", "/OpenType")),
    "/TrueType": (("/FontFile2", None), ("/FontFile3", "/OpenType")),
    "/CIDFontType0": (("/FontFile3", "/CIDFontType0C"), ("/FontFile3", "/OpenType")),
    "/CIDFontType2": (("/FontFile2", None), ("/FontFile3", "/OpenType")),
}

ALLOWED_ACTIONS = frozenset({"/GoTo", "/GoToR", "/GoToE", "/Thread", "/URI", "/Named", "/SubmitForm"})
ALLOWED_NAMED_ACTIONS = frozenset({"/NextPage", "/PrevPage", "/FirstPage", "/LastPage"})
MULTIMEDIA_ANNOTATIONS = frozenset({"/Movie", "/Sound", "/Screen", "/3D", "/RichMedia"})
ANNOTATIONS = frozenset(
    {
        "/Text",
        "/Link",
        "/FreeText",
        "/Line",
        "/Square",
        "/Circle",
        "/Polygon",
        "/PolyLine",
        "/Highlight",
        "/Underline",
        "/Squiggly",
        "/StrikeOut",
        "/Stamp",
        "/Caret",
        "/Ink",
        "/Popup",
        "/FileAttachment",
        "/Widget",
        "/PrinterMark",
        "/TrapNet",
        "/Watermark",
        "/Redact",
    }
)
MULTIMEDIA_TYPES = frozenset({"/Rendition", "/MediaClip", "/Sound", "/3D", "/RichMediaContent", "/RichMediaSettings"})
AF_RELATIONSHIPS = frozenset(
    {
        "/Source",
        "/Data",
        "/Alternative",
        "/Supplement",
        "/EncryptedPayload",
        "/FormData",
        "/Schema",
        "/Unspecified",
    }
)
BLEND_MODES = frozenset(
    {
        "/Normal",
        "/Compatible",
        "/Multiply",
        "/Screen",
        "/Overlay",
        "/Darken",
        "/Lighten",
        "/ColorDodge",
        "/ColorBurn",
        "/HardLight",
        "/SoftLight",
        "/Difference",
        "/Exclusion",
        "/Hue",
        "/Saturation",
        "/Color",
        "/Luminosity",
    }
)
ICC_COLOUR_MODELS = {b"GRAY": ("Gray", 1), b"RGB ": ("RGB", 3), b"CMYK": ("CMYK", 4)}
DEVICE_SPACES = {"/DeviceGray": "Gray", "/DeviceRGB": "RGB", "/DeviceCMYK": "CMYK", "/G": "Gray", "/RGB": "RGB", "/CMYK": "CMYK"}
COLOUR_OPERATORS = {b"g": "Gray", b"G": "Gray", b"rg": "RGB", b"RG": "RGB", b"k": "CMYK", b"K": "CMYK"}
#: Keys not followed while walking one page (they lead to the page tree or to other pages).
PAGE_WALK_SKIP = frozenset({"/Parent", "/P", "/Pg", "/Dest", "/D"})
DOCUMENT_WALK_SKIP = frozenset({"/Parent", "/P", "/Pg"})


# --------------------------------------------------------------------------- entry point


def pdfa_problems(path: str | os.PathLike[str]) -> list[str]:
    """Problems that keep the PDF at ``path`` from being PDF/A-3b, in plain English (``[]``: none found)."""
    data = Path(path).read_bytes()
    problems = _file_structure(data)
    try:
        reader = PdfReader(io.BytesIO(data))
        if "/Encrypt" in reader.trailer:
            return [*problems, "The file is encrypted; PDF/A forbids encryption (nothing else was checked)."]
        root = reader.trailer["/Root"].get_object()
        if not isinstance(root, DictionaryObject):
            raise TypeError("the trailer's /Root is not a dictionary")
    except Exception as exc:  # noqa: BLE001 - a damaged file is a finding, not a crash
        return [*problems, f"The file cannot be read as a PDF ({type(exc).__name__}: {exc})."]
    doc = _Document(reader, root)
    rules: list[tuple[str, Callable[[_Document], list[str]]]] = [
        ("document ID", _document_id),
        ("XMP metadata", _xmp_metadata),
        ("output intent", _output_intent),
        ("fonts", _fonts),
        ("actions and multimedia", _actions_and_multimedia),
        ("annotations", _annotations),
        ("embedded files", _embedded_files),
        ("streams and graphics states", _streams_and_graphics_states),
        ("transparency", _transparency),
        ("device colours", _device_colours),
    ]
    problems += doc.problems
    for name, rule in rules:
        try:
            problems += rule(doc)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"The {name} rule could not be checked ({type(exc).__name__}: {exc}).")
    return problems


# --------------------------------------------------------------------------- the object graph


@dataclasses.dataclass
class _Node:
    """A dictionary (or stream) of the file, and where it was first reached ("page 3", "the document")."""

    where: str
    obj: DictionaryObject


class _Document:
    """Every dictionary reachable from the pages (in page order) and then from the catalog."""

    def __init__(self, reader: PdfReader, root: DictionaryObject) -> None:
        self.reader = reader
        self.root = root
        self.nodes: list[_Node] = []
        self.problems: list[str] = []
        self.pages: list[DictionaryObject] = []
        self._seen: set[tuple[int, int]] = set()
        self.intent: str | None = None  # colour model of the PDF/A output intent, set by _output_intent
        try:
            pages = list(reader.pages)
        except Exception as exc:  # noqa: BLE001
            self.problems.append(f"The page tree cannot be read ({type(exc).__name__}: {exc}).")
            pages = []
        for i, page in enumerate(pages):
            self.pages.append(page)
            ref = page.indirect_reference
            if ref is not None:
                self._seen.add((ref.idnum, ref.generation))
            self._walk(page, f"page {i + 1}", PAGE_WALK_SKIP)
        self._walk(root, "the document", DOCUMENT_WALK_SKIP)

    def _walk(self, start: Any, where: str, skip: frozenset[str]) -> None:
        stack: list[Any] = [start]
        while stack:
            raw = stack.pop()
            if isinstance(raw, IndirectObject):
                key = (raw.idnum, raw.generation)
                if key in self._seen:
                    continue
                self._seen.add(key)
                try:
                    obj = raw.get_object()
                except Exception as exc:  # noqa: BLE001
                    self.problems.append(f"{_cap(where)}: object {raw.idnum} {raw.generation} R cannot be read ({exc}).")
                    continue
            else:
                obj = raw
            if isinstance(obj, DictionaryObject):
                self.nodes.append(_Node(where, obj))
                stack.extend(reversed([obj.raw_get(k) for k in obj if k not in skip]))
            elif isinstance(obj, ArrayObject):
                stack.extend(reversed(list(obj)))


def _res(x: Any) -> Any:
    """An object with indirect references resolved (None stays None)."""
    return x.get_object() if isinstance(x, IndirectObject) else x


def _get(d: DictionaryObject, key: str) -> Any:
    return _res(d.raw_get(key)) if key in d else None


def _name(d: DictionaryObject, key: str) -> str | None:
    v = _get(d, key)
    return str(v) if isinstance(v, NameObject) else None


def _text(v: Any) -> str | None:
    v = _res(v)
    if isinstance(v, (TextStringObject, ByteStringObject, NameObject)):
        return str(v) if not isinstance(v, ByteStringObject) else bytes(v).decode("latin-1")
    return None


def _bytes(v: Any) -> bytes | None:
    v = _res(v)
    if isinstance(v, ByteStringObject):
        return bytes(v)
    if isinstance(v, TextStringObject):
        return bytes(v.original_bytes)
    return None


def _key(raw: Any) -> tuple[int, int] | int:
    """Identity of an object: its reference when indirect, else the Python object."""
    if isinstance(raw, IndirectObject):
        return (raw.idnum, raw.generation)
    return id(raw)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# --------------------------------------------------------------------------- file structure


def _file_structure(data: bytes) -> list[str]:
    problems = []
    m = re.match(rb"%PDF-1\.[0-7](\r\n|\r|\n)", data)
    if m is None:
        problems.append("The file does not start with a %PDF-1.n header line (n from 0 to 7).")
    else:
        line = re.match(rb"[^\r\n]*", data[m.end() :])
        comment = line.group(0) if line else b""
        if not comment.startswith(b"%") or sum(b > 127 for b in comment) < 4:
            problems.append("The header is not followed by a comment line of at least four bytes above 127 (it marks the file as binary).")
    eof = data.rfind(b"%%EOF")
    if eof < 0:
        problems.append("The file has no %%EOF marker.")
    elif data[eof + 5 :] not in (b"", b"\n", b"\r", b"\r\n"):
        problems.append(f"{len(data) - eof - 5} bytes follow the last %%EOF marker; only an end-of-line may.")
    return problems


def _document_id(doc: _Document) -> list[str]:
    ident = _res(doc.reader.trailer.raw_get("/ID")) if "/ID" in doc.reader.trailer else None
    if not isinstance(ident, ArrayObject) or len(ident) != 2 or not all(_bytes(x) for x in ident):
        return ["The trailer has no document ID (an /ID array of two non-empty strings)."]
    return []


# --------------------------------------------------------------------------- XMP metadata


def _xmp_metadata(doc: _Document) -> list[str]:
    md = _get(doc.root, "/Metadata")
    if not isinstance(md, StreamObject):
        return ["The catalog has no XMP metadata stream (/Metadata)."]
    problems = []
    if _name(md, "/Type") != "/Metadata" or _name(md, "/Subtype") != "/XML":
        problems.append("The XMP metadata stream is not marked /Type /Metadata /Subtype /XML.")
    try:
        root, pis = _parse_xmp(md.get_data())
    except ET.ParseError as exc:
        return [*problems, f"The XMP metadata is not well-formed XML ({exc})."]
    for pi in pis:
        if pi.startswith("xpacket") and "begin" in pi and re.search(r"\b(bytes|encoding)\s*=", pi):
            problems.append("The XMP packet header uses the 'bytes' or 'encoding' attribute, which PDF/A forbids.")
    props = _xmp_properties(root)

    def one(ns: str, local: str) -> str | None:
        values = props.get((ns, local))
        return values[0][1].strip() if values else None

    part, conformance = one(PDFAID, "part"), one(PDFAID, "conformance")
    if part is None:
        problems.append(f"The XMP metadata has no pdfaid:part (namespace {PDFAID}); a PDF/A-3 file declares 3.")
    elif part != "3":
        problems.append(f"The XMP metadata declares pdfaid:part {part!r}; a PDF/A-3 file declares 3.")
    if conformance is None:
        problems.append("The XMP metadata has no pdfaid:conformance; a PDF/A-3b file declares B.")
    elif conformance != "B":
        problems.append(f"The XMP metadata declares pdfaid:conformance {conformance!r}; a PDF/A-3b file declares B.")

    declared = {el.text.strip() for el in root.iter(f"{{{PDFA_SCHEMA}}}namespaceURI") if el.text}
    declared |= {v for el in root.iter() for k, v in el.attrib.items() if k == f"{{{PDFA_SCHEMA}}}namespaceURI"}
    for ns in sorted({ns for ns, _ in props} - PREDEFINED_XMP_NAMESPACES - declared):
        names = ", ".join(sorted(local for n, local in props if n == ns))
        problems.append(f"The XMP metadata uses properties ({names}) of namespace {ns} without a PDF/A extension schema for it.")

    info = _res(doc.reader.trailer.raw_get("/Info")) if "/Info" in doc.reader.trailer else None
    if isinstance(info, DictionaryObject):
        for key, prop, label in INFO_TO_XMP:
            if key not in info:
                continue
            value = _text(info.raw_get(key))
            xmp = props.get(prop)
            if value is None:
                problems.append(f"The document information entry {key} is not a text string.")
            elif not xmp:
                problems.append(f"The document information has {key} {value!r} but the XMP metadata has no {label}.")
            elif not _info_matches_xmp(key, value, xmp):
                shown = "; ".join(v for _, v in xmp)
                problems.append(f"The document information {key} {value!r} does not match the XMP {label} {shown!r}.")
    return problems


def _parse_xmp(data: bytes) -> tuple[ET.Element, list[str]]:
    """The XMP's root element and its processing instructions' text (the packet header among them)."""
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "pi"))
    parser.feed(data)
    parser.close()
    root: ET.Element | None = None
    pis = []
    for item in parser.read_events():
        event, el = item[0], (item[1] if len(item) > 1 else None)
        if event == "pi" and isinstance(el, ET.Element) and el.text is not None:
            pis.append(el.text)
        elif event == "start" and root is None and isinstance(el, ET.Element):
            root = el
    if root is None:
        raise ET.ParseError("no root element")
    return root, pis


def _xmp_properties(root: ET.Element) -> dict[tuple[str, str], list[tuple[str | None, str]]]:
    """Top-level properties of every rdf:Description: (namespace, name) → [(xml:lang, text)]."""
    props: dict[tuple[str, str], list[tuple[str | None, str]]] = {}
    for desc in root.iter(f"{{{RDF}}}Description"):
        for attr, value in desc.attrib.items():
            if attr.startswith("{") and not attr.startswith(f"{{{RDF}}}"):
                ns, local = attr[1:].split("}", 1)
                props[(ns, local)] = [(None, value)]
        for child in desc:
            if not isinstance(child.tag, str) or not child.tag.startswith("{"):
                continue
            ns, local = child.tag[1:].split("}", 1)
            container = next((c for c in child if c.tag in (f"{{{RDF}}}Alt", f"{{{RDF}}}Seq", f"{{{RDF}}}Bag")), None)
            if container is not None:
                props[(ns, local)] = [(li.get(XML_LANG), (li.text or "")) for li in container]
            else:
                props[(ns, local)] = [(None, child.text or "")]
    return props


def _info_matches_xmp(key: str, value: str, xmp: list[tuple[str | None, str]]) -> bool:
    if key in ("/CreationDate", "/ModDate"):
        a, b = _pdf_date(value), _xmp_date(xmp[0][1])
        return a is not None and b is not None and a == b
    if key == "/Author":
        return len(xmp) == 1 and xmp[0][1] == value
    if key in ("/Title", "/Subject"):
        default = [v for lang, v in xmp if lang == "x-default"] or [v for _, v in xmp[:1]]
        return default[0] == value
    return xmp[0][1] == value


_PDF_DATE = re.compile(r"^D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:(Z)(?:00'?00'?)?|([+-])(\d{2})'?(\d{2})?'?)?$")
_XMP_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def _when(parts: tuple[str | None, ...], tz: _dt.tzinfo | None) -> tuple[_dt.datetime, bool] | None:
    y, mo, d, h, mi, s = (int(p) if p else dflt for p, dflt in zip(parts, (0, 1, 1, 0, 0, 0), strict=True))
    try:
        when = _dt.datetime(y, mo, d, h, mi, s, tzinfo=tz)
    except ValueError:
        return None
    return (when.astimezone(_dt.timezone.utc) if tz else when), tz is not None


def _pdf_date(s: str) -> tuple[_dt.datetime, bool] | None:
    """A PDF date string as (datetime, has a time zone); None when malformed."""
    m = _PDF_DATE.match(s.strip())
    if m is None:
        return None
    tz: _dt.tzinfo | None = None
    if m.group(7):
        tz = _dt.timezone.utc
    elif m.group(8):
        sign = 1 if m.group(8) == "+" else -1
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(m.group(9)), minutes=int(m.group(10) or 0)))
    return _when(m.groups()[:6], tz)


def _xmp_date(s: str) -> tuple[_dt.datetime, bool] | None:
    m = _XMP_DATE.match(s.strip())
    if m is None:
        return None
    tz: _dt.tzinfo | None = None
    if m.group(7) == "Z":
        tz = _dt.timezone.utc
    elif m.group(7):
        sign = 1 if m.group(7)[0] == "+" else -1
        hh, mm = m.group(7)[1:].split(":")
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(hh), minutes=int(mm)))
    return _when(m.groups()[:6], tz)


# --------------------------------------------------------------------------- output intent


def _output_intent(doc: _Document) -> list[str]:
    intents = _get(doc.root, "/OutputIntents")
    if not isinstance(intents, ArrayObject) or not intents:
        return ["The catalog has no /OutputIntents; PDF/A needs one with /S /GTS_PDFA1 and an embedded ICC profile."]
    problems = []
    entries = [e for e in (_res(x) for x in intents) if isinstance(e, DictionaryObject)]
    profiles = {_key(e.raw_get("/DestOutputProfile")) for e in entries if "/DestOutputProfile" in e}
    if len(profiles) > 1:
        problems.append("The output intents name different ICC profiles; PDF/A needs them all to be the same object.")
    pdfa = [e for e in entries if _name(e, "/S") == "/GTS_PDFA1"]
    if not pdfa:
        return [*problems, "No output intent has /S /GTS_PDFA1 (the PDF/A output intent)."]
    intent = pdfa[0]
    if _text(intent.raw_get("/OutputConditionIdentifier") if "/OutputConditionIdentifier" in intent else None) is None:
        problems.append("The PDF/A output intent has no /OutputConditionIdentifier.")
    profile = _get(intent, "/DestOutputProfile")
    if not isinstance(profile, StreamObject):
        return [*problems, "The PDF/A output intent has no embedded ICC profile (/DestOutputProfile)."]
    icc = profile.get_data()
    if len(icc) < 128 or icc[36:40] != b"acsp":
        return [*problems, "The output intent's /DestOutputProfile is not an ICC profile (no 'acsp' signature)."]
    if icc[12:16] not in (b"prtr", b"mntr"):
        problems.append(
            f"The output intent's ICC profile is of class {icc[12:16]!r}; PDF/A needs an output profile (class 'prtr' or 'mntr')."
        )
    if icc[8] > 4:
        problems.append(f"The output intent's ICC profile is version {icc[8]}; PDF/A-3 accepts versions up to 4.")
    model = ICC_COLOUR_MODELS.get(icc[16:20])
    if model is None:
        return [*problems, f"The output intent's ICC profile has colour space {icc[16:20]!r}, not Gray, RGB or CMYK."]
    n = _get(profile, "/N")
    if not isinstance(n, NumberObject) or int(n) != model[1]:
        problems.append(f"The output intent's ICC profile is {model[0]} but its stream says /N {n}.")
    doc.intent = model[0]
    return problems


# --------------------------------------------------------------------------- fonts


def _is_font(d: DictionaryObject) -> bool:
    subtype = _name(d, "/Subtype")
    if subtype not in FONT_SUBTYPES:
        return False
    return _name(d, "/Type") == "/Font" or any(k in d for k in ("/BaseFont", "/FontDescriptor", "/CharProcs"))


def _fonts(doc: _Document) -> list[str]:
    problems = []
    for node in doc.nodes:
        font = node.obj
        if not _is_font(font):
            continue
        subtype = _name(font, "/Subtype") or ""
        base = (_name(font, "/BaseFont") or "(unnamed)").lstrip("/")
        what = f"{_cap(node.where)}: font {base!r} ({subtype.lstrip('/')})"
        if subtype == "/Type3":
            continue  # glyphs are content streams; fonts they use are reached through its /Resources
        if subtype == "/Type0":
            kids = _get(font, "/DescendantFonts")
            if not isinstance(kids, ArrayObject) or len(kids) != 1 or not isinstance(_res(kids[0]), DictionaryObject):
                problems.append(f"{what} does not have exactly one descendant CID font.")
            continue
        fd = _get(font, "/FontDescriptor")
        if not isinstance(fd, DictionaryObject):
            problems.append(f"{what} is not embedded: it has no font descriptor.")
            continue
        present = [k for k in ("/FontFile", "/FontFile2", "/FontFile3") if k in fd]
        if not present:
            problems.append(f"{what} is not embedded: its font descriptor has no FontFile, FontFile2 or FontFile3.")
            continue
        program = _get(fd, present[0])
        kind = (present[0], _name(program, "/Subtype") if present[0] == "/FontFile3" and isinstance(program, StreamObject) else None)
        if kind not in FONT_PROGRAMS[subtype]:
            shown = present[0].lstrip("/") + (f" ({kind[1].lstrip('/')})" if kind[1] else "")
            problems.append(f"{what} embeds a {shown} program, which is not a {subtype.lstrip('/')} font program.")
        if not isinstance(program, StreamObject) or not program.get_data():
            problems.append(f"{what}: its embedded font program is empty.")
        if subtype == "/CIDFontType2":
            cid_to_gid = _get(font, "/CIDToGIDMap")
            if not (isinstance(cid_to_gid, StreamObject) or cid_to_gid == "/Identity"):
                problems.append(f"{what} has no /CIDToGIDMap (the name /Identity or a stream).")
    return problems


# --------------------------------------------------------------------------- actions, multimedia


def _actions_and_multimedia(doc: _Document) -> list[str]:
    problems = []
    names = _get(doc.root, "/Names")
    if isinstance(names, DictionaryObject) and "/JavaScript" in names:
        problems.append("The document has a JavaScript name tree (/Names /JavaScript); PDF/A forbids JavaScript.")
    if _get(doc.root, "/NeedsRendering") == BooleanObject(True):
        problems.append("The catalog sets /NeedsRendering (a dynamic XFA form); PDF/A forbids it.")
    form = _get(doc.root, "/AcroForm")
    if isinstance(form, DictionaryObject):
        if "/XFA" in form:
            problems.append("The interactive form carries XFA (/AcroForm /XFA); PDF/A forbids it.")
        if _get(form, "/NeedAppearances") == BooleanObject(True):
            problems.append("The interactive form sets /NeedAppearances true; PDF/A forbids it.")
    actions: list[tuple[str, DictionaryObject]] = []
    for node in doc.nodes:
        d = node.obj
        if "/AA" in d:
            problems.append(f"{_cap(node.where)}: a dictionary has additional actions (/AA), which PDF/A forbids.")
        if "/JS" in d:
            problems.append(f"{_cap(node.where)}: a dictionary carries JavaScript (/JS), which PDF/A forbids.")
        kind = _name(d, "/Type")
        if kind in MULTIMEDIA_TYPES:
            problems.append(f"{_cap(node.where)}: embedded multimedia ({kind.lstrip('/')}) is not allowed in PDF/A.")
        for key in ("/A", "/OpenAction"):
            v = _get(d, key)
            if isinstance(v, DictionaryObject) and "/S" in v:
                actions.append((node.where, v))
        if kind == "/Action":
            actions.append((node.where, d))
    seen: set[int] = set()
    queue = list(actions)
    while queue:
        where, action = queue.pop(0)
        if id(action) in seen:
            continue
        seen.add(id(action))
        s = _name(action, "/S") or "(no /S)"
        if s not in ALLOWED_ACTIONS:
            what = f"a {s.lstrip('/')} action"
            problems.append(f"{_cap(where)}: {what} is not allowed in PDF/A.")
        elif s == "/Named" and _name(action, "/N") not in ALLOWED_NAMED_ACTIONS:
            problems.append(
                f"{_cap(where)}: the named action {_name(action, '/N')} is not allowed in PDF/A "
                "(only NextPage, PrevPage, FirstPage, LastPage)."
            )
        nxt = _get(action, "/Next")
        for a in nxt if isinstance(nxt, ArrayObject) else [nxt]:
            a = _res(a)
            if isinstance(a, DictionaryObject):
                queue.append((where, a))
    return problems


def _annotations(doc: _Document) -> list[str]:
    problems = []
    for i, page in enumerate(doc.pages):
        annots = _get(page, "/Annots")
        for raw in annots if isinstance(annots, ArrayObject) else []:
            a = _res(raw)
            if not isinstance(a, DictionaryObject):
                continue
            subtype = _name(a, "/Subtype") or "(no subtype)"
            what = f"Page {i + 1}: a {subtype.lstrip('/')} annotation"
            if subtype in MULTIMEDIA_ANNOTATIONS:
                problems.append(f"{what} is embedded multimedia, which PDF/A forbids.")
                continue
            if subtype not in ANNOTATIONS:
                problems.append(f"{what} is not a type PDF/A allows.")
                continue
            flags = _get(a, "/F")
            if not isinstance(flags, NumberObject):
                if subtype != "/Popup":
                    problems.append(f"{what} has no /F flags; PDF/A needs the Print flag set.")
            else:
                if not int(flags) & 4:
                    problems.append(f"{what} is not flagged to print (/F without the Print flag).")
                if int(flags) & (1 | 2 | 32 | 256):
                    problems.append(f"{what} is flagged Invisible, Hidden, NoView or ToggleNoView.")
            if subtype in ("/Popup", "/Link"):
                continue
            rect = _get(a, "/Rect")
            nums = [float(_res(x)) for x in rect] if isinstance(rect, ArrayObject) and len(rect) == 4 else [0.0] * 4
            if nums[0] == nums[2] or nums[1] == nums[3]:
                continue
            ap = _get(a, "/AP")
            if not isinstance(ap, DictionaryObject) or "/N" not in ap:
                problems.append(f"{what} has no normal appearance stream (/AP /N).")
            elif subtype != "/Widget" and set(ap) - {"/N"}:
                problems.append(f"{what} has appearance entries other than /N ({', '.join(sorted(set(ap) - {'/N'}))}).")
    return problems


# --------------------------------------------------------------------------- embedded files


def _name_tree(node: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(name, raw value) pairs of a name tree, in order."""
    node = _res(node)
    if not isinstance(node, DictionaryObject) or depth > 32:
        return
    names = _get(node, "/Names")
    if isinstance(names, ArrayObject):
        for k in range(0, len(names) - 1, 2):
            yield _text(names[k]) or "?", names[k + 1]
    kids = _get(node, "/Kids")
    for kid in kids if isinstance(kids, ArrayObject) else []:
        yield from _name_tree(kid, depth + 1)


def _file_label(fs: DictionaryObject, fallback: str) -> str:
    return _text(fs.raw_get("/UF") if "/UF" in fs else None) or _text(fs.raw_get("/F") if "/F" in fs else None) or fallback


def _embedded_files(doc: _Document) -> list[str]:
    problems = []
    names = _get(doc.root, "/Names")
    tree = list(_name_tree(names.raw_get("/EmbeddedFiles"))) if isinstance(names, DictionaryObject) and "/EmbeddedFiles" in names else []
    attached = {_key(raw): (name, _res(raw)) for name, raw in tree}

    af_lists: list[tuple[str, DictionaryObject, list[Any]]] = []
    for node in doc.nodes:
        af = _get(node.obj, "/AF")
        if "/AF" in node.obj:
            af_lists.append((node.where, node.obj, list(af) if isinstance(af, ArrayObject) else []))
            if not isinstance(af, ArrayObject):
                problems.append(f"{_cap(node.where)}: /AF is not an array of file specifications.")
    associated: set[tuple[int, int] | int] = set()
    for where, owner, items in af_lists:
        owner_name = "the catalog's /AF" if owner is doc.root else f"an /AF array ({where})"
        counts: dict[tuple[int, int] | int, int] = {}
        for raw in items:
            counts[_key(raw)] = counts.get(_key(raw), 0) + 1
            fs = _res(raw)
            if not isinstance(fs, DictionaryObject) or "/EF" not in fs:
                problems.append(f"{_cap(owner_name)} lists an entry that is not the file specification of an embedded file.")
        associated |= set(counts)
        for k, n in counts.items():
            if n > 1:
                label = attached[k][0] if k in attached else "an embedded file"
                problems.append(f"Embedded file {label!r} is listed {n} times in {owner_name}; it must be listed exactly once.")
    catalog_af = next((items for _, owner, items in af_lists if owner is doc.root), [])
    catalog_keys = {_key(raw) for raw in catalog_af}
    for k, (name, _fs) in attached.items():
        if k not in catalog_keys:
            problems.append(f"Embedded file {name!r} is not listed in the catalog's /AF (PDF/A-3 associated files).")

    fs_nodes = [n for n in doc.nodes if "/EF" in n.obj]
    for node in fs_nodes:
        fs = node.obj
        label = repr(_file_label(fs, "(unnamed)"))
        in_tree = any(fs is f for _, f in attached.values())
        if not in_tree and not any(_res(raw) is fs for _, _, items in af_lists for raw in items):
            problems.append(f"{_cap(node.where)}: embedded file {label} is not associated with the document or any part of it (/AF).")
        if "/F" not in fs or "/UF" not in fs:
            problems.append(f"Embedded file {label}: its file specification needs both /F and /UF.")
        rel = _name(fs, "/AFRelationship")
        if rel is None:
            problems.append(f"Embedded file {label} has no /AFRelationship.")
        elif rel not in AF_RELATIONSHIPS:
            problems.append(f"Embedded file {label} has /AFRelationship {rel}, which is not a defined value.")
        ef = _get(fs, "/EF")
        stream = _get(ef, "/F") if isinstance(ef, DictionaryObject) else None
        if not isinstance(stream, StreamObject):
            problems.append(f"Embedded file {label}: /EF /F is not an embedded file stream.")
            continue
        mime = _name(stream, "/Subtype")
        if mime is None or not re.fullmatch(r"/[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+", mime):
            problems.append(f"Embedded file {label} has no MIME type (/Subtype such as application/json).")
        params = _get(stream, "/Params")
        moddate = _text(params.raw_get("/ModDate")) if isinstance(params, DictionaryObject) and "/ModDate" in params else None
        if moddate is None:
            problems.append(f"Embedded file {label} has no /Params with a /ModDate.")
        elif _pdf_date(moddate) is None:
            problems.append(f"Embedded file {label} has a malformed /ModDate {moddate!r}.")
        if isinstance(params, DictionaryObject) and ("/CheckSum" in params or "/Size" in params):
            data = stream.get_data()
            checksum = _bytes(params.raw_get("/CheckSum")) if "/CheckSum" in params else None
            if "/CheckSum" in params and checksum != hashlib.md5(data, usedforsecurity=False).digest():
                problems.append(f"Embedded file {label}: its /CheckSum does not match its contents.")
            size = _get(params, "/Size")
            if size is not None and (not isinstance(size, NumberObject) or int(size) != len(data)):
                problems.append(f"Embedded file {label}: its /Size {size} is not its length {len(data)}.")
    return problems


# --------------------------------------------------------------------------- streams, graphics states


def _filters(stream: DictionaryObject) -> list[str]:
    f = _get(stream, "/Filter")
    items = f if isinstance(f, ArrayObject) else [f]
    return [str(_res(x)) for x in items if isinstance(_res(x), NameObject)]


def _streams_and_graphics_states(doc: _Document) -> list[str]:
    problems = []
    for node in doc.nodes:
        d, where = node.obj, _cap(node.where)
        if isinstance(d, StreamObject):
            bad = [f for f in _filters(d) if f in ("/LZWDecode", "/Crypt")]
            if bad:
                problems.append(f"{where}: a stream uses the {bad[0].lstrip('/')} filter, which PDF/A forbids.")
            if any(k in d for k in ("/F", "/FFilter", "/FDecodeParms")):
                problems.append(f"{where}: a stream takes its data from an external file (/F), which PDF/A forbids.")
            subtype = _name(d, "/Subtype")
            if subtype == "/PS" or _name(d, "/Subtype2") == "/PS":
                problems.append(f"{where}: a PostScript XObject is not allowed in PDF/A.")
            if "/OPI" in d:
                problems.append(f"{where}: an XObject has OPI information (/OPI), which PDF/A forbids.")
            if subtype == "/Form" and "/Ref" in d:
                problems.append(f"{where}: a reference XObject (/Ref) is not allowed in PDF/A.")
            if subtype == "/Image":
                if "/Alternates" in d:
                    problems.append(f"{where}: an image has /Alternates, which PDF/A forbids.")
                if _get(d, "/Interpolate") == BooleanObject(True):
                    problems.append(f"{where}: an image sets /Interpolate true, which PDF/A forbids.")
        if "/TR" in d and _name(d, "/Type") != "/Halftone":
            problems.append(f"{where}: a graphics state sets a transfer function (/TR), which PDF/A forbids.")
        if "/TR2" in d and _name(d, "/TR2") != "/Default":
            problems.append(f"{where}: a graphics state sets /TR2 to something other than /Default.")
        if "/HTP" in d:
            problems.append(f"{where}: a graphics state sets a halftone phase (/HTP), which PDF/A forbids.")
        if "/BM" in d:
            bm = _get(d, "/BM")
            modes = [str(_res(x)) for x in bm] if isinstance(bm, ArrayObject) else [str(bm)]
            for mode in modes:
                if mode not in BLEND_MODES:
                    problems.append(f"{where}: blend mode {mode} is not a standard blend mode.")
        if "/SMask" in d and not isinstance(d, StreamObject) and _name(d, "/Type") != "/XObject":
            smask = _get(d, "/SMask")
            if isinstance(smask, NameObject) and smask != "/None":
                problems.append(f"{where}: a graphics state's /SMask is {smask}; it must be /None or a soft-mask dictionary.")
            elif isinstance(smask, DictionaryObject) and _name(smask, "/S") not in ("/Alpha", "/Luminosity"):
                problems.append(f"{where}: a soft mask has /S {_name(smask, '/S')}; it must be /Alpha or /Luminosity.")
    return problems


def _uses_transparency(resources: Any, seen: set[int], depth: int = 0) -> bool:
    """Whether a resource dictionary (and the forms and patterns it uses) paints with transparency."""
    resources = _res(resources)
    if not isinstance(resources, DictionaryObject) or id(resources) in seen or depth > 16:
        return False
    seen.add(id(resources))
    gstates = _get(resources, "/ExtGState")
    for gs in (_res(v) for v in (gstates.values() if isinstance(gstates, DictionaryObject) else [])):
        if not isinstance(gs, DictionaryObject):
            continue
        for k in ("/CA", "/ca"):
            v = _get(gs, k)
            if v is not None and float(v) < 1:
                return True
        if isinstance(_get(gs, "/SMask"), DictionaryObject) or _name(gs, "/BM") not in (None, "/Normal", "/Compatible"):
            return True
    for key in ("/XObject", "/Pattern"):
        table = _get(resources, key)
        for x in (_res(v) for v in (table.values() if isinstance(table, DictionaryObject) else [])):
            if not isinstance(x, DictionaryObject):
                continue
            group = _get(x, "/Group")
            if isinstance(group, DictionaryObject) and _name(group, "/S") == "/Transparency":
                return True
            if "/SMask" in x or _get(x, "/SMaskInData") not in (None, 0):
                return True
            if _uses_transparency(x.raw_get("/Resources") if "/Resources" in x else None, seen, depth + 1):
                return True
    return False


def _transparency(doc: _Document) -> list[str]:
    """Without an output intent, a page that uses transparency must name its blending colour space."""
    if doc.intent is not None:
        return []
    problems = []
    for i, page in enumerate(doc.pages):
        group = _get(page, "/Group")
        if isinstance(group, DictionaryObject) and "/CS" in group:
            continue
        if _uses_transparency(page.raw_get("/Resources") if "/Resources" in page else None, set()):
            problems.append(
                f"Page {i + 1} uses transparency but has neither a page group colour space (/Group /CS) nor a PDF/A output intent."
            )
    return problems


# --------------------------------------------------------------------------- device colours


def _device_families(cs: Any, depth: int = 0) -> set[str]:
    cs = _res(cs)
    if depth > 8:
        return set()
    if isinstance(cs, NameObject):
        return {DEVICE_SPACES[cs]} if cs in DEVICE_SPACES else set()
    if isinstance(cs, ArrayObject) and cs:
        head = str(_res(cs[0]))
        if head in ("/Indexed", "/I", "/Pattern") and len(cs) > 1:
            return _device_families(cs[1], depth + 1)
        if head in ("/Separation", "/DeviceN") and len(cs) > 2:
            return _device_families(cs[2], depth + 1)
    return set()


def _content_streams(doc: _Document) -> Iterator[tuple[str, Any]]:
    for i, page in enumerate(doc.pages):
        if "/Contents" in page:
            yield f"page {i + 1}", page.raw_get("/Contents")
    for node in doc.nodes:
        d = node.obj
        if isinstance(d, StreamObject) and (_name(d, "/Subtype") == "/Form" or _get(d, "/PatternType") == 1):
            yield node.where, d
        if _is_font(d) and _name(d, "/Subtype") == "/Type3":
            procs = _get(d, "/CharProcs")
            for v in procs.values() if isinstance(procs, DictionaryObject) else []:
                yield node.where, v


def _device_colours(doc: _Document) -> list[str]:
    used: dict[str, str] = {}  # colour family → where first used
    problems = []

    def note(families: set[str], where: str) -> None:
        for f in sorted(families):
            used.setdefault(f, where)

    for node in doc.nodes:
        d = node.obj
        if "/ColorSpace" in d:
            cs = _get(d, "/ColorSpace")
            if isinstance(cs, DictionaryObject) and not isinstance(cs, StreamObject):
                for v in cs.values():
                    note(_device_families(v), node.where)
            else:
                note(_device_families(cs), node.where)
        if _name(d, "/S") == "/Transparency" and "/CS" in d:
            note(_device_families(d.raw_get("/CS")), node.where)
    for where, raw in _content_streams(doc):
        content = _res(raw)
        try:
            ops = ContentStream(content, doc.reader).operations
        except Exception as exc:  # noqa: BLE001
            problems.append(
                f"{_cap(where)}: a content stream cannot be parsed ({type(exc).__name__}: {exc}); its colours were not checked."
            )
            continue
        for operands, op in ops:
            if op in COLOUR_OPERATORS:
                note({COLOUR_OPERATORS[op]}, where)
            elif op in (b"cs", b"CS") and operands:
                note(_device_families(operands[0]), where)
            elif op == b"INLINE IMAGE" and isinstance(operands, dict):
                settings = operands.get("settings")
                if isinstance(settings, DictionaryObject):
                    note(_device_families(settings.get("/CS", settings.get("/ColorSpace"))), where)
                    if settings.get("/I", settings.get("/Interpolate")) == BooleanObject(True):
                        problems.append(f"{_cap(where)}: an inline image sets /Interpolate true, which PDF/A forbids.")
    labels = {"Gray": "DeviceGray", "RGB": "DeviceRGB", "CMYK": "DeviceCMYK"}
    for family, where in used.items():
        if doc.intent is None:
            problems.append(f"{labels[family]} colour is used (first in {where}) but the file has no PDF/A output intent.")
        elif family != "Gray" and family != doc.intent:
            problems.append(
                f"{labels[family]} colour is used (first in {where}) but the output intent's profile is "
                f"{doc.intent}; use an ICC-based colour space instead."
            )
    return problems


if __name__ == "__main__":  # pragma: no cover - a developer's shortcut until `reportgen verify` exists
    import sys

    status = 0
    for arg in sys.argv[1:]:
        found = pdfa_problems(arg)
        print(f"{arg}: {'no PDF/A-3b problems found' if not found else f'{len(found)} problem(s)'}")
        for p in found:
            print(f"  - {p}")
        status |= bool(found)
    sys.exit(status)
