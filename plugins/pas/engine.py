"""Model-side computation for PAS: exact ℓ values of candidate prompts with a shared prefix.

One forward over [x, y] gives, once per generation, the KV-cache of every prefix x_{<k}
(a causal model's cache entries at positions < k depend only on x_{<k}) and the next-token
distribution P(· | x_{<k}) for every k (one row of its logits). For each position k and each
batch of candidates v, a single teacher-forced forward over [v, x_{>k}, y] on top of that
prefix cache (expanded to the batch) yields every factor of ℓ_den(v) and ℓ^(j)(v) at once:
no ``generate`` call, no recomputation of the prefix. The original candidate (or filler) needs no
forward of its own: its factors are those of the base forward.

The natural next-token distributions are used (softmax over the whole output layer, EOS
included). The paper's code renormalised without EOS because it forced ``min_new_tokens``;
we do not, because our stored response may legitimately end with EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from reportgen.generate import available_memory_bytes, cache_keyword, returned_cache, token_logprobs
from reportgen_plugins.pas.estimators import FloatArray

Ids = Sequence[int] | npt.NDArray[np.int64]


def auto_batch_size(model: Any, prefix_len: int, seq_len: int, vocab: int, device: torch.device) -> int:
    """A batch size whose logits, expanded KV-cache and activations fit in a memory budget.

    Budget: half the free accelerator memory, or min(2 GiB, 30 % of available RAM) on CPU.
    Per candidate: logits and their log-softmax temporaries (3 × seq_len × vocab fp32), the
    expanded cache (layers × 2 × kv_heads × (prefix + seq) × head_dim, twice for the copy)
    and activations (≈ 40 × seq_len × hidden).
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = int(getattr(cfg, "hidden_size", 1024))
    layers = int(getattr(cfg, "num_hidden_layers", 24))
    heads = int(getattr(cfg, "num_attention_heads", 16))
    kv_heads = int(getattr(cfg, "num_key_value_heads", heads) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // max(heads, 1))
    per = 4 * (3 * seq_len * vocab + 2 * layers * 2 * kv_heads * (prefix_len + seq_len) * head_dim + 40 * seq_len * hidden)
    avail = available_memory_bytes(device)
    budget = avail // 2 if device.type == "cuda" else min(2 << 30, int(0.3 * avail))
    return int(max(1, min(1024, budget // max(per, 1))))


class PrefixScorer:
    """Exact ℓ values for candidates at any position of one (x, y) pair, sharing prefixes.

    ``score(k, cands)`` returns an array (m, t+1): column 0 is ℓ_den(v), column j is
    ℓ^(j)(v) = ℓ_den(v) + Σ_{j'≤j} log P(y_j' | x^(v), y_{<j'}).
    """

    def __init__(self, model: Any, input_ids: Sequence[int], output_ids: Sequence[int]) -> None:
        self.model = model
        self.x = [int(i) for i in input_ids]
        self.y = [int(i) for i in output_ids]
        self.n, self.t = len(self.x), len(self.y)
        self.device = next(model.parameters()).device
        full = torch.tensor([self.x + self.y], device=self.device)
        self._kw = cache_keyword(model)
        with torch.no_grad():
            out = model(full, **{self._kw: DynamicCache()}, use_cache=True)  # every layer keeps every position
        logits = out.logits[0]
        # only the prompt rows are kept, as float32 logits (a float64 log-softmax of every row would take
        # (n+t)·V·8 bytes: 400 MB for a 1,000-token prompt); rows are normalised on use (:meth:`log_next`)
        self._prompt_logits = logits[: self.n - 1].to(torch.float32, copy=True)  # row i: logits of P(· | x_{≤i})
        self.vocab_logits = int(logits.shape[-1])
        cache = returned_cache(out)
        self._layers = [(layer.keys, layer.values) for layer in cache.layers]
        tgt = torch.tensor(self.y, device=self.device, dtype=torch.long)
        resp = torch.log_softmax(logits[self.n - 1 : self.n - 1 + self.t].double(), dim=-1)
        self.log_p_response = float(resp.gather(1, tgt[:, None]).sum()) if self.t else 0.0
        # row i: log P(seq_{i+1} | seq_{≤i}) of the original sequence, the factors every original filler needs
        # (256 rows at a time: a logsumexp temporary of every row would double the logits' memory)
        pred, nxt = logits[None, :-1], full[:, 1:]
        chunks = range(0, max(nxt.shape[1], 1), 256)
        self._original_lp = torch.cat([token_logprobs(pred[:, i : i + 256], nxt[:, i : i + 256])[0] for i in chunks])

    def log_next(self, i: int) -> torch.Tensor:
        """log P(· | x_{≤i}) over the vocabulary (float64, on the model's device), 0 ≤ i < n−1."""
        return torch.log_softmax(self._prompt_logits[i].double(), dim=-1)

    def prior_logp(self, k: int) -> FloatArray:
        """log P(v | x_{<k}) for every v (k ≥ 1)."""
        if k < 1:
            raise ValueError("position 0 has no preceding context; P(x_0) is not defined")
        return self.log_next(k - 1).cpu().numpy()

    def embedding_similarity(self, token: int, ids: npt.ArrayLike) -> FloatArray:
        """Cosine similarity of the input embeddings of ``ids`` to that of ``token``."""
        emb = self.model.get_input_embeddings().weight
        ids_t = torch.as_tensor(np.asarray(ids), device=emb.device, dtype=torch.long)
        with torch.no_grad():
            e = emb[ids_t].float()
            ref = emb[int(token)].float()
            sim = (e @ ref) / (e.norm(dim=1) * ref.norm() + 1e-12)
        out: FloatArray = sim.double().cpu().numpy()
        return out

    def _cache(self, k: int, batch: int, room: int = 0) -> DynamicCache:
        """The prefix cache x_{<k} for ``batch`` rows; with ``room``, each full-attention layer is allocated once for
        ``room`` more tokens and a forward writes its keys in place (a DynamicLayer copies its whole batch × prefix
        cache at every step: a quarter of the CPU time of 16-row one-token steps at k = 850 on SmolLM2)."""
        cache = DynamicCache(config=self.model.config)
        for i, (kk, vv) in enumerate(self._layers):
            kk, vv = kk[:, :, :k].expand(batch, -1, -1, -1), vv[:, :, :k].expand(batch, -1, -1, -1)
            if room and type(cache.layers[i]) is DynamicLayer:  # sliding-window layers keep their own update
                cache.layers[i] = _PresizedLayer(kk, vv, room)
            else:
                cache.update(kk, vv, i)
        return cache

    def suffix(self, k: int) -> list[int]:
        return self.x[k + 1 :] + self.y

    def default_batch_size(self, k: int) -> int:
        return auto_batch_size(self.model, k, 1 + len(self.suffix(k)), self.vocab_logits, self.device)

    def score(self, k: int, cands: Ids, batch_size: int | None = None) -> FloatArray:
        """Exact ℓ^(0..t) for each candidate (one teacher-forced forward per batch, shared prefix)."""
        return self.score_fillers(k, np.asarray(cands, dtype=np.int64).reshape(-1, 1), batch_size)[:, 1:]

    @torch.no_grad()
    def score_fillers(self, k: int, fillers: npt.NDArray[np.int64], batch_size: int | None = None) -> FloatArray:
        """For fillers w (m, L) of the unit x_k..x_{k+L−1}: ℓ_q(w), ℓ_den(w), ℓ^(1..t)(w), shape (m, t+2).

        ℓ_q(w) = log P(w | x_{<k}) (the unit's own factors), ℓ_den(w) = ℓ_q(w) + log P(x_{≥k+L} | x_{<k}, w)
        and ℓ^(j) adds the first j response factors; one teacher-forced forward per batch on the prefix cache.
        """
        m, L = fillers.shape
        suffix = self.x[k + L :] + self.y
        n_den = self.n - k - L  # prompt factors after the unit
        bs = batch_size or auto_batch_size(self.model, k, L + len(suffix), self.vocab_logits, self.device)
        out = np.empty((m, self.t + 2), dtype=np.float64)
        # the original filler takes its factors from the base forward (as every row does when it has none: k = n − 1, t = 0)
        differs = np.any(fillers != np.asarray(self.x[k : k + L]), axis=1) if self.n + self.t - 1 > k else np.zeros(m, dtype=bool)
        same, todo = np.flatnonzero(~differs), np.flatnonzero(differs)
        if len(same):
            out[same] = self._ell(k, fillers[same, 0], self._original_lp[k:].expand(len(same), -1), n_den)
        tgt_row = torch.tensor(suffix, device=self.device, dtype=torch.long)
        for s in range(0, len(todo), bs):
            rows = todo[s : s + bs]
            w = torch.as_tensor(fillers[rows], device=self.device, dtype=torch.long)
            inp = torch.cat([w, tgt_row[None, :].expand(len(rows), -1)], dim=1)
            logits = self.model(inp, **{self._kw: self._cache(k, len(rows))}, use_cache=True).logits[:, :-1]
            out[rows] = self._ell(k, fillers[rows, 0], token_logprobs(logits, inp[:, 1:]), n_den)
        return out

    def _ell(self, k: int, first: npt.NDArray[np.int64], tok_lp: torch.Tensor, n_den: int) -> FloatArray:
        """ℓ_q, ℓ_den, ℓ^(1..t) of fillers with first tokens ``first`` from the factors ``tok_lp`` of their other
        tokens, then of the ``n_den`` prompt tokens after the unit, then of the response."""
        unit = tok_lp.shape[1] - n_den - self.t  # L − 1
        q = self.log_next(k - 1)[torch.as_tensor(first, device=self.device)] + tok_lp[:, :unit].sum(dim=1)
        den = q + tok_lp[:, unit : unit + n_den].sum(dim=1)
        cum = torch.cumsum(tok_lp[:, unit + n_den :], dim=1)
        out: FloatArray = torch.cat([q[:, None], den[:, None], den[:, None] + cum], dim=1).cpu().numpy()
        return out

    @torch.no_grad()
    def sample_fillers(self, k: int, length: int, m: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """``m`` fillers of ``length`` tokens drawn left to right from q(w) = P(w | x_{<k}) (ancestral sampling)."""
        out = np.empty((m, length), dtype=np.int64)
        logp = self.log_next(k - 1)[None, :].expand(m, -1)
        cache = self._cache(k, m, room=length - 1)
        for i in range(length):
            p = torch.softmax(logp.double(), dim=-1).cpu().numpy()
            cdf = np.cumsum(p, axis=1)
            u = rng.random((m, 1)) * cdf[:, -1:]
            out[:, i] = np.minimum((cdf < u).sum(axis=1), p.shape[1] - 1)
            if i + 1 < length:
                step = torch.as_tensor(out[:, i : i + 1], device=self.device)
                res = self.model(step, **{self._kw: cache}, use_cache=True)
                cache = returned_cache(res)
                logp = torch.log_softmax(res.logits[:, -1].double(), dim=-1)
        return out

    @torch.no_grad()
    def next_token_logp(self, k: int, cands: Ids, batch_size: int | None = None) -> FloatArray:
        """log P(x_{k+1} | x_{<k}, v) for each candidate (one one-token step per batch), k < n−1."""
        ids = [int(c) for c in cands]
        target = self.x[k + 1]
        bs = batch_size or auto_batch_size(self.model, k, 1, self.vocab_logits, self.device)
        out = np.empty(len(ids), dtype=np.float64)
        for s in range(0, len(ids), bs):
            chunk = ids[s : s + bs]
            inp = torch.tensor(chunk, device=self.device, dtype=torch.long)[:, None]
            logits = self.model(inp, **{self._kw: self._cache(k, len(chunk))}, use_cache=True).logits[:, 0]
            lp = torch.log_softmax(logits.double(), dim=-1)[:, target]
            out[s : s + len(chunk)] = lp.cpu().numpy()
        return out

    @torch.no_grad()
    def score_naive(self, k: int, cands: Ids, batch_size: int = 16) -> FloatArray:
        """Reference: a separate full forward over [x^(v), y] per candidate (no shared cache)."""
        rows = []
        for s in range(0, len(cands), batch_size):
            chunk = [int(c) for c in cands[s : s + batch_size]]
            seqs = []
            for v in chunk:
                xv = list(self.x)
                xv[k] = v
                seqs.append(xv + self.y)
            inp = torch.tensor(seqs, device=self.device)
            logits = self.model(inp).logits[:, :-1]
            lp = token_logprobs(logits, inp[:, 1:])  # lp[:, i-1] = log P(seq_i | seq_{<i})
            den = lp[:, k - 1 : self.n - 1].sum(dim=1)
            resp = lp[:, self.n - 1 :]
            cum = torch.cat([den[:, None], den[:, None] + torch.cumsum(resp, dim=1)], dim=1)
            rows.append(cum.cpu().numpy())
        return np.concatenate(rows, axis=0) if rows else np.empty((0, self.t + 1))


class _PresizedLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A full-attention cache layer that starts with ``keys``/``values`` and has room for ``room`` more tokens:
    :meth:`update` writes them in place and returns views of the filled part (the same tensors a
    ``DynamicLayer`` would return, without concatenating a copy of the whole layer per step)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        n = self._n = keys.shape[-2]
        self._k = keys.new_empty((*keys.shape[:2], n + room, keys.shape[-1]))
        self._v = values.new_empty((*values.shape[:2], n + room, values.shape[-1]))
        self._k[:, :, :n], self._v[:, :, :n] = keys, values
        self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n, end = self._n, self._n + key_states.shape[-2]
        self._k[:, :, n:end], self._v[:, :, n:end] = key_states, value_states
        self.keys, self.values, self._n = self._k[:, :, :end], self._v[:, :, :end], end
        return self.keys, self.values
