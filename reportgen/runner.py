"""Run an audit: plan jobs, load each model once, generate once, explain many times.

Data flows one way: spec → jobs → generations → attribution results (cached by
content hash) → findings → figures → renderers. Finished work is cached on disk as it
completes, so a failed or interrupted run loses nothing; reports are written
atomically, so a failure never leaves a half-written file.

Reuse: every job's cache key is derived from the spec and the model loader's
``fingerprint`` (e.g. the weights file's sha256), computed for every model before any model
loads. The cache is consulted first, and a model is loaded only when one of its jobs is not
in it; a loader without a fingerprint is loaded first and keyed by what it loaded. How many
jobs were reused and computed is logged at the end and recorded in ``provenance["jobs"]``.

Report files a previous run left in the output folder that this run did not rewrite
(an old ``report.pdf`` beside a new ``report.html``, unfinished ``.partial`` writes) are
removed, with a log line each; only reportgen's own file names are ever touched.

An unchanged rerun writes nothing: the folder's stamp (:mod:`reportgen.stamp`) records what
its reports were made from; when every job came from the cache, the inputs are the same and
every file is intact, the run says the folder is up to date and the gate reads its results.json.
"""

from __future__ import annotations

import datetime as _dt
import gc
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from reportgen import linguistics
from reportgen import provenance as prov
from reportgen import stamp as stamps
from reportgen.cache import Cache, atomic_write_bytes, content_key
from reportgen.cache_admin import prune_after_run, resolve_settings
from reportgen.data import (
    SEVERITY_ORDER,
    AttributionResult,
    Evaluation,
    FigureSpec,
    Finding,
    Generation,
    RunResult,
)
from reportgen.errors import PluginError, RenderError, ReportgenError
from reportgen.executors import ShardWork, Work, make_executor
from reportgen.generate import TOKEN_DISPLAY_VERSION
from reportgen.manifest import run_id_for
from reportgen.plugin_api import (
    AttributionContext,
    EvaluationContext,
    EvaluationSettings,
    LoadedModel,
    RenderContext,
)
from reportgen.plugins import Registry, get_registry
from reportgen.render import make_jinja_env
from reportgen.results import results_body
from reportgen.signing_dsse import SUFFIX as ENVELOPE_SUFFIX
from reportgen.spec import (
    AuditSpec,
    ModelSpec,
    RunTarget,
    load_spec,
    options_context,
    output_dir,
    report_filename,
)
from reportgen.statement import STATEMENT_NAME

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
    executor: Literal["local", "ray"] | None = None  # the executor's kind (--executor); None: the spec's
    #: How a remote worker builds its plugin registry (default: from the installed entry points);
    #: a picklable top-level function, for plugins that are not installed as entry points.
    worker_registry: Callable[[], Registry] | None = None
    #: The key id of the certificate ``run --sign`` signs with (None: unsigned): a folder signed
    #: by another key, or not signed, is not up to date (:mod:`reportgen.stamp`).
    signer: str | None = None


@dataclass
class Audit:
    """What :func:`audit` did: the run, the report files (name → path) and the folder's stamp."""

    run: RunResult
    written: dict[str, str]
    out_dir: Path
    stamp: stamps.Stamp
    #: True when the folder already held these reports from identical inputs and nothing was written.
    up_to_date: bool = False


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _seed_everything(seed: int) -> None:
    import random

    import torch

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


#: Model settings that do not change what a model answers (left out of cache keys).
_OPERATIONAL = {"label", "device", "timeout_s", "max_retries", "concurrency", "max_requests", "api_key_env"}

JobOutcome = Literal["reused", "computed", "unavailable"]


class ModelSlot:
    """One model of the run, loaded on first use and freed by :meth:`close`.

    ``key`` identifies the model in cache keys: its spec settings plus the loader's
    ``fingerprint`` of the weights, found without loading them. A loader without a
    fingerprint is loaded when the key is first needed and keyed by what it loaded.
    """

    def __init__(self, registry: Registry, mspec: ModelSpec, base_dir: Path, device: str, progress: Progress) -> None:
        self.registry = registry
        self.spec = mspec
        self.loader = registry.model_loaders[mspec.scheme]
        self.base_dir = base_dir
        self.device = device
        self.progress = progress
        self.loaded: LoadedModel | None = None
        self.load_seconds: float | None = None
        hook = getattr(self.loader, "fingerprint", None)
        try:
            weights = hook(mspec, base_dir=str(base_dir)) if hook is not None else None
        except ReportgenError:  # ModelLoadError: the weights are missing or unreadable (exit 4)
            raise
        except Exception as exc:  # noqa: BLE001 - a broken loader plugin (exit 3), not a crash
            raise PluginError(
                f"model loader {mspec.scheme + ':'!r} failed to fingerprint model {mspec.id!r}: {type(exc).__name__}: {exc}"
            ) from None
        self.fingerprint = weights  # the loader's digest of the weights (provenance; None: it cannot tell)
        self._key: dict[str, Any] | None = None if weights is None else self._with_settings(weights)

    def _with_settings(self, weights: Any) -> dict[str, Any]:
        return {"model": self.spec.model_dump(exclude=_OPERATIONAL), "weights": weights}

    @property
    def key(self) -> dict[str, Any]:
        if self._key is None:  # the loader cannot tell without loading
            self._key = self._with_settings({"loaded": model_fingerprint(self.get())})
        return self._key

    def adopt_key(self, key: dict[str, Any]) -> None:
        """Take the key a worker found for this model, so that a loader without a fingerprint
        need not load the model here just to know it."""
        if self._key is None:
            self._key = key

    def get(self) -> LoadedModel:
        if self.loaded is None:
            t0 = time.perf_counter()
            self.progress.log(f"loading {self.spec.id} ({self.spec.source})")
            self.loaded = self.loader.load(self.spec, base_dir=str(self.base_dir), device=self.device)
            self.load_seconds = time.perf_counter() - t0
        return self.loaded

    def info(self, cache: Cache) -> dict[str, Any]:
        """Provenance of the model: what the load reported, or (not loaded) what an earlier load
        cached under the same key."""
        if self._key is None and self.loaded is None:  # no worker loaded it, and only a load could tell
            return {"source": self.spec.source, "loaded": False}
        info_key = content_key("model-info", self.key)
        if self.loaded is not None:
            cache.set("models", info_key, self.loaded.info)
            return {"source": self.spec.source, **self.loaded.info, **self._weights(), "loaded": True}
        earlier = cache.get("models", info_key)
        known = earlier if isinstance(earlier, dict) else {"weights": self.key["weights"]}
        return {"source": self.spec.source, **known, **self._weights(), "loaded": False}

    def _weights(self) -> dict[str, Any]:
        return {} if self.fingerprint is None else {"weights": self.fingerprint}

    def close(self) -> None:
        if self.loaded is None:
            return
        for method in [*self.registry.methods.loaded.values(), *self.registry.evaluators.values()]:
            release = getattr(method, "release", None)
            if release is not None:
                release(self.loaded)
        self.loaded.close()
        self.loaded = None


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


def run_shard(registry: Registry, model: ModelSlot, spec: AuditSpec, prompts: Iterable[Any], cache: Cache, progress: Progress) -> ShardWork:
    """One model's generation and method jobs for ``prompts``, in run order (reusing cached ones)."""
    out = ShardWork()
    mspec = model.spec
    for p in prompts:
        t0 = time.perf_counter()
        gen, how = _converse(model, p, spec, cache) if p.turns is not None else _generate(model, p, spec, cache)
        out.outcomes[how] += 1
        out.timings[f"generate:{mspec.id}:{p.id}"] = time.perf_counter() - t0
        out.generations.append(gen)
        progress.advance(f"{mspec.id} · {p.id} · generation")
        for ms in spec.methods:
            if ms.models is not None and mspec.id not in ms.models:
                continue
            t0 = time.perf_counter()
            res, how = _attribute(registry, model, gen, ms, spec, cache, progress)
            out.outcomes[how] += 1
            out.timings[f"method:{mspec.id}:{p.id}:{ms.label}"] = time.perf_counter() - t0
            out.results.append(res)
            progress.advance(f"{mspec.id} · {p.id} · {ms.label}")
    return out


def _generate(model: ModelSlot, prompt: Any, spec: AuditSpec, cache: Cache) -> tuple[Generation, JobOutcome]:
    key = content_key("generation", TOKEN_DISPLAY_VERSION, model.key, prompt.model_dump(), spec.generation.model_dump(), spec.seed)
    hit = cache.get("generations", key)
    if hit is not None:
        return Generation.from_json(hit), "reused"
    loaded = model.get()
    _seed_everything(spec.seed)
    if loaded.open_weights:
        from reportgen.generate import generate

        gen = generate(loaded, prompt, spec.generation, seed=spec.seed)
    else:
        from reportgen.generate import generate_via_sampler

        gen = generate_via_sampler(loaded, prompt, spec.generation, spec.seed)
    cache.set("generations", key, gen.to_json())
    return gen, "computed"


def _converse(model: ModelSlot, prompt: Any, spec: AuditSpec, cache: Cache) -> tuple[Generation, JobOutcome]:
    """A ``turns`` prompt, generated turn by turn (eq. 8): each turn's input holds the model's own
    earlier replies (or the pinned ones); each turn is a cached generation. Returns the last turn's,
    the one methods attribute, with its messages marking which replies the model generated."""
    from reportgen.conversation import turn_messages
    from reportgen.spec import Message, PromptSpec

    outputs: list[str | None] = []
    computed = False
    k = len(prompt.turns)
    for i, turn in enumerate(prompt.turns, start=1):
        if i < k and turn.assistant is not None:
            outputs.append(None)
            continue
        msgs = [Message(role=m["role"], content=m["content"]) for m in turn_messages(prompt, outputs, i)]
        gen, how = _generate(model, PromptSpec(id=prompt.id, messages=msgs), spec, cache)
        computed = computed or how == "computed"
        outputs.append(gen.response_text)
    generated = {(i + 1, text) for i, text in enumerate(outputs) if text is not None}
    records = tuple({**m, "generated": m["role"] == "assistant" and (m["turn"], m["content"]) in generated} for m in gen.messages)
    return replace(gen, messages=records), "computed" if computed else "reused"


def _attribute(
    registry: Registry,
    model: ModelSlot,
    gen: Generation,
    ms: Any,
    spec: AuditSpec,
    cache: Cache,
    progress: Progress,
) -> tuple[AttributionResult, JobOutcome]:
    method = registry.methods[ms.method]
    opts = method.options_model.model_validate(ms.options, context=options_context(registry))
    base = AttributionResult.for_generation(gen, ms.method, opts, label=ms.id)
    key = content_key(
        "attribution",
        model.key,
        gen.to_json() | {"seconds": 0},
        ms.method,
        opts.model_dump(),
        spec.aggregations.model_dump(),
        spec.seed,
        getattr(method, "version", "1"),
    )
    hit = cache.get("results", key)
    if hit is not None:
        res = AttributionResult.from_json(hit)
        res.label = ms.id
        res.details = {**res.details, "from_cache": True}
        return res, "reused"
    loaded = model.get()
    reason = method.unavailable_reason(loaded)
    if reason:
        return replace(base, status="unavailable", reason=reason), "unavailable"
    _seed_everything(spec.seed)
    ctx = AttributionContext(
        model=loaded,
        generation=gen,
        options=opts,
        seed=spec.seed,
        cache=cache,
        label=ms.id,
        progress=lambda done, total: progress.detail(ms.label, done, total),
        generation_settings={**spec.generation.model_dump(), "dimension": spec.aggregations.dimension},
        reduce_dimension=lambda array, name: _reduce(registry, array, name or spec.aggregations.dimension),
    )
    t0 = time.perf_counter()
    try:
        res = method.attribute(ctx)
    except ReportgenError as exc:
        return replace(base, status="failed", reason=str(exc), timings={"seconds": time.perf_counter() - t0}), "computed"
    except Exception as exc:  # noqa: BLE001 - a broken method must not sink the audit; its reason is reported
        progress.log(f"{ms.label} failed on {gen.model_id}/{gen.prompt_id}: {type(exc).__name__}: {exc}")
        failed = replace(
            base,
            status="failed",
            reason=f"{type(exc).__name__}: {exc}",
            details={"traceback": traceback.format_exc(limit=8)},
            timings={"seconds": time.perf_counter() - t0},
        )
        return failed, "computed"
    res.label = ms.id
    res.timings.setdefault("seconds", time.perf_counter() - t0)
    problem = _shape_problem(res, gen)
    if problem:  # a plugin bug: report it on this job, never render misaligned numbers
        return replace(base, status="failed", reason=problem, timings=res.timings), "computed"
    cache.set("results", key, res.to_json())
    return res, "computed"


def evaluation_settings(spec: AuditSpec) -> EvaluationSettings:
    """What the spec's ``evaluation:`` block asks of every evaluator (seed: the block's, else the run's)."""
    ev = spec.evaluation
    assert ev is not None
    return EvaluationSettings(
        metrics=tuple(ev.metrics),
        k_percent=tuple(float(k) for k in ev.k),
        operator=ev.operator,
        replacement=ev.replacement,
        perturbations=ev.perturbations,
        seed=spec.seed if ev.seed is None else ev.seed,
        target=ev.target,
        methods=tuple(ev.methods or ()),
        bootstrap=ev.bootstrap,
        token_importance=spec.aggregations.token_importance,
    )


def _evaluate(
    registry: Registry,
    model: ModelSlot,
    name: str,
    spec: AuditSpec,
    gens: list[Generation],
    results: list[AttributionResult],
    cache: Cache,
    progress: Progress,
) -> tuple[Evaluation, JobOutcome]:
    """One evaluator on one model's finished results: from the cache (keyed like method results, by
    the generations and the results' numbers), else computed on the model (loaded if need be)."""
    if not gens:  # every shard of the model failed on its executor
        return Evaluation(
            evaluator=name, model_id=model.spec.id, status="unavailable", reason="no generation of this model finished"
        ), "unavailable"
    evaluator = registry.evaluators[name]
    assert spec.evaluation is not None
    settings = evaluation_settings(spec)
    opts = evaluator.options_model.model_validate(spec.evaluation.options.get(name) or {}, context=options_context(registry))
    key = content_key(
        "evaluation",
        model.key,
        name,
        getattr(evaluator, "version", "1"),
        settings.to_json(),
        opts.model_dump(),
        [g.to_json() | {"seconds": 0} for g in gens],
        [
            {"label": r.display_name, "method": r.method, "status": r.status, "signed": r.signed, "matrix": r.matrix, "scores": r.scores}
            for r in results
        ],
    )
    hit = cache.get("evaluations", key)
    if hit is not None:
        ev = Evaluation.from_json(hit)
        return replace(ev, details={**ev.details, "from_cache": True}), "reused"
    loaded = model.get()
    reason = evaluator.unavailable_reason(loaded)
    if reason:
        return Evaluation(evaluator=name, model_id=model.spec.id, status="unavailable", reason=reason), "unavailable"
    _seed_everything(settings.seed)
    ctx = EvaluationContext(
        model=loaded,
        generations=gens,
        results=results,
        settings=settings,
        options=opts,
        cache=cache,
        progress=lambda done, total: progress.detail(f"evaluation · {name}", done, total),
    )
    t0 = time.perf_counter()
    try:
        ev = evaluator.evaluate(ctx)
    except Exception as exc:  # noqa: BLE001 - a broken evaluator must not sink the audit; its reason is reported
        progress.log(f"evaluator {name} failed on {model.spec.id}: {type(exc).__name__}: {exc}")
        failed = Evaluation(
            evaluator=name,
            model_id=model.spec.id,
            status="failed",
            reason=f"{type(exc).__name__}: {exc}",
            timings={"seconds": time.perf_counter() - t0},
            details={"traceback": traceback.format_exc(limit=8)},
        )
        return failed, "computed"
    cache.set("evaluations", key, ev.to_json())
    return ev, "computed"


def _reduce(registry: Registry, array: np.ndarray, name: str) -> np.ndarray:
    agg = registry.dimension_aggregation(name)
    if agg is None:
        raise ReportgenError(f"unknown dimensional aggregation {name!r}; installed: {', '.join(registry.dimension_aggregations())}")
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
        opts = det.options_model.model_validate(spec.detectors.get(name) or {}, context=options_context(registry))
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


def method_descriptions(registry: Registry, run: RunResult) -> dict[str, str]:
    """Each installed method the run names → its description (loads no deferred methods)."""
    names = sorted({ms.method for ms in run.spec.methods} | {r.method for r in run.results})
    return {name: desc for name in names if (desc := registry.methods.describe(name)) is not None}


def render_context(registry: Registry, run: RunResult) -> RenderContext:
    """What every renderer of ``run`` receives: figures, the one Jinja environment, detectors."""
    return RenderContext(
        run=run,
        figures=tuple(collect_figures(registry, run)),
        env=make_jinja_env(registry.pm),
        detectors=registry.detector_reads(),
        methods=method_descriptions(registry, run),
    )


def _write_reports(registry: Registry, run: RunResult, out_dir: Path, formats: list[str]) -> tuple[dict[str, str], list[str]]:
    """Write every format (each atomically); return what was written and what failed."""
    ctx = render_context(registry, run)
    written: dict[str, str] = {}
    failed: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        renderer = registry.renderers[fmt]
        final = out_dir / report_filename(fmt, registry)
        tmp = final.with_name(f".{final.name}.partial")
        try:
            renderer.render(ctx, str(tmp))
            atomic_write_bytes(final, tmp.read_bytes())
        except Exception as exc:  # noqa: BLE001 - one broken renderer must not cost the other formats
            failed.append(f"{fmt}: {type(exc).__name__}: {exc}")
            continue
        finally:
            tmp.unlink(missing_ok=True)
        written[fmt] = str(final)
    if written:  # the in-toto provenance statement about the files just written (reportgen.statement)
        from reportgen.results import run_to_json
        from reportgen.statement import write_statement

        try:
            written["provenance"] = str(write_statement(run_to_json(run), out_dir, written))
        except Exception as exc:  # noqa: BLE001 - the reports are written; say what is missing
            failed.append(f"{STATEMENT_NAME}: {type(exc).__name__}: {exc}")
    return written, failed


def _render_failed(written: dict[str, str], failed: list[str]) -> RenderError:
    done = ", ".join(f"{k} ({v})" for k, v in written.items()) or "nothing"
    return RenderError(f"could not render {'; '.join(failed)}; written: {done}")


def render(registry: Registry, run: RunResult, out_dir: Path, formats: list[str]) -> dict[str, str]:
    """Render every format into ``out_dir``, each file atomically.

    A renderer that fails leaves no file behind; the other formats are still written, then
    :class:`RenderError` names every format that failed.
    """
    written, failed = _write_reports(registry, run, out_dir, formats)
    if failed:
        raise _render_failed(written, failed)
    return written


def own_report_files(registry: Registry) -> set[str]:
    """The names reportgen writes into an output folder (whatever renderers are installed now)."""
    names = {"results.json", "report.html", "report.pdf", "provenance.intoto.json"}
    names |= {report_filename(fmt, registry) for fmt in registry.renderers}
    return names


def remove_stale_reports(registry: Registry, out_dir: Path, written: Iterable[str], log: Callable[[str], None]) -> list[str]:
    """Remove report files an earlier run left in ``out_dir`` that this run did not write.

    Only reportgen's own names are candidates (:func:`own_report_files`, the ``.partial`` and
    atomic-write ``.tmp`` leftovers of those names, and their signature envelopes
    ``NAME.dsse.json``, which sign content this run replaced: ``run --sign`` writes new ones
    afterwards); anything else is never touched. Returns the names removed, each also passed
    to ``log``.
    """
    own = own_report_files(registry)
    keep = {Path(p).name for p in written}
    leftover = re.compile(r"^\.(?P<name>.+?)(\.partial|\.[A-Za-z0-9_]{8}\.tmp)$")
    removed: list[str] = []
    if not out_dir.is_dir():
        return removed
    for path in sorted(out_dir.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        m = leftover.match(path.name)
        if path.name in own and path.name not in keep:
            why = f"left by an earlier run; this run wrote {', '.join(sorted(keep)) or 'no report'}"
        elif m is not None and m.group("name") in own:
            why = "an unfinished write of an earlier run"
        elif path.name.endswith(ENVELOPE_SUFFIX) and path.name.removesuffix(ENVELOPE_SUFFIX) in own:
            why = "the signature of an earlier run's file"
        else:
            continue
        try:
            path.unlink()
        except OSError as exc:
            log(f"could not remove {path} ({why}): {exc.strerror or exc}")
            continue
        removed.append(path.name)
        log(f"removed {path}: {why}")
    return removed


def gate(run: RunResult, fail_on: Iterable[str] = ()) -> str | None:
    """Why a CI gate fails on ``run`` (None when it passes).

    Always: no method job produced a result (every one failed or was unavailable), since such
    a report holds no attribution evidence. With ``failed`` in ``fail_on``: a method job
    failed. With a severity: a finding of that severity or worse exists (the least severe
    level given counts).
    """
    levels = set(fail_on)
    reasons: list[str] = []
    status = Counter(r.status for r in run.results)
    if run.results and not status["ok"]:
        reasons.append(f"no method produced a result ({status['failed']} failed, {status['unavailable']} unavailable)")
    elif "failed" in levels and status["failed"]:
        reasons.append(f"{status['failed']} method job(s) failed (fail on: failed)")
    severities = [lv for lv in levels if lv in SEVERITY_ORDER]
    if severities:
        level = max(severities, key=lambda lv: SEVERITY_ORDER[lv])
        hits = Counter(f.severity for f in run.findings if SEVERITY_ORDER.get(f.severity, 9) <= SEVERITY_ORDER[level])
        if hits:
            counts = ", ".join(f"{hits[s]} {s}" for s in sorted(hits, key=lambda s: SEVERITY_ORDER[s]))
            reasons.append(f"{sum(hits.values())} finding(s) of severity {level} or worse: {counts} (fail on: {level})")
    return "; ".join(reasons) or None


def run_audit(
    spec_path: str | Path, options: RunOptions | None = None, registry: Registry | None = None
) -> tuple[RunResult, dict[str, str]]:
    """:func:`audit`'s run and report files."""
    done = audit(spec_path, options, registry)
    return done.run, done.written


def audit(spec_path: str | Path, options: RunOptions | None = None, registry: Registry | None = None) -> Audit:
    """Validate the spec and the run's environment (before any model loads), run every job
    (reusing cached ones, loading a model only when one of its jobs is not cached), render the
    reports, remove the ones an earlier run left that this run did not write and stamp the folder.

    When every job came from the cache and the folder's stamp says it holds these reports, made
    from identical inputs and intact (:func:`reportgen.stamp.current`), nothing is written."""
    options = options or RunOptions()
    registry = registry or get_registry()
    target = RunTarget(
        output=options.output,
        formats=tuple(options.formats) if options.formats else None,
        device=options.device,
        use_cache=options.use_cache,
        executor=options.executor,
    )
    spec, text = load_spec(spec_path, registry, target=target)
    base_dir = Path(spec_path).resolve().parent
    formats = options.formats or spec.report.formats
    out_dir = output_dir(spec, spec_path, options.output)
    cache_settings = resolve_settings(spec.cache, base_dir) if options.use_cache and spec.cache.enabled else None
    cache = Cache(cache_settings.root if cache_settings else None, log=options.progress.log)
    created = _now()
    t_run = time.perf_counter()
    jobs = plan_jobs(spec)
    # Every weights fingerprint before any model loads: a missing or unreadable file fails now.
    models = [ModelSlot(registry, m, base_dir, m.device or options.device or spec.device, options.progress) for m in spec.models]
    evaluators = spec.evaluation.evaluators if spec.evaluation is not None else []
    options.progress.start(len(jobs) + len(evaluators) * len(models))
    evaluations: list[Evaluation] = []
    generations: list[Generation] = []
    results: list[AttributionResult] = []
    model_info: dict[str, Any] = {}
    timings: dict[str, float] = {}
    outcomes: Counter[str] = Counter()
    loaded_ids: set[str] = set()
    executor = make_executor(
        spec.executor.model_copy(update={"kind": options.executor or spec.executor.kind}),
        Work(registry, spec, base_dir, cache, models, options.progress, options.worker_registry),
    )
    try:
        for i_model, model in enumerate(models):
            mspec = model.spec
            try:
                work = executor.collect(i_model)
                generations += work.generations
                results += work.results
                mine_t = dict(work.timings)  # this model's timings, listed after its load
                outcomes.update(work.outcomes)
                if work.key is not None:
                    model.adopt_key(work.key)
                for name in evaluators:  # after the model's attribution jobs, while it is still loaded
                    t0 = time.perf_counter()
                    mine = [g for g in generations if g.model_id == mspec.id]
                    ev, how = _evaluate(
                        registry, model, name, spec, mine, [r for r in results if r.model_id == mspec.id], cache, options.progress
                    )
                    outcomes[f"evaluation-{how}"] += 1
                    mine_t[f"evaluate:{mspec.id}:{name}"] = time.perf_counter() - t0
                    evaluations.append(ev)
                    options.progress.advance(f"{mspec.id} · evaluation · {name}")
                loads = [s for s in (work.load_seconds, model.load_seconds) if s is not None]
                if loads:
                    timings[f"load:{mspec.id}"] = sum(loads)
                    loaded_ids.add(mspec.id)
                else:
                    options.progress.log(f"{mspec.id}: every job reused from the cache; the model was not loaded")
                timings.update(mine_t)
                model_info[mspec.id] = work.info if work.info is not None and model.loaded is None else model.info(cache)
            finally:
                was_loaded = model.loaded is not None
                model.close()
                if was_loaded and i_model < len(models) - 1:
                    gc.collect()  # free the weights before the next model loads
    finally:
        executor.close()
    timings["total"] = time.perf_counter() - t_run
    run = RunResult(
        spec=spec,
        spec_text=text,
        spec_path=str(spec_path),
        generations=generations,
        results=results,
        timings=timings,
        created_at=created,
        completed_at=_now(),
        evaluations=evaluations,
    )
    run.provenance = prov.collect(
        spec=spec,
        spec_text=text,
        registry=registry,
        models=model_info,
        device=options.device or spec.device,
        cache=cache,
        base_dir=base_dir,
    )
    run.provenance["jobs"] = {
        "total": len(jobs),
        "reused": outcomes["reused"],
        "computed": outcomes["computed"],
        "unavailable": outcomes["unavailable"],
        **({"failed": outcomes["failed"]} if outcomes["failed"] else {}),
        "models_loaded": sorted(loaded_ids),
    }
    run.provenance["executor"] = executor.describe()
    options.progress.log(
        f"jobs: {outcomes['reused']} of {len(jobs)} reused from the cache, {outcomes['computed']} computed"
        + (f", {outcomes['unavailable']} unavailable" if outcomes["unavailable"] else "")
        + (f", {outcomes['failed']} failed with their shard" if outcomes["failed"] else "")
    )
    if evaluators:
        options.progress.log(
            f"evaluations: {outcomes['evaluation-reused']} reused from the cache, {outcomes['evaluation-computed']} computed"
            + (f", {outcomes['evaluation-unavailable']} unavailable" if outcomes["evaluation-unavailable"] else "")
        )
    # What the reports are made from, before the labels and findings derived from it (their code
    # and spaCy's version are in the digest), so an up-to-date folder needs neither spaCy nor detectors.
    names = {fmt: report_filename(fmt, registry) for fmt in formats}
    inputs = stamps.inputs_digest(results_body(run), names.values(), _software(registry, spec))
    reused = options.use_cache and outcomes["reused"] == len(jobs) and outcomes["evaluation-reused"] == len(evaluators) * len(models)
    current = stamps.current(out_dir, inputs, options.signer, names.values()) if reused else None
    if current is not None:
        options.progress.log(up_to_date_line(out_dir, current, formats))
        existing = {fmt: str(out_dir / name) for fmt, name in names.items()}
        if STATEMENT_NAME in current.files:
            existing["provenance"] = str(out_dir / STATEMENT_NAME)
        return Audit(_reported_run(registry, run, out_dir, current), existing, out_dir, current, up_to_date=True)
    _complete(registry, run)
    run.timings["total"] = time.perf_counter() - t_run
    run.completed_at = _now()
    stamps.remove(out_dir)
    written, failed = _write_reports(registry, run, out_dir, formats)
    remove_stale_reports(registry, out_dir, written.values(), options.progress.log)
    if cache_settings is not None:
        prune_after_run(cache_settings, options.progress.log)
    if failed:
        raise _render_failed(written, failed)
    made = stamps.Stamp(
        inputs=inputs,
        signer=None,
        run_id=run_id_for(results_body(run)),
        completed_at=run.completed_at,
        files=stamps.file_digests(out_dir, (Path(p).name for p in written.values())),
    )
    try:
        stamps.write(out_dir, made)
    except OSError as exc:  # the reports are written; only the next run's shortcut is lost
        options.progress.log(f"could not write {out_dir / stamps.STAMP_NAME} ({exc.strerror or exc}): the next run renders again")
    return Audit(run, written, out_dir, made)


def _software(registry: Registry, spec: AuditSpec) -> dict[str, Any]:
    """The code that turns results into reports (:func:`reportgen.stamp.software_digest`) and the
    spaCy pipeline that labels the tokens (None when the labels are off)."""
    labels = linguistics.active(spec.linguistics.enabled)
    return {
        "code": stamps.software_digest(p.module for p in registry.plugins()),
        "linguistics": stamps.package_versions(("spacy", linguistics.PIPELINE)) if labels else None,
    }


def _complete(registry: Registry, run: RunResult) -> RunResult:
    """``run`` with its tokens labelled (:mod:`reportgen.linguistics`) and the detectors' findings."""
    run.generations = linguistics.annotate_all(run.spec.linguistics.enabled, run.generations)
    run.findings = detect(registry, run.spec, run)
    return run


def _reported_run(registry: Registry, run: RunResult, out_dir: Path, stamp: stamps.Stamp) -> RunResult:
    """The run an up-to-date folder's reports show (what the gate reads): its results.json, or
    without one, ``run`` completed as it was then (the same inputs give the same labels and findings)."""
    if "results.json" in stamp.files:
        from reportgen.results import load_run

        return load_run(out_dir / "results.json")
    return _complete(registry, run)


def up_to_date_line(out_dir: Path, stamp: stamps.Stamp, formats: Iterable[str]) -> str:
    """What ``run`` says when the folder already holds its reports."""
    results = out_dir / "results.json"
    rebuild = " ".join(f"-f {fmt}" for fmt in formats if fmt != "json") or "-f json"
    how = (
        f"`reportgen render {results} -o {out_dir} {rebuild}` rebuilds them"
        if results.name in stamp.files
        else "delete one of them to have the next run rewrite them all"
    )
    return (
        f"up to date: the reports in {out_dir} are from run {stamp.run_id} at {stamp.completed_at} with the same spec, "
        f"models and reportgen; nothing rewritten. {how}"
    )


def sign_reports(done: Audit, signer: str, sign: Callable[[list[Path]], None]) -> None:
    """Sign the reports ``done`` wrote (``sign`` takes their paths) and stamp the folder as
    signed by ``signer``: the signed files and their envelopes are what a rerun must find."""
    sign([Path(p) for p in done.written.values()])
    names = [Path(p).name for p in done.written.values()]
    names += [n + ENVELOPE_SUFFIX for n in names if (done.out_dir / (n + ENVELOPE_SUFFIX)).is_file()]
    stamps.write(done.out_dir, replace(done.stamp, signer=signer, files=stamps.file_digests(done.out_dir, names)))
