"""The one Jinja environment of reportgen, and the few safe-HTML helpers renderers share.

Every HTML (and later PDF) renderer builds its environment with :func:`make_jinja_env`:
autoescape is on for every template *and* for templates built from strings, undefined
names are errors (``StrictUndefined``), and plugins may only add filters and globals
through the ``reportgen_prepare_jinja_env`` hook.

The only HTML not produced by an autoescaping template is Plotly's own ``<div>``+``<script>``
output (:func:`plotly_div`), whose JSON Plotly serialises with ``<``, ``>`` and ``/``
escaped as ``\\u003c`` etc., and the inlined plotly.js bundle (:func:`plotly_js`).
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from reportgen.unicode import neutralise

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


@functools.lru_cache(maxsize=1)
def plotly_js() -> Markup:
    """The full plotly.js bundle (inlined once per report, never fetched from a CDN)."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    # The bundle is Plotly's own code; it must not end our <script> element early.
    if "</script" in js.lower():  # pragma: no cover - plotly.js never contains it today
        raise RuntimeError("plotly.js bundle contains '</script'; cannot inline it safely")
    return Markup(js)


def plotly_div(fig: Any, div_id: str) -> Markup:
    """Plotly's ``<div>`` for one figure (no plotly.js), marked safe.

    Plotly serialises the figure JSON with ``<``, ``>`` and ``/`` escaped, so text inside
    the figure cannot close the ``<script>`` element (``tests/test_html.py`` checks this).
    """
    import plotly.io as pio

    html = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=dict(PLOTLY_CONFIG), validate=True)
    return Markup(html)


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
