"""Cost of rendering the HTML report as the attribution matrices grow.

Run: ``.venv/bin/python benchmarks/bench_html.py``. Builds synthetic runs (1 model, 1 prompt,
3 methods with n input × t output matrices), renders the whole report, and compares with a
baseline measured in the same run: ``plotly.io.to_html`` of the same three heatmaps alone
(what any Plotly report must pay). Prints time, size and ratios. The 20 000-cell heatmap cap
(``report.max_heatmap_cells``) bounds the figure JSON; the hover data (full matrix) is capped
at 100 000 cells.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import plotly.io as pio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from report_fixtures import (
    _spec,
    html_of,
)

from reportgen.data import AttributionResult, Generation, RunResult
from reportgen.figures import heatmap
from reportgen.render import PLOTLY_CONFIG, plotly_js

METHODS = ("saliency", "integrated_gradients", "attention")


def synthetic(n: int, t: int, seed: int = 0) -> RunResult:
    rng = np.random.default_rng(seed)
    spec = _spec(
        models=[{"id": "m", "source": "hf:x"}],
        prompts=[{"id": "p", "text": "x"}],
        methods=[{"method": m} for m in METHODS],
        narrative=[],
    )
    toks = [f" w{i}" for i in range(n)]
    outs = [f" o{j}" for j in range(t)]
    g = Generation(
        model_id="m",
        prompt_id="p",
        input_ids=tuple(range(n)),
        input_tokens=tuple(toks),
        input_special=tuple(i < 3 for i in range(n)),
        output_ids=tuple(range(t)),
        output_tokens=tuple(outs),
        prompt_text="x",
        response_text="y",
        step_scores={"probability": tuple(rng.uniform(0, 1, t)), "entropy": tuple(rng.uniform(0, 3, t))},
    )
    results = [
        AttributionResult(
            method=m,
            model_id="m",
            prompt_id="p",
            options={},
            input_tokens=toks,
            output_tokens=outs,
            matrix=rng.normal(size=(n, t)),
            signed=(m == "integrated_gradients"),
        )
        for m in METHODS
    ]
    return RunResult(spec=spec, spec_text="title: x\n", spec_path="x.yaml", generations=[g], results=results)


def timed(fn, repeat: int = 3) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    plotly_js()  # load the bundle once (cached), outside the timings
    print(f"{'n×t':>10} {'cells':>8} {'report s':>9} {'base s':>8} {'×base':>6} {'report MB':>10} {'base MB':>8} {'×base':>6}")
    for n, t in ((32, 16), (64, 32), (128, 64), (256, 128), (512, 256)):
        run = synthetic(n, t)
        tr, html = timed(lambda run=run: html_of(run, []))

        def baseline(run: RunResult = run) -> str:
            parts = []
            for r in run.results:
                fig, _ = heatmap(r.matrix, r.input_tokens, r.output_tokens, signed=r.signed, max_cells=20000)
                parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG))
            return str(plotly_js()) + "".join(parts)

        tb, base = timed(baseline)
        mr, mb = len(html.encode()) / 1e6, len(base.encode()) / 1e6  # type: ignore[union-attr]
        print(f"{n:>4}×{t:<5} {n * t:>8} {tr:>9.3f} {tb:>8.3f} {tr / tb:>6.2f} {mr:>10.2f} {mb:>8.2f} {mr / mb:>6.2f}")


if __name__ == "__main__":
    main()
