"""The plugin manager factory and the name tables the host owns.

``get_plugin_manager()`` has no import-time side effects: it builds a fresh manager,
adds the hook specs, loads every entry point of the ``reportgen`` group (built-in
plugins are declared there too), records the ones that fail to import with the reason,
and calls ``check_pending()``.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pluggy

from reportgen import hookspecs
from reportgen.errors import PluginError

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


def get_plugin_manager(*, load_entrypoints: bool = True, block: tuple[str, ...] = ()) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    pm.failed_plugins = []  # type: ignore[attr-defined]
    pm.plugin_dists = {}  # type: ignore[attr-defined]
    blocked = set(block) | {b for b in os.environ.get("REPORTGEN_BLOCK_PLUGINS", "").split(",") if b}
    if load_entrypoints:
        eps = importlib.metadata.entry_points(group=GROUP)
        for ep in sorted(eps, key=lambda e: e.name):
            if ep.name in blocked:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue  # the same entry point seen twice (editable + regular install)
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken or incomplete plugin is listed, not fatal
                pm.failed_plugins.append(FailedPlugin(ep.name, ep.value, f"{type(exc).__name__}: {exc}"))  # type: ignore[attr-defined]
                continue
            pm.register(plugin, name=ep.name)
            dist = getattr(ep, "dist", None)
            pm.plugin_dists[ep.name] = (dist.metadata["Name"], dist.version) if dist else (None, None)  # type: ignore[attr-defined]
    pm.check_pending()
    if os.environ.get("REPORTGEN_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda s: sys.stderr.write(s))
        pm.enable_tracing()
    return pm


KINDS = {
    "model_loaders": ("reportgen_register_model_loaders", "scheme"),
    "methods": ("reportgen_register_attribution_methods", "name"),
    "aggregations": ("reportgen_register_aggregations", "name"),
    "detectors": ("reportgen_register_detectors", "name"),
    "visualizations": ("reportgen_register_visualizations", "name"),
    "renderers": ("reportgen_register_renderers", "format"),
}


class Registry:
    """Name → implementation tables, filled by calling each registration hook once."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.model_loaders: dict[str, Any] = {}
        self.methods: dict[str, Any] = {}
        self.aggregations: dict[str, Any] = {}
        self.detectors: dict[str, Any] = {}
        self.visualizations: dict[str, Any] = {}
        self.renderers: dict[str, Any] = {}
        self.owner: dict[tuple[str, str], str] = {}
        for kind, (hook_name, attr) in KINDS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name

                def register(obj: Any, _kind: str = kind, _attr: str = attr, _plugin: str = plugin_name) -> None:
                    self._add(_kind, getattr(obj, _attr), obj, _plugin)

                impl.function(register)

    def _add(self, kind: str, name: str, obj: Any, plugin: str) -> None:
        table: dict[str, Any] = getattr(self, kind)
        if not name:
            raise PluginError(f"plugin {plugin!r} registered a {kind[:-1]} without a name")
        if name in table:
            other = self.owner[(kind, name)]
            raise PluginError(
                f"{kind[:-1].replace('_', ' ')} {name!r} is registered twice: by plugin {other!r} and by plugin {plugin!r}; "
                f"block one with REPORTGEN_BLOCK_PLUGINS={plugin}"
            )
        try:
            obj.plugin = plugin
        except AttributeError:
            pass
        table[name] = obj
        self.owner[(kind, name)] = plugin

    def plugins(self) -> list[PluginInfo]:
        out: list[PluginInfo] = []
        dists = getattr(self.pm, "plugin_dists", {})
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda x: x[0]):
            dist, version = dists.get(name, (None, None))
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
            out.append(info)
        return out

    @property
    def failed(self) -> list[FailedPlugin]:
        return list(getattr(self.pm, "failed_plugins", []))


def get_registry(**kwargs: Any) -> Registry:
    return Registry(get_plugin_manager(**kwargs))
