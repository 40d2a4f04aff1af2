"""The manifest every report carries, and the canonical JSON its digests are taken over.

A manifest says which run a report shows and pins what it was made from::

    {"manifest_version": "1", "run_id": "…", "schema_version": "1.1",
     "results_sha256": "…",   # RFC 8785 (JCS) bytes of results.json without its "manifest" member
     "spec_sha256": "…",      # UTF-8 bytes of the audit spec text as run
     "seed": 0,
     "models": {"smollm2": {"source": "embedded:…", "files": {"….gguf": "sha256…"}, "tokenizer": ["….gguf"]}},
     "reportgen_version": "0.1.0", "plugins": {"pas": "0.1.0", …}}

It is a function of the results alone (:func:`manifest_for`), so results.json (its
``manifest`` member), the HTML report (a ``<script type="application/json">`` block) and the
PDF report (an attached ``manifest.json``) carry the same one, and ``reportgen verify``
recomputes it from the results a report embeds.

``results_sha256`` is taken over canonical bytes, not over the file: the JSON Canonicalization
Scheme of RFC 8785 (keys sorted by UTF-16 code units, no whitespace, numbers as ECMAScript
prints them, UTF-8), so any JCS implementation gives the same digest from the same data, and
re-indenting the file does not change it. The run id is derived from the run-dependent fields
(spec digest, start and end time, timings), so a rebuilt report keeps its run's id.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

MANIFEST_VERSION = "1"
#: What ``results_sha256`` is the digest of (also written into every manifest).
CANONICALIZATION = "sha256 of RFC 8785 (JCS) JSON of results.json without its manifest member"

#: Embedded results larger than this (bytes of results.json) are gzip-compressed and base64-encoded.
EMBED_COMPRESS_ABOVE = 64 * 1024
#: The ``id`` of the HTML report's ``<script type="application/json">`` block with the manifest and results.
EVIDENCE_ID = "reportgen-evidence"
#: Name of the manifest attached to the PDF report.
MANIFEST_NAME = "manifest.json"


# --------------------------------------------------------------------------- RFC 8785 (JCS)


def _jcs_float(x: float) -> str:
    """A double as ECMAScript's Number.prototype.toString prints it (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(x):
        raise ValueError(f"{x!r} is not a JSON number")
    if x == 0:
        return "0"
    r = repr(abs(x))  # the shortest digits that round-trip, like ECMAScript's
    sign = "-" if x < 0 else ""
    if "e" not in r and "E" not in r:  # Python prints 1e-4 ≤ |x| < 1e16 positionally, as ECMAScript does
        return sign + r.removesuffix(".0")
    mant, _, exp = r.partition("e")
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    stripped = digits.lstrip("0")
    n = len(ip) + int(exp) - (len(digits) - len(stripped))  # value = 0.DIGITS × 10**n
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + digits
    else:
        e = n - 1
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + out


def _jcs(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))  # escapes exactly what JCS escapes
    elif isinstance(value, int):
        out.append(str(value) if abs(value) < 2**53 else _jcs_float(float(value)))
    elif isinstance(value, float):
        out.append(_jcs_float(value))
    elif isinstance(value, Mapping):
        keys = sorted((str(k) for k in value), key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for i, k in enumerate(keys):
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _jcs(value[k], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _jcs(v, out)
        out.append("]")
    else:
        raise TypeError(f"cannot canonicalise a {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """``value`` as RFC 8785 canonical JSON (UTF-8 bytes)."""
    out: list[str] = []
    _jcs(value, out)
    return "".join(out).encode("utf-8", "surrogatepass")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the manifest


def results_digest(data: Mapping[str, Any]) -> str:
    """``results_sha256``: the digest of results.json's canonical bytes without its manifest."""
    return sha256_hex(canonical_json({k: v for k, v in data.items() if k != "manifest"}))


def run_id_for(data: Mapping[str, Any]) -> str:
    """The run id: 32 hex digits derived from what differs between two runs of one spec."""
    prov = data.get("provenance") or {}
    basis = {
        "spec_sha256": prov.get("spec_sha256") if isinstance(prov, Mapping) else None,
        "created_at": data.get("created_at", ""),
        "completed_at": data.get("completed_at", ""),
        "timings": data.get("timings") or {},
    }
    return sha256_hex(canonical_json(basis))[:32]


_TOKENIZER_PREFIXES = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "spiece", "sentencepiece")


def _is_tokenizer_file(name: str) -> bool:
    low = name.lower()
    return low.startswith(_TOKENIZER_PREFIXES) or low.endswith((".tiktoken", ".gguf"))


def model_files(info: Mapping[str, Any]) -> dict[str, str]:
    """File name → sha256 of one model's weights and tokenizer files, from its provenance.

    ``weights`` is the loader's fingerprint (``{"files": {name: sha}}`` for a folder,
    ``{"file": name, "sha256": sha}`` for a GGUF, which holds the tokenizer too); ``sha256`` is
    what the load reported (one digest, or one per weights file). Only file names are kept.
    """
    files: dict[str, str] = {}
    weights = info.get("weights")
    if isinstance(weights, Mapping):
        listed = weights.get("files")
        if isinstance(listed, Mapping):
            files.update({PurePosixPath(str(k)).name: str(v) for k, v in listed.items()})
        elif isinstance(weights.get("sha256"), str):
            files[PurePosixPath(str(weights.get("file") or "weights")).name] = str(weights["sha256"])
    sha = info.get("sha256")
    if isinstance(sha, str):
        files.setdefault(PurePosixPath(str(info.get("file") or "weights")).name, sha)
    elif isinstance(sha, Mapping):
        for k, v in sha.items():
            files.setdefault(PurePosixPath(str(k)).name, str(v))
    return dict(sorted(files.items()))


def manifest_models(models: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(models, Mapping):
        return out
    for mid in sorted(models):
        info = models[mid] if isinstance(models[mid], Mapping) else {}
        files = model_files(info)
        out[str(mid)] = {
            "source": info.get("source"),
            "files": files,
            "tokenizer": sorted(n for n in files if _is_tokenizer_file(n)),
        }
    return out


def manifest_for(data: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of a results.json object (its own ``manifest`` member, if any, is ignored)."""
    prov = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    assert isinstance(prov, Mapping)
    options = data.get("options") if isinstance(data.get("options"), Mapping) else {}
    assert isinstance(options, Mapping)
    plugins = prov.get("plugins") if isinstance(prov.get("plugins"), Mapping) else {}
    assert isinstance(plugins, Mapping)
    packages = prov.get("packages") if isinstance(prov.get("packages"), Mapping) else {}
    assert isinstance(packages, Mapping)
    spec_text = data.get("spec_text")
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id_for(data),
        "schema_version": data.get("schema_version"),
        "results_sha256": results_digest(data),
        "results_canonicalization": CANONICALIZATION,
        "spec_sha256": sha256_hex(spec_text.encode("utf-8")) if isinstance(spec_text, str) else None,
        "seed": options.get("seed", prov.get("seed")),
        "models": manifest_models(prov.get("models")),
        "reportgen_version": packages.get("reportgen"),
        "plugins": {str(name): (p.get("version") if isinstance(p, Mapping) else p) for name, p in sorted(plugins.items())},
    }


def manifest_problems(found: Any, expected: Mapping[str, Any], where: str) -> list[str]:
    """Each field in which a carried manifest differs from the one recomputed from the results."""
    if not isinstance(found, Mapping):
        return [f"{where}: not a JSON object"]
    problems = []
    for key in sorted(set(found) | set(expected)):
        a, b = found.get(key, "(missing)"), expected.get(key, "(missing)")
        if canonical_json(a) != canonical_json(b):
            problems.append(f"{where}.{key}: {_short(a)} in the manifest; the results give {_short(b)}")
    return problems


def _short(value: Any, limit: int = 120) -> str:
    s = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return s if len(s) <= limit else s[: limit - 1] + "…"


# --------------------------------------------------------------------------- embedding in HTML


def evidence(results: bytes, manifest: Mapping[str, Any], compress_above: int | None = None) -> dict[str, Any]:
    """What the HTML report embeds: the manifest and results.json (its exact bytes).

    Small results are embedded as JSON; larger ones gzip-compressed (mtime 0, so the same
    bytes every time) and base64-encoded. ``sha256`` is that of the results.json file's bytes.
    """
    limit = EMBED_COMPRESS_ABOVE if compress_above is None else compress_above
    block: dict[str, Any] = {"manifest": dict(manifest), "results_sha256_file": sha256_hex(results)}
    if len(results) > limit:
        packed = gzip.compress(results, compresslevel=9, mtime=0)
        block["results"] = {"encoding": "gzip+base64", "data": base64.b64encode(packed).decode("ascii")}
    else:
        block["results"] = {"encoding": "utf-8", "data": results.decode("utf-8")}
    return block


def evidence_json(block: Mapping[str, Any]) -> str:
    """The evidence block as the text of a ``<script type="application/json">`` element.

    ASCII only (every other character as a JSON ``\\u`` escape), so no bidi control or
    invisible character of a prompt reaches the page as such, and ``<``, ``>`` and ``&``
    escaped, so nothing in it can end the element; ``JSON.parse`` gives back the exact text.
    """
    text = json.dumps(block, ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def results_from_evidence(block: Mapping[str, Any]) -> bytes:
    """The results.json bytes an evidence block embeds (ValueError when it cannot be decoded)."""
    res = block.get("results")
    if not isinstance(res, Mapping) or not isinstance(res.get("data"), str):
        raise ValueError("no results in it")  # callers catch ValueError for any undecodable block
    enc = res.get("encoding")
    if enc == "utf-8":
        return str(res["data"]).encode("utf-8")
    if enc == "gzip+base64":
        try:
            return gzip.decompress(base64.b64decode(str(res["data"]), validate=True))
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"the gzip+base64 data cannot be decoded ({exc})") from None
    raise ValueError(f"unknown encoding {enc!r}")
