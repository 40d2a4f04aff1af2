"""Every hook is documented, exercised by a ``test_hook_*`` test, and does what it says.

One tiny-model audit runs with a test plugin that implements every hook in code (not through
an entry point): the plugins it registers must reach the runner and the renderers alike.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import reportgen
from reportgen import hookimpl, hookspecs
from reportgen.data import AttributionResult, Evaluation, FigureSpec, Finding, Generation, MethodScore, Recommendation, RunResult
from reportgen.errors import SpecError
from reportgen.plugin_api import (
    Aggregation,
    AttributionMethod,
    Detector,
    EvaluationContext,
    Evaluator,
    RenderContext,
    Renderer,
    Visualization,
)
from reportgen.plugins import Registry, get_plugin_manager, get_registry
from reportgen.runner import RunOptions, run_audit
from tests.conftest import TinyLoader, write_spec

REPO = Path(__file__).resolve().parent.parent
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("reportgen_") and inspect.isfunction(f))

SPEC = """\
title: hooks
models:
  - id: tiny
    source: "tiny:1"
prompts:
  - id: p1
    text: "Name a colour."
generation: {max_new_tokens: 3}
aggregations: {dimension: test.max_abs}
methods:
  - method: inseq.saliency
  - method: test.uniform
evaluation: {evaluators: [test.echo]}
report:
  formats: [json, html, testfmt]
"""


class Uniform(AttributionMethod):
    name = "test.uniform"
    description = "every input token explains every output token equally"

    def attribute(self, ctx: Any) -> AttributionResult:
        g = ctx.generation
        return AttributionResult.for_generation(g, self.name, ctx.options, matrix=np.full((g.n, g.t), 1.0 / g.n))


class MaxAbs(Aggregation):
    name = "test.max_abs"
    kind = "dimension"
    description = "largest |value| over the hidden dimensions"

    def __init__(self) -> None:
        self.outputs: list[np.ndarray] = []

    def __call__(self, array: np.ndarray) -> np.ndarray:
        a = np.abs(np.asarray(array, dtype=np.float64))
        out = a.reshape(a.shape[0], a.shape[1], -1).max(axis=-1)
        self.outputs.append(out)
        return out


class FirstToken(Detector):
    name = "test.first_token"
    description = "flags the first user token of every uniform result"
    methods = ("test.uniform",)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        k = generation.user_positions[0]
        return [
            Finding(
                detector=self.name,
                severity="low",
                model_id=result.model_id,
                prompt_id=result.prompt_id,
                method=result.display_name,
                positions=(k,),
                token=generation.input_tokens[k],
                evidence={"share": 1.0 / generation.n},
                message="The first user token, flagged by a test.",
            )
        ]


class Echo(Evaluator):
    name = "test.echo"
    description = "says how many results it was given"
    metrics = ("count",)

    def __init__(self) -> None:
        self.seen: list[EvaluationContext] = []

    def evaluate(self, ctx: EvaluationContext) -> Evaluation:
        self.seen.append(ctx)
        ok = [r for r in ctx.results if r.status == "ok"]
        return Evaluation(
            evaluator=self.name,
            model_id=ctx.model.id,
            scores=tuple(MethodScore(r.display_name, {}) for r in ok),
            recommendation=Recommendation("none", None, f"The echo evaluator read {len(ok)} results on {ctx.model.id}."),
        )


class Lengths(Visualization):
    name = "test.lengths"

    def figures(self, run: RunResult) -> list[FigureSpec]:
        import plotly.graph_objects as go

        fig = go.Figure(go.Bar(x=[g.prompt_id for g in run.generations], y=[g.t for g in run.generations]))
        return [FigureSpec(id="test-lengths", title="Response lengths", caption="by a test", figure=fig, section="summary")]


class TxtRenderer(Renderer):
    format = "testfmt"
    extension = "txt"

    def __init__(self) -> None:
        self.seen: list[RenderContext] = []

    def render(self, ctx: RenderContext, out_path: str) -> None:
        self.seen.append(ctx)
        Path(out_path).write_text(ctx.env.from_string("{{ t|shout }}").render(t=ctx.run.spec.title), "utf-8")


class HookPlugin:
    def __init__(self, loader: TinyLoader) -> None:
        self.loader, self.agg, self.renderer, self.evaluator = loader, MaxAbs(), TxtRenderer(), Echo()

    @hookimpl
    def reportgen_register_model_loaders(self, register: Any) -> None:
        register(self.loader)

    @hookimpl
    def reportgen_register_attribution_methods(self, register: Any) -> None:
        register(Uniform())

    @hookimpl
    def reportgen_register_aggregations(self, register: Any) -> None:
        register(self.agg)

    @hookimpl
    def reportgen_register_detectors(self, register: Any) -> None:
        register(FirstToken())

    @hookimpl
    def reportgen_register_evaluators(self, register: Any) -> None:
        register(self.evaluator)

    @hookimpl
    def reportgen_register_visualizations(self, register: Any) -> None:
        register(Lengths())

    @hookimpl
    def reportgen_register_renderers(self, register: Any) -> None:
        register(self.renderer)

    @hookimpl
    def reportgen_prepare_jinja_env(self, env: Any) -> None:
        env.filters["shout"] = lambda s: str(s).upper()


@pytest.fixture(scope="module")
def audit(smollm_tokenizer: Any, tmp_path_factory: Any) -> tuple[HookPlugin, Registry, RunResult, dict[str, str]]:
    plugin = HookPlugin(TinyLoader(smollm_tokenizer))
    pm = get_plugin_manager()
    pm.register(plugin, name="tests-hooks")
    registry = Registry(pm)
    tmp = tmp_path_factory.mktemp("hooks")
    run, written = run_audit(write_spec(tmp, SPEC), RunOptions(output=str(tmp / "out"), use_cache=False), registry)
    return plugin, registry, run, written


# --------------------------------------------------------------------------- meta


def test_every_hook_is_documented() -> None:
    doc = (REPO / "docs" / "plugin-hooks.md").read_text("utf-8")
    for name in HOOKS:
        sig = inspect.signature(getattr(hookspecs, name))
        assert f"## {name}({', '.join(sig.parameters)})" in doc, f"{name} is not documented in docs/plugin-hooks.md"


def test_every_hook_has_a_test() -> None:
    tests = "\n".join(p.read_text("utf-8") for p in (REPO / "tests").glob("test_*.py"))
    for name in HOOKS:
        assert re.search(rf"^def test_hook_{name.removeprefix('reportgen_')}\b", tests, re.M), f"no test_hook_ test for {name}"


def test_builtin_plugins_import_only_the_public_api() -> None:
    public = {f"reportgen.{m}" for m in reportgen.__all__ if not m.startswith("__") and m != "hookimpl"}
    problems = []
    for path in sorted((REPO / "plugins").rglob("*.py")):
        family = path.relative_to(REPO / "plugins").parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "reportgen"]
            for mod in names:
                if mod.startswith("reportgen_plugins.") and mod.split(".")[1] != family:
                    problems.append(f"{path.name}: imports another family's {mod}")
                top = ".".join(mod.split(".")[:2])
                if mod.startswith("reportgen.") and top not in public and mod != "reportgen.hookimpl" and mod != "reportgen.__version__":
                    problems.append(f"{path.relative_to(REPO)}: imports host internals {mod}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- each hook


def test_hook_register_model_loaders(audit: Any) -> None:
    plugin, registry, run, _ = audit
    assert registry.owner[("model_loaders", "tiny")] == "tests-hooks"
    assert plugin.loader.loads == 1 and [g.model_id for g in run.generations] == ["tiny"]


def test_hook_register_attribution_methods(audit: Any) -> None:
    _, _, run, _ = audit
    (res,) = [r for r in run.results if r.method == "test.uniform"]
    g = run.generations[0]
    assert res.status == "ok" and np.allclose(res.matrix, 1.0 / g.n)


def test_hook_register_aggregations(audit: Any) -> None:
    """A third-party aggregation named in the spec's aggregations.dimension takes effect."""
    plugin, _, run, _ = audit
    (sal,) = [r for r in run.results if r.method == "inseq.saliency"]
    assert sal.status == "ok" and plugin.agg.outputs, "the spec's aggregation was never called"
    g = run.generations[0]
    assert np.allclose(sal.matrix, plugin.agg.outputs[-1][: g.n], equal_nan=True)
    assert sal.options["dimension"] == "test.max_abs"


def test_unknown_aggregation_is_a_spec_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC.replace("test.max_abs", "l3").replace("  - method: test.uniform\n", "").replace(", testfmt", ""))
    with pytest.raises(SpecError) as err:
        run_audit(spec, RunOptions(output=str(tmp_path / "out")), get_registry())
    msg = str(err.value)
    assert "audit.yaml:9:" in msg and "aggregations.dimension: unknown dimensional aggregation 'l3'" in msg
    assert "valid choices: l2, mean, sum" in msg


def test_hook_register_detectors(audit: Any) -> None:
    plugin, _, run, written = audit
    (f,) = [f for f in run.findings if f.detector == "test.first_token"]
    assert f.positions == (run.generations[0].user_positions[0],)
    assert plugin.renderer.seen[0].detectors["test.first_token"] == ("test.uniform",)  # renderers see it too
    assert "The first user token, flagged by a test." in Path(written["html"]).read_text("utf-8")


def test_hook_register_evaluators(audit: Any) -> None:
    """An evaluator registered in code runs after the model's jobs and reaches results.json and the renderers."""
    plugin, registry, run, written = audit
    assert registry.owner[("evaluators", "test.echo")] == "tests-hooks"
    (ctx,) = plugin.evaluator.seen
    assert ctx.model.id == "tiny" and {r.display_name for r in ctx.results} == {"inseq.saliency", "test.uniform"}
    assert [g.prompt_id for g in ctx.generations] == ["p1"] and ctx.settings.seed == 0
    (ev,) = run.evaluations
    assert ev.evaluator == "test.echo" and plugin.renderer.seen[0].run.evaluations == [ev]
    assert "The echo evaluator read 2 results on tiny." in Path(written["html"]).read_text("utf-8")
    import json

    (stored,) = json.loads(Path(written["json"]).read_text("utf-8"))["evaluations"]
    assert stored["evaluator"] == "test.echo" and stored["recommendation"]["headline"].startswith("The echo evaluator")


def test_hook_register_visualizations(audit: Any) -> None:
    plugin, _, _, written = audit
    assert [f.id for f in plugin.renderer.seen[0].figures] == ["test-lengths"]
    assert 'id="test-lengths"' in Path(written["html"]).read_text("utf-8")


def test_hook_register_renderers(audit: Any) -> None:
    plugin, _, run, written = audit
    assert Path(written["testfmt"]).name == "report.txt"
    (ctx,) = plugin.renderer.seen
    assert ctx.run is run


def test_hook_prepare_jinja_env(audit: Any) -> None:
    _, _, _, written = audit
    assert Path(written["testfmt"]).read_text("utf-8") == "HOOKS"


def test_block_plugins_blocks_a_whole_family(monkeypatch: pytest.MonkeyPatch) -> None:
    full = get_registry()
    assert {"probabilistic", "dbsa"} <= set(full.methods) and "noise_token" in full.detectors
    monkeypatch.setenv("REPORTGEN_BLOCK_PLUGINS", "pas, dbsa")
    reg = get_registry()
    assert "probabilistic" not in reg.methods and "dbsa" not in reg.methods
    assert not reg.detectors and not reg.visualizations  # the families' detectors and views went too
    assert "inseq.saliency" in reg.methods and {p.name for p in reg.plugins()}.isdisjoint({"pas", "dbsa"})


def test_trace_plugins_shows_registration_calls(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REPORTGEN_TRACE_PLUGINS", "1")
    get_registry()
    err = capfd.readouterr().err
    for name in ("reportgen_register_attribution_methods", "reportgen_register_renderers", "reportgen_register_detectors"):
        assert name in err
