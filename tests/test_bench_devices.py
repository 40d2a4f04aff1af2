"""The benchmarks' ``--device`` / ``--dtype`` handling (benchmarks/device_args.py) and device-safe tensor creation.

A GPU benchmark is only as good as its clock: :func:`device_args.timed` must synchronise the
device before every clock read and run its warm-ups untimed. A bad device or dtype must stop a
benchmark before the model loads, with one line and exit status 2. And every tensor the PAS
engine, the PAS method and its benchmark create must be created on the model's device: a factory
call without ``device=`` makes a CPU tensor that a CUDA run would trip over, which no CPU test sees.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import device_args  # noqa: E402

FACTORIES = {"tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "arange", "linspace", "eye", "rand", "randn", "randint"}
DEVICE_SAFE_FILES = [*sorted((ROOT / "plugins" / "pas").glob("*.py")), ROOT / "benchmarks" / "bench_probabilistic.py"]


def test_cuda_index_past_the_device_count_and_unknown_devices_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_args.checked_device("cuda:0", "bench") == torch.device("cuda:0")
    assert device_args.checked_device("cpu", "bench") == torch.device("cpu")
    for name, why in [("cuda:3", "does not exist: 1 CUDA device(s)"), ("tpu", "unknown device 'tpu'"), ("meta", "not supported")]:
        with pytest.raises(SystemExit) as exc:
            device_args.checked_device(name, "bench")
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("bench: error: ") and why in err, err


def test_dtypes_are_checked() -> None:
    assert device_args.checked_dtype("bfloat16", "bench") is torch.bfloat16
    with pytest.raises(SystemExit) as exc:
        device_args.checked_dtype("float64", "bench")
    assert exc.value.code == 2


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_timed_synchronises_before_every_clock_read_and_keeps_the_best_run(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    events: list[str] = []
    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 29.0])  # runs of 5, 2 and 9 s: the best is 2

    def read_clock() -> float:
        events.append("clock")
        return next(clock)

    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: events.append("sync"))
    monkeypatch.setattr(device_args.time, "perf_counter", read_clock)
    calls = iter(range(10))

    def fn() -> int:
        events.append("call")
        return next(calls)

    out, secs = device_args.timed(fn, torch.device(device), warmup=2, repeat=3)
    assert (out, secs) == (4, 2.0)
    timed_run = ["sync", "clock", "call", "sync", "clock"] if device == "cuda" else ["clock", "call", "clock"]
    assert events == ["call", "call", *timed_run * 3]


def _tensors_without_device(path: Path) -> list[str]:
    """``torch.<factory>(…)`` calls with no ``device=`` that are not moved at once with ``.to(…)``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    moved = {
        id(node.func.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "to"
    }
    bad = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
            continue
        if id(node) not in moved and not any(kw.arg == "device" for kw in node.keywords):
            bad.append(f"{path.name}:{node.lineno} torch.{node.func.attr}")
    return bad


def test_pas_and_its_benchmark_create_every_tensor_on_a_device() -> None:
    bad = [b for p in DEVICE_SAFE_FILES for b in _tensors_without_device(p)]
    assert not bad, f"tensors created without device= (CPU tensors on a CUDA run): {bad}"


def test_the_check_sees_a_tensor_created_without_device(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import torch\na = torch.tensor([1], device=d)\nb = torch.zeros(3).to(d)\nc = torch.zeros(3)\nd = torch.ones_like(a)\n")
    assert _tensors_without_device(src) == ["m.py:4 torch.zeros"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
@pytest.mark.parametrize("script", ["bench_probabilistic.py", "bench_dtype.py", "bench_long_prompt.py"])
def test_cuda_on_a_machine_without_it_is_one_line_and_exit_2_before_loading(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--device", "cuda"], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and f"{script}: error: device 'cuda' is not available" in proc.stderr, proc.stderr
