"""Every built-in method, generation and the faithfulness evaluator on cuda, compared with cpu.

Marked ``gpu``; skipped where torch sees no CUDA device. The tiny random Llama runs in float32 on
both devices (TF32 off), so greedy generation must give the same tokens and every method the same
scores up to float32 reduction-order noise. DBSA samples with the device's own random stream, so it
is only checked to run and return finite CPU-side results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tests.test_dtype import METHODS, assert_float_results, compared, relative_error, run_all, tiny_generation, tiny_loaded

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def test_methods_generation_and_evaluator_on_cuda_match_cpu(smollm_tokenizer: Any) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    cpu = tiny_loaded(smollm_tokenizer)
    gpu = tiny_loaded(smollm_tokenizer, device="cuda")
    assert next(gpu.model.parameters()).device.type == "cuda"
    gen_cpu, gen_gpu = tiny_generation(cpu), tiny_generation(gpu)
    assert gen_gpu.output_ids == gen_cpu.output_ids
    assert gen_gpu.step_scores["probability"] == pytest.approx(gen_cpu.step_scores["probability"], rel=1e-4)
    ref, ev_cpu = run_all(cpu, gen_cpu)
    got, ev_gpu = run_all(gpu, gen_cpu)
    assert_float_results(got)
    for name, (_, key) in METHODS.items():
        if name == "dbsa":
            continue
        assert relative_error(compared(got[name], key), compared(ref[name], key)) <= 1e-3, name
    a, r = compared(got["probabilistic"], "attribution_score"), compared(ref["probabilistic"], "attribution_score")
    assert np.nanmax(np.abs(a - r)) <= 1e-4
    by_method = {s.method: s for s in ev_cpu.scores}
    assert {s.method for s in ev_gpu.scores} == set(by_method)
