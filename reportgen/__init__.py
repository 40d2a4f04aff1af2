"""reportgen: audit how language models depend on each input token, as shareable reports.

The public plugin API is ``hookimpl`` and the host modules named in ``__all__``:

- ``aggregate``: seed 001 aggregations over an attribution matrix;
- ``cache``: content-addressed cache (``content_key``) for expensive intermediate results;
- ``data``: the typed pipeline data (Generation, AttributionResult, Finding, FigureSpec, RunResult);
- ``errors``: the exception hierarchy and its exit codes;
- ``figures``: Plotly figure helpers and the one escaping rule for Plotly text;
- ``generate``: generation and the local sampler shared by model loaders;
- ``manifest``: the manifest every report carries, canonical JSON, the HTML evidence block;
- ``plugin_api``: the base classes a plugin subclasses;
- ``prompt_units``: coarse prompt units (word, sentence, named spans) for perturbation methods;
- ``render``: the one Jinja environment and safe-HTML helpers;
- ``report``: the renderer-independent report model;
- ``results``: results.json (de)serialisation;
- ``statement``: the in-toto provenance statement written beside the reports and attached to the PDF.

Built-in plugins import only these, exactly like third-party plugins (a test checks it);
everything else in the host (cli, runner, spec, plugins, provenance, …) may change without
notice. See ``docs/plugin-hooks.md``.
"""

from reportgen.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "aggregate",
    "cache",
    "data",
    "errors",
    "figures",
    "generate",
    "hookimpl",
    "manifest",
    "plugin_api",
    "prompt_units",
    "render",
    "report",
    "results",
    "statement",
]
