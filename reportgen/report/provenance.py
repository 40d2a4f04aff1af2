"""The provenance appendix: how the run was made, as sorted ``key → value`` rows; and the run
reference every report prints (header, PDF page footer, provenance) to tie paper to its results.json."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reportgen.data import RunResult
from reportgen.report.text import flatten

#: Hex digits of the results.json digest in the one-line reference (the provenance table prints all).
SHORT_DIGEST = 16


def rows(run: RunResult) -> tuple[tuple[str, str], ...]:
    return tuple(flatten(run.provenance))


@dataclass(frozen=True)
class RunReference:
    """Which run a report shows and which results.json it was made from.

    ``run_id`` is the manifest's; ``results_sha256`` is the sha256 of the bytes of the
    results.json the report was made from: the file the run wrote beside it (the bytes the
    report embeds), or for a report rebuilt by ``reportgen render`` the file it was rebuilt
    from, so ``sha256sum results.json`` matches what the page prints.
    """

    run_id: str
    results_sha256: str

    @property
    def line(self) -> str:
        """One line for a header or a page footer."""
        return f"Run {self.run_id} · results.json sha256 {self.results_sha256[:SHORT_DIGEST]}…"


def run_reference(data: Mapping[str, Any], results: bytes) -> RunReference:
    """The reference of ``data`` (``run_to_json`` of the run) whose results.json bytes are ``results``."""
    rebuilt = data.get("provenance", {}).get("rebuilt")
    digest = str(rebuilt["sha256"]) if isinstance(rebuilt, Mapping) and rebuilt.get("sha256") else hashlib.sha256(results).hexdigest()
    return RunReference(run_id=str(data.get("manifest", {}).get("run_id", "")), results_sha256=digest)
