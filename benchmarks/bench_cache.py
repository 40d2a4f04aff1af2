"""What the cache and the folder's stamp save: reruns of the unchanged quickstart against its first run.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cache.py`` (a few minutes of CPU).
Runs ``reportgen run examples/quickstart/audit.yaml`` three times, end to end as a user would (a
fresh process each time, every report format of the spec), with one fresh temporary cache
(``REPORTGEN_CACHE_DIR``):

1. first run, into folder A: every job computed, every report rendered;
2. rerun into a new folder B: every job reused from the cache, but every report rendered again;
3. rerun into the same folder A: every job reused and the folder up to date (its stamp matches,
   its files are intact), so nothing is rendered or written.

Prints the wall and CPU seconds of each and each rerun's ratio to the first run; the issue's
target (a rerun of the unchanged quickstart at least 20× faster) is checked on rerun 3, the
same-folder rerun a user makes. The load average is printed with them (a shared machine slows
every run). Fails (exit 1) when a rerun loads a model or computes a job, when rerun 3 is not
up to date or changes any file in A, or when rerun 2 is.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "quickstart" / "audit.yaml"
TARGET = 20.0


class Run:
    """One ``reportgen run`` in a fresh process: wall and CPU seconds and its log."""

    def __init__(self, out: Path, cache: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "REPORTGEN_CACHE_MAX_SIZE"}
        env["REPORTGEN_CACHE_DIR"] = str(cache)
        cmd = [sys.executable, "-m", "reportgen.cli", "run", str(SPEC), "-o", str(out), "-q"]
        cpu0, t0 = _children_cpu(), time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        self.wall, self.cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        if done.returncode != 0:
            sys.exit(f"reportgen run failed (exit {done.returncode}) after {self.wall:.1f} s wall, {self.cpu:.1f} s CPU:\n{done.stderr}")
        self.log = done.stderr
        self.jobs = next((line for line in self.log.splitlines() if line.startswith("jobs: ")), "jobs: ?")
        self.up_to_date = any(line.startswith("up to date: ") for line in self.log.splitlines())
        self.loaded = "loading " in self.log


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()}


def main() -> int:
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        cache, a, b = Path(tmp) / "cache", Path(tmp) / "A", Path(tmp) / "B"
        first = Run(a, cache)
        before = snapshot(a)
        new_folder = Run(b, cache)
        same_folder = Run(a, cache)
        untouched = snapshot(a) == before
        size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    load1 = os.getloadavg()
    print(f"spec: {SPEC.relative_to(REPO)}, cache {size / 1e6:.1f} MB, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    loads = [", ".join(f"{x:.2f}" for x in load) for load in (load0, load1)]
    print(f"load average (1, 5, 15 min): {loads[0]} at the start, {loads[1]} at the end")
    rows = [
        ("first run, folder A", first, "every job computed, every report rendered"),
        ("rerun, new folder B", new_folder, "cache only: every report rendered again"),
        ("rerun, same folder A", same_folder, "up to date: nothing rendered or written" if same_folder.up_to_date else "NOT up to date"),
    ]
    for label, r, what in rows:
        vs = "" if r is first else f"  {first.wall / r.wall:6.1f}× wall, {first.cpu / r.cpu:6.1f}× CPU"
        print(f"{label:21s}: {r.wall:7.1f} s wall, {r.cpu:7.1f} s CPU{vs}  ({r.jobs}; {what})")
    ratio = first.wall / same_folder.wall
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"target: the same-folder rerun ≥ {TARGET:.0f}× faster than the first run: {verdict} ({ratio:.1f}× wall)")
    problems = [f"{label} loaded a model" for label, r, _ in rows[1:] if r.loaded]
    problems += [f"{label} computed a job ({r.jobs})" for label, r, _ in rows[1:] if " 0 computed" not in r.jobs]
    problems += ["the same-folder rerun was not up to date"] if not same_folder.up_to_date else []
    problems += ["the same-folder rerun changed a file in A"] if not untouched else []
    problems += ["the new-folder rerun said 'up to date'"] if new_folder.up_to_date else []
    for p in problems:
        print(f"error: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
