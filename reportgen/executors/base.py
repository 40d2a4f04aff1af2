"""What every executor is given and gives back.

The unit of work is a shard: one model and a chunk of the spec's prompts. For each shard the
executor generates every prompt's response and runs every method on it (reusing what the
cache holds); the runner collects one model's shards at a time, in run order, then runs the
model's evaluators, the detectors and the renderers itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reportgen.data import AttributionResult, Generation

if TYPE_CHECKING:
    from reportgen.cache import Cache
    from reportgen.plugins import Registry
    from reportgen.runner import ModelSlot, Progress
    from reportgen.spec import AuditSpec


@dataclass
class ShardWork:
    """What one shard produced: generations and method results in run order, the timings of each
    job (``generate:…``, ``method:…``) and how each job went (reused, computed, unavailable, failed)."""

    generations: list[Generation] = field(default_factory=list)
    results: list[AttributionResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)

    def extend(self, other: ShardWork) -> None:
        self.generations += other.generations
        self.results += other.results
        self.timings.update(other.timings)
        self.outcomes.update(other.outcomes)


@dataclass
class ModelWork(ShardWork):
    """Every shard of one model, merged in prompt order, plus what the workers learnt about the
    model: its cache key, its provenance info and the seconds its loads took (None: an executor
    that used the runner's own :class:`~reportgen.runner.ModelSlot`, or no worker loaded it)."""

    key: dict[str, Any] | None = None
    info: dict[str, Any] | None = None
    load_seconds: float | None = None


@dataclass
class Work:
    """The run an executor serves: the spec, the runner's model slots (one per spec model, in
    order) and where progress goes. ``worker_registry`` builds the plugin registry in a worker
    process (None: the installed entry points)."""

    registry: Registry
    spec: AuditSpec
    base_dir: Path
    cache: Cache
    models: list[ModelSlot]
    progress: Progress
    worker_registry: Callable[[], Registry] | None = None


class Executor(Protocol):
    """Computes the shards of a run. Created with the :class:`Work` it serves (work may start at
    once); :meth:`collect` is called for each model in order, :meth:`close` always, at the end."""

    def collect(self, model_index: int) -> ModelWork:
        """Every job of the model ``work.models[model_index]``, once finished."""
        ...

    def close(self) -> None:
        """Stop what is still running and free what the executor holds."""
        ...

    def describe(self) -> dict[str, Any]:
        """How the run's shards were computed, for ``provenance["executor"]``: ``kind`` and the
        executor's settings (never credentials); called after the last :meth:`collect`."""
        ...
