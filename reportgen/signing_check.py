"""Check the signatures :mod:`reportgen.signing` writes: PAdES in a PDF, DSSE envelopes beside other files.

Each check says who signed (the certificate's common name), when (the time the signer claims, and
an RFC 3161 timestamp's time when there is one), and what is wrong: a signature that does not
verify, a file changed after signing (bytes edited, or a PDF revision appended after the
signature), or, given trusted certificates (``reportgen verify --cert``), a signer whose
certificate does not chain to one of them. Without trusted certificates the signature is only
checked against the certificate it carries, and the result says so. Nothing is fetched from the
network: no revocation lookups, no certificates downloaded.

Finding a PDF's signatures and the revision before them needs only pypdf
(:func:`pdf_byte_ranges`, :func:`unsigned_revision`); checking signatures needs the ``sign`` extra.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgen.signing_dsse import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, pae, read_envelope

#: Key usages of which a signer's certificate needs one (when it restricts key usage at all).
SIGNER_KEY_USAGE = frozenset({"digital_signature", "non_repudiation"})
_EOF = re.compile(rb"%%EOF(?:\r\n|\r|\n)?")


@dataclass
class SignatureCheck:
    """What was found about one file's signature."""

    kind: str  # PAdES | DSSE
    signer: str | None = None
    signed_at: str | None = None
    timestamp: str | None = None
    trusted: bool | None = None  # None: not checked against trusted certificates
    problems: list[str] = field(default_factory=list)

    def describe(self, trust_source: str | None) -> str:
        when = f" at {self.signed_at}" if self.signed_at else ""
        stamp = f", timestamp {self.timestamp}" if self.timestamp else ", no timestamp"
        trust = f"certificate chains to {trust_source}" if self.trusted else "not checked against a trusted certificate"
        return f"{self.kind} signature by {self.signer}{when}{stamp} ({trust})"


@dataclass(frozen=True)
class Trust:
    """Trusted certificates (signers or CAs) from ``--cert``, as pyHanko's validation context wants them."""

    source: str
    roots: tuple[Any, ...]

    def context(self) -> Any:
        from pyhanko_certvalidator import ValidationContext

        return ValidationContext(trust_roots=list(self.roots), allow_fetching=False)


def load_trust(path: Path) -> Trust:
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from reportgen.signing import SigningError, load_certificates, require_extra

    require_extra()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"--cert {path}: cannot read ({exc.strerror or exc})") from None
    certs = load_certificates(data, path)
    return Trust(path.name, tuple(asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in certs))


def _untrusted() -> Any:
    from pyhanko_certvalidator import ValidationContext

    return ValidationContext(trust_roots=[], allow_fetching=False)


def _usage() -> Any:
    from pyhanko.sign.validation.settings import KeyUsageConstraints

    return KeyUsageConstraints(key_usage=set(SIGNER_KEY_USAGE), match_all_key_usages=False)


def _cn(cert: Any) -> str:
    name = cert.subject.native
    return str(name.get("common_name") or cert.subject.human_friendly)


def _iso(when: Any) -> str | None:
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z") if when is not None else None


# --------------------------------------------------------------------------- PDF


def pdf_byte_ranges(reader: Any) -> list[list[int]]:
    """The ``/ByteRange`` of every filled signature field of a pypdf reader, in file order."""
    out: list[list[int]] = []
    for f in (reader.get_fields() or {}).values():
        value = f.get("/V")
        value = value.get_object() if value is not None else None
        if f.get("/FT") == "/Sig" and value is not None and "/ByteRange" in value:
            out.append([int(x) for x in value["/ByteRange"]])
    return sorted(out, key=lambda r: r[1])


def unsigned_revision(raw: bytes, ranges: Sequence[Sequence[int]]) -> bytes | None:
    """The bytes of the revision before the first signature (None when the file has none).

    A signature's revision starts after the ``%%EOF`` of the revision before it, and its
    ``/Contents`` (where the first byte range ends) lies inside it.
    """
    if not ranges:
        return None
    before = ranges[0][1]
    ends = [m.end() for m in _EOF.finditer(raw, 0, before)]
    return raw[: ends[-1]] if ends else None


def check_pdf(raw: bytes, trust: Trust | None) -> list[SignatureCheck]:
    """Every signature in a PDF, checked with pyHanko."""
    from reportgen.signing import quiet_pyhanko

    with quiet_pyhanko():
        return _check_pdf(raw, trust)


def _check_pdf(raw: bytes, trust: Trust | None) -> list[SignatureCheck]:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    try:
        signatures = PdfFileReader(io.BytesIO(raw), strict=False).embedded_signatures
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds on a damaged file
        return [SignatureCheck("PAdES", problems=[f"its signatures cannot be read ({type(exc).__name__}: {exc})"])]
    out: list[SignatureCheck] = []
    for sig in signatures:
        check = SignatureCheck("PAdES")
        out.append(check)
        try:
            status = validate_pdf_signature(sig, trust.context() if trust else _untrusted(), key_usage_settings=_usage())
        except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds on a malformed signature
            check.problems.append(f"the PAdES signature cannot be read ({type(exc).__name__}: {exc})")
            continue
        check.signer = _cn(status.signing_cert)
        check.signed_at = _iso(status.signer_reported_dt)
        ts = status.timestamp_validity
        if ts is not None:
            check.timestamp = f"{_iso(ts.timestamp)} by {_cn(ts.signing_cert)}"
            if not (ts.intact and ts.valid):
                check.problems.append(f"the signature's timestamp by {_cn(ts.signing_cert)} does not verify")
        if not (status.intact and status.valid):
            check.problems.append(f"the PAdES signature by {check.signer} does not verify: the signed bytes were changed")
        elif status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
            check.problems.append(f"the file was changed after {check.signer} signed it (a revision was appended after the signature)")
        if trust is not None:
            check.trusted = status.trust_problem_indic is None
            if not check.trusted:
                check.problems.append(f"signed by {check.signer}, whose certificate does not chain to {trust.source}")
    return out


# --------------------------------------------------------------------------- DSSE


def _verify_raw(cert: Any, sig: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    pub = cert.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(sig, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _chains(trust: Trust, certs: Sequence[Any]) -> bool:
    from pyhanko_certvalidator import CertificateValidator
    from pyhanko_certvalidator.errors import PathError, ValidationError

    validator = CertificateValidator(certs[0], intermediate_certs=list(certs[1:]), validation_context=trust.context())
    try:
        asyncio.run(validator.async_validate_usage(set()))  # type: ignore[no-untyped-call]
        _usage().validate(certs[0])
    except (PathError, ValidationError, ValueError):
        return False
    return True


def _timestamp(check: SignatureCheck, token: bytes, sig: bytes, trust: Trust | None) -> None:
    from asn1crypto import cms
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data

    try:
        signed_data = cms.ContentInfo.load(token)["content"]
        status = asyncio.run(
            validate_tst_signed_data(signed_data, trust.context() if trust else _untrusted(), lambda algo: hashlib.new(algo, sig).digest())
        )
    except Exception as exc:  # noqa: BLE001 - asn1crypto and pyHanko raise many kinds on a malformed token
        check.problems.append(f"the timestamp token cannot be read ({type(exc).__name__})")
        return
    check.timestamp = f"{_iso(status['timestamp'])} by {_cn(status['signing_cert'])}"
    if not (status.get("intact") and status.get("valid")):
        check.problems.append("the timestamp token does not verify against the signature")


def check_envelope(path: Path, raw_envelope: bytes, body: bytes, trust: Trust | None) -> SignatureCheck:
    """A DSSE envelope against the file ``path`` (whose bytes are ``body``)."""
    from reportgen.signing import quiet_pyhanko

    with quiet_pyhanko():
        return _check_envelope(path, raw_envelope, body, trust)


def _check_envelope(path: Path, raw_envelope: bytes, body: bytes, trust: Trust | None) -> SignatureCheck:
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from reportgen.signing import common_name, key_id

    check = SignatureCheck("DSSE")
    try:
        env = read_envelope(raw_envelope)
        certs = [x509.load_pem_x509_certificate(c.encode("ascii")) for c in env.certificates]
    except ValueError as exc:
        check.problems.append(f"its signature envelope cannot be read: {exc}")
        return check
    check.signer, check.signed_at = common_name(certs[0]), env.signed_at
    st = env.statement
    if env.payload_type != PAYLOAD_TYPE or st.get("_type") != STATEMENT_TYPE or st.get("predicateType") != PREDICATE_TYPE:
        check.problems.append(f"its signature envelope does not hold a reportgen signature statement ({env.payload_type})")
        return check
    if not _verify_raw(certs[0], env.sig, pae(env.payload_type, env.payload)):
        check.problems.append(f"the DSSE signature by {check.signer} does not verify (the envelope was changed, or signed by another key)")
        return check
    if env.keyid and env.keyid != key_id(certs[0]):
        check.problems.append("the envelope's keyid is not the key of the certificate it carries")
    named = env.subject_digest(path.name)
    got = hashlib.sha256(body).hexdigest()
    if named is None:
        check.problems.append(f"its signature envelope names no file {path.name} (it signs another file)")
    elif named != got:
        check.problems.append(f"the file was changed after {check.signer} signed it: its sha256 is {got}, the signature names {named}")
    if env.timestamp is not None:
        _timestamp(check, env.timestamp, env.sig, trust)
    if trust is not None:
        check.trusted = _chains(trust, [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in certs])
        if not check.trusted:
            check.problems.append(f"signed by {check.signer}, whose certificate does not chain to {trust.source}")
    return check
