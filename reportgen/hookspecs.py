"""Hook specifications of the ``reportgen`` plugin host.

Every capability of reportgen is a plugin: model loaders, attribution methods,
aggregations, detectors, evaluators, visualizations and renderers. Built-in plugins live in the
``reportgen_plugins`` package and are declared in the ``reportgen`` entry-point group
exactly like third-party plugins.

Registration hooks receive a ``register`` callback. The host owns the name table and
rejects a second registration of the same name with a message naming both plugins.
Implementations are called in pluggy's order (last registered first); every hook here
collects results, none uses ``firstresult``.

Writing a plugin::

    from reportgen import hookimpl
    from reportgen.plugin_api import AttributionMethod

    class MyMethod(AttributionMethod):
        name = "mypkg.mymethod"
        ...

    @hookimpl
    def reportgen_register_attribution_methods(register):
        register(MyMethod())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import jinja2


hookspec = pluggy.HookspecMarker("reportgen")
hookimpl = pluggy.HookimplMarker("reportgen")


@hookspec
def reportgen_register_model_loaders(register: Callable[[Any], None]) -> None:
    """Register model loaders (``reportgen.plugin_api.ModelLoader``).

    :param register: call ``register(loader)``; ``loader.scheme`` (e.g. ``"embedded"``,
        ``"hf"``, ``"gguf"``, ``"openai"``) is the prefix of a model ``source`` in the spec.
    """


@hookspec
def reportgen_register_attribution_methods(register: Callable[[Any], None]) -> None:
    """Register attribution methods (``reportgen.plugin_api.AttributionMethod``).

    :param register: call ``register(method)``; ``method.name`` is what a spec's
        ``methods[].method`` names. ``register(DeferredMethods(...))`` adds a family of methods
        listed on first use (``reportgen.plugin_api.DeferredMethods``).
    """


@hookspec
def reportgen_register_aggregations(register: Callable[[Any], None]) -> None:
    """Register dimensional aggregations (``reportgen.plugin_api.Aggregation``, seed 001 eq. 9).

    :param register: call ``register(aggregation)``; ``aggregation.name`` (e.g.
        ``"dimension.l2"``) is what a spec's ``aggregations.dimension`` names (``l2`` is short
        for ``dimension.l2``); ``aggregation(array)`` reduces an ``n × t × d…`` array to
        ``n × t``. Methods apply the spec's choice through ``AttributionContext.reduce_dimension``.
    """


@hookspec
def reportgen_register_detectors(register: Callable[[Any], None]) -> None:
    """Register anomaly detectors (``reportgen.plugin_api.Detector``).

    :param register: call ``register(detector)``; ``detector.name`` is what a spec's
        ``detectors`` mapping configures (thresholds).
    """


@hookspec
def reportgen_register_evaluators(register: Callable[[Any], None]) -> None:
    """Register evaluators (``reportgen.plugin_api.Evaluator``).

    An evaluator runs after a model's attribution jobs, reads their finished results and the
    loaded model, and returns a ``reportgen.data.Evaluation`` (typed metric tables, stored in
    results.json under ``evaluations`` and cached like method results).

    :param register: call ``register(evaluator)``; ``evaluator.name`` is what a spec's
        ``evaluation.evaluators`` names.
    """


@hookspec
def reportgen_register_visualizations(register: Callable[[Any], None]) -> None:
    """Register visualizations (``reportgen.plugin_api.Visualization``).

    A visualization turns a finished ``RunResult`` into ``FigureSpec`` objects that the
    renderers place in the report.
    """


@hookspec
def reportgen_register_renderers(register: Callable[[Any], None]) -> None:
    """Register report renderers (``reportgen.plugin_api.Renderer``).

    :param register: call ``register(renderer)``; ``renderer.format`` is what a spec's
        ``report.formats`` names (``html``, ``json``, ``pdf``). A renderer with
        ``writes_print_documents`` also writes other print documents (``reportgen diff -f pdf``
        uses the ``pdf`` one's ``write_print_document``).
    """


@hookspec
def reportgen_prepare_jinja_env(env: jinja2.Environment) -> None:
    """Add filters or globals to the one Jinja environment (autoescape stays on)."""
