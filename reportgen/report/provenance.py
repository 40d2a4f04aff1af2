"""The provenance appendix: how the run was made, as sorted ``key → value`` rows."""

from __future__ import annotations

from reportgen.data import RunResult
from reportgen.report.text import flatten


def rows(run: RunResult) -> tuple[tuple[str, str], ...]:
    return tuple(flatten(run.provenance))
