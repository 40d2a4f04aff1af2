"""The output folder's stamp: what its reports were made from, so that an unchanged rerun rewrites nothing.

After a run has written every report, ``.reportgen-stamp.json`` records, beside them:

- ``inputs``: the sha256 of everything the reports are a function of: the run's results
  without the run-dependent fields (:data:`reportgen.results.RUN_DEPENDENT`; so the spec text,
  every generation, matrix, score and evaluation, the model fingerprints, the package and plugin
  versions), taken before the tokens are labelled and the detectors run (labels and findings
  follow from them), the report file names (the formats) and the software (:func:`software_digest`:
  reportgen's code and templates and each plugin's code; the spaCy version that labels tokens);
- ``signer``: the key id of the ``run --sign`` certificate (None: unsigned);
- ``files``: the sha256 of every file the run left (reports, the provenance statement, the
  signature envelopes), as they are once written and signed;
- the run's id and times, for the message that says the folder is up to date.

A later run whose jobs all come from the cache compares its own inputs with the stamp
(:func:`current`): the same inputs, the same signer and every file intact mean the folder
already holds what the run would write. A stamp is a separate file rather than a field of
results.json because it describes the folder (which formats, signed or not, the files' final
bytes), not the run: results.json stays the same whatever formats are written.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reportgen.cache import atomic_write_bytes
from reportgen.manifest import sha256_hex

STAMP_NAME = ".reportgen-stamp.json"
STAMP_VERSION = "1"


@dataclass(frozen=True)
class Stamp:
    inputs: str
    signer: str | None
    run_id: str
    completed_at: str
    files: dict[str, str]
    version: str = STAMP_VERSION


def _tree_files(root: Path, suffixes: tuple[str, ...] | None) -> list[Path]:
    found = (p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return sorted(p for p in found if suffixes is None or p.suffix in suffixes)


def _tree_digest(root: Path, suffixes: tuple[str, ...] | None) -> str:
    h = hashlib.sha256()
    for p in _tree_files(root, suffixes):
        h.update(p.relative_to(root).as_posix().encode("utf-8") + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _source_root(module: str) -> Path | None:
    """The folder (or file) of ``module``'s top-level package: the code a plugin runs."""
    top = sys.modules.get(module.split(".")[0])
    path = getattr(top, "__file__", None)
    if path is None:
        return None
    p = Path(path)
    return p.parent if p.name == "__init__.py" else p


def software_digest(plugin_modules: Iterable[str]) -> str:
    """sha256 of the code that renders reports: reportgen (with its templates and vendored
    scripts) and the top-level package of each plugin module (its ``.py`` files); editable
    installs change code without changing versions."""
    from reportgen.render import templates_dir

    roots: dict[Path, tuple[str, ...] | None] = {Path(__file__).parent: (".py",), templates_dir(): None}
    for module in plugin_modules:
        root = _source_root(module)
        if root is not None:
            roots.setdefault(root, (".py",))
    parts = []
    for root, suffixes in sorted(roots.items()):
        digest = _tree_digest(root, suffixes) if root.is_dir() else sha256_hex(root.read_bytes())
        parts.append(f"{root.name}:{digest}")
    return sha256_hex("\n".join(parts).encode("utf-8"))


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None: not installed), read without importing it."""
    import importlib.metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def inputs_digest(results: Mapping[str, Any], names: Iterable[str], software: Any) -> str:
    """sha256 of what the reports are made from: ``results`` (a results.json object; its
    run-dependent fields are left out here), the report file ``names`` and the ``software``."""
    from reportgen.results import without_run_dependent

    basis = {"results": without_run_dependent(dict(results)), "names": sorted(names), "software": software}
    text = json.dumps(basis, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return sha256_hex(text.encode("utf-8"))


def file_digests(out_dir: Path, names: Iterable[str]) -> dict[str, str]:
    """name → sha256 of each file in ``out_dir`` (missing files are left out)."""
    return {name: sha256_hex((out_dir / name).read_bytes()) for name in sorted(names) if (out_dir / name).is_file()}


def read(out_dir: Path) -> Stamp | None:
    """The folder's stamp (None when there is none, or it is not one this reportgen wrote)."""
    try:
        data = json.loads((out_dir / STAMP_NAME).read_text("utf-8"))
        stamp = Stamp(**data)
    except (OSError, ValueError, TypeError):
        return None
    return stamp if stamp.version == STAMP_VERSION and isinstance(stamp.files, dict) else None


def write(out_dir: Path, stamp: Stamp) -> Path:
    path = out_dir / STAMP_NAME
    atomic_write_bytes(path, (json.dumps(asdict(stamp), indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return path


def remove(out_dir: Path) -> None:
    """Forget what the folder held (before a run rewrites it, so a failed write leaves no stamp)."""
    (out_dir / STAMP_NAME).unlink(missing_ok=True)


def current(out_dir: Path, inputs: str, signer: str | None, names: Iterable[str]) -> Stamp | None:
    """The folder's stamp when it holds the reports ``names`` made from ``inputs`` (signed by
    ``signer``), every file recorded intact; else None."""
    stamp = read(out_dir)
    if stamp is None or stamp.inputs != inputs or stamp.signer != signer or not set(names) <= set(stamp.files):
        return None
    return stamp if file_digests(out_dir, stamp.files) == stamp.files else None
