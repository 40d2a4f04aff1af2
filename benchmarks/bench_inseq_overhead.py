"""Overhead of running an inseq method through reportgen vs calling inseq directly.

Acceptance (foundation issue): a method run through reportgen costs at most 10% more
wall time than inseq called directly on the same model, prompt and method. One process,
one run, SmolLM2-135M-Instruct loaded once, the quickstart chat prompt ("capital") and
its stored greedy response. Per method, interleaved repetitions of:

  (a) direct    inseq.load_model(model, m, tokenizer=tok) once, then per repetition
                model.attribute(prompt_text, generated_texts=full_text,
                skip_special_tokens=False, show_progress=False); its pad token is
                pointed at an unused token as reportgen does, so both attribute the
                same (n + t) × t cells (``--literal`` leaves it: inseq then drops the
                <|im_end|> tokens and the final EOS step, i.e. does less work)
  (b) method    reportgen_plugins.inseq.methods.InseqMethod(m).attribute(ctx)
  (c) runner    reportgen.runner.run_audit on a one-prompt, one-method spec (cache off,
                json report only); the model is preloaded and handed over by a loader
                plugin, so model load is excluded. Reported whole, and as its
                ``method:`` job alone (the runner's own timing of the attribution job).

Medians and ratios against (a) measured in the same run. ``--profile`` adds cProfile
listings of one (a), one (b) and one (c) call. ``--loo`` also times the example plugin's
``example.leave_one_out`` batched vs one deletion per forward. Run::

    .venv/bin/python benchmarks/bench_inseq_overhead.py [--reps 5] [--methods saliency input_x_gradient] [--profile] [--loo] [--threads 1]

On a shared, oversubscribed CPU pass ``--threads 1``: with torch's default 2 threads
and a load average of ~10 on 2 cores, one saliency call took 174 s instead of ~8 s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import pstats
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reportgen import hookimpl
from reportgen.aggregate import dimension_reduce
from reportgen.cache import Cache
from reportgen.generate import generate
from reportgen.plugin_api import AttributionContext, LoadedModel, ModelLoader
from reportgen.plugins import Registry, get_plugin_manager
from reportgen.runner import RunOptions, run_audit
from reportgen.spec import load_spec
from reportgen_plugins.inseq.methods import InseqMethod, _unused_token
from reportgen_plugins.models.loaders import EmbeddedLoader

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart" / "audit.yaml"


class _Preloaded(ModelLoader):
    """Hands the runner the already loaded model (a fresh wrapper per load: close() only clears it)."""

    scheme = "preloaded"
    description = "benchmark: a model loaded before the timed run"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> LoadedModel:
        src = self.loaded
        return LoadedModel(
            id=model_spec.id,
            source=model_spec.source,
            model=src.model,
            tokenizer=src.tokenizer,
            chat_template=src.chat_template,
            device=src.device,
            info=dict(src.info),
        )


class _PreloadedPlugin:
    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    @hookimpl
    def reportgen_register_model_loaders(self, register: Any) -> None:
        register(_Preloaded(self.loaded))


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _profile(label: str, fn: Callable[[], Any], top: int = 22) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    print(f"\n--- cProfile: {label} (top {top} by cumulative time) ---")
    print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:6000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--methods", nargs="+", default=["saliency", "input_x_gradient"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--literal", action="store_true", help="(a) without the pad-token fix: inseq then drops <|im_end|> tokens and one target step"
    )
    ap.add_argument("--loo", action="store_true", help="also time example.leave_one_out (needs the example plugin)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("inseq").setLevel(logging.ERROR)
    import inseq

    registry = Registry(get_plugin_manager())
    spec, _ = load_spec(QUICKSTART, registry)
    mspec, prompt = spec.models[0], spec.prompts[0]
    t_load, loaded = _timed(lambda: EmbeddedLoader().load(mspec, base_dir=str(QUICKSTART.parent), device="cpu"))
    print(
        f"model {mspec.source} loaded in {t_load:.1f} s (excluded); torch threads {torch.get_num_threads()}; "
        f"attn {loaded.info.get('attn_implementation')}"
    )
    gen = generate(loaded, prompt, spec.generation, seed=spec.seed)
    tok = loaded.tokenizer
    full_ids = list(gen.input_ids) + list(gen.output_ids)
    prompt_text = tok.decode(list(gen.input_ids), skip_special_tokens=False)
    full_text = tok.decode(full_ids, skip_special_tokens=False)
    print(f"prompt {prompt.id!r}: n={gen.n} input tokens (chat template), t={gen.t} output tokens: {gen.response_text!r}")

    pm = get_plugin_manager()
    pm.register(_PreloadedPlugin(loaded), name="bench_preloaded")
    run_registry = Registry(pm)
    tmp = Path(tempfile.mkdtemp(prefix="bench_inseq_"))

    rows: list[tuple[str, str, float, float | None, str]] = []
    for m in args.methods:
        t_wrap, direct_model = _timed(lambda m=m: _quiet(lambda: inseq.load_model(loaded.model, m, tokenizer=tok)))
        if not args.literal:
            # Same work as reportgen: SmolLM2 pads with <|im_end|>, and inseq drops pad-equal tokens
            # (the template's and the final EOS step) unless the pad token is pointed elsewhere.
            direct_model.pad_token = _unused_token(tok, set(full_ids))
        method = InseqMethod(m)
        ctx = AttributionContext(
            model=loaded,
            generation=gen,
            options=method.options_model(),
            seed=0,
            cache=Cache(None),
            generation_settings={"dimension": spec.aggregations.dimension},
        )
        spec_path = tmp / f"{m}.yaml"
        spec_path.write_text(
            textwrap.dedent(f"""\
            title: bench {m}
            models: [{{id: smollm2, source: "preloaded:smollm2"}}]
            prompts: [{{id: {prompt.id}, text: {prompt.text!r}}}]
            generation: {{max_new_tokens: {spec.generation.max_new_tokens}}}
            methods: [{{method: inseq.{m}}}]
            aggregations: {{dimension: {spec.aggregations.dimension}}}
            report: {{formats: [json], output: {str(tmp / ("out_" + m))!r}}}
            cache: false
            seed: {spec.seed}
            """)
        )

        def direct(direct_model: Any = direct_model) -> Any:
            return direct_model.attribute(prompt_text, generated_texts=full_text, skip_special_tokens=False, show_progress=False)

        def via_method(method: Any = method, ctx: Any = ctx) -> Any:
            return method.attribute(ctx)

        def via_runner(spec_path: Path = spec_path) -> Any:
            return run_audit(spec_path, RunOptions(use_cache=False), registry=run_registry)

        # warm-up: one of each (the runner's InseqMethod wraps the model on its first job)
        out_a, out_b = direct(), via_method()
        t_first_runner, _ = _timed(via_runner)
        times: dict[str, list[float]] = {"a": [], "b": [], "c": [], "c_method": [], "c_generate": []}
        for _ in range(args.reps):  # interleaved: a, b, c, a, b, c, …
            times["a"].append(_timed(direct)[0])
            times["b"].append(_timed(via_method)[0])
            dt, (run, _w) = _timed(via_runner)
            times["c"].append(dt)
            times["c_method"].append(next(v for k, v in run.timings.items() if k.startswith("method:")))
            times["c_generate"].append(next(v for k, v in run.timings.items() if k.startswith("generate:")))
        med = {k: statistics.median(v) for k, v in times.items()}

        # the same numbers? (a) reduced like reportgen does it vs (b)
        seq = out_a.sequence_attributions[0]
        arr = seq.target_attributions.detach().float().numpy()
        direct_mat = dimension_reduce(arr, spec.aggregations.dimension)
        got = out_b.matrix
        if direct_mat.shape[0] == gen.n + gen.t and direct_mat.shape[1] == gen.t:
            check = f"max |a−b| = {np.nanmax(np.abs(direct_mat[: gen.n] - got)):.2e}"
        else:
            check = f"direct shape {direct_mat.shape} vs reportgen {(gen.n + gen.t, gen.t)} (tokens dropped by inseq)"
        print(
            f"\ninseq.{m}: inseq.load_model {t_wrap:.2f} s once (excluded from (a)/(b)); first runner job {t_first_runner:.2f} s; {check}"
        )
        print("  raw seconds: " + "; ".join(f"{k}=" + ",".join(f"{x:.2f}" for x in v) for k, v in times.items()))
        rows.append((m, "(a) inseq direct", med["a"], None, "baseline"))
        rows.append((m, "(b) InseqMethod.attribute", med["b"], med["b"] / med["a"], ""))
        rows.append((m, "(c) runner job, method only", med["c_method"], med["c_method"] / med["a"], "runner's method: timing"))
        rows.append(
            (
                m,
                "(c) runner job, whole",
                med["c"],
                med["c"] / med["a"],
                f"incl. generation {med['c_generate']:.2f} s, spec, detectors, figures, json",
            )
        )
        rows.append((m, "(c) whole − generation", med["c"] - med["c_generate"], (med["c"] - med["c_generate"]) / med["a"], ""))
        if args.profile:
            _profile(f"(a) inseq direct, {m}", direct)
            _profile(f"(b) InseqMethod.attribute, {m}", via_method)
            _profile(f"(c) runner job, {m}", via_runner, top=45)

    if args.loo:
        rows.extend(_bench_loo(loaded, gen, args.reps))

    print(f"\nmedians of {args.reps} interleaved repetitions (CPU, {torch.get_num_threads()} threads)")
    print(f"{'method':<18} {'path':<30} {'median s':>9} {'ratio':>7}  note")
    for m, path, sec, ratio, note in rows:
        r = "1.00" if ratio is None else f"{ratio:.3f}"
        print(f"{m:<18} {path:<30} {sec:>9.3f} {r:>7}  {note}")


def _bench_loo(loaded: LoadedModel, gen: Any, reps: int) -> list[tuple[str, str, float, float | None, str]]:
    from reportgen_example_plugin.plugin import LeaveOneOut

    meth = LeaveOneOut()

    def run(bs: int) -> Any:
        ctx = AttributionContext(model=loaded, generation=gen, options=meth.options_model(batch_size=bs), seed=0, cache=Cache(None))
        return meth.attribute(ctx)

    one, many = run(1), run(16)
    diff = float(np.nanmax(np.abs(one.matrix - many.matrix)))
    t1: list[float] = []
    t16: list[float] = []
    for _ in range(reps):
        t1.append(_timed(lambda: run(1))[0])
        t16.append(_timed(lambda: run(16))[0])
    m1, m16 = statistics.median(t1), statistics.median(t16)
    k = len(gen.user_positions)
    print(f"\nexample.leave_one_out: {k} user tokens deleted; max |batch 1 − batch 16| = {diff:.2e}")
    return [
        ("leave_one_out", "batch_size=1 (baseline)", m1, None, f"{k + 1} forwards"),
        ("leave_one_out", "batch_size=16", m16, m16 / m1, f"{1 + -(-k // 16)} forwards"),
    ]


def _quiet(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


if __name__ == "__main__":
    main()
