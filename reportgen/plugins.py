"""The plugin manager factory and the name tables the host owns.

``get_plugin_manager()`` has no import-time side effects: it builds a fresh manager,
adds the hook specs, loads every entry point of the ``reportgen`` group (built-in
plugins are declared there too) except the blocked ones, records the ones that fail to
import with the reason, and calls ``check_pending()``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from reportgen import hookspecs
from reportgen.errors import PluginError
from reportgen.plugin_api import (
    Aggregation,
    AttributionMethod,
    DeferredMethods,
    Detector,
    Evaluator,
    ModelLoader,
    Renderer,
    Visualization,
)

GROUP = "reportgen"


@dataclass
class FailedPlugin:
    name: str
    value: str
    reason: str


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager for project ``reportgen``, plus what loading the entry points found:
    ``failed`` (plugins that could not be imported, with the reason) and ``dists`` (each
    plugin's distribution name and version)."""

    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.failed: list[FailedPlugin] = []
        self.dists: dict[str, tuple[str | None, str | None]] = {}

    def load_entry_points(self, blocked: set[str]) -> None:
        for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
            if ep.name in blocked or self.get_plugin(ep.name) is not None:
                continue  # blocked, or the same entry point seen twice (editable + regular install)
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken or incomplete plugin is listed, not fatal
                self.failed.append(FailedPlugin(ep.name, ep.value, f"{type(exc).__name__}: {exc}"))
                continue
            self.register(plugin, name=ep.name)
            dist = ep.dist
            self.dists[ep.name] = (dist.metadata["Name"], dist.version) if dist else (None, None)


def blocked_plugins(block: tuple[str, ...] = ()) -> set[str]:
    """Plugin names not to load: ``block`` plus ``REPORTGEN_BLOCK_PLUGINS`` (comma-separated)."""
    return set(block) | {b.strip() for b in os.environ.get("REPORTGEN_BLOCK_PLUGINS", "").split(",") if b.strip()}


def get_plugin_manager(*, load_entrypoints: bool = True, block: tuple[str, ...] = ()) -> PluginManager:
    pm = PluginManager()
    if load_entrypoints:
        pm.load_entry_points(blocked_plugins(block))
    pm.check_pending()
    if os.environ.get("REPORTGEN_TRACE_PLUGINS"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


KINDS = {
    "model_loaders": ("reportgen_register_model_loaders", "scheme"),
    "methods": ("reportgen_register_attribution_methods", "name"),
    "aggregations": ("reportgen_register_aggregations", "name"),
    "detectors": ("reportgen_register_detectors", "name"),
    "evaluators": ("reportgen_register_evaluators", "name"),
    "visualizations": ("reportgen_register_visualizations", "name"),
    "renderers": ("reportgen_register_renderers", "format"),
}


class MethodTable(Mapping[str, AttributionMethod]):
    """The attribution methods by name. A plugin's :class:`~reportgen.plugin_api.DeferredMethods`
    is loaded the first time a name with its prefix is looked up or the whole table is listed;
    ``loaded`` holds the methods known so far, ``describe`` answers without loading."""

    def __init__(self, add: Callable[[str, str, Any, str], None]) -> None:
        self.loaded: dict[str, AttributionMethod] = {}
        self._deferred: list[tuple[DeferredMethods, str]] = []
        self._add = add

    def defer(self, family: DeferredMethods, plugin: str) -> None:
        if not family.prefix:
            raise PluginError(f"plugin {plugin!r} registered deferred methods without a prefix")
        self._deferred.append((family, plugin))

    def pending(self) -> list[tuple[str, str]]:
        """(prefix, plugin) of each family not loaded yet."""
        return [(family.prefix, plugin) for family, plugin in self._deferred]

    def load_deferred(self, name: str | None = None) -> None:
        """Load the families whose prefix begins ``name`` (None: every family)."""
        for family, plugin in list(self._deferred):
            if name is not None and not name.startswith(family.prefix):
                continue
            self._deferred.remove((family, plugin))
            try:
                methods = list(family.load())
            except Exception as exc:  # noqa: BLE001 - a broken plugin is a plugin error (exit 3), not a crash
                raise PluginError(f"plugin {plugin!r} failed to list its methods {family.prefix}*: {type(exc).__name__}: {exc}") from None
            for method in methods:
                if not method.name.startswith(family.prefix):
                    raise PluginError(f"plugin {plugin!r} listed method {method.name!r} outside its prefix {family.prefix!r}")
                self._add("methods", method.name, method, plugin)

    def describe(self, name: str) -> str | None:
        """A method's description without loading anything (None: no plugin offers the name)."""
        if name in self.loaded:
            return self.loaded[name].description
        family = next((f for f, _p in self._deferred if name.startswith(f.prefix)), None)
        return family.describe(name) if family is not None else None

    def __getitem__(self, name: str) -> AttributionMethod:
        if name not in self.loaded:
            self.load_deferred(name)
        return self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        self.load_deferred()
        return iter(self.loaded)

    def __len__(self) -> int:
        self.load_deferred()
        return len(self.loaded)


class Registry:
    """Name → implementation tables, filled by calling each registration hook through pluggy.

    Each plugin's implementation is called on its own (``subset_hook_caller``) so the table
    knows which plugin registered what; the calls go through pluggy's hook execution, so
    ``REPORTGEN_TRACE_PLUGINS=1`` shows them.
    """

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm
        self.model_loaders: dict[str, ModelLoader] = {}
        self.methods = MethodTable(self._add)
        self.aggregations: dict[str, Aggregation] = {}
        self.detectors: dict[str, Detector] = {}
        self.evaluators: dict[str, Evaluator] = {}
        self.visualizations: dict[str, Visualization] = {}
        self.renderers: dict[str, Renderer] = {}
        self.owner: dict[tuple[str, str], str] = {}
        plugins = pm.get_plugins()
        for kind, (hook_name, attr) in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                others = [p for p in plugins if p is not impl.plugin]

                def register(obj: Any, _kind: str = kind, _attr: str = attr, _plugin: str = impl.plugin_name) -> None:
                    if _kind == "methods" and isinstance(obj, DeferredMethods):
                        self.methods.defer(obj, _plugin)
                    else:
                        self._add(_kind, getattr(obj, _attr), obj, _plugin)

                pm.subset_hook_caller(hook_name, remove_plugins=others)(register=register)

    def detector_reads(self) -> dict[str, tuple[str, ...]]:
        """Each detector's name → the methods whose results it reads (empty: every method)."""
        return {name: tuple(d.methods or ()) for name, d in sorted(self.detectors.items())}

    def dimension_aggregation(self, name: str) -> Aggregation | None:
        """The ``dimension`` aggregation a spec names (``l2`` is short for ``dimension.l2``)."""
        for key in (name, f"dimension.{name}"):
            agg = self.aggregations.get(key)
            if agg is not None and agg.kind == "dimension":
                return agg
        return None

    def dimension_aggregations(self) -> list[str]:
        return sorted(k for k, a in self.aggregations.items() if a.kind == "dimension")

    def _add(self, kind: str, name: str, obj: Any, plugin: str) -> None:
        table: dict[str, Any] = self.methods.loaded if kind == "methods" else getattr(self, kind)
        if not name:
            raise PluginError(f"plugin {plugin!r} registered a {kind[:-1]} without a name")
        if name in table:
            other = self.owner[(kind, name)]
            raise PluginError(
                f"{kind[:-1].replace('_', ' ')} {name!r} is registered twice: by plugin {other!r} and by plugin {plugin!r}; "
                f"block one with REPORTGEN_BLOCK_PLUGINS={plugin}"
            )
        with contextlib.suppress(AttributeError):
            obj.plugin = plugin
        table[name] = obj
        self.owner[(kind, name)] = plugin

    def plugins(self) -> list[PluginInfo]:
        """Each plugin and what it registered; deferred methods not loaded yet show as ``<prefix>* (not loaded)``."""
        out: list[PluginInfo] = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda x: x[0]):
            dist, version = self.pm.dists.get(name, (None, None))
            info = PluginInfo(
                name=name,
                module=getattr(plugin, "__name__", type(plugin).__name__),
                distribution=dist,
                version=version,
                hooks=sorted(h.name for h in self.pm.get_hookcallers(plugin) or []),
            )
            for (kind, item), owner in sorted(self.owner.items()):
                if owner == name:
                    info.registered.setdefault(kind, []).append(item)
            for prefix, owner in self.methods.pending():
                if owner == name:
                    info.registered.setdefault("methods", []).append(f"{prefix}* (not loaded)")
            out.append(info)
        return out

    @property
    def failed(self) -> list[FailedPlugin]:
        return list(self.pm.failed)


def get_registry(**kwargs: Any) -> Registry:
    return Registry(get_plugin_manager(**kwargs))
