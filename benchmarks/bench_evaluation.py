"""Cost of the faithfulness scorecard on SmolLM2-135M-Instruct.

1. Perturbed forwards per second. The quickstart prompt (chat template, greedy response of
   ``--tokens`` tokens); every non-empty subset of its user tokens perturbed (replacement by a
   single space, and deletion). Timed in the same run, interleaved ``--reps`` times:

   (a) plain     the same perturbed sequences [x̃, y], batched ``--batch`` at a time, one forward
                 each with full logits and no cache (right-padded for deletion): the baseline;
   (b) prefix    ``PrefixBatchScorer.score``: sorted by first changed token, the original's KV
                 cache up to it shared, logits only where response tokens are predicted;
   (c) naive     one forward per sequence (``score_naive``), on the first ``--naive`` sequences.

   Prints forwards per second, ratios against (a) and the largest difference between them.

2. ``--scorecard``: the scorecard's cost relative to the attribution methods it scores: one
   audit (cache off) of the quickstart prompt(s) with ``--methods`` and the default
   ``evaluation:`` block; ratio = the runner's ``evaluate:`` time / the sum of its ``method:``
   times. Run::

    .venv/bin/python benchmarks/bench_evaluation.py [--tokens 12] [--reps 3] [--batch 64] [--threads N]
        [--scorecard] [--prompts capital translate] [--methods inseq.saliency inseq.input_x_gradient ...]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

PROMPTS = {
    "capital": 'text: "What is the capital of France?"',
    "translate": 'messages:\n      - role: user\n        content: "Translate to French: the cat sleeps."',
}


def plain_batched(model: Any, seqs: list[list[int]], y: list[int], batch: int) -> np.ndarray:
    """Baseline: full forwards of [x̃, y], right-padded, full logits, no shared cache."""
    t = len(y)
    out = np.empty((len(seqs), t))
    tgt = torch.tensor(y)
    for s in range(0, len(seqs), batch):
        chunk = seqs[s : s + batch]
        rows = [c + y for c in chunk]
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        with torch.no_grad():
            logits = model(ids, attention_mask=mask).logits.float()
        for i, c in enumerate(chunk):
            lg = logits[i, len(c) - 1 : len(c) - 1 + t]
            out[s + i] = (lg.gather(-1, tgt[:, None])[:, 0] - lg.logsumexp(-1)).double().numpy()
    return out


def forwards_per_second(args: argparse.Namespace) -> None:
    from reportgen.generate import generate
    from reportgen_plugins.evaluation.perturb import Perturbation, neutral_token
    from reportgen_plugins.evaluation.scorer import PrefixBatchScorer
    from reportgen_plugins.models.loaders import EmbeddedLoader

    t0 = time.perf_counter()
    spec = SimpleNamespace(
        id="smollm2", source="embedded:smollm2-135m-instruct", dtype="float32", attn_implementation="sdpa", chat_template="auto"
    )
    loaded = EmbeddedLoader().load(spec, base_dir=".", device="cpu")
    print(f"load: {time.perf_counter() - t0:.1f} s, torch threads {torch.get_num_threads()}")
    prompt = SimpleNamespace(id="capital", text="What is the capital of France?", messages=None)
    settings = SimpleNamespace(max_new_tokens=args.tokens, do_sample=False, temperature=1.0, top_p=1.0, model_dump=dict)
    g = generate(loaded, prompt, settings, seed=0)
    user = g.user_positions
    print(f"prompt n={g.n} tokens ({len(user)} user), response t={g.t}: {g.response_text!r}")
    space, _ = neutral_token(loaded.tokenizer)
    ops = {
        "replace": Perturbation("replace", "neutral", dict.fromkeys(user, space)),
        "delete": Perturbation("delete", "", dict.fromkeys(user)),
    }
    subsets = [c for r in range(1, len(user) + 1) for c in itertools.combinations(user, r)]
    print(f"{len(subsets)} perturbed prompts per operator (every non-empty subset of the user tokens), batch {args.batch}\n")
    head = f"{'operator':<9} {'(a) plain /s':>13} {'(b) prefix /s':>14} {'b vs a':>7} {'(c) naive /s':>13} {'a vs c':>7}"
    print(f"{head} {'max |b−a|':>10} {'max |b−c|':>10}")
    for name, op in ops.items():
        seqs = [op.apply(g.input_ids, list(s)) for s in subsets]
        scorer = PrefixBatchScorer(loaded.model, g.input_ids, g.output_ids, batch_size=args.batch)
        ta, tb = [], []
        a = b = np.empty(0)
        for _ in range(args.reps):
            t1 = time.perf_counter()
            a = plain_batched(loaded.model, seqs, list(g.output_ids), args.batch)
            ta.append(time.perf_counter() - t1)
            t1 = time.perf_counter()
            b = scorer.score(seqs)
            tb.append(time.perf_counter() - t1)
        few = seqs[: args.naive]
        t1 = time.perf_counter()
        c = scorer.score_naive(few)
        tc = time.perf_counter() - t1
        ra, rb, rc = len(seqs) / statistics.median(ta), len(seqs) / statistics.median(tb), len(few) / tc
        print(
            f"{name:<9} {ra:>13.1f} {rb:>14.1f} {rb / ra:>6.2f}× {rc:>13.1f} {ra / rc:>6.2f}× "
            f"{np.abs(b - a).max():>10.2e} {np.abs(b[: len(few)] - c).max():>10.2e}"
        )


def scorecard_cost(args: argparse.Namespace) -> None:
    import reportgen_plugins.evaluation as evaluation_plugin
    from reportgen.plugins import Registry, get_plugin_manager
    from reportgen.runner import RunOptions, run_audit

    pm = get_plugin_manager()
    if not pm.is_registered(evaluation_plugin):
        pm.register(evaluation_plugin, name="evaluation")
    registry = Registry(pm)
    prompts = "\n".join(f"  - id: {p}\n    {PROMPTS[p]}" for p in args.prompts)
    methods = "\n".join(f"  - method: {m}" + ("\n    options: {mode: fast}" if m == "probabilistic" else "") for m in args.methods)
    spec_text = textwrap.dedent(
        """\
        title: scorecard cost
        models:
          - id: smollm2
            source: embedded:smollm2-135m-instruct
        prompts:
        {prompts}
        generation: {{max_new_tokens: {tokens}}}
        methods:
        {methods}
        evaluation: {{}}
        report: {{formats: [json]}}
        cache: false
        """
    ).format(prompts=prompts, methods=methods, tokens=args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.yaml"
        path.write_text(spec_text, "utf-8")
        run, _ = run_audit(path, RunOptions(output=str(Path(tmp) / "out"), use_cache=False), registry)
    methods_s = sum(v for k, v in run.timings.items() if k.startswith("method:"))
    evals = {k: v for k, v in run.timings.items() if k.startswith("evaluate:")}
    (ev,) = run.evaluations
    print(f"\nscorecard on {len(args.prompts)} prompt(s), methods: {', '.join(args.methods)}")
    for k, v in run.timings.items():
        if k.startswith(("method:", "evaluate:", "load:", "generate:")):
            print(f"  {k:<50} {v:8.1f} s")
    total_eval = sum(evals.values())
    print(
        f"  perturbed prompts scored: {ev.details.get('forwards')}; bounds: "
        + "; ".join(sorted({str(d.get("bounds")) for d in ev.details.get("prompts", {}).values()}))
    )
    print(f"scorecard / methods: {total_eval:.1f} s / {methods_s:.1f} s = {total_eval / methods_s:.2f}×")
    if ev.recommendation is not None:
        print(f"recommendation: {ev.recommendation.headline}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--naive", type=int, default=16, help="sequences timed one forward each")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--scorecard", action="store_true", help="also time a whole scorecard against its methods")
    ap.add_argument("--no-forwards", action="store_true", help="skip part 1")
    ap.add_argument("--prompts", nargs="+", default=["capital", "translate"], choices=sorted(PROMPTS))
    ap.add_argument("--methods", nargs="+", default=["inseq.saliency", "inseq.input_x_gradient", "jacobian.semantic"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_forwards:
        forwards_per_second(args)
    if args.scorecard:
        scorecard_cost(args)


if __name__ == "__main__":
    main()
