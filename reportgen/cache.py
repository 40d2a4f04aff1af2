"""Content-addressed on-disk cache: finished work survives a failed or interrupted run.

Layout: ``root/<namespace>/<key[:2]>/<key>.v<FORMAT>.json``. The entry format is part of every
file name, so entries written in another format are never read (they are left for
``reportgen cache prune`` or the size limit to remove). Each entry is one header line (JSON:
format, namespace, key, payload size and sha256) followed by the JSON payload.

Reading checks the header, the size and the checksum; an entry that fails any check (a flipped
byte, a truncated or half-written file, garbage) is a miss: it is removed, one warning line
names it, and the caller recomputes it. Writes are atomic (a temporary file in the same folder,
renamed over the entry), so two processes sharing one cache never see each other's half-written
entries; a folder removed under a writer by ``reportgen cache clear`` is recreated. A hit marks
the entry as used (its mtime), which is what least-recently-used pruning
(:mod:`reportgen.cache_admin`) orders by.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reportgen.data import to_jsonable

#: Entry format; raise it whenever the bytes of an entry change meaning.
FORMAT = 2
#: ``<key>.v<format>.json``: the file name of an entry.
ENTRY_NAME = re.compile(r"^(?P<key>[0-9A-Za-z_-]{1,128})\.v(?P<format>[0-9]+)\.json$")
_NAME = re.compile(r"^[0-9A-Za-z_-]{2,128}$")
_MAGIC = "reportgen-cache"

_logger = logging.getLogger("reportgen.cache")


def content_key(*parts: Any) -> str:
    """A stable sha256 over JSON-able parts (dict keys sorted)."""
    blob = json.dumps(to_jsonable(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class CorruptEntry(ValueError):
    """An entry's bytes fail a check; the message says which."""


def encode_entry(namespace: str, key: str, value: Any) -> bytes:
    """The bytes of an entry: a header line with the payload's size and sha256, then the payload."""
    payload = json.dumps(to_jsonable(value)).encode("utf-8")
    header = {
        _MAGIC: FORMAT,
        "namespace": namespace,
        "key": key,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    return json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n" + payload


def decode_entry(data: bytes, namespace: str | None = None, key: str | None = None) -> Any:
    """The value stored in ``data``; raises :class:`CorruptEntry` when any check fails
    (with ``namespace``/``key``: the entry must also be the one asked for)."""
    head, newline, payload = data.partition(b"\n")
    try:
        header = json.loads(head) if newline else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or _MAGIC not in header:
        raise CorruptEntry("no entry header")
    if header[_MAGIC] != FORMAT:
        raise CorruptEntry(f"entry format {header[_MAGIC]!r}, expected {FORMAT}")
    if (namespace, key) != (None, None) and (header.get("namespace"), header.get("key")) != (namespace, key):
        raise CorruptEntry(f"holds {header.get('namespace')}/{header.get('key')}")
    if header.get("size") != len(payload):
        raise CorruptEntry(f"truncated or padded: {len(payload)} payload bytes, header says {header.get('size')}")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptEntry("checksum mismatch")
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # pragma: no cover - a checksummed payload is our own JSON
        raise CorruptEntry(f"payload is not JSON: {exc}") from None


def entry_path(root: Path, namespace: str, key: str) -> Path:
    if not (_NAME.match(namespace) and _NAME.match(key)):
        raise ValueError(f"cache namespace and key must be letters, digits, '-' or '_': {namespace!r}/{key!r}")
    return root / namespace / key[:2] / f"{key}.v{FORMAT}.json"


class Cache:
    """JSON values under ``root`` (see the module doc); ``root=None`` disables it.

    ``log`` receives one line per corrupted entry found (and per entry that could not be
    written); ``corrupted`` counts the former.
    """

    def __init__(self, root: str | os.PathLike[str] | None, log: Callable[[str], None] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.log = log or _logger.warning
        self.hits = 0
        self.misses = 0
        self.corrupted = 0

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def _path(self, namespace: str, key: str) -> Path:
        assert self.root is not None
        return entry_path(self.root, namespace, key)

    def get(self, namespace: str, key: str) -> Any | None:
        if self.root is None:
            return None
        p = self._path(namespace, key)
        try:
            with open(p, "rb") as fh:
                seen = os.fstat(fh.fileno())
                data = fh.read()
        except FileNotFoundError:
            self.misses += 1
            return None
        except OSError as exc:
            self.misses += 1
            self.log(f"warning: cache entry {namespace}/{key[:12]} cannot be read ({exc.strerror or exc}); recomputed")
            return None
        try:
            value = decode_entry(data, namespace, key)
        except CorruptEntry as why:
            self.misses += 1
            self.corrupted += 1
            self._discard(p, seen)
            self.log(f"warning: cache entry {namespace}/{key[:12]} is corrupted ({why}); removed and recomputed")
            return None
        with contextlib.suppress(OSError):  # used now (LRU order); a read-only cache still serves
            os.utime(p)
        self.hits += 1
        return value

    @staticmethod
    def _discard(path: Path, seen: os.stat_result) -> None:
        """Remove the corrupted file just read, unless another process has replaced it since."""
        with contextlib.suppress(OSError):
            now = os.stat(path)
            if (now.st_dev, now.st_ino) == (seen.st_dev, seen.st_ino):
                path.unlink()

    def set(self, namespace: str, key: str, value: Any) -> None:
        if self.root is None:
            return
        path = self._path(namespace, key)
        data = encode_entry(namespace, key, value)
        problem = ""
        for _ in range(5):
            try:
                atomic_write_bytes(path, data)
                return
            except (FileNotFoundError, FileExistsError) as exc:  # a concurrent clear removed the folder: again
                problem = exc.strerror or str(exc)
            except OSError as exc:  # a full disk or a read-only cache costs reuse, not the run
                problem = exc.strerror or str(exc)
                break
        self.log(f"warning: cache entry {namespace}/{key[:12]} not written ({problem})")
