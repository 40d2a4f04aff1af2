"""The one Jinja environment of reportgen, and the few safe-HTML helpers renderers share.

Every HTML (and later PDF) renderer builds its environment with :func:`make_jinja_env`:
autoescape is on for every template *and* for templates built from strings, undefined
names are errors (``StrictUndefined``), and plugins may only add filters and globals
through the ``reportgen_prepare_jinja_env`` hook.

The only HTML not produced by an autoescaping template is a figure's ``<div>`` and its data
(:func:`plotly_div`), whose JSON has ``<``, ``>``, ``&`` and ``/`` written as ``\\u003c`` etc.,
and the packed plotly.js bundle (:func:`plotly_js_packed`: no ``<`` at all).
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jinja2
from markupsafe import Markup

from reportgen.unicode import neutralise

if TYPE_CHECKING:
    from reportgen.report import FigureBlock

#: Plotly ``config`` used for every figure in a report: every feature that can reach a network
#: (the logo link, sending the figure to Plotly's cloud) is off; plotly.js has no server URL by default.
PLOTLY_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "showSendToCloud": False,
    "showTips": False,
    "modeBarButtonsToRemove": ["sendDataToCloud"],
}

#: The HTML report's Content-Security-Policy: inline script and style run; nothing can be
#: fetched, sent, framed or submitted (images and fonts only from data:/blob: URLs).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "font-src data:; connect-src 'none'; media-src 'none'; object-src 'none'; frame-src 'none'; "
    "child-src 'none'; worker-src 'none'; manifest-src 'none'; form-action 'none'; base-uri 'none'"
)

_MARKDOWN: Any = None


def templates_dir() -> Path:
    """Folder of the built-in templates (the ``reportgen.templates`` package)."""
    return Path(str(resources.files("reportgen.templates")))


def make_jinja_env(pm: Any | None = None, user_dir: str | Path | None = None) -> jinja2.Environment:
    """Build the Jinja environment: autoescape, StrictUndefined, trimmed blocks.

    Loader order: ``user_dir`` (optional overrides), then the built-in templates, which are
    also reachable as ``default:<name>`` so an override can ``{% extends "default:report.html" %}``.
    With a plugin manager ``pm`` the ``reportgen_prepare_jinja_env`` hook is called.
    """
    builtin = jinja2.FileSystemLoader(str(templates_dir()))
    loaders: list[jinja2.BaseLoader] = []
    if user_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(user_dir)))
    loaders.append(builtin)
    loader = jinja2.PrefixLoader({"default": builtin}, delimiter=":")
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([*loaders, loader]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm", "xml", "svg"), default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters["markdown"] = markdown_html
    env.filters["fmt"] = fmt_number
    env.filters["script_json"] = script_json
    env.globals["content_security_policy"] = CONTENT_SECURITY_POLICY
    if pm is not None:
        pm.hook.reportgen_prepare_jinja_env(env=env)
    return env


def _finalize(value: Any) -> Any:
    """Every plain string a template prints has its bidi and control characters made visible."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return neutralise(value)
    return value


def read_asset(name: str) -> str:
    """Text of a built-in asset (CSS/JS) to inline into the report."""
    return (templates_dir() / name).read_text("utf-8")


#: 7-bit values that never appear as themselves in the packed plotly.js text: NUL and CR (the
#: HTML parser replaces or rewrites them) and ``<`` (it could end the script element).
PACK_ESCAPED = (0x00, 0x0D, 0x3C)


class PackedScript(NamedTuple):
    """A script gzip-compressed and packed as text (:func:`pack7`), and its compressed size."""

    text: Markup
    size: int


@functools.lru_cache(maxsize=2)
def plotly_js_packed(bundle: str = "full") -> PackedScript:
    """plotly.js (``bundle``: see :func:`plotly_bundle`) gzip-compressed and packed as text, for
    the report's loader (``report.js``).

    Cached per bundle. The compressed bytes are read as 7-bit values, one character each
    (:func:`pack7`), so the text costs 8/7 of the compressed size instead of base64's 4/3; the
    page decodes it and decompresses it with the browser's ``DecompressionStream("gzip")``.
    ``mtime=0`` keeps the same plotly.js the same bytes.
    """
    packed = gzip.compress(plotly_js(bundle).encode("utf-8"), compresslevel=9, mtime=0)
    return PackedScript(Markup(pack7(packed)), len(packed))


def pack7(data: bytes) -> str:
    """``data`` as text of 7 bits per character (decoded by ``unpack7`` in ``report.js``).

    The bits of ``data`` (most significant first, zero-padded) are cut into 7-bit values; each
    value is one ASCII character, except the three in :data:`PACK_ESCAPED`: such a value and the
    value after it become one character U+0080 + 128·(its index in PACK_ESCAPED) + next value.
    The decoder needs the byte length (it drops the padding bits).
    """
    import numpy as np

    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    bits = np.concatenate([bits, np.zeros((-len(bits)) % 7 + 7, dtype=np.uint8)])  # one spare value
    values = np.packbits(bits.reshape(-1, 7), axis=1, bitorder="big")[:, 0].astype(np.int64) >> 1
    codes = values.copy()
    keep = np.ones(len(values), dtype=bool)
    skip = -1
    for k in np.flatnonzero(np.isin(values[:-1], PACK_ESCAPED)).tolist():
        if k == skip:  # this value was taken into the character before it
            continue
        codes[k] = 0x80 + 128 * PACK_ESCAPED.index(int(values[k])) + values[k + 1]
        keep[k + 1] = False
        skip = k + 1
    codes = codes[keep]
    if codes[-1] in PACK_ESCAPED:  # the spare value: padding only, never needs escaping
        codes = codes[:-1]
    return codes.astype("<u4").tobytes().decode("utf-32-le")


#: The vendored partial bundle (``templates/vendor/README.md``) and the trace types it holds.
CARTESIAN_BUNDLE = "vendor/plotly-cartesian.min.js"
CARTESIAN_TRACES = frozenset(
    {"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour"}
    | {"image", "pie", "scatter", "scatterternary", "violin"}
)
_BUNDLE_VERSION = re.compile(r"plotly\.js (?:\([^)]*\) )?v(\d+\.\d+\.\d+)")


@functools.lru_cache(maxsize=2)
def plotly_js(bundle: str = "full") -> str:
    """A plotly.js bundle, inlined once per report (never fetched from a CDN): ``full``, the one
    the ``plotly`` package embeds, or ``cartesian``, the vendored partial bundle."""
    if bundle == "cartesian":
        return read_asset(CARTESIAN_BUNDLE)
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def bundle_version(js: str) -> str | None:
    """The plotly.js version a bundle's header names."""
    m = _BUNDLE_VERSION.search(js[:400])
    return m.group(1) if m else None


def plotly_bundle(trace_types: set[str]) -> str:
    """``cartesian`` when every trace type is in the partial bundle and that bundle is the same
    plotly.js version as the ``plotly`` package's (figure JSON is written for that version);
    ``full`` otherwise, e.g. for a visualization plugin's table or 3-D figure."""
    if trace_types <= CARTESIAN_TRACES and bundle_version(plotly_js("cartesian")) == bundle_version(plotly_js()):
        return "cartesian"
    return "full"


def plotly_div(fig: Any, div_id: str, templates: dict[str, str] | None = None, trace_types: set[str] | None = None) -> Markup:
    """One figure: an empty ``<div>`` and its data in a script element the page does not run.

    ``report.js`` creates the figure when its ``<div>`` scrolls into view (after plotly.js is
    loaded), from the script's text ``Plotly.newPlot("id", data, layout, config)``: JSON
    arguments, read with ``JSON.parse`` (``reportgen verify`` reads them the same way). The JSON
    has ``<``, ``>``, ``&`` and invisible format characters written as ``\\u`` escapes, so text
    inside the figure cannot close the element (``tests/test_html.py`` checks this).

    With ``templates`` (layout template JSON → name, filled as figures are drawn) the figure's
    layout names its template instead of repeating it; the page holds each template once
    (:func:`plotly_templates_json`). ``trace_types`` collects the figure's trace types (for
    :func:`plotly_bundle`).
    """
    import plotly.graph_objects as go
    from plotly.io.json import to_json_plotly

    fig_dict = go.Figure(fig).to_dict()  # validated, as plotly.io.to_html does
    layout = fig_dict.get("layout", {})
    if templates is not None and "template" in layout:
        tpl = to_json_plotly(layout.pop("template"))
        layout["template"] = templates.setdefault(tpl, f"t{len(templates)}")
    if trace_types is not None:
        trace_types.update(str(trace.get("type", "scatter")) for trace in fig_dict.get("data", []))
    data = to_json_plotly(fig_dict.get("data", []))
    call = f'Plotly.newPlot("{div_id}", {data}, {to_json_plotly(layout)}, {json.dumps(PLOTLY_CONFIG, sort_keys=True)})'
    height = layout.get("height")
    style = f"height:{int(height)}px; width:100%;" if height else "height:100%; width:100%;"
    return Markup(
        f'<div id="{div_id}" class="plotly-graph-div lazy-figure" style="{style}"></div>'
        f'<script type="text/plain" class="figure-data" data-for="{div_id}">{_script_safe(call)}</script>'
    )


class PlotlyDrawer:
    """Figures as interactive Plotly ``<div>`` elements (plotly.js is inlined once per page).

    ``templates``: each distinct layout template of the figures drawn (JSON → name); the page
    holds each once and the figures name theirs. ``trace_types``: what the figures need of
    plotly.js (the page inlines the partial bundle when it has them all).
    """

    interactive = True

    def __init__(self) -> None:
        self.templates: dict[str, str] = {}
        self.trace_types: set[str] = set()

    def heatmap_cells(self, spec_limit: int) -> tuple[int, str]:
        return spec_limit, f"report.max_heatmap_cells={spec_limit}"

    def draw(self, fig: Any, fid: str, title: str, caption: str) -> FigureBlock:
        from reportgen.report import FigureBlock  # reportgen.report imports this module

        return FigureBlock(fid, title, caption, plotly_div(fig, fid, self.templates, self.trace_types))


def plotly_templates_json(templates: dict[str, str]) -> Markup:
    """The layout templates :func:`plotly_div` named, as one JSON object ``{name: template}``."""
    return Markup(_script_safe("{" + ",".join(f"{json.dumps(name)}:{tpl}" for tpl, name in templates.items()) + "}"))


def _script_safe(text: str) -> str:
    return _SCRIPT_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


#: Characters written as JSON ``\\uXXXX`` escapes inside a script element: markup, line and
#: paragraph separators, and every invisible format character (bidi controls, zero-width, BOM).
_SCRIPT_ESCAPE = re.compile("[&<>\u2028\u2029\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def script_json(value: Any) -> Markup:
    """JSON safe inside a ``<script>`` element: ``<``, ``>``, ``&``, U+2028/9 and invisible
    format characters escaped (the parsed value is unchanged)."""
    s = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return Markup(_SCRIPT_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", s))


def markdown_html(text: str) -> Markup:
    """CommonMark (plus tables) to HTML; raw HTML is *not* passed through (it shows as text)."""
    global _MARKDOWN
    if _MARKDOWN is None:
        from markdown_it import MarkdownIt

        md = MarkdownIt("commonmark", {"html": False}).enable("table")
        # Only relative anchors and data: images survive; other links are shown as text.
        md.validateLink = _safe_link  # type: ignore[method-assign]
        _MARKDOWN = md
    return Markup(_MARKDOWN.render(neutralise(text)))


def _safe_link(url: str) -> bool:
    """A Markdown link or image target is kept only when it cannot make a request."""
    u = url.strip().lower()
    return u.startswith(("#", "data:image/"))


def fmt_number(x: Any, digits: int = 4) -> str:
    """A number for display: ``digits`` significant digits, ``—`` for missing/non-finite."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if f != f or f in (float("inf"), float("-inf")):
        return "—"
    if f == 0:
        return "0"
    if abs(f) >= 1e5 or abs(f) < 1e-3:
        return f"{f:.{digits - 1}e}"
    return f"{f:.{digits}g}"
