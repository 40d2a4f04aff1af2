"""Deferred attribution methods (``plugin_api.DeferredMethods``): inseq's methods are listed only
when a name with their prefix is looked up or every method is listed, never to render or to
validate a spec that names none."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from reportgen.errors import PluginError
from reportgen.plugin_api import AttributionMethod, DeferredMethods
from reportgen.plugins import MethodTable, Registry, get_registry
from reportgen.results import dumps
from reportgen.runner import method_descriptions
from tests.conftest import write_spec
from tests.import_watch import cli_imports
from tests.report_fixtures import make_run


class Fixed(AttributionMethod):
    description: ClassVar[str] = "fixed"

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]


def table(names: list[str], prefix: str = "lazy.") -> tuple[MethodTable, list[int]]:
    calls: list[int] = []
    added: dict[str, str] = {}

    def add(kind: str, name: str, obj: Any, plugin: str) -> None:
        if name in methods.loaded:
            raise PluginError(f"{name} twice (plugin {added[name]!r} and {plugin!r})")
        methods.loaded[name] = obj
        added[name] = plugin

    def load() -> list[AttributionMethod]:
        calls.append(1)
        return [Fixed(n) for n in names]

    methods = MethodTable(add)
    methods.loaded["eager.one"] = Fixed("eager.one")
    methods.defer(DeferredMethods(prefix=prefix, load=load, describe=lambda n: f"about {n}"), "lazyplugin")
    return methods, calls


def test_other_names_and_descriptions_do_not_load_the_family() -> None:
    methods, calls = table(["lazy.a", "lazy.b"])
    assert methods["eager.one"].name == "eager.one" and methods.get("other.x") is None
    assert methods.describe("lazy.a") == "about lazy.a" and methods.describe("eager.one") == "fixed"
    assert methods.describe("other.x") is None
    assert calls == [] and methods.pending() == [("lazy.", "lazyplugin")]


def test_a_prefixed_name_or_listing_loads_the_family_once() -> None:
    methods, calls = table(["lazy.a", "lazy.b"])
    assert methods.get("lazy.nope") is None and calls == [1]  # looked up, then unknown
    assert methods["lazy.b"].name == "lazy.b" and "lazy.a" in methods
    assert sorted(methods) == ["eager.one", "lazy.a", "lazy.b"] and len(methods) == 3
    assert calls == [1] and methods.pending() == []
    methods2, calls2 = table(["lazy.a"])
    assert sorted(methods2) == ["eager.one", "lazy.a"] and calls2 == [1]


def test_a_family_that_breaks_its_prefix_or_fails_is_a_plugin_error() -> None:
    outside, _ = table(["eager.two"])
    with pytest.raises(PluginError, match=r"outside its prefix 'lazy\.'"):
        outside.get("lazy.a")
    twice, _ = table(["lazy.a", "lazy.a"])
    with pytest.raises(PluginError, match="twice"):
        list(twice)

    def boom() -> list[AttributionMethod]:
        raise RuntimeError("no torch")

    broken = MethodTable(lambda *a: None)
    broken.defer(DeferredMethods(prefix="x.", load=boom, describe=str), "xplugin")
    with pytest.raises(PluginError, match=r"plugin 'xplugin' failed to list its methods x\.\*: RuntimeError: no torch"):
        broken.get("x.y")


def test_inseq_registers_a_deferred_family() -> None:
    reg = get_registry()
    assert reg.methods.pending() == [("inseq.", "inseq")]
    assert reg.methods.describe(
        "inseq.saliency",
    ).startswith("Gradient magnitude")
    (info,) = [p for p in reg.plugins() if p.name == "inseq"]
    assert info.registered == {"methods": ["inseq.* (not loaded)"]}
    assert reg.methods.pending() == [("inseq.", "inseq")]  # neither describing nor listing plugins loads it
    assert isinstance(reg, Registry) and "inseq.saliency" in reg.methods and reg.methods.pending() == []


def test_reports_describe_inseq_methods_without_loading_them() -> None:
    run = make_run()
    run = replace(run, results=[replace(r, method=f"inseq.{r.method}") if r.method == "saliency" else r for r in run.results])
    reg = get_registry()
    descriptions = method_descriptions(reg, run)
    assert descriptions["inseq.saliency"].startswith("Gradient magnitude") and "probabilistic" in descriptions
    assert reg.methods.pending() == [("inseq.", "inseq")]


def one_method_spec(tmp_path: Path, method: str) -> Path:
    """A spec on the embedded model naming only ``method`` (its ``method:`` is on line 9)."""
    return write_spec(
        tmp_path,
        "title: t\nmodels:\n  - id: m\n    source: embedded:smollm2-135m-instruct\n"
        f"prompts:\n  - id: p\n    text: hi\nmethods:\n  - method: {method}\n",
    )


def test_validate_without_inseq_methods_does_not_import_inseq(tmp_path: Path) -> None:
    spec = one_method_spec(tmp_path, "jacobian.semantic")
    proc, heavy = cli_imports("validate", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert "inseq" not in heavy


def test_validate_still_rejects_an_unknown_inseq_method_with_its_line(tmp_path: Path) -> None:
    spec = one_method_spec(tmp_path, "inseq.foo")
    proc, heavy = cli_imports("validate", str(spec))
    assert proc.returncode == 2 and f"{spec}:9:" in proc.stderr and "unknown method 'inseq.foo'" in proc.stderr
    assert "inseq" in heavy  # validating an inseq.* name lists inseq's methods


def test_render_does_not_import_inseq(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(dumps(make_run()), encoding="utf-8")
    proc, heavy = cli_imports("render", str(results), "-o", str(tmp_path / "out"), "-f", "html")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "report.html").is_file() and "inseq" not in heavy
