"""The Ray executor: a run's shards as Ray tasks (``pip install 'reportgen[ray]'``).

Every (model, chunk of ``prompts_per_task`` prompts) shard is one task, all submitted when the
run starts. A task (:func:`run_shard_job`, a top-level function of plain data) rebuilds the
plugin registry in its worker, loads its model once, generates and runs every method for its
prompts, writes what it finished to the content-addressed cache (a folder every worker must
reach at the same path) and returns its generations and results as their results.json JSON.

A task whose worker dies is retried by Ray (``max_retries``); one that still fails, or raises,
marks its jobs failed with the reason and the rest of the run goes on. The driver collects the
shards as they finish (one progress bar over every job), then runs evaluators, detectors and
renderers itself.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reportgen.data import AttributionResult, Generation
from reportgen.errors import SpecError
from reportgen.executors.base import ModelWork, ShardWork, Work

if TYPE_CHECKING:
    from reportgen.plugins import Registry
    from reportgen.spec import ExecutorSpec

#: Environment a worker sets before anything imports transformers (as the CLI does): no hub
#: requests, no progress bars of its own.
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


@dataclass(frozen=True)
class ShardJob:
    """One task's input, plain data: the spec (its JSON), the spec's folder (relative model
    paths), which model and prompts, the cache folder (None: no cache) and the torch device."""

    spec: dict[str, Any]
    base_dir: str
    model_index: int
    prompt_ids: tuple[str, ...]
    cache_root: str | None
    device: str
    registry_factory: Callable[[], Registry] | None = None


_registries: dict[str, Registry] = {}


def _registry(factory: Callable[[], Registry] | None) -> Registry:
    """The worker's registry, built once per worker process and factory (named by module and
    name: a factory from a ``__main__`` script arrives as a new function object with every task)."""
    name = "" if factory is None else f"{factory.__module__}.{factory.__qualname__}"
    if name not in _registries:
        from reportgen.plugins import get_registry

        _registries[name] = (factory or get_registry)()
    return _registries[name]


def run_shard_job(job: ShardJob) -> dict[str, Any]:
    """Run one shard in this process (a Ray worker) and return it as JSON-able data."""
    for name, value in WORKER_ENV.items():
        os.environ.setdefault(name, value)
    from reportgen.cache import Cache
    from reportgen.runner import ModelSlot, Progress, run_shard
    from reportgen.spec import AuditSpec

    registry = _registry(job.registry_factory)
    spec = AuditSpec.model_validate(job.spec)
    logs: list[str] = []
    progress = Progress(log=logs.append)
    model = ModelSlot(registry, spec.models[job.model_index], Path(job.base_dir), job.device, progress)
    cache = Cache(job.cache_root)
    wanted = set(job.prompt_ids)
    try:
        work = run_shard(registry, model, spec, [p for p in spec.prompts if p.id in wanted], cache, progress)
        return {
            "generations": [g.to_json() for g in work.generations],
            "results": [r.to_json() for r in work.results],
            "timings": work.timings,
            "outcomes": dict(work.outcomes),
            "key": model.key,
            "info": model.info(cache) if model.loaded is not None else None,
            "load_seconds": model.load_seconds,
            "logs": logs,
        }
    finally:
        model.close()


@dataclass
class _Shard:
    model_index: int
    prompt_ids: tuple[str, ...]
    out: dict[str, Any] | None = None
    failure: str | None = None


def _chunks(ids: Sequence[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(ids[i : i + size]) for i in range(0, len(ids), size)]


def _one_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _join(ray: Any, address: str | None) -> None:
    """Join the cluster at ``address``, or start a private local one (None: no dashboard)."""
    local = {"include_dashboard": False} if address is None else {}
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **local)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise SpecError(f"executor.address: cannot join {where}: {_one_line(str(exc))}") from None


def _resources(ray: Any) -> dict[str, float]:
    """The cluster's resources now (``CPU``, ``GPU``, …)."""
    return dict(ray.cluster_resources())


class RayExecutor:
    """Submits every shard as a Ray task when created; :meth:`collect` waits for one model's."""

    def __init__(self, settings: ExecutorSpec, work: Work) -> None:
        try:
            import ray
        except ImportError:
            raise SpecError("executor.kind: ray needs Ray, which is not installed: pip install 'reportgen[ray]'") from None
        self.ray = ray
        self.settings = settings
        self.work = work
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            _join(ray, settings.address)
        self.resources = _resources(ray)
        task = ray.remote(run_shard_job).options(
            num_gpus=settings.gpus_per_worker, max_retries=settings.max_retries, retry_exceptions=False
        )
        spec = work.spec
        plain = spec.model_dump(mode="json")
        cache_root = None if work.cache.root is None else str(work.cache.root.resolve())
        self.shards: list[_Shard] = []
        self.pending: dict[Any, _Shard] = {}
        for i, slot in enumerate(work.models):
            for ids in _chunks([p.id for p in spec.prompts], settings.prompts_per_task):
                shard = _Shard(i, ids)
                job = ShardJob(plain, str(work.base_dir), i, ids, cache_root, slot.device, work.worker_registry)
                self.shards.append(shard)
                self.pending[task.remote(job)] = shard

    def collect(self, model_index: int) -> ModelWork:
        mine = [s for s in self.shards if s.model_index == model_index]
        while any(s.out is None and s.failure is None for s in mine):
            ready, _ = self.ray.wait(list(self.pending), num_returns=1)
            for ref in ready:
                self._finish(ref)
        out = ModelWork()
        loads: list[float] = []
        for shard in mine:
            if shard.out is None:
                out.extend(self._failed(shard))
                continue
            d = shard.out
            out.extend(
                ShardWork(
                    generations=[Generation.from_json(g) for g in d["generations"]],
                    results=[AttributionResult.from_json(r) for r in d["results"]],
                    timings=dict(d["timings"]),
                    outcomes=Counter(d["outcomes"]),
                )
            )
            out.key = out.key or d["key"]
            out.info = out.info or d["info"]
            if d["load_seconds"] is not None:
                loads.append(d["load_seconds"])
        out.load_seconds = sum(loads) if loads else None
        return out

    def describe(self) -> dict[str, Any]:
        """The settings as given (the address as the spec wrote it: the spec's check admits no
        credentials there), how the cluster was reached, its size when the run started (each task
        takes one CPU, so ``workers`` is how many run at once) and the number of tasks."""
        s = self.settings
        if not self.owns_ray:
            cluster = "the Ray session already open in this process"
        elif s.address is None:
            cluster = "a private local cluster started for the run"
        else:
            cluster = "joined at the address"
        return {
            "kind": "ray",
            "address": s.address,
            "cluster": cluster,
            "workers": int(self.resources.get("CPU", 0)),
            "gpus": self.resources.get("GPU", 0),
            "gpus_per_worker": s.gpus_per_worker,
            "prompts_per_task": s.prompts_per_task,
            "max_retries": s.max_retries,
            "tasks": len(self.shards),
        }

    def close(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref)
        self.pending.clear()
        if self.owns_ray:
            self.ray.shutdown()

    def _finish(self, ref: Any) -> None:
        """Take a finished task's output (or why it failed) and advance the progress bar by its jobs."""
        shard = self.pending.pop(ref)
        progress = self.work.progress
        model_id = self.work.spec.models[shard.model_index].id
        try:
            shard.out = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            shard.failure = f"{type(cause).__name__}: {_one_line(str(cause))}"
        except self.ray.exceptions.RayError as exc:
            retries = f" (retried {self.settings.max_retries} time(s))" if self.settings.max_retries else ""
            shard.failure = f"{type(exc).__name__}{retries}: {_one_line(str(exc))}"
        if shard.out is not None:
            for line in shard.out["logs"]:
                progress.log(line)
        else:
            progress.log(f"shard {model_id} · {', '.join(shard.prompt_ids)} failed on its Ray worker: {shard.failure}")
        for label in self._job_labels(shard):
            progress.advance(label)

    def _methods(self, shard: _Shard) -> list[Any]:
        model_id = self.work.spec.models[shard.model_index].id
        return [ms for ms in self.work.spec.methods if ms.models is None or model_id in ms.models]

    def _job_labels(self, shard: _Shard) -> list[str]:
        model_id = self.work.spec.models[shard.model_index].id
        return [
            f"{model_id} · {pid} · {label}"
            for pid in shard.prompt_ids
            for label in ["generation", *(ms.label for ms in self._methods(shard))]
        ]

    def _failed(self, shard: _Shard) -> ShardWork:
        """Every job of a shard that failed, failed with its reason (a generation job has no result of its own)."""
        from reportgen.spec import options_context

        registry = self.work.registry
        model_id = self.work.spec.models[shard.model_index].id
        out = ShardWork()
        reason = f"its shard failed on the Ray cluster: {shard.failure}"
        for pid in shard.prompt_ids:
            out.outcomes["failed"] += 1  # the generation
            for ms in self._methods(shard):
                opts = registry.methods[ms.method].options_model.model_validate(ms.options, context=options_context(registry))
                out.results.append(
                    AttributionResult(
                        method=ms.method,
                        model_id=model_id,
                        prompt_id=pid,
                        options=opts.model_dump(),
                        input_tokens=[],
                        output_tokens=[],
                        status="failed",
                        reason=reason,
                        label=ms.id,
                    )
                )
                out.outcomes["failed"] += 1
        return out
