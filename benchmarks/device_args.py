"""``--device`` / ``--dtype`` for the benchmarks: checked before anything loads, and timing that waits for the GPU.

A CUDA call returns when its kernels are queued, not when they have run, so a clock read right
after it measures the launch: :func:`timed` synchronises the device before each clock read. The
first calls on a GPU also pay for the CUDA context, cuBLAS handles and kernel selection, so
:func:`timed` can run the call ``warmup`` times first and keep the best of ``repeat`` timings.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import torch

from reportgen.spec import device_problem

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
T = TypeVar("T")


def add_device_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def fail(prog: str, message: str) -> NoReturn:
    """One line on stderr and exit status 2 (usage), as the reportgen CLI does for a bad device."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def checked_device(name: str, prog: str) -> torch.device:
    """The torch device ``name`` (cpu, cuda, cuda:N), or exit 2 with why it cannot be used here."""
    why = device_problem(name)
    if why is None and torch.device(name).type not in ("cpu", "cuda"):
        why = f"device {name!r} is not supported by the benchmarks; use cpu, cuda or cuda:<index>"
    if why is not None:
        fail(prog, why)
    return torch.device(name)


def checked_dtype(name: str, prog: str) -> torch.dtype:
    """The torch dtype ``name`` (float32, bfloat16, float16), or exit 2."""
    if name not in DTYPES:
        fail(prog, f"dtype {name!r} is not supported; use {', '.join(DTYPES)}")
    return DTYPES[name]


def describe(device: torch.device, dtype: torch.dtype | None = None) -> str:
    """The header: device (GPU name and memory on cuda, threads on cpu) and, when given, dtype."""
    kind = "" if dtype is None else ", dtype " + str(dtype).replace("torch.", "")
    if device.type != "cuda":
        return f"device {device} ({torch.get_num_threads()} torch threads){kind}"
    props = torch.cuda.get_device_properties(device)
    tf32 = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
    return (
        f"device {device} ({torch.cuda.get_device_name(device)}, {props.total_memory / 2**30:.0f} GiB, "
        f"CUDA {torch.version.cuda}){kind}, TF32 matmul {tf32}"
    )


def synchronize(device: torch.device) -> None:
    """Wait until every queued kernel on ``device`` has finished (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device, warmup: int = 0, repeat: int = 1) -> tuple[T, float]:
    """``fn()``'s result and its best wall time in seconds over ``repeat`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(max(1, repeat)):
        synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return out, best
