"""The same audit run by the local executor and by the ray executor with 1 and 2 workers.

8 prompts × (generation + inseq.saliency + inseq.input_x_gradient) on a tiny random Llama
(tests/conftest.py), ``--tokens`` new tokens, cache off; ray splits them into
8 / ``--prompts-per-task`` tasks. Each Ray cluster is local (``ray.init(num_cpus=N)``, no
dashboard): N one-CPU workers, one torch thread each. Timed in one process, best of ``--reps``:

  local          run_audit in this process with one torch thread, as a worker has: the baseline
  local, N thr   the same with torch's default thread count
  ray×1          ray executor, 1 worker (after one untimed run that starts the workers)
  ray×2          ray executor, 2 workers

Prints seconds, ratios against local, the seconds outside the jobs (wall time less the jobs'
own generate/method/load timings: planning, scheduling, transfers, detectors, the json report),
the untimed costs (cluster start, the first run's worker imports) and the scheduling overhead per
task: the round trip of an empty task, and (ray×1 − local) outside the jobs / tasks. Run::

    .venv/bin/python benchmarks/bench_executor.py [--reps 2] [--tokens 8] [--prompts-per-task 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import ray
import torch

from reportgen.plugins import Registry
from reportgen.runner import RunOptions, run_audit

PROMPTS = [
    "Is the sky blue?",
    "Name a colour.",
    "Count to three.",
    "What is the capital of France?",
    "Translate to French: the cat sleeps.",
    "Write a haiku about rain.",
    "Why is the sea salty?",
    "Spell 'necessary'.",
]


def spec_text(tokens: int, prompts_per_task: int) -> str:
    prompts = "".join(f'  - id: p{i}\n    text: "{t}"\n' for i, t in enumerate(PROMPTS, 1))
    return (
        'title: executor benchmark\nmodels:\n  - id: tiny\n    source: "tiny:3"\n'
        f"prompts:\n{prompts}generation: {{max_new_tokens: {tokens}}}\n"
        "methods:\n  - method: inseq.saliency\n  - method: inseq.input_x_gradient\n"
        f"report:\n  formats: [json]\ncache: false\nexecutor: {{kind: ray, prompts_per_task: {prompts_per_task}}}\n"
    )


def worker_registry() -> Registry:
    """Installed plugins plus the tests' ``tiny:`` loader (built here and in every Ray worker; this
    script's functions reach a worker by value, so the function imports what it uses itself)."""
    import importlib.util

    from conftest import TinyLoader
    from transformers import AutoTokenizer

    from reportgen import hookimpl
    from reportgen.plugins import Registry, get_plugin_manager
    from reportgen_plugins.models.loaders import EMBEDDED

    entry = EMBEDDED["smollm2-135m-instruct"]
    found = importlib.util.find_spec(entry["module"])
    folder = next(iter(found.submodule_search_locations or [])) if found else ""
    loader = TinyLoader(AutoTokenizer.from_pretrained(folder, gguf_file=entry["file"]))

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="bench-tiny")
    return Registry(pm)


Timing = tuple[float, float]  # (wall seconds, seconds outside the jobs' own generate/method/load timings)


def best(reps: int, fn: Callable[[], Timing]) -> Timing:
    return min(fn() for _ in range(reps))


def round_trip(n: int = 50) -> float:
    """Seconds per empty task, submitted and fetched one after the other on a warm worker."""
    noop = ray.remote(lambda: None)
    ray.get(noop.remote())
    t0 = time.perf_counter()
    for _ in range(n):
        ray.get(noop.remote())
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--prompts-per-task", type=int, default=2)
    args = ap.parse_args()
    tasks = -(-len(PROMPTS) // args.prompts_per_task)
    registry = worker_registry()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "audit.yaml"
        spec.write_text(spec_text(args.tokens, args.prompts_per_task), encoding="utf-8")

        def audit(kind: Literal["local", "ray"]) -> Timing:
            t0 = time.perf_counter()
            run, _ = run_audit(spec, RunOptions(output=str(Path(tmp) / kind), executor=kind, worker_registry=worker_registry), registry)
            wall = time.perf_counter() - t0
            failed = [r for r in run.results if r.status != "ok"]
            if failed:
                raise SystemExit(f"{kind}: {len(failed)} job(s) failed: {failed[0].reason}")
            return wall, wall - sum(v for k, v in run.timings.items() if k.split(":", 1)[0] in ("generate", "method", "load"))

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as a one-CPU Ray task has
        audit("local")  # warm-up: imports, the tokenizer
        rows = {"local": best(args.reps, lambda: audit("local"))}
        torch.set_num_threads(threads)
        rows[f"local, {threads} thr"] = best(args.reps, lambda: audit("local"))
        untimed: dict[str, tuple[float, float]] = {}
        noop_s = 0.0
        for workers in (1, 2):
            t0 = time.perf_counter()
            path = os.pathsep.join([str(REPO), str(REPO / "tests")])
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING", runtime_env={"env_vars": {"PYTHONPATH": path}})
            start = time.perf_counter() - t0
            first, _ = audit("ray")
            rows[f"ray×{workers}"] = best(args.reps, lambda: audit("ray"))
            untimed[f"ray×{workers}"] = (start, first)
            if workers == 1:
                noop_s = round_trip()
            ray.shutdown()
    base, base_out = rows["local"]
    print(f"8 prompts × 3 jobs on tiny:3, {args.tokens} new tokens, {tasks} tasks of {args.prompts_per_task} prompts, best of {args.reps}")
    print(f"{'executor':14} {'seconds':>8} {'vs local':>9} {'outside jobs':>13}   untimed: cluster start, first run")
    for name, (secs, outside) in rows.items():
        first_run = "   {:.1f} s, {:.1f} s".format(*untimed[name]) if name in untimed else ""
        alone = "(parallel)" if name == "ray×2" else f"{outside:.2f}"  # jobs' seconds overlap: no meaningful difference
        print(f"{name:14} {secs:8.2f} {secs / base:9.2f} {alone:>13}{first_run}")
    print(f"empty task round trip: {noop_s * 1000:.1f} ms")
    print(f"overhead per task, outside the jobs (ray×1 − local) / {tasks} tasks: {(rows['ray×1'][1] - base_out) / tasks:.2f} s")


if __name__ == "__main__":
    main()
