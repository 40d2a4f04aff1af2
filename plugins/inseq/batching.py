"""How many copies of the input one forward of an inseq path method (or GradientSHAP) may batch.

Captum's integrated-gradients family puts every path point of a step in one forward when
``internal_batch_size`` is None: ``n_steps`` (default 50) copies of the whole sequence, each
keeping its activations for the backward. On a 1,000-token prompt that is tens of GB. When the
user gives no batch, :func:`auto_internal_batch_size` picks one from the model's config, the
sequence length and the free memory; a value the user gives is used as is.
"""

from __future__ import annotations

from typing import Any

from reportgen.generate import available_memory_bytes

# method → the option counting the copies of the sequence one forward batches: Captum batches the
# path points of the integrated-gradients family ``internal_batch_size`` at a time; GradientShap has no
# such argument (all ``n_samples`` in one forward), so its samples are split into runs of that size
BATCHED: dict[str, str] = {
    "integrated_gradients": "n_steps",
    "layer_integrated_gradients": "n_steps",
    "sequential_integrated_gradients": "n_steps",
    "discretized_integrated_gradients": "n_steps",
    "gradient_shap": "n_samples",
}
SPLIT_SAMPLES = frozenset({"gradient_shap"})
CPU_CAP = 4 << 30  # on a CPU a bigger batch buys little speed, and freed heap is not always returned


def row_bytes(config: Any, seq_len: int, elem_bytes: int = 4) -> int:
    """Memory one path point (one batch row) holds at the peak of its forward + backward.

    For a decoder of ``layers`` layers, hidden size h, MLP size m, ``heads`` attention heads and
    vocabulary V, over L = ``seq_len`` tokens, in ``elem_bytes`` per element:

    * saved activations: L × layers × (6h + 3m) elements (norm inputs and outputs, q/k/v and
      their rotated copies, the attention output, the MLP's gate, up and product; measured with
      ``torch.autograd.graph.saved_tensors_hooks``: about 5h + 3m on SmolLM2-135M);
    * attention probabilities, eager attention only: heads × L² per layer kept for the backward,
      plus three layers' worth in flight (the scores, the masked scores, their gradient), in
      float32 (eager's softmax runs in float32; a half-precision model also keeps the cast copy).
      SDPA's fused kernels (flash / memory-efficient, on CPU and CUDA) keep only a log-sum-exp
      per row and query: measured linear in L;
    * the logits and their gradient: 2 × L × V elements (inseq scores the last position, but
      the model computes every position's logits and the backward materialises their gradient).

    SmolLM2-135M at L = 982 in float32: 906 MiB of activations + 368 MiB of logits = 1,278 MiB with
    SDPA, plus 1,093 MiB with eager. Measured: 1,382 MiB per path point (Δ peak RSS of 8 at once / 8);
    the ~8 % over the estimate (allocator slack, backward temporaries) is well inside the budget's
    margin (a quarter of the available RAM, half the free GPU memory).
    """
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(cfg.hidden_size)
    mlp = int(getattr(cfg, "intermediate_size", None) or 4 * hidden)
    layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    vocab = int(cfg.vocab_size)
    activations = seq_len * layers * (6 * hidden + 3 * mlp) * elem_bytes
    logits = 2 * seq_len * vocab * elem_bytes
    probabilities = 0
    if getattr(cfg, "_attn_implementation", "eager") == "eager":
        prob_bytes = 4 if elem_bytes >= 4 else 4 + elem_bytes
        probabilities = (layers + 3) * heads * seq_len * seq_len * prob_bytes
    return activations + logits + probabilities


def memory_budget(device: Any) -> int:
    """Half the free accelerator memory, or min(4 GiB, 25 % of available RAM) on a CPU."""
    avail = available_memory_bytes(device)
    return avail // 2 if getattr(device, "type", "cpu") == "cuda" else min(CPU_CAP, avail // 4)


def auto_internal_batch_size(model: Any, seq_len: int, steps: int) -> int:
    """Path points per forward: as many rows of :func:`row_bytes` as fit :func:`memory_budget`, in [1, steps]."""
    param = next(model.parameters())
    per_row = row_bytes(model.config, seq_len, param.element_size())
    return max(1, min(steps, memory_budget(param.device) // per_row))
