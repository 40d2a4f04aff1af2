"""What the cache saves: a rerun of the unchanged quickstart against its first run.

Run: ``.venv/bin/python benchmarks/bench_cache.py`` (about 2-4 minutes of CPU). Runs
``reportgen run examples/quickstart/audit.yaml`` twice, end to end as a user would (a fresh
process each time, every report format of the spec), into a temporary output folder with a fresh
temporary cache (``REPORTGEN_CACHE_DIR``). Prints both wall times and their ratio (target: the
rerun at least 20× faster), and the CPU seconds of both processes (steadier on a shared machine).
The rerun must reuse every job and load no model (its results.json says which models were
loaded); the benchmark fails (exit 1) when it does not.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "quickstart" / "audit.yaml"
TARGET = 20.0


def run(out: Path, cache: Path) -> tuple[float, float, dict[str, Any], str]:
    """Wall and CPU seconds of one ``reportgen run``, its provenance.jobs and its stderr."""
    env = {k: v for k, v in os.environ.items() if k != "REPORTGEN_CACHE_MAX_SIZE"}
    env["REPORTGEN_CACHE_DIR"] = str(cache)
    cmd = [sys.executable, "-m", "reportgen.cli", "run", str(SPEC), "-o", str(out), "-q"]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        sys.exit(f"reportgen run failed (exit {done.returncode}) after {seconds:.1f} s wall, {cpu:.1f} s CPU:\n{done.stderr}")
    jobs = json.loads((out / "results.json").read_text("utf-8"))["provenance"]["jobs"]
    return seconds, cpu, jobs, done.stderr


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        cache = Path(tmp) / "cache"
        first, cpu1, jobs1, _ = run(Path(tmp) / "first", cache)
        again, cpu2, jobs2, log = run(Path(tmp) / "rerun", cache)
        size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    ratio = first / again
    print(f"spec: {SPEC.relative_to(REPO)} ({jobs1['total']} jobs), cache {size / 1e6:.1f} MB")
    loaded1, loaded2 = (", ".join(j["models_loaded"]) or "none" for j in (jobs1, jobs2))
    print(f"first run : {first:8.1f} s wall, {cpu1:7.1f} s CPU  ({jobs1['computed']} computed, models loaded: {loaded1})")
    print(f"rerun     : {again:8.1f} s wall, {cpu2:7.1f} s CPU  ({jobs2['reused']} of {jobs2['total']} reused, models loaded: {loaded2})")
    print(f"ratio     : {ratio:8.1f}× wall, {cpu1 / cpu2:6.1f}× CPU  (target ≥ {TARGET:.0f}×: {'met' if ratio >= TARGET else 'MISSED'})")
    if jobs2["models_loaded"] or jobs2["computed"] or "loading " in log:
        print("error: the rerun loaded a model or computed a job")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
