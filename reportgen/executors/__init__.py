"""Executors hand out a run's (model, chunk of prompts) shards: ``local`` (this process, the
default) or ``ray`` (a Ray cluster, ``pip install 'reportgen[ray]'``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reportgen.executors.base import Executor, ModelWork, ShardWork, Work

if TYPE_CHECKING:
    from reportgen.spec import ExecutorSpec

__all__ = ["Executor", "ModelWork", "ShardWork", "Work", "make_executor"]


def make_executor(settings: ExecutorSpec, work: Work) -> Executor:
    """The executor ``settings.kind`` names, serving ``work``."""
    if settings.kind == "ray":
        from reportgen.executors.ray import RayExecutor

        return RayExecutor(settings, work)
    from reportgen.executors.local import LocalExecutor

    return LocalExecutor(work)
