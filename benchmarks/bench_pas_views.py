"""Cost of the PAS detectors and figures as the prompt grows.

Run: ``.venv/bin/python benchmarks/bench_pas_views.py``. Builds synthetic ``probabilistic``
results of n scored tokens (random but fixed numbers, full candidate lists and replacement
statistics), then times all five detectors and the five figures, and measures the figures'
JSON size. Ratios are against the n = 16 baseline measured in the same run.
"""

from __future__ import annotations

import math
import random
import time

from reportgen.data import AttributionResult, Generation, RunResult
from reportgen_plugins.pas.detectors import DETECTORS
from reportgen_plugins.pas.views import PASViews


def synthetic(n: int, seed: int = 0) -> tuple[Generation, AttributionResult]:
    rnd = random.Random(seed)
    toks = [f" w{i}" for i in range(n)]
    AS = [rnd.gauss(0, 1.0) for _ in range(n)]
    hp = [abs(rnd.gauss(3, 1.5)) for _ in range(n)]
    scores = {
        "attribution_score": AS,
        "entropy_prompt": hp,
        "entropy_prompt_response": [max(0.0, h - abs(rnd.gauss(0.5, 0.7))) for h in hp],
        "kl_posterior_prior": [abs(rnd.gauss(0.2, 0.3)) for _ in range(n)],
        "kl_prior_posterior": [abs(rnd.gauss(0.2, 0.3)) for _ in range(n)],
        "log_prior_original": [math.log(0.3)] * n,
        "log_posterior_original": [math.log(0.3) + a for a in AS],
        "replacement_entropy": [abs(rnd.gauss(1, 0.5)) for _ in range(n)],
        "original_response_pct": [rnd.uniform(0, 100) for _ in range(n)],
    }
    cands = {
        str(k): {w: [{"token": f" c{j}", "id": 1000 + j, "p": 0.5 / (j + 1)} for j in range(5)] for w in ("prior", "posterior")}
        for k in range(n)
    }
    repl = {
        str(k): {
            "count": 8,
            "original_token_count": 1,
            "original_response_count": 2,
            "distinct_responses": 3,
            "responses": [{"candidate": f" c{j}", "response": f"r{j % 3}"} for j in range(8)],
        }
        for k in range(n)
    }
    gen = Generation(
        model_id="m",
        prompt_id="p",
        input_ids=tuple(range(n)),
        input_tokens=tuple(toks),
        input_special=(False,) * n,
        output_ids=(1,),
        output_tokens=("x",),
        prompt_text="".join(toks),
        response_text="r0",
    )
    res = AttributionResult(
        method="probabilistic",
        model_id="m",
        prompt_id="p",
        options={},
        input_tokens=toks,
        output_tokens=["x"],
        scores=scores,
        intervals={"attribution_score": [[a - 0.2, a + 0.2] for a in AS]},
        details={
            "candidates": cands,
            "replacement": repl,
            "vocabulary_size": 49152,
            "interval_kind": {str(k): "estimate" for k in range(n)},
        },
    )
    return gen, res


def measure(n: int, reps: int = 3) -> tuple[float, float, int, int]:
    gen, res = synthetic(n)
    run = RunResult(spec=None, spec_text="", spec_path="", generations=[gen], results=[res])
    best_d = best_f = math.inf
    nf = size = 0
    for _ in range(reps):
        t = time.perf_counter()
        nf = sum(len(cls().detect(res, gen, cls.options_model())) for cls in DETECTORS)
        best_d = min(best_d, time.perf_counter() - t)
        t = time.perf_counter()
        figs = PASViews().figures(run)
        size = sum(len(f.figure.to_json()) for f in figs)
        best_f = min(best_f, time.perf_counter() - t)
    return best_d, best_f, nf, size


def main() -> None:
    base = measure(16)
    print(f"{'n':>5} {'detect ms':>10} {'×base':>6} {'figures ms':>11} {'×base':>6} {'findings':>9} {'JSON kB':>8} {'×base':>6}")
    for n in (16, 64, 256, 1024):
        d, f, nf, size = base if n == 16 else measure(n)
        print(
            f"{n:>5} {d * 1e3:>10.2f} {d / base[0]:>6.1f} {f * 1e3:>11.1f} {f / base[1]:>6.1f} {nf:>9} "
            f"{size / 1e3:>8.1f} {size / base[3]:>6.1f}"
        )


if __name__ == "__main__":
    main()
