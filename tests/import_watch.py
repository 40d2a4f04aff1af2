"""Run the CLI in a fresh interpreter and report which heavy packages it imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "scipy", "inseq", "spacy")

# Runs the CLI with the given arguments, then prints which heavy packages it imported.
WATCH = f"""
import sys
from reportgen.cli import main
try:
    main()
finally:
    heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
    print("imported:", ",".join(heavy) or "-", file=sys.stderr)
"""


def cli_imports(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``reportgen ARGS`` in a fresh interpreter: the finished process and the :data:`HEAVY` packages it imported."""
    proc = subprocess.run(
        [sys.executable, "-c", WATCH, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("imported: "), proc.stderr
    return proc, set(line.removeprefix("imported: ").split(",")) - {"-"}
