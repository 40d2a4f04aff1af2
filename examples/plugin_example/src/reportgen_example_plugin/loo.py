"""Leave-one-out attribution by forced decoding: the numbers, independent of reportgen.

For a prompt x = (x_1 … x_n) and a stored response y = (y_1 … y_t) the model is
forced to decode y twice: once after the whole prompt, once after the prompt with
token x_i deleted. The attribution of x_i to y_j is the drop in log-probability

    A_ij = log p(y_j | x, y_<j) − log p(y_j | x_{−i}, y_<j)        (nats)

and the token's importance is I(x_i) = Σ_j A_ij = log P(y | x) − log P(y | x_{−i}).
A_ij > 0: deleting x_i makes y_j less likely (x_i supported y_j); A_ij < 0: x_i
worked against it. Every deleted sequence has the same length n − 1 + t, so many
deletions go through the model as one padding-free batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def _accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic forward signatures
        return False


@torch.no_grad()
def forced_logprobs(model: Any, sequences: torch.Tensor, output_ids: Sequence[int]) -> np.ndarray:
    """log p(y_j | everything before y_j) for each row of ``sequences``.

    ``sequences`` is (b, m + t) where each row ends with the t ``output_ids``; the
    prefix length m is the same for every row. Returns a (b, t) float64 array; the
    entry for y_1 is NaN when m = 0 (nothing to condition on).
    """
    t = len(output_ids)
    b, length = sequences.shape
    m = length - t
    if t == 0:
        return np.zeros((b, 0))
    kwargs: dict[str, Any] = {"attention_mask": torch.ones_like(sequences)}
    keep = t + 1 if m >= 1 else t  # the logits predicting y_1 … y_t (plus the unused last one)
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep
        logits = model(sequences, **kwargs).logits
    else:
        logits = model(sequences, **kwargs).logits[:, -keep:]
    logits = logits[:, :-1]  # position k predicts token k + 1; the last position predicts nothing here
    logp = torch.log_softmax(logits.float(), dim=-1)
    tgt = torch.as_tensor(list(output_ids), device=logp.device)
    tgt = tgt[t - logp.shape[1] :]  # when m = 0 there is no logit for y_1
    picked = logp.gather(2, tgt[None, :, None].expand(b, -1, 1))[..., 0].double().cpu().numpy()
    if picked.shape[1] < t:
        picked = np.concatenate([np.full((b, t - picked.shape[1]), np.nan), picked], axis=1)
    return picked


def leave_one_out(
    model: Any,
    input_ids: Sequence[int],
    output_ids: Sequence[int],
    positions: Sequence[int],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (A, base, forwards): A is n × t with NaN rows outside ``positions``.

    ``base[j] = log p(y_j | x, y_<j)``; ``forwards`` counts the model calls (1 + batches).
    """
    n, t = len(input_ids), len(output_ids)
    x, y = list(input_ids), list(output_ids)
    base = forced_logprobs(model, torch.tensor([x + y], device=device), y)[0]
    matrix = np.full((n, t), np.nan)
    todo = sorted(set(positions))
    forwards = 1
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        rows = [x[:i] + x[i + 1 :] + y for i in chunk]
        deleted = forced_logprobs(model, torch.tensor(rows, device=device), y)
        matrix[chunk, :] = base[None, :] - deleted
        forwards += 1
        progress(start + len(chunk), len(todo))
    return matrix, base, forwards
