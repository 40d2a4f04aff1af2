"""Teacher-forced log-probabilities of the stored response under many perturbed prompts.

:class:`PrefixBatchScorer` runs one forward over the original [x, y] and keeps its KV cache.
Perturbed prompts are sorted by their first changed token and batched; a batch reuses the cache
of the prompt up to its earliest change (a causal model's cache below position p depends only on
x_{<p}) and runs one forward over the rest of each prompt and the response, right-padded, keeping
logits only at the positions that predict response tokens. :meth:`PrefixBatchScorer.score_naive`
is the reference: one full forward per prompt, no cache, no batching.

A model object may bring its own scorer: ``model.score_responses(inputs, output_ids)`` returning
an array (len(inputs), t) of log P(y_j | x̃, y_{<j}) (e.g. an API that returns log-probabilities,
or a closed-form test model); it is then used as is (:func:`scorer_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from reportgen.generate import available_memory_bytes, cache_keyword, returned_cache, token_logprobs

FloatArray = npt.NDArray[np.float64]


class Scorer(Protocol):
    """log P(y_j | x̃, y_{<j}) for many prompts x̃ of one stored response y."""

    base: FloatArray  # (t,) for the unperturbed prompt
    forwards: int  # perturbed prompts scored so far

    def score(self, inputs: Sequence[Sequence[int]]) -> FloatArray: ...

    def prior_top(self, position: int, exclude: set[int]) -> int | None: ...


class PrefixBatchScorer:
    """Batched teacher-forced scoring of perturbed prompts sharing the original's prefix cache."""

    def __init__(self, model: Any, input_ids: Sequence[int], output_ids: Sequence[int], batch_size: int | None = None) -> None:
        import torch
        from transformers import DynamicCache

        self.model = model
        self.x = [int(i) for i in input_ids]
        self.y = [int(i) for i in output_ids]
        self.n, self.t = len(self.x), len(self.y)
        self.device = next(model.parameters()).device
        self.batch_size = batch_size
        self.forwards = 0
        self.batches = 0
        self._cache_kwarg = cache_keyword(model)
        # a cache built from the config keeps only the last window of a sliding-window layer (Gemma 3, Mistral):
        # an empty DynamicCache keeps every position in every layer, so a prefix can be sliced by position
        full = {self._cache_kwarg: DynamicCache(), "use_cache": True}
        with torch.no_grad():
            out = model(torch.tensor([self.x + self.y], device=self.device), **full)
        logits = out.logits[0]
        self._log_next = torch.log_softmax(logits[: self.n].float(), dim=-1)  # row k−1: log P(· | x_{<k})
        tgt = torch.tensor(self.y, device=self.device, dtype=torch.long)
        lp = token_logprobs(logits[self.n - 1 : self.n - 1 + self.t][None], tgt[None])[0]
        self.base: FloatArray = lp.cpu().numpy().astype(np.float64)
        cache = returned_cache(out)
        self._layers = [(layer.keys, layer.values) for layer in cache.layers]
        self.vocab = int(logits.shape[-1])

    def prior_top(self, position: int, exclude: set[int]) -> int | None:
        """The most probable token at ``position`` given x_{<position}, other than those in ``exclude``."""
        if position < 1:
            return None
        row = self._log_next[position - 1].clone()
        for i in exclude:
            if 0 <= i < row.shape[0]:
                row[i] = -float("inf")
        return int(row.argmax())

    def _cache(self, p: int, b: int) -> Any:
        from transformers import DynamicCache

        data = [(k[:, :, :p].expand(b, -1, -1, -1), v[:, :, :p].expand(b, -1, -1, -1)) for k, v in self._layers]
        return DynamicCache(data, config=self.model.config)

    def _batch_size(self, prefix: int, length: int, keep: int) -> int:
        if self.batch_size:
            return self.batch_size
        cfg = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config
        hidden = int(getattr(cfg, "hidden_size", 1024))
        layers = int(getattr(cfg, "num_hidden_layers", 24))
        heads = int(getattr(cfg, "num_attention_heads", 16))
        kv = int(getattr(cfg, "num_key_value_heads", heads) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or hidden // max(heads, 1))
        per = 4 * (3 * keep * self.vocab + 2 * layers * 2 * kv * (prefix + length) * head_dim + 40 * length * hidden)
        avail = available_memory_bytes(self.device)
        budget = avail // 2 if getattr(self.device, "type", "cpu") == "cuda" else min(1 << 30, int(0.25 * avail))
        return int(max(1, min(256, budget // max(per, 1))))

    def score(self, inputs: Sequence[Sequence[int]]) -> FloatArray:
        """(len(inputs), t) log-probabilities of the response tokens, batched with shared prefixes."""
        import torch

        seqs = [[int(i) for i in s] for s in inputs]
        out = np.empty((len(seqs), self.t), dtype=np.float64)
        if not seqs:
            return out
        first = [_common_prefix(s, self.x) for s in seqs]
        order = sorted(range(len(seqs)), key=lambda i: (first[i], len(seqs[i]), i))
        tgt = torch.tensor(self.y, device=self.device, dtype=torch.long)
        s = 0
        while s < len(order):
            p0 = min(first[order[s]], len(seqs[order[s]]) - 1)
            bs = self._batch_size(p0, len(seqs[order[s]]) - p0 + self.t, self.t + 1)
            chunk = order[s : s + bs]
            s += len(chunk)
            p = max(0, min(min(first[i], len(seqs[i]) - 1) for i in chunk))
            rows = [seqs[i][p:] + self.y for i in chunk]
            width = max(len(r) for r in rows)
            starts = [len(seqs[i]) - p - 1 for i in chunk]  # suffix index whose logits predict y_0
            keep = width - min(starts)
            ids = torch.zeros((len(chunk), width), dtype=torch.long, device=self.device)
            mask = torch.zeros((len(chunk), p + width), dtype=torch.long, device=self.device)
            for r, row in enumerate(rows):
                ids[r, : len(row)] = torch.tensor(row, dtype=torch.long, device=self.device)
                mask[r, : p + len(row)] = 1
            kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": True}
            if p > 0:
                kwargs[self._cache_kwarg] = self._cache(p, len(chunk))
            with torch.no_grad():
                logits = _forward_logits(self.model, ids, kwargs, keep)
            offset = width - logits.shape[1]
            idx = torch.tensor([[st - offset + j for j in range(self.t)] for st in starts], device=self.device)
            picked = logits.gather(1, idx[..., None].expand(-1, -1, logits.shape[-1]))
            lp = token_logprobs(picked, tgt[None].expand(len(chunk), -1))
            out[chunk] = lp.cpu().numpy()
            self.forwards += len(chunk)
            self.batches += 1
        return out

    def score_naive(self, inputs: Sequence[Sequence[int]]) -> FloatArray:
        """Reference: one full forward over [x̃, y] per prompt (no cache, no batching, no padding)."""
        import torch

        out = np.empty((len(inputs), self.t), dtype=np.float64)
        tgt = torch.tensor(self.y, device=self.device, dtype=torch.long)
        for r, s in enumerate(inputs):
            seq = [int(i) for i in s]
            with torch.no_grad():
                logits = self.model(torch.tensor([seq + self.y], device=self.device)).logits[0]
            out[r] = token_logprobs(logits[len(seq) - 1 : len(seq) - 1 + self.t][None], tgt[None])[0].cpu().numpy()
        return out


def _forward_logits(model: Any, ids: Any, kwargs: dict[str, Any], keep: int) -> Any:
    """Logits of the last ``keep`` positions (all of them when the model has no logits_to_keep)."""
    try:
        return model(ids, logits_to_keep=keep, **kwargs).logits
    except TypeError:
        return model(ids, **kwargs).logits


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class CallbackScorer:
    """A scorer around a model's own ``score_responses(inputs, output_ids)`` (see the module doc)."""

    def __init__(
        self, fn: Callable[[Sequence[Sequence[int]], Sequence[int]], Any], input_ids: Sequence[int], output_ids: Sequence[int]
    ) -> None:
        self.fn = fn
        self.x = [int(i) for i in input_ids]
        self.y = [int(i) for i in output_ids]
        self.forwards = 0
        self.base: FloatArray = np.asarray(fn([self.x], self.y), dtype=np.float64).reshape(1, len(self.y))[0]

    def score(self, inputs: Sequence[Sequence[int]]) -> FloatArray:
        self.forwards += len(inputs)
        if not inputs:
            return np.empty((0, len(self.y)), dtype=np.float64)
        return np.asarray(self.fn([list(s) for s in inputs], self.y), dtype=np.float64).reshape(len(inputs), len(self.y))

    def prior_top(self, position: int, exclude: set[int]) -> int | None:
        return None


def scorer_for(model: Any, input_ids: Sequence[int], output_ids: Sequence[int], batch_size: int | None = None) -> Scorer:
    """The model's own ``score_responses`` when it has one, else the batched prefix scorer."""
    own = getattr(model, "score_responses", None)
    if callable(own):
        return CallbackScorer(own, input_ids, output_ids)
    return PrefixBatchScorer(model, input_ids, output_ids, batch_size=batch_size)
