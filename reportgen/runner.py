"""Run an audit: plan jobs, load each model once, generate once, explain many times.

Data flows one way: spec → jobs → generations → attribution results (cached by
content hash) → findings → figures → renderers. Finished work is cached on disk as it
completes, so a failed or interrupted run loses nothing; reports are written
atomically, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import datetime as _dt
import gc
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from reportgen import provenance as prov
from reportgen.cache import Cache, atomic_write_bytes, content_key
from reportgen.data import AttributionResult, FigureSpec, Finding, Generation, RunResult
from reportgen.errors import RenderError, ReportgenError, SpecError
from reportgen.plugin_api import AttributionContext, LoadedModel, RenderContext
from reportgen.plugins import Registry, get_registry
from reportgen.render import make_jinja_env
from reportgen.spec import AuditSpec, load_spec

RESULTS_VERSION = "1"


@dataclass
class Progress:
    """Callbacks the CLI hooks a progress bar into (all optional)."""

    start: Callable[[int], None] = lambda total: None
    advance: Callable[[str], None] = lambda label: None
    detail: Callable[[str, int, int], None] = lambda label, done, total: None
    log: Callable[[str], None] = lambda msg: None


@dataclass
class RunOptions:
    output: str | None = None
    formats: list[str] | None = None
    device: str | None = None
    use_cache: bool = True
    progress: Progress = field(default_factory=Progress)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def model_fingerprint(loaded: LoadedModel) -> dict[str, Any]:
    info = loaded.info
    return {
        "source": loaded.source,
        "sha256": info.get("sha256"),
        "dtype": info.get("dtype"),
        "chat_template": loaded.chat_template,
        "attn": info.get("attn_implementation"),
        "sampler": loaded.sampler.describe() if loaded.sampler and not loaded.open_weights else None,
    }


def plan_jobs(spec: AuditSpec) -> list[tuple[str, str, str | None]]:
    """(model id, prompt id, method label or None for the generation) in run order."""
    jobs: list[tuple[str, str, str | None]] = []
    for m in spec.models:
        for p in spec.prompts:
            jobs.append((m.id, p.id, None))
            for ms in spec.methods:
                if ms.models is None or m.id in ms.models:
                    jobs.append((m.id, p.id, ms.label))
    return jobs


def _generate(loaded: LoadedModel, prompt: Any, spec: AuditSpec, cache: Cache) -> Generation:
    key = content_key("generation", model_fingerprint(loaded), prompt.model_dump(), spec.generation.model_dump(), spec.seed)
    hit = cache.get("generations", key)
    if hit is not None:
        return Generation.from_json(hit)
    _seed_everything(spec.seed)
    if loaded.open_weights:
        from reportgen.generate import generate

        gen = generate(loaded, prompt, spec.generation, seed=spec.seed)
    else:
        from reportgen.generate import generate_via_sampler

        gen = generate_via_sampler(loaded, prompt, spec.generation, spec.seed)
    cache.set("generations", key, gen.to_json())
    return gen


def _attribute(
    registry: Registry,
    loaded: LoadedModel,
    gen: Generation,
    ms: Any,
    spec: AuditSpec,
    cache: Cache,
    progress: Progress,
) -> AttributionResult:
    method = registry.methods[ms.method]
    opts = method.options_model.model_validate(ms.options)
    base = AttributionResult.for_generation(gen, ms.method, opts, label=ms.id)
    reason = method.unavailable_reason(loaded)
    if reason:
        return replace(base, status="unavailable", reason=reason)
    key = content_key(
        "attribution", model_fingerprint(loaded), gen.to_json() | {"seconds": 0}, ms.method, opts.model_dump(),
        spec.aggregations.model_dump(), spec.seed, getattr(method, "version", "1"),
    )
    hit = cache.get("results", key)
    if hit is not None:
        res = AttributionResult.from_json(hit)
        res.label = ms.id
        res.details = {**res.details, "from_cache": True}
        return res
    _seed_everything(spec.seed)
    ctx = AttributionContext(
        model=loaded, generation=gen, options=opts, seed=spec.seed, cache=cache, label=ms.id,
        progress=lambda done, total: progress.detail(ms.label, done, total),
        generation_settings={**spec.generation.model_dump(), "dimension": spec.aggregations.dimension},
        reduce_dimension=lambda array, name: _reduce(registry, array, name or spec.aggregations.dimension),
    )
    t0 = time.perf_counter()
    try:
        res = method.attribute(ctx)
    except ReportgenError as exc:
        return replace(base, status="failed", reason=str(exc), timings={"seconds": time.perf_counter() - t0})
    except Exception as exc:  # a broken method must not sink the audit; its reason is reported
        progress.log(f"{ms.label} failed on {gen.model_id}/{gen.prompt_id}: {type(exc).__name__}: {exc}")
        return replace(
            base, status="failed", reason=f"{type(exc).__name__}: {exc}",
            details={"traceback": traceback.format_exc(limit=8)}, timings={"seconds": time.perf_counter() - t0},
        )
    res.label = ms.id
    res.timings.setdefault("seconds", time.perf_counter() - t0)
    problem = _shape_problem(res, gen)
    if problem:  # a plugin bug: report it on this job, never render misaligned numbers
        return replace(base, status="failed", reason=problem, timings=res.timings)
    cache.set("results", key, res.to_json())
    return res


def _reduce(registry: Registry, array: np.ndarray, name: str) -> np.ndarray:
    agg = registry.dimension_aggregation(name)
    if agg is None:
        raise ReportgenError(
            f"unknown dimensional aggregation {name!r}; installed: {', '.join(registry.dimension_aggregations())}"
        )
    return np.asarray(agg(array), dtype=np.float64)


def _shape_problem(res: AttributionResult, gen: Generation) -> str | None:
    if res.matrix is not None and res.matrix.shape != (gen.n, gen.t):
        return f"method {res.method} returned a {res.matrix.shape} matrix; expected ({gen.n}, {gen.t})"
    for name, vec in res.scores.items():
        if len(vec) != gen.n:
            return f"method {res.method}: score {name!r} has {len(vec)} values for {gen.n} input tokens"
    return None


def detect(registry: Registry, spec: AuditSpec, run: RunResult) -> list[Finding]:
    findings: list[Finding] = []
    for name in sorted(registry.detectors):
        if name in spec.disable_detectors:
            continue
        det = registry.detectors[name]
        opts = det.options_model.model_validate(spec.detectors.get(name) or {})
        for res in run.results:
            if res.status != "ok" or (det.methods and res.method not in det.methods):
                continue
            gen = run.generation(res.model_id, res.prompt_id)
            if gen is not None:
                findings.extend(det.detect(res, gen, opts))
    from reportgen.data import SEVERITY_ORDER

    findings.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), f.model_id, f.prompt_id, f.positions, f.detector))
    return findings


def collect_figures(registry: Registry, run: RunResult) -> list[FigureSpec]:
    figs: list[FigureSpec] = []
    for name in sorted(registry.visualizations):
        figs.extend(registry.visualizations[name].figures(run))
    figs.sort(key=lambda f: (f.section, f.model_id or "", f.prompt_id or "", f.order, f.id))
    return figs


def render_context(registry: Registry, run: RunResult) -> RenderContext:
    """What every renderer of ``run`` receives: figures, the one Jinja environment, detectors."""
    return RenderContext(
        run=run,
        figures=tuple(collect_figures(registry, run)),
        env=make_jinja_env(registry.pm),
        detectors=registry.detector_reads(),
        methods={name: m.description for name, m in sorted(registry.methods.items())},
    )


def render(registry: Registry, run: RunResult, out_dir: Path, formats: list[str]) -> dict[str, str]:
    """Render every format into ``out_dir``, each file atomically.

    A renderer that fails leaves no file behind; the other formats are still written, then
    :class:`RenderError` names every format that failed.
    """
    ctx = render_context(registry, run)
    written: dict[str, str] = {}
    failed: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        renderer = registry.renderers[fmt]
        final = out_dir / ("results.json" if fmt == "json" else f"report.{renderer.extension or fmt}")
        tmp = final.with_name(f".{final.name}.partial")
        try:
            renderer.render(ctx, str(tmp))
            atomic_write_bytes(final, tmp.read_bytes())
        except Exception as exc:  # one broken renderer must not cost the other formats
            failed.append(f"{fmt}: {type(exc).__name__}: {exc}")
            continue
        finally:
            tmp.unlink(missing_ok=True)
        written[fmt] = str(final)
    if failed:
        done = ", ".join(f"{k} ({v})" for k, v in written.items()) or "nothing"
        raise RenderError(f"could not render {'; '.join(failed)}; written: {done}")
    return written


def run_audit(spec_path: str | Path, options: RunOptions | None = None, registry: Registry | None = None) -> tuple[RunResult, dict[str, str]]:
    """Validate the spec (before any model loads), run every job, render the reports."""
    options = options or RunOptions()
    registry = registry or get_registry()
    spec, text = load_spec(spec_path, registry, check_formats=options.formats is None)
    for f in options.formats or []:
        if f not in registry.renderers:
            raise SpecError(f"unknown format {f!r}; valid choices: {', '.join(sorted(registry.renderers))}")
    base_dir = Path(spec_path).resolve().parent
    formats = options.formats or spec.report.formats
    out_dir = Path(options.output) if options.output else base_dir / spec.report.output
    cache_root = None
    if options.use_cache and spec.cache:
        cache_root = Path(spec.cache if isinstance(spec.cache, str) else ".reportgen-cache")
        if not cache_root.is_absolute():
            cache_root = base_dir / cache_root
    cache = Cache(cache_root)
    created = _now()
    t_run = time.perf_counter()
    jobs = plan_jobs(spec)
    options.progress.start(len(jobs))
    generations: list[Generation] = []
    results: list[AttributionResult] = []
    model_info: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for i_model, mspec in enumerate(spec.models):
        loader = registry.model_loaders[mspec.scheme]
        t0 = time.perf_counter()
        options.progress.log(f"loading {mspec.id} ({mspec.source})")
        loaded = loader.load(mspec, base_dir=str(base_dir), device=mspec.device or options.device or spec.device)
        timings[f"load:{mspec.id}"] = time.perf_counter() - t0
        model_info[mspec.id] = {"source": mspec.source, **loaded.info}
        try:
            for p in spec.prompts:
                t0 = time.perf_counter()
                gen = _generate(loaded, p, spec, cache)
                timings[f"generate:{mspec.id}:{p.id}"] = time.perf_counter() - t0
                generations.append(gen)
                options.progress.advance(f"{mspec.id} · {p.id} · generation")
                for ms in spec.methods:
                    if ms.models is not None and mspec.id not in ms.models:
                        continue
                    t0 = time.perf_counter()
                    res = _attribute(registry, loaded, gen, ms, spec, cache, options.progress)
                    timings[f"method:{mspec.id}:{p.id}:{ms.label}"] = time.perf_counter() - t0
                    results.append(res)
                    options.progress.advance(f"{mspec.id} · {p.id} · {ms.label}")
        finally:
            for method in registry.methods.values():
                release = getattr(method, "release", None)
                if release is not None:
                    release(loaded)
            loaded.close()
            del loaded
            if i_model < len(spec.models) - 1:
                gc.collect()  # free the weights before the next model loads
    timings["total"] = time.perf_counter() - t_run
    run = RunResult(
        spec=spec, spec_text=text, spec_path=str(spec_path), generations=generations, results=results,
        timings=timings, created_at=created, completed_at=_now(),
    )
    run.provenance = prov.collect(
        spec=spec, spec_text=text, registry=registry, models=model_info, device=options.device or spec.device,
        cache=cache, base_dir=base_dir,
    )
    run.findings = detect(registry, spec, run)
    written = render(registry, run, out_dir, formats)
    return run, written
