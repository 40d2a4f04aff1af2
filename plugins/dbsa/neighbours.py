"""Neighbours of a unit: the words or tokens it is replaced by.

The spec's ``neighbour_map`` first; numbers get numeric neighbours (the value scaled by
0.5…1.5 as in the DBSA notebook); open models use cosine kNN in the input-embedding matrix
(special tokens and the token itself skipped); other words use cosine kNN over the
whole-word WordPiece vocabulary of all-MiniLM-L6-v2 (embedded once, cached on disk).
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reportgen.generate import WORD_RE
from reportgen.plugin_api import LoadedModel
from reportgen_plugins.dbsa.embeddings import embed_minilm, minilm_vocab
from reportgen_plugins.dbsa.options import DBSAOptions
from reportgen_plugins.dbsa.units import Unit

PUNCTUATION = list(".,;:!?-'\"()")
NUMBER_RE = re.compile(r"^([$€£¥]?)(\d+(?:[.,]\d+)*)(%?)$")


def embedding_knn(emb: ArrayLike, token_id: int, k: int, skip: set[int], accept: Callable[[int], bool] = lambda i: True) -> list[int]:
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
        s = f"{v * f:.{decimals}f}"
        if s != num_clean and pre + s + post not in out:
            out.append(pre + s + post)
    if v == 0:
        out = [pre + str(i) + post for i in range(1, k + 1)]
    # spread symmetrically: prefer values nearest to v first
    out.sort(key=lambda s: abs(float(s[len(pre) : len(s) - len(post)]) - v))
    return out[:k]


def _match_case(word: str, alt: str) -> str:
    if word.isupper() and len(word) > 1:
        return alt.upper()
    if word[:1].isupper():
        return alt[:1].upper() + alt[1:]
    return alt


def minilm_neighbours(word: str, k: int, cache_dir: str) -> list[str]:
    """The k whole words of MiniLM's vocabulary closest to ``word`` (case matched)."""
    vocab, emb = minilm_vocab(cache_dir)
    q = embed_minilm([word.lower()])[0].astype(np.float32)
    sims = emb @ q
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


def _single_token(tok: Any, word: str) -> int | None:
    """The id of ``word`` (or `` word``) when the tokenizer makes it one token."""
    for lead in (" ", ""):
        enc = tok(lead + word, add_special_tokens=False)["input_ids"]
        if len(enc) == 1:
            return int(enc[0])
    return None


class _Vocabulary:
    """An open model's tokenizer and input embeddings (absent for API models)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.tok = loaded.tokenizer
        self.emb: NDArray[np.float32] | None = None
        self.special: set[int] = set()
        if loaded.open_weights:
            self.emb = loaded.model.get_input_embeddings().weight.detach().float().cpu().numpy()
            self.special = set(getattr(self.tok, "all_special_ids", []) or [])

    def decode(self, i: int) -> str:
        return str(self.tok.decode([i]))


def _token_unit(u: Unit, mapped: list[str] | None, voc: _Vocabulary, opts: DBSAOptions) -> Unit:
    M = opts.neighbours
    assert voc.emb is not None and u.token_id is not None
    if mapped:
        lead = u.text[: len(u.text) - len(u.text.lstrip())]
        ids: list[int] = []
        for alt in mapped[:M]:
            enc = voc.tok(lead + alt, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                ids.append(int(enc[0]))
        if ids:
            return dataclasses.replace(u, neighbour_ids=tuple(ids), neighbours=tuple(voc.decode(i) for i in ids))
    if opts.neighbour_source == "map":
        return dataclasses.replace(u, skipped="no neighbour_map entry")
    norm = u.text.strip().lower()

    def accept(i: int) -> bool:
        s = voc.decode(i)
        return bool(s.strip()) and s.strip().lower() != norm and "\ufffd" not in s

    ids = embedding_knn(voc.emb, u.token_id, M, voc.special, accept)
    return dataclasses.replace(u, neighbour_ids=tuple(ids), neighbours=tuple(voc.decode(i) for i in ids))


def _word_neighbours(u: Unit, voc: _Vocabulary, opts: DBSAOptions, cache_dir: str) -> list[str] | str:
    """A word unit's neighbours, or why it has none."""
    M = opts.neighbours
    num = numeric_neighbours(u.text, M)
    if num:
        return num
    if len(u.text) == 1 and u.text in string.punctuation:
        return punctuation_neighbours(u.text, M)
    tid = _single_token(voc.tok, u.text) if voc.emb is not None and opts.neighbour_source in ("auto", "embedding") else None
    if voc.emb is not None and tid is not None:
        seen = {u.text.lower()}  # distinct words: " How" and "How" are one neighbour

        def accept(i: int) -> bool:
            s = voc.decode(i).strip()
            if not s.isalpha() or s.lower() in seen:
                return False
            seen.add(s.lower())
            return True

        return [voc.decode(i).strip() for i in embedding_knn(voc.emb, tid, M, voc.special, accept)]
    if opts.neighbour_source == "embedding":
        return "word is not one token of the model's vocabulary"
    return minilm_neighbours(u.text, M, cache_dir)


def _coarse_unit(u: Unit, voc: _Vocabulary, opts: DBSAOptions, cache_dir: str) -> Unit:
    """A sentence or span: its k-th neighbour replaces each of its words (letters or digits) by that word's
    k-th neighbour (``neighbour_map`` first; a word with fewer neighbours stays); punctuation stays."""
    parts: list[tuple[int, int, list[str]]] = []
    for m in WORD_RE.finditer(u.text):
        word = m.group()
        if not word[0].isalnum():
            continue
        mapped = opts.neighbour_map.get(word, opts.neighbour_map.get(word.lower()))
        found: list[str] | str = [str(a) for a in mapped] if mapped else "no neighbour_map entry"
        if not mapped and opts.neighbour_source != "map":
            found = _word_neighbours(dataclasses.replace(u, text=word, kind="word"), voc, opts, cache_dir)
        if isinstance(found, list) and found:
            parts.append((m.start(), m.end(), found))
    alts: list[str] = []
    for k in range(opts.neighbours):
        text, at = "", 0
        for a, b, found in parts:
            text += u.text[at:a] + (found[k] if k < len(found) else u.text[a:b])
            at = b
        text += u.text[at:]
        if text != u.text and text not in alts:
            alts.append(text)
    return dataclasses.replace(u, neighbours=tuple(alts), skipped=None if alts else "no word of the unit has a neighbour")


def assign_neighbours(units: list[Unit], loaded: LoadedModel, opts: DBSAOptions, cache_dir: str) -> list[Unit]:
    """``units`` with ``neighbours`` (and ``neighbour_ids`` for token units) or ``skipped`` set."""
    voc = _Vocabulary(loaded)
    out: list[Unit] = []
    for u in units:
        key = u.text.strip()
        mapped = opts.neighbour_map.get(key, opts.neighbour_map.get(key.lower()))
        if u.kind == "token":
            out.append(_token_unit(u, mapped, voc, opts))
        elif u.kind in ("sentence", "span") and not mapped:
            out.append(_coarse_unit(u, voc, opts, cache_dir))
        elif mapped:
            out.append(dataclasses.replace(u, neighbours=tuple(str(a) for a in mapped[: opts.neighbours])))
        elif opts.neighbour_source == "map":
            out.append(dataclasses.replace(u, skipped="no neighbour_map entry"))
        else:
            found = _word_neighbours(u, voc, opts, cache_dir)
            if isinstance(found, str):
                out.append(dataclasses.replace(u, skipped=found))
            else:
                out.append(dataclasses.replace(u, neighbours=tuple(found), skipped=None if found else "no neighbours found"))
    return out
