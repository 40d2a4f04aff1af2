"""DSSE envelopes (in-toto's Dead Simple Signing Envelope) for reportgen's detached signatures.

A signed file ``NAME`` gets ``NAME.dsse.json`` beside it: an envelope whose payload
(``application/vnd.in-toto+json``) is an in-toto Statement v1 naming ``NAME`` and its sha256, with
predicate type :data:`PREDICATE_TYPE` (the signer's claimed signing time and the tool). The
signature is over the pre-authentication encoding :func:`pae` of payload type and payload, as the
DSSE specification defines it. Each signature carries, besides DSSE's ``keyid`` and ``sig``, the
signer's certificate chain (``certificates``: PEM, signer first) and, when a timestamp authority
answered, its RFC 3161 token over the signature bytes (``timestamp``: base64 DER).

Nothing here needs the ``sign`` extra; signing and checking the signatures do.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:reportgen:detached-signature:v1"
SUFFIX = ".dsse.json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: ``DSSEv1 <len> <type> <len> <body>`` (lengths in bytes)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def envelope_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def statement_for(name: str, body: bytes, signed_at: str, tool: str) -> bytes:
    """The payload naming one file: an in-toto Statement v1 with its sha256."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": hashlib.sha256(body).hexdigest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"signedAt": signed_at, "tool": tool},
    }
    return json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")


def envelope(payload: bytes, keyid: str, sig: bytes, certificates: list[str], timestamp: bytes | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"keyid": keyid, "sig": base64.b64encode(sig).decode("ascii"), "certificates": certificates}
    if timestamp is not None:
        entry["timestamp"] = base64.b64encode(timestamp).decode("ascii")
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode("ascii"), "signatures": [entry]}


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope's one signature and the statement it signs."""

    payload_type: str
    payload: bytes
    keyid: str
    sig: bytes
    certificates: list[str]
    timestamp: bytes | None
    statement: dict[str, Any]

    def subject_digest(self, name: str) -> str | None:
        for s in self.statement.get("subject") or []:
            if isinstance(s, dict) and s.get("name") == name and isinstance(s.get("digest"), dict):
                value = s["digest"].get("sha256")
                return value if isinstance(value, str) else None
        return None

    @property
    def signed_at(self) -> str | None:
        pred = self.statement.get("predicate")
        value = pred.get("signedAt") if isinstance(pred, dict) else None
        return value if isinstance(value, str) else None


def read_envelope(raw: bytes) -> Envelope:
    """Parse an envelope with exactly one signature; ValueError says what is wrong."""
    try:
        env = json.loads(raw)
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = env["signatures"]
        if not isinstance(sigs, list) or len(sigs) != 1:
            raise ValueError(f"it has {len(sigs) if isinstance(sigs, list) else 'no'} signatures; reportgen writes one")
        entry = sigs[0]
        sig = base64.b64decode(entry["sig"], validate=True)
        certs = entry.get("certificates")
        if not isinstance(certs, list) or not certs or not all(isinstance(c, str) for c in certs):
            raise ValueError("its signature carries no certificate chain")
        stamp = base64.b64decode(entry["timestamp"], validate=True) if entry.get("timestamp") else None
        statement = json.loads(payload)
        payload_type = env["payloadType"]
        keyid = str(entry.get("keyid") or "")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a DSSE envelope ({type(exc).__name__}: {exc})") from None
    if not isinstance(statement, dict) or not isinstance(payload_type, str):
        raise ValueError("its payload is not an in-toto statement")
    return Envelope(payload_type, payload, keyid, sig, certs, stamp, statement)
