"""Run every benchmark in this folder, one after the other, and print their tables.

Each benchmark prints ratios against a baseline measured in the same run: machines here
are shared and noisy, so absolute seconds are context, ratios are the result.
Usage: python benchmarks/run_all.py [name-substring ...]

bench_dtype.py: bfloat16/float16 error against float32 for every method (a few minutes).
bench_long_prompt.py: time and peak memory per method on a 1,000-token prompt (long: run it alone).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not argv or any(a in p.name for a in argv))
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)])
        print(f"--- {script.name}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
