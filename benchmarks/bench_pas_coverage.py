"""Coverage of the PAS fast-mode AS intervals against the exact AS (seeded, many prompts/positions/seeds).

    .venv/bin/python benchmarks/bench_pas_coverage.py [--seeds 40] [--prompts 8] [--smollm N]
        [--subset 512] [--cache DIR] [--only TEXT]

Fast mode reports, per position, an AS interval of one of three kinds: ``exact`` (the whole
vocabulary was evaluated), ``certified`` (bounds that hold for any value of the unevaluated
candidates) or ``estimate`` (an importance-sampled estimate of the unevaluated tail with a 95 %
interval). Certified and exact intervals contain the exact AS by construction; the question is
whether the estimate intervals keep their nominal 95 %.

Every setting runs the method's own ``_fast`` on a table-backed scorer: the exact ℓ values of every
candidate are computed once per position by the real shared-prefix scorer and then served from the
table, so each of the many seeded runs costs microseconds and sees exactly the numbers the model
would give. The oracle is the exact AS over the same candidate vocabulary (exact mode; equal to
brute-force enumeration of every sequence on the tiny models, see tests/test_probabilistic.py, and
re-checked here on the V = 6 model).

Settings:

* ``tiny V=…``: tiny random Llamas (2 layers, hidden 16) with the whole vocabulary enumerable;
  prompts are random token strings after a BOS, responses greedy (3 tokens). ``init`` is the
  initialiser scale (larger = peakier next-token distributions, harder tails).
* ``smollm2 sub=…`` (``--smollm N``): SmolLM2-135M-Instruct on the quickstart prompts, N positions
  per prompt, over a restricted vocabulary per position (the top half by next-token prior and a seeded
  random half) on which exact AS is cheap; options are the CPU defaults scaled to the subset.

Labels: ``V`` vocabulary size, ``S`` ``max_candidates``, ``m`` ``tail_samples``, ``nb`` ``neighbours``
(0 unless given), ``pool`` ``bound_pool`` (0, the CPU default, unless given), ``init`` as above.

Columns: settings; ``pos`` scored positions; ``runs`` position × seed runs that reported an estimate;
``nominal``; ``cover`` observed coverage of the estimate intervals; ``worst`` the lowest coverage of
any single position (over its seeds); ``med w`` the median estimate-interval width (nats);
``zero w`` estimate intervals narrower than 0.0005 nats (printed as 0.000); ``min w`` the narrowest;
``exact`` and ``cert`` the shares of runs reported as exact and as certified (the rest are
estimates); ``eval`` mean candidates evaluated exactly per
position (the cost: one teacher-forced forward each); ``max miss`` how far (nats) the farthest
missed exact AS lay outside its estimate interval; ``med err`` the median |AS reported − exact AS|
over all runs.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import transformers

from reportgen_plugins.pas.engine import PrefixScorer
from reportgen_plugins.pas.estimators import logsumexp, position_stats
from reportgen_plugins.pas.method import PASOptions, ProbabilisticMethod

NOMINAL = 0.95
#: Estimate intervals narrower than this (nats) print as 0.000 and count as zero-width.
ZERO_WIDTH = 5e-4


class TableScorer:
    """A :class:`PrefixScorer` whose ``score``/``next_token_logp`` are served from exact tables.

    The first request at a position computes the whole candidate vocabulary once (real forwards);
    every later request is a lookup, so repeated seeded runs are cheap and see identical values.
    """

    def __init__(self, scorer: PrefixScorer, vocab: dict[int, npt.NDArray[np.int64]]) -> None:
        self.sc = scorer
        self.x, self.n, self.t, self.device = scorer.x, scorer.n, scorer.t, scorer.device
        self.vocab = vocab
        self._rows: dict[int, dict[int, npt.NDArray[np.float64]]] = {}
        self._next: dict[int, dict[int, float]] = {}

    def table(self, k: int) -> dict[int, npt.NDArray[np.float64]]:
        if k not in self._rows:
            ids = self.vocab[k]
            rows = self.sc.score(k, ids, 64)
            self._rows[k] = {int(v): rows[i] for i, v in enumerate(ids)}
        return self._rows[k]

    def cached_table(self, k: int, folder: str | None, key: str) -> None:
        """Compute the table at k, or read it from ``folder`` (written there the first time)."""
        if folder is None:
            self.table(k)
            return
        path = Path(folder) / f"{key}-k{k}-n{len(self.vocab[k])}.npz"
        if path.exists():
            data = np.load(path)
            if np.array_equal(data["ids"], self.vocab[k]):
                self._rows[k] = {int(v): row for v, row in zip(data["ids"], data["rows"], strict=True)}
                return
        tab = self.table(k)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, ids=self.vocab[k], rows=np.stack([tab[int(v)] for v in self.vocab[k]]))

    def prior_logp(self, k: int) -> npt.NDArray[np.float64]:
        return self.sc.prior_logp(k)

    def embedding_similarity(self, token: int, ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return self.sc.embedding_similarity(token, ids)

    def default_batch_size(self, k: int) -> int:
        return 64

    def score(self, k: int, cands: Sequence[int] | npt.NDArray[np.int64], bs: int | None = None) -> npt.NDArray[np.float64]:
        tab = self.table(k)
        return np.stack([tab[int(v)] for v in cands]) if len(cands) else np.empty((0, self.t + 1))

    def next_token_logp(self, k: int, cands: Sequence[int] | npt.NDArray[np.int64], bs: int | None = None) -> npt.NDArray[np.float64]:
        if k not in self._next:
            ids = self.vocab[k]
            self._next[k] = dict(zip((int(v) for v in ids), self.sc.next_token_logp(k, ids, 64), strict=True))
        return np.array([self._next[k][int(v)] for v in cands])


@dataclass
class Case:
    """One scored position: the scorer, its candidate vocabulary and the exact AS over it."""

    scorer: TableScorer
    k: int
    vocab: npt.NDArray[np.int64]
    exact: float


@dataclass
class Row:
    setting: str
    positions: int
    runs: int = 0
    covered: int = 0
    widths: list[float] = field(default_factory=list)
    zero: int = 0
    certified: int = 0
    exact: int = 0
    total: int = 0
    evaluated: list[int] = field(default_factory=list)
    per_position: list[float] = field(default_factory=list)
    seconds: float = 0.0
    misses: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)


def tiny_llama(vocab: int, seed: int, init: float) -> Any:
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        max_position_embeddings=64,
        initializer_range=init,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    model = transformers.LlamaForCausalLM(cfg)
    model.eval()  # type: ignore[no-untyped-call]
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def greedy(model: Any, x: list[int], t: int) -> list[int]:
    seq = list(x)
    for _ in range(t):
        seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(x) :]


def brute_force_as(model: Any, x: list[int], y: list[int], k: int, vocab: int) -> float:
    """AS_k = log P(y|x) − log P(x_-k, y)/P(x_-k) by enumerating every sequence after x_0."""
    n, length = len(x), len(x) + len(y)
    seqs = np.array([(x[0], *s) for s in itertools.product(range(vocab), repeat=length - 1)])
    with torch.no_grad():
        logits = model(torch.tensor(seqs)).logits[:, :-1].double()
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(seqs[:, 1:])[..., None])[..., 0].sum(1).numpy()
    others = [i for i in range(1, n) if i != k]
    m_prompt = np.all(seqs[:, others] == np.array(x)[others], axis=1)
    m_y = np.all(seqs[:, n:] == np.array(y), axis=1)
    m_x = np.all(seqs[:, 1:n] == np.array(x)[1:], axis=1)
    d = logsumexp(lp[m_prompt & m_y]) - logsumexp(lp[m_prompt])
    a_num = logsumexp(lp[m_x & m_y]) - logsumexp(lp[m_x])
    return float(a_num - d)


def tiny_cases(vocab: int, init: float, prompts: int, n: int, t: int, seed: int) -> list[Case]:
    cases: list[Case] = []
    rng = np.random.default_rng(seed)
    for p in range(prompts):
        model = tiny_llama(vocab, seed=1000 * seed + p, init=init)
        x = [0] + [int(v) for v in rng.integers(2, vocab, size=n - 1)]
        y = greedy(model, x, t)
        sc = PrefixScorer(model, x, y)
        ids = np.arange(vocab, dtype=np.int64)
        tab = TableScorer(sc, dict.fromkeys(range(1, n), ids))
        for k in range(1, n):
            ex = position_stats(tab.score(k, ids), x[k]).attribution_score
            if vocab <= 6 and p == 0:
                bf = brute_force_as(model, x, y, k, vocab)
                assert abs(bf - ex) < 1e-6, (bf, ex)
            cases.append(Case(tab, k, ids, ex))
    return cases


def smollm_cases(per_prompt: int, subset: int, cache: str | None) -> list[Case]:
    from reportgen.generate import tokenize_with_roles
    from reportgen_plugins.models.loaders import embedded_file

    gguf = embedded_file("smollm2-135m-instruct")
    folder, fn = str(gguf.parent), gguf.name
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=fn)
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=fn, dtype=torch.float32)
    model.eval()
    cases: list[Case] = []
    for text in ("What is the capital of France?", "Translate to French: the cat sleeps."):
        rendered = str(tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True))
        start = rendered.find(text)
        x, _, _ = tokenize_with_roles(tok, rendered, [(start, start + len(text))], add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                torch.tensor([x]),
                attention_mask=torch.ones(1, len(x), dtype=torch.long),
                do_sample=False,
                max_new_tokens=12,
                pad_token_id=tok.eos_token_id,
            )
        y = out[0, len(x) :].tolist()
        sc = PrefixScorer(model, x, y)
        prefix = rendered[:start]
        first = len(tok(prefix, add_special_tokens=False).input_ids)
        users = list(range(first, first + len(tok(text, add_special_tokens=False).input_ids)))
        picks = [users[int(i)] for i in np.linspace(0, len(users) - 1, per_prompt).round()]
        vocab: dict[int, npt.NDArray[np.int64]] = {}
        for k in picks:
            prior = sc.prior_logp(k)
            rng = np.random.default_rng(k)
            top = np.argsort(-prior)[: subset // 2]
            rest = np.setdiff1d(np.arange(len(prior)), top)
            vocab[k] = np.union1d(np.union1d(top, rng.choice(rest, subset // 2, replace=False)), [x[k]]).astype(np.int64)
        tab = TableScorer(sc, vocab)
        key = "smollm2-" + hashlib.sha256(repr((x, y)).encode()).hexdigest()[:16]
        for k in picks:
            tab.cached_table(k, cache, key)
            ex = position_stats(tab.score(k, vocab[k]), int(np.nonzero(vocab[k] == x[k])[0][0])).attribution_score
            cases.append(Case(tab, k, vocab[k], ex))
    return cases


def study(setting: str, cases: list[Case], opts: PASOptions, seeds: int) -> Row:
    meth = ProbabilisticMethod()
    row = Row(setting, positions=len(cases))
    t0 = time.perf_counter()
    for case in cases:
        hit = n_est = 0
        for s in range(seeds):
            rng = np.random.default_rng([s, case.k])
            sup = meth._fast(case.scorer, case.k, case.vocab, opts, rng, {})  # type: ignore[arg-type]
            o = int(np.nonzero(sup.ids == case.scorer.x[case.k])[0][0])
            a = position_stats(sup.l_cum, o, sup.logw).attribution_score
            lo, hi = sup.interval or (a, a)
            lo, hi = min(lo, a), max(hi, a)  # as the method reports it
            row.total += 1
            row.errors.append(abs(a - case.exact))
            row.evaluated.append(sup.evaluated)
            if sup.kind != "estimate":
                row.certified += sup.kind == "certified"
                row.exact += sup.kind == "exact"
                assert lo - 1e-9 <= case.exact <= hi + 1e-9, (setting, case.k, sup.kind, lo, hi, case.exact)
                continue
            n_est += 1
            row.runs += 1
            inside = lo - 1e-9 <= case.exact <= hi + 1e-9
            hit += inside
            row.covered += inside
            if not inside:
                row.misses.append(min(abs(case.exact - lo), abs(case.exact - hi)))
            row.widths.append(hi - lo)
            row.zero += (hi - lo) < ZERO_WIDTH
        if n_est:
            row.per_position.append(hit / n_est)
    row.seconds = time.perf_counter() - t0
    return row


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'setting':<44}{'pos':>5}{'runs':>7}{'nominal':>9}{'cover':>8}{'worst':>7}{'med w':>8}"
        f"{'zero w':>8}{'min w':>8}{'exact':>7}{'cert':>7}{'eval':>7}{'max miss':>10}{'med err':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        cov = r.covered / r.runs if r.runs else math.nan
        worst = min(r.per_position) if r.per_position else math.nan
        med = float(np.median(r.widths)) if r.widths else math.nan
        miss = max(r.misses) if r.misses else 0.0
        print(
            f"{r.setting:<44}{r.positions:>5}{r.runs:>7}{NOMINAL:>9.2f}{cov:>8.3f}{worst:>7.2f}{med:>8.3f}"
            f"{r.zero:>8}{min(r.widths, default=math.nan):>8.4f}{r.exact / max(r.total, 1):>7.2f}{r.certified / max(r.total, 1):>7.2f}"
            f"{np.mean(r.evaluated):>7.1f}{miss:>10.3f}{float(np.median(r.errors)):>9.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=40, help="seeded runs per position")
    ap.add_argument("--prompts", type=int, default=8, help="random prompts (one tiny model each) per tiny setting")
    ap.add_argument("--smollm", type=int, default=0, help="SmolLM2 positions per quickstart prompt (0 = skip)")
    ap.add_argument("--subset", type=int, default=512, help="SmolLM2 restricted vocabulary size")
    ap.add_argument("--cache", default=None, help="folder for the SmolLM2 exact tables (reused by later runs)")
    ap.add_argument("--only", default="", help="run only the settings whose label contains this text")
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny forwards: threads only add contention on shared machines
    t0 = time.perf_counter()
    print(f"torch {torch.__version__}, {args.seeds} seeds per position, nominal {NOMINAL:.0%}")
    # (label, vocab, init, prompt length, max_candidates, neighbours, tail_samples, bound_pool)
    tiny = [
        ("V=6 S=2 m=32 (brute force)", 6, 0.6, 4, 2, 0, 32, 0),
        ("V=16 S=2 m=32 (issue setting)", 16, 0.4, 6, 2, 0, 32, 0),
        ("V=16 S=2 m=32 init=1.0", 16, 1.0, 6, 2, 0, 32, 0),
        ("V=16 S=2 m=8", 16, 0.4, 6, 2, 0, 8, 0),
        ("V=16 S=4 m=8 init=1.0", 16, 1.0, 6, 4, 0, 8, 0),
        ("V=64 S=4 m=32", 64, 0.6, 7, 4, 0, 32, 0),
        ("V=64 S=8 m=32 pool=all", 64, 0.6, 7, 8, 0, 32, "all"),
        ("V=256 S=8 m=32 nb=2", 256, 0.8, 7, 8, 2, 32, 0),
        ("V=256 S=16 m=64 init=1.0", 256, 1.0, 7, 16, 0, 64, 0),
    ]
    rows: list[Row] = []
    for i, (label, vocab, init, n, cap, nb, m, pool) in enumerate(tiny):
        if args.only not in f"tiny {label}":
            continue
        cases = tiny_cases(vocab, init, 3 if vocab <= 6 else args.prompts, n, 3, seed=i + 1)
        opts = PASOptions(mode="fast", max_candidates=cap, neighbours=nb, tail_samples=m, bound_pool=pool)
        rows.append(study(f"tiny {label}", cases, opts, args.seeds))
        print(f"  {rows[-1].setting}: {rows[-1].seconds:.1f} s", flush=True)
    if args.smollm and args.only in "smollm2":
        cases = smollm_cases(args.smollm, args.subset, args.cache)
        opts = PASOptions(mode="fast", max_candidates=16, neighbours=4, tail_samples=32, bound_pool=0)
        rows.append(study(f"smollm2 sub={args.subset} S=16 nb=4 m=32", cases, opts, args.seeds))
    print_table(rows)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
