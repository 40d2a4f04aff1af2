"""Synthetic runs of any size for the HTML report's scale tests and benchmark (no model).

``synthetic_run(prompts=200, n=24, t=12)``: one model, ``prompts`` prompts, three methods
(saliency and attention unsigned, integrated gradients signed) with seeded n × t matrices, and
one finding per tenth prompt so the index has something to sort.
"""

from __future__ import annotations

import numpy as np
from report_fixtures import _spec

from reportgen.data import AttributionResult, Finding, Generation, RunResult

METHODS = ("saliency", "integrated_gradients", "attention")
SPECIAL = 3  # leading template tokens per prompt


def synthetic_run(prompts: int = 1, n: int = 24, t: int = 12, seed: int = 0, methods: tuple[str, ...] = METHODS) -> RunResult:
    rng = np.random.default_rng(seed)
    ids = [f"p{k:03d}" for k in range(prompts)]
    spec = _spec(
        models=[{"id": "m", "source": "hf:x"}],
        prompts=[{"id": pid, "text": f"prompt {pid}"} for pid in ids],
        methods=[{"method": m} for m in methods],
        narrative=[],
        report={"max_heatmap_cells": 20000},
    )
    toks = [f" w{i}" for i in range(n)]
    outs = [f" o{j}" for j in range(t)]
    gens, results, findings = [], [], []
    for k, pid in enumerate(ids):
        gens.append(
            Generation(
                model_id="m",
                prompt_id=pid,
                input_ids=tuple(range(n)),
                input_tokens=tuple(toks),
                input_special=tuple(i < SPECIAL for i in range(n)),
                output_ids=tuple(range(t)),
                output_tokens=tuple(outs),
                prompt_text=f"prompt {pid}",
                response_text="".join(outs),
                step_scores={"probability": tuple(rng.uniform(0, 1, t)), "entropy": tuple(rng.uniform(0, 3, t))},
            )
        )
        for m in methods:
            signed = m == "integrated_gradients"
            a = rng.normal(size=(n, t)) if signed else rng.uniform(0, 1, (n, t))
            results.append(
                AttributionResult(
                    method=m,
                    model_id="m",
                    prompt_id=pid,
                    options={},
                    input_tokens=toks,
                    output_tokens=outs,
                    matrix=a,
                    signed=signed,
                )
            )
        if k % 10 == 0:
            findings.append(
                Finding(
                    detector="noise_token",
                    severity=("high", "medium", "low", "info")[(k // 10) % 4],
                    model_id="m",
                    prompt_id=pid,
                    method=methods[0],
                    positions=(SPECIAL,),
                    token=toks[SPECIAL],
                    evidence={"k": k},
                    message="synthetic finding",
                    title=f"Finding on {pid}",
                )
            )
    return RunResult(spec=spec, spec_text="title: synthetic\n", spec_path="x.yaml", generations=gens, results=results, findings=findings)
