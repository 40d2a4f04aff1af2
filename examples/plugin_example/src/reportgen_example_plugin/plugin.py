"""The reportgen plugin module: one method class and one hook implementation.

This module is what the entry point ``example = "reportgen_example_plugin.plugin"``
names. reportgen imports it when it builds its plugin manager and calls every
``@hookimpl`` function it finds here with a ``register`` callback.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from reportgen import hookimpl
from reportgen.data import AttributionResult
from reportgen.plugin_api import AttributionContext, AttributionMethod, Options
from reportgen_example_plugin import __version__
from reportgen_example_plugin.loo import leave_one_out


class LeaveOneOutOptions(Options):
    """Options of ``example.leave_one_out`` (unknown keys in the spec are errors)."""

    batch_size: int = Field(16, ge=1, le=4096, description="Deleted-token sequences per forward pass.")
    include_template: bool = Field(False, description="Also delete chat-template/special tokens (by default their rows are NaN).")


class LeaveOneOut(AttributionMethod):
    """Drop in log P(y | x) when each user-content token of the prompt is deleted."""

    name: ClassVar[str] = "example.leave_one_out"
    description: ClassVar[str] = "Leave-one-out: drop in log p(y_j | x, y_<j) when prompt token x_i is deleted (forced decoding, nats)."
    options_model: ClassVar[type[Options]] = LeaveOneOutOptions
    requires: ClassVar[str] = "weights"  # needs logits: API-only models get a clear 'unavailable' reason
    version: ClassVar[str] = __version__  # part of the host's cache key: bump it when the numbers change

    def attribute(self, ctx: AttributionContext) -> AttributionResult:
        gen, opts = ctx.generation, ctx.options
        t0 = time.perf_counter()
        positions = list(range(gen.n)) if opts.include_template else gen.user_positions
        matrix, base, forwards = leave_one_out(
            ctx.model.model,
            gen.input_ids,
            gen.output_ids,
            positions,
            batch_size=opts.batch_size,
            device=ctx.model.device,
            progress=ctx.progress,
        )
        scored = set(positions)
        importance: list[float | None] = [float(np.nansum(matrix[i])) if i in scored else None for i in range(gen.n)]
        return AttributionResult(
            method=self.name,
            model_id=gen.model_id,
            prompt_id=gen.prompt_id,
            options=opts.model_dump(),
            input_tokens=list(gen.input_tokens),
            output_tokens=list(gen.output_tokens),
            matrix=matrix,
            matrix_label="Δ log p(y_j) when x_i is deleted (nats)",
            signed=True,
            scores={"leave_one_out": importance},
            details={
                "base_logprob": base,
                "base_total_logprob": float(np.nansum(base)),
                "deleted_positions": sorted(scored),
                "forward_passes": forwards,
            },
            timings={"seconds": time.perf_counter() - t0},
        )


@hookimpl
def reportgen_register_attribution_methods(register: Any) -> None:
    register(LeaveOneOut())
