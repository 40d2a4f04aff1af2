"""The local executor: every shard in this process, one model after the other (the default)."""

from __future__ import annotations

from typing import Any

from reportgen.executors.base import ModelWork, Work


class LocalExecutor:
    """Runs a model's jobs when the runner collects them, on the runner's own model slot, so the
    model loads at most once and stays loaded for the evaluators that follow."""

    def __init__(self, work: Work) -> None:
        self.work = work

    def collect(self, model_index: int) -> ModelWork:
        from reportgen.runner import run_shard

        w = self.work
        out = ModelWork()
        out.extend(run_shard(w.registry, w.models[model_index], w.spec, w.spec.prompts, w.cache, w.progress))
        return out

    def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": "local"}
