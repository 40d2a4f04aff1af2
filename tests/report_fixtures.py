"""A hand-built ``RunResult`` for renderer tests (HTML now, PDF later): ``make_run()``.

Two models × two prompts × four methods, seeded numpy matrices, one unavailable and one
failed method, per-token score vectors, findings of every severity, narrative sections
with raw HTML, nested provenance and a prompt that tries to inject markup and script.
Nothing here loads a model; building the run takes milliseconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reportgen.data import AttributionResult, FigureSpec, Finding, Generation, RunResult
from reportgen.spec import AuditSpec

#: Text that must only ever appear escaped in a report.
INJECT_SCRIPT = "</script><script>alert(1)</script>"
INJECT_IMG = "<img src=x onerror=alert(1)>"
INJECT_PROMPT = f"Summarise {INJECT_SCRIPT} and {INJECT_IMG} please & thanks"

SPEC_TEXT = f"""title: Quarterly attribution audit
description: Checks which prompt tokens drive the answers of two small models.
models:
  - id: smol
    source: embedded:smollm2-135m-instruct
  - id: tiny
    source: hf:tiny-llama
prompts:
  - id: capital
    text: What is the capital of France?
  - id: inject
    text: "{INJECT_PROMPT}"
methods:
  - method: saliency
  - method: integrated_gradients
  - method: attention
  - method: probabilistic
narrative:
  - title: Scope
    markdown: "We audit **two** models. <script>alert('md')</script>"
"""


def _spec(**overrides: Any) -> AuditSpec:
    d: dict[str, Any] = {
        "title": "Quarterly attribution audit",
        "description": "Checks which prompt tokens drive the answers of two small models.",
        "narrative": [
            {
                "title": "Scope",
                "markdown": "We audit **two** models on *two* prompts.\n\n"
                "<script>alert('md')</script> and <b>bold?</b>\n\n- item one\n- item two",
                "placement": "before",
            },
            {
                "title": "Conclusions",
                "markdown": "Nothing alarming. See [the anomalies](#anomalies) and [an external site](https://example.com).",
                "placement": "after",
            },
        ],
        "models": [
            {"id": "smol", "source": "embedded:smollm2-135m-instruct", "label": "SmolLM2-135M"},
            {"id": "tiny", "source": "hf:tiny-llama"},
        ],
        "prompts": [
            {"id": "capital", "text": "What is the capital of France?"},
            {"id": "inject", "text": INJECT_PROMPT},
        ],
        "methods": [
            {"method": "saliency"},
            {"method": "integrated_gradients", "options": {"n_steps": 8}},
            {"method": "attention"},
            {"method": "probabilistic"},
        ],
        "report": {"max_heatmap_cells": 20000},
    }
    d.update(overrides)
    return AuditSpec.model_validate(d)


def _generation(model_id: str, prompt_id: str, user_tokens: list[str], output_tokens: list[str], rng: np.random.Generator) -> Generation:
    tokens = ["<|im_start|>", "user", "\n", *user_tokens, "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]
    special = [True, True, True] + [False] * len(user_tokens) + [True] * 5
    t = len(output_tokens)
    return Generation(
        model_id=model_id,
        prompt_id=prompt_id,
        input_ids=tuple(range(100, 100 + len(tokens))),
        input_tokens=tuple(tokens),
        input_special=tuple(special),
        output_ids=tuple(range(500, 500 + t)),
        output_tokens=tuple(output_tokens),
        prompt_text="".join(user_tokens),
        response_text="".join(output_tokens),
        step_scores={
            "probability": tuple(float(x) for x in rng.uniform(0.2, 1.0, t)),
            "entropy": tuple(float(x) for x in rng.uniform(0.0, 3.0, t)),
        },
        settings={"max_new_tokens": 8, "do_sample": False},
        seconds=0.5,
    )


def _results(g: Generation, rng: np.random.Generator, attention_ok: bool) -> list[AttributionResult]:
    n, t = g.n, g.t
    base = {
        "model_id": g.model_id,
        "prompt_id": g.prompt_id,
        "input_tokens": list(g.input_tokens),
        "output_tokens": list(g.output_tokens),
    }
    out = [
        AttributionResult(
            method="saliency", options={}, matrix=rng.uniform(0, 1, (n, t)), matrix_label="|∇| (l2)", timings={"attribute": 1.25}, **base
        ),
        AttributionResult(
            method="integrated_gradients",
            options={"n_steps": 8},
            matrix=rng.normal(0, 1, (n, t)),
            matrix_label="IG",
            signed=True,
            timings={"attribute": 3.5},
            **base,
        ),
    ]
    if attention_ok:
        m = rng.uniform(0, 1, (n, t))
        m[0, 0] = np.nan  # a cell the method leaves undefined
        out.append(AttributionResult(method="attention", options={}, matrix=m, matrix_label="mean attention", **base))
    else:
        out.append(
            AttributionResult(
                method="attention",
                options={},
                status="unavailable",
                reason="attention needs attn_implementation='eager'",
                **base,
            )
        )
    user = g.user_positions
    as_ = [None] * n
    hp = [None] * n
    for i in user:
        as_[i] = float(rng.normal(0, 0.5))
        hp[i] = float(rng.uniform(0, 4))
    if g.model_id == "tiny" and g.prompt_id == "inject":
        out.append(
            AttributionResult(method="probabilistic", options={}, status="failed", reason="RuntimeError: sampler <b>crashed</b>", **base)
        )
    else:
        out.append(
            AttributionResult(
                method="probabilistic",
                options={},
                scores={"attribution_score": as_, "entropy_prompt": hp},
                signed=True,
                **base,
            )
        )
    return out


def make_run(*, findings: bool = True, models: int = 2, seed: int = 0) -> RunResult:
    """A complete hand-made run; ``models=1`` drops the second model, ``findings=False`` all findings."""
    rng = np.random.default_rng(seed)
    spec = _spec()
    if models == 1:
        spec = _spec(models=[{"id": "smol", "source": "embedded:smollm2-135m-instruct", "label": "SmolLM2-135M"}])
    prompts = {
        "capital": (["What", " is", " the", " capital", " of", " France", "?"], [" The", " capital", " is", " Paris", "."]),
        "inject": (
            [
                "Summ",
                "arise",
                " </script>",
                "<script>",
                "alert(1)",
                "</script>",
                " and",
                " <img src=x onerror=alert(1)>",
                " please",
                " &",
                " thanks",
            ],
            [" I", " cannot", " run", " <script>", " code", "."],
        ),
    }
    gens: list[Generation] = []
    results: list[AttributionResult] = []
    for m in spec.models:
        for p in spec.prompts:
            user, outt = prompts[p.id]
            if m.id == "tiny" and p.id == "capital":
                outt = [" Paris", "."]  # a different (shorter) response
            g = _generation(m.id, p.id, user, outt, rng)
            gens.append(g)
            results.extend(_results(g, rng, attention_ok=(m.id == "smol")))
    fs: list[Finding] = []
    if findings:
        fs = [
            Finding(
                detector="kl_outlier",
                severity="medium",
                model_id="smol",
                prompt_id="capital",
                method="probabilistic",
                positions=(8,),
                token=" France",
                evidence={"kl": 2.345678, "threshold": 1.5, "nested": {"z": 4.2}},
                message="KL divergence is an outlier at near-zero AS.",
                suggestion="Check whether the token is redundant.",
                title="KL outlier at ' France'",
            ),
            Finding(
                detector="preferred_replacement",
                severity="high",
                model_id="smol",
                prompt_id="inject",
                method="probabilistic",
                positions=(5,),
                token="<script>",
                evidence={"attribution_score": -1.2, "candidates": ["<b>x</b>", "code"]},
                message=f"The model prefers other tokens over {INJECT_IMG}.",
                suggestion="Replace '<script>' with plain words.",
                title="Preferred replacement for <script>",
            ),
            Finding(
                detector="noise_token",
                severity="info",
                model_id="tiny",
                prompt_id="capital",
                method="probabilistic",
                positions=(4,),
                token=" is",
                evidence={"attribution_score": 0.001, "entropy_prompt": 3.9},
                message="Uncertain: the interval straddles the threshold.",
                title="Noise token ' is'",
            ),
        ]
    return RunResult(
        spec=spec,
        spec_text=SPEC_TEXT,
        spec_path="examples/test/audit.yaml",
        generations=gens,
        results=results,
        findings=fs,
        provenance={
            "python": "3.11.9",
            "platform": "Linux-x86_64",
            "device": "cpu",
            "seed": 0,
            "spec_sha256": "ab" * 32,
            "packages": {"torch": "2.13.0", "transformers": "5.23.0", "reportgen": "0.1.0"},
            "models": {
                "smol": {"source": "embedded:smollm2-135m-instruct", "file_sha256": "cd" * 32, "n_params": 134515008},
                "tiny": {"source": "hf:tiny-llama", "revision": None},
            },
        },
        timings={"load_models": 12.5, "generate": 1.2, "attribute": 65.0, "render": 0.3},
        created_at="2025-01-02T03:04:05+00:00",
        completed_at="2025-01-02T03:05:15+00:00",
    )


def make_figures() -> list[FigureSpec]:
    """Plugin-style figures for each section kind (one carries injected text)."""
    import plotly.graph_objects as go

    def bar(title: str) -> go.Figure:
        return go.Figure(go.Bar(x=["a", "b"], y=[1, 2]), layout={"title": title})

    return [
        FigureSpec(id="summary-overview", title="Overview", caption="A summary figure.", figure=bar("overview"), section="summary"),
        FigureSpec(
            id="pas-as-smol-inject",
            title="AS per token",
            caption=f"Caption with {INJECT_SCRIPT}",
            figure=bar(INJECT_SCRIPT),
            section="prompt",
            model_id="smol",
            prompt_id="inject",
            order=40,
        ),
        FigureSpec(id="anomaly-scatter", title="Anomalies", caption="", figure=bar("anoms"), section="anomalies"),
    ]


#: What a registry with the PAS and DBSA families installed says its detectors read.
DETECTORS: dict[str, tuple[str, ...]] = {
    "dbsa_significant": ("dbsa",),
    "kl_outlier": ("probabilistic",),
    "noise_token": ("probabilistic",),
    "preferred_replacement": ("probabilistic",),
}


#: Method descriptions as the registry gives them (what the report says about each method).
METHODS: dict[str, str] = {
    "saliency": "Gradient magnitude of the target log-probability w.r.t. input embeddings",
    "integrated_gradients": "Path-integrated gradients from a baseline",
    "attention": "Attention weights, averaged over heads and layers",
    "probabilistic": "Probabilistic Attribution Score per input token, in nats",
}


def render_context(
    run: RunResult, figures: list[FigureSpec] | None = None, detectors: dict[str, tuple[str, ...]] | None = None, pm: Any = None
) -> Any:
    """The host's RenderContext for ``run`` without a plugin registry (the built-in Jinja env)."""
    from reportgen.plugin_api import RenderContext
    from reportgen.render import make_jinja_env

    return RenderContext(
        run=run,
        figures=tuple(figures or ()),
        env=make_jinja_env(pm),
        detectors=DETECTORS if detectors is None else detectors,
        methods=METHODS,
    )


def html_of(run: RunResult, figures: list[FigureSpec] | None = None, detectors: dict[str, tuple[str, ...]] | None = None) -> str:
    from reportgen_plugins.renderers.html import render_html

    return render_html(render_context(run, figures, detectors))
