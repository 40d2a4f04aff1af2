"""Where the cache lives, how large it may grow, and what is in it: sizes, settings, inventory,
least-recently-used pruning and clearing (``reportgen cache info|clear|prune``).

Precedence of the location and the size limit: the command line (``reportgen cache --dir`` /
``--max-size``) over the environment (``REPORTGEN_CACHE_DIR``, ``REPORTGEN_CACHE_MAX_SIZE``)
over the spec (``cache: {dir, max_size}``) over the defaults (``.reportgen-cache`` beside the
spec, 2 GB). Relative folders are relative to the spec's folder when they come from the spec,
otherwise to the working directory.

Only files laid out as entries (:mod:`reportgen.cache`) are ever removed, so a folder given by
mistake loses nothing else; other files in the cache folder (a plugin's tables) are listed but
never pruned. Removing races safely with other processes: a file already gone is skipped, and a
writer recreates a folder removed under it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgen.cache import ENTRY_NAME, FORMAT

ENV_DIR = "REPORTGEN_CACHE_DIR"
ENV_MAX_SIZE = "REPORTGEN_CACHE_MAX_SIZE"
DEFAULT_DIR = ".reportgen-cache"
DEFAULT_MAX_SIZE = 2 * 10**9
#: A temporary file older than this is an unfinished write of a process that died.
STALE_WRITE_S = 3600.0

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[A-Za-z]*)\s*$")
_LEGACY = re.compile(r"^[0-9a-f]{64}\.json$")  # format 1 entries (no header, no version in the name)
_TEMP = re.compile(r"^\..+\.tmp$")


def parse_size(value: Any) -> int:
    """Bytes from an int or a text such as ``500MB``, ``2GB``, ``1.5GiB`` (kB/MB/GB/TB are powers
    of 1000, KiB/MiB/GiB/TiB powers of 1024); raises ValueError saying what is accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not a size; give bytes or a number with a unit: 500MB, 2GB, 1.5GiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is not a size: it is negative")
        return value
    m = _SIZE.match(value)
    unit = m.group("unit").lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"{value!r} is not a size; give bytes or a number with a unit: 500MB, 2GB, 1.5GiB")
    return int(float(m.group("n")) * _UNITS[unit])


def format_size(n: int) -> str:
    """``n`` bytes for people: 812 B, 3.4 kB, 1.5 GB (powers of 1000)."""
    if n < 1000:
        return f"{n} B"
    for unit, scale in (("kB", 10**3), ("MB", 10**6), ("GB", 10**9)):
        if n < 1000 * scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 10**12:.1f} TB"


@dataclass(frozen=True)
class CacheSettings:
    """The cache folder and its size limit, each with where it came from."""

    root: Path
    max_size: int
    root_from: str  # "--dir", ENV_DIR, "spec" or "default"
    max_size_from: str  # "--max-size", ENV_MAX_SIZE, "spec" or "default"


def resolve_settings(
    spec_cache: Any | None,
    base_dir: Path,
    *,
    dir_option: str | None = None,
    max_size_option: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> CacheSettings:
    """The settings by precedence (module doc). ``spec_cache``: the spec's ``CacheSpec`` (None:
    no spec); ``base_dir``: the spec's folder. Raises ValueError naming the option or variable
    whose size is not a size. A leading ``~`` is the home folder."""
    env = os.environ if environ is None else environ
    if dir_option:
        root, root_from = Path(dir_option), "--dir"
    elif env.get(ENV_DIR):
        root, root_from = Path(env[ENV_DIR]), ENV_DIR
    elif spec_cache is not None and "dir" in spec_cache.model_fields_set:
        root, root_from = base_dir / spec_cache.dir, "spec"
    else:
        root, root_from = base_dir / DEFAULT_DIR, "default"
    if max_size_option is not None:
        max_size, max_size_from = _size_from(max_size_option, "--max-size"), "--max-size"
    elif env.get(ENV_MAX_SIZE):
        max_size, max_size_from = _size_from(env[ENV_MAX_SIZE], ENV_MAX_SIZE), ENV_MAX_SIZE
    elif spec_cache is not None and spec_cache.max_size is not None:
        max_size, max_size_from = spec_cache.max_size, "spec"
    else:
        max_size, max_size_from = DEFAULT_MAX_SIZE, "default"
    return CacheSettings(root=root.expanduser(), max_size=max_size, root_from=root_from, max_size_from=max_size_from)


def _size_from(text: str, name: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def folder_problem(root: Path) -> str | None:
    """Why ``root`` cannot be a cache folder (None when it can; it need not exist yet)."""
    here = Path(os.path.abspath(root))
    while not here.exists() and here.parent != here:
        here = here.parent
    if here.is_dir():
        return None
    return f"{root} is a file, not a folder" if here == Path(os.path.abspath(root)) else f"{root} cannot be created: {here} is a file"


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class CacheFile:
    path: Path
    namespace: str
    size: int
    mtime: float  # last written or used


@dataclass
class Inventory:
    """What a cache folder holds: current entries, entries of another format, temporary files of
    writes under way or abandoned, and other files (never removed)."""

    entries: list[CacheFile] = field(default_factory=list)
    stale: list[CacheFile] = field(default_factory=list)
    writes: list[CacheFile] = field(default_factory=list)
    other: list[CacheFile] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.entries)


def _stat(path: Path, namespace: str) -> CacheFile | None:
    try:
        st = path.stat(follow_symlinks=False)
    except OSError:  # removed meanwhile by another process
        return None
    return CacheFile(path, namespace, st.st_size, st.st_mtime)


def _dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.is_dir() or p.is_symlink())
    except OSError:
        return []


def scan(root: Path) -> Inventory:
    """The files of ``root``, its namespace folders and their shards, sorted into the
    :class:`Inventory` kinds (nothing is read)."""
    inv = Inventory()
    for ns in _dirs(root):
        for shard in _dirs(ns):
            for path in _files(shard):
                found = _stat(path, ns.name)
                if found is None:
                    continue
                m = ENTRY_NAME.match(path.name)
                if m is not None and int(m.group("format")) == FORMAT and m.group("key")[:2] == shard.name:
                    inv.entries.append(found)
                elif m is not None or _LEGACY.match(path.name):
                    inv.stale.append(found)
                elif _TEMP.match(path.name):
                    inv.writes.append(found)
                else:
                    inv.other.append(found)
        inv.other.extend(f for f in (_stat(p, ns.name) for p in _files(ns)) if f is not None)
    inv.other.extend(f for f in (_stat(p, "") for p in _files(root)) if f is not None)
    return inv


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def info(settings: CacheSettings) -> dict[str, Any]:
    """``reportgen cache info --json``: location, limit, entries and bytes per namespace, the
    least and most recently used entry, and what is not a current entry."""
    root = settings.root
    inv = scan(root) if root.is_dir() else Inventory()
    namespaces: dict[str, dict[str, int]] = {}
    for f in inv.entries:
        ns = namespaces.setdefault(f.namespace, {"entries": 0, "size": 0})
        ns["entries"] += 1
        ns["size"] += f.size
    times = [f.mtime for f in inv.entries]

    def tally(files: list[CacheFile]) -> dict[str, int]:
        return {"files": len(files), "size": sum(f.size for f in files)}

    return {
        "dir": str(Path(os.path.abspath(root))),
        "dir_from": settings.root_from,
        "exists": root.is_dir(),
        "max_size": settings.max_size,
        "max_size_from": settings.max_size_from,
        "entries": len(inv.entries),
        "size": inv.size,
        "namespaces": dict(sorted(namespaces.items())),
        "oldest": _iso(min(times)) if times else None,
        "newest": _iso(max(times)) if times else None,
        "older_format": tally(inv.stale),
        "unfinished_writes": tally(inv.writes),
        "other_files": tally(inv.other),
    }


# --------------------------------------------------------------------------- removing


@dataclass
class Removal:
    """What a prune or clear removed (and the entries' size left)."""

    entries: int = 0
    size: int = 0
    left: int = 0
    left_size: int = 0
    failed: list[str] = field(default_factory=list)

    def take(self, f: CacheFile) -> None:
        try:
            f.path.unlink()
        except FileNotFoundError:  # another process removed it first
            return
        except OSError as exc:
            self.failed.append(f"{f.path}: {exc.strerror or exc}")
            return
        self.entries += 1
        self.size += f.size


def prune(root: Path, max_size: int, *, now: float | None = None) -> Removal:
    """Remove least-recently-used entries until the entries take at most ``max_size`` bytes.
    Entries of another format (never read) and abandoned temporary files go first."""
    inv = scan(root) if root.is_dir() else Inventory()
    out = Removal()
    cutoff = (time.time() if now is None else now) - STALE_WRITE_S
    for f in inv.stale + [w for w in inv.writes if w.mtime < cutoff]:
        out.take(f)
    total = inv.size
    keep = sorted(inv.entries, key=lambda f: (f.mtime, f.path.name))
    while keep and total > max_size:
        f = keep.pop(0)
        out.take(f)
        total -= f.size
    out.left, out.left_size = len(keep), total
    return out


def clear(root: Path) -> Removal:
    """Remove every entry (any format) and temporary file, then the folders left empty."""
    inv = scan(root) if root.is_dir() else Inventory()
    out = Removal()
    for f in inv.entries + inv.stale + inv.writes:
        out.take(f)
    for ns in _dirs(root) if root.is_dir() else []:
        for shard in _dirs(ns):
            with contextlib.suppress(OSError):  # not empty, or a writer's again: kept
                shard.rmdir()
        with contextlib.suppress(OSError):
            ns.rmdir()
    return out


def prune_after_run(settings: CacheSettings, log: Callable[[str], None]) -> Removal:
    """Keep the cache under its limit after a run; one log line when anything was pruned."""
    out = prune(settings.root, settings.max_size)
    if out.entries:
        log(
            f"cache: pruned {out.entries} least recently used or outdated file(s) ({format_size(out.size)}) to stay "
            f"within {format_size(settings.max_size)}; {out.left} entries ({format_size(out.left_size)}) kept"
        )
    for problem in out.failed:
        log(f"warning: cache: could not remove {problem}")
    return out
