"""Sign reports: a PAdES signature inside the PDF, a DSSE envelope beside every other file.

- **Keys**: a PEM private key with its certificate (``--cert``, or certificate blocks in the key
  file itself; further certificates are the chain), or a PKCS#12 archive (``.p12``/``.pfx``) with
  key, certificate and chain. An encrypted key's passphrase is read from an environment variable
  (``REPORTGEN_KEY_PASSPHRASE`` unless another is named); it is never written anywhere, and
  neither is the key.
- **report.pdf**: pyHanko appends a PAdES baseline signature (``ETSI.CAdES.detached``, SHA-256) as
  an incremental update, so the PDF/A-3b revision reportgen wrote, its attachments and the
  provenance statement's digest of it stay intact; the signature field is invisible (a zero-size
  widget, printable, as PDF/A wants). With a timestamp authority (``--tsa URL``) the signature
  carries an RFC 3161 signature timestamp.
- **Other files** (report.html, results.json, provenance.intoto.json): ``NAME.dsse.json`` beside
  each (:mod:`reportgen.signing_dsse`), with the RFC 3161 token over the signature when a
  timestamp authority answered.

A timestamp authority that cannot be reached is named in a warning and the files are signed
without a timestamp. Checking signatures is :mod:`reportgen.signing_check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reportgen import __version__
from reportgen.errors import ReportgenError
from reportgen.signing_dsse import envelope, envelope_path, pae, statement_for

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

DEFAULT_PASS_ENV = "REPORTGEN_KEY_PASSPHRASE"
EXTRA_HINT = "pip install 'reportgen[sign]'"
#: The PDF signature field reportgen adds.
FIELD_NAME = "reportgen-signature"


class SigningError(ReportgenError):
    """A key, certificate or passphrase cannot be used, or a file cannot be signed (a usage error)."""

    exit_code = 2


def require_extra() -> None:
    """Raise a one-line error naming the extra when pyHanko or cryptography is missing."""
    try:
        import cryptography  # noqa: F401
        import pyhanko  # noqa: F401
        import pyhanko_certvalidator  # noqa: F401
    except ImportError as exc:
        raise SigningError(f"signing needs the sign extra ({exc.name} is not installed): {EXTRA_HINT}") from None


@contextlib.contextmanager
def quiet_pyhanko() -> Iterator[None]:
    """pyHanko and its validator log failures with tracebacks; reportgen reports them in one line instead."""
    loggers = [logging.getLogger(name) for name in ("pyhanko", "pyhanko_certvalidator")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@dataclass(frozen=True)
class SigningKey:
    """A private key (in memory only), its certificate and the chain above it."""

    key: PrivateKeyTypes
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def signer(self) -> str:
        return common_name(self.cert)

    def certificates_pem(self) -> list[str]:
        from cryptography.hazmat.primitives.serialization import Encoding

        return [c.public_bytes(Encoding.PEM).decode("ascii") for c in (self.cert, *self.chain)]

    def sign(self, data: bytes) -> bytes:
        """A raw signature over ``data``: RSA PKCS#1 v1.5, ECDSA (DER) or Ed25519, with SHA-256."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        raise SigningError(f"unsupported key type {type(self.key).__name__}: use an RSA, EC or Ed25519 key")


def common_name(cert: x509.Certificate) -> str:
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def key_id(cert: x509.Certificate) -> str:
    """DSSE ``keyid``: the sha256 of the certificate's SubjectPublicKeyInfo (DER)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


# --------------------------------------------------------------------------- loading keys


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def _passphrase(env: str, needed: bool, where: Path) -> bytes | None:
    value = os.environ.get(env)
    if value is None:
        if needed:
            raise SigningError(
                f"{where}: the key is encrypted; put its passphrase in the environment variable {env} (or name another with --key-pass-env)"
            )
        return None
    return value.encode("utf-8")


def load_certificates(data: bytes, where: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (or one DER certificate)."""
    from cryptography import x509

    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise SigningError(f"{where}: not a certificate in PEM or DER ({exc})") from None


def _same_key(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def spki(pub: Any) -> bytes:
        return bytes(pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))

    return spki(key.public_key()) == spki(cert.public_key())


def load_key(key_path: Path, cert_path: Path | None = None, pass_env: str = DEFAULT_PASS_ENV) -> SigningKey:
    """The signing key from a PEM key (+ certificate) or a PKCS#12 archive; SigningError (exit 2) says why not."""
    require_extra()
    data = _read(key_path, "--key")
    if key_path.suffix.lower() in (".p12", ".pfx") or b"-----BEGIN" not in data:
        key, cert, chain = _load_pkcs12(data, key_path, pass_env)
    else:
        key, cert, chain = _load_pem(data, key_path, pass_env)
    if cert_path is not None:
        given = load_certificates(_read(cert_path, "--cert"), cert_path)
        cert, chain = given[0], [*given[1:], *chain]
    if cert is None:
        raise SigningError(f"{key_path}: no certificate for this key: give it with --cert (PEM), or use a PKCS#12 file")
    if not _same_key(key, cert):
        raise SigningError(f"the certificate of {common_name(cert)!r} is not the certificate of the key in {key_path}")
    return SigningKey(key, cert, tuple(c for c in dict.fromkeys(chain) if c != cert))


def _load_pkcs12(data: bytes, where: Path, pass_env: str) -> tuple[Any, Any, list[Any]]:
    from cryptography.hazmat.primitives.serialization import pkcs12

    password = _passphrase(pass_env, False, where)
    # an archive without a passphrase opens even when the variable is set (for another key)
    for attempt in (password, None) if password is not None else (None,):
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, attempt)
            break
        except ValueError:
            continue
    else:
        hint = f"the passphrase in {pass_env} is wrong" if password else f"the passphrase is missing ({pass_env} is not set)"
        raise SigningError(f"{where}: cannot open the PKCS#12 archive: {hint}, or it is not a PKCS#12 file")
    if key is None:
        raise SigningError(f"{where}: the PKCS#12 archive holds no private key")
    return key, cert, list(extra)


def _load_pem(data: bytes, where: Path, pass_env: str) -> tuple[Any, Any, list[Any]]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data
    password = _passphrase(pass_env, True, where) if encrypted else None
    try:
        key = load_pem_private_key(data, password)
    except (ValueError, TypeError) as exc:
        why = f"the passphrase in {pass_env} is wrong" if password else str(exc).split("\n")[0]
        raise SigningError(f"{where}: cannot load the private key: {why}") from None
    certs = load_certificates(data, where) if b"-----BEGIN CERTIFICATE-----" in data else []
    return key, (certs[0] if certs else None), certs[1:]


# --------------------------------------------------------------------------- timestamps


def timestamper(url: str | None, warn: Callable[[str], None]) -> Any | None:
    """pyHanko's HTTP timestamp client for ``url``, or None (with a warning) when the authority does not answer."""
    if not url:
        return None
    from pyhanko.sign.timestamps import HTTPTimeStamper

    client = HTTPTimeStamper(url, timeout=10)
    try:
        with quiet_pyhanko():
            asyncio.run(client.async_timestamp(hashlib.sha256(b"reportgen timestamp probe").digest(), "sha256"))
    except Exception as exc:  # noqa: BLE001 - any failure to get a token means: sign without one
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warn(f"warning: the timestamp authority {url} cannot be reached or did not answer ({reason}); signing without a timestamp")
        return None
    return client


def timestamp_token(stamper: Any | None, data: bytes) -> bytes | None:
    """The DER RFC 3161 token over sha256(``data``), or None without a timestamper."""
    if stamper is None:
        return None
    token = asyncio.run(stamper.async_timestamp(hashlib.sha256(data).digest(), "sha256"))
    return bytes(token.dump())


# --------------------------------------------------------------------------- signing


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sign_detached(path: Path, key: SigningKey, stamper: Any | None = None) -> Path:
    """Write ``PATH.dsse.json``: a DSSE envelope over a statement naming ``path`` and its sha256."""
    from reportgen.signing_dsse import PAYLOAD_TYPE

    payload = statement_for(path.name, path.read_bytes(), _now(), f"reportgen {__version__}")
    sig = key.sign(pae(PAYLOAD_TYPE, payload))
    env = envelope(payload, key_id(key.cert), sig, key.certificates_pem(), timestamp_token(stamper, sig))
    out = envelope_path(path)
    out.write_text(json.dumps(env, indent=2) + "\n", encoding="utf-8")
    return out


def _pyhanko_signer(key: SigningKey) -> Any:
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    der = key.key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())  # in memory only
    return signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(key.cert.public_bytes(Encoding.DER)),
        signing_key=asn1_keys.PrivateKeyInfo.load(der),
        cert_registry=SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
            [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in key.chain]
        ),
    )


def signed_pdf(raw: bytes, key: SigningKey, stamper: Any | None = None) -> bytes:
    """``raw`` with a PAdES signature appended as an incremental update (PDF/A-3b kept)."""
    from pyhanko.pdf_utils.generic import TextStringObject
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.metadata.model import VENDOR
    from pyhanko.sign import fields, signers

    writer = IncrementalPdfFileWriter(io.BytesIO(raw), strict=False)
    info = writer.trailer.raw_get("/Info") if "/Info" in writer.trailer else None
    if info is not None:
        # pyHanko writes its name as the XMP pdf:Producer; PDF/A needs the info dictionary to agree
        info.get_object()["/Producer"] = TextStringObject(VENDOR)
        writer.mark_update(info)
    meta = signers.PdfSignatureMetadata(field_name=FIELD_NAME, subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256")
    out = io.BytesIO()
    with quiet_pyhanko():
        signers.PdfSigner(meta, _pyhanko_signer(key), timestamper=stamper).sign_pdf(writer, output=out)
    return out.getvalue()


def pdf_signers(raw: bytes) -> list[str]:
    """The names of the signature fields already filled in a PDF (read with pypdf)."""
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(raw))
    fields = reader.get_fields() or {}
    return [name for name, f in fields.items() if f.get("/FT") == "/Sig" and f.get("/V") is not None]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.signing")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sign_files(paths: Sequence[Path], key: SigningKey, stamper: Any | None = None) -> list[str]:
    """Sign every file (a PDF in place, any other file with an envelope beside it); lines saying what was written.

    Every PDF is checked first (readable, not signed yet), so a refusal writes nothing.
    """
    pdfs: dict[Path, bytes] = {}
    for path in paths:
        if path.suffix.lower() == ".pdf":
            raw = _read(path, "report")
            try:
                already = pdf_signers(raw)
            except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
                raise SigningError(f"{path}: cannot be read as a PDF ({type(exc).__name__}: {exc})") from None
            if already:
                raise SigningError(f"{path}: already signed ({', '.join(already)}); sign the unsigned report")
            pdfs[path] = raw
        elif not path.is_file():
            raise SigningError(f"{path}: no such file")
    lines: list[str] = []
    for path in paths:
        if path in pdfs:
            _atomic_write(path, signed_pdf(pdfs[path], key, stamper))
            lines.append(f"signed: {path} (PAdES, by {key.signer})")
        else:
            lines.append(f"signed: {path} -> {sign_detached(path, key, stamper)} (DSSE, by {key.signer})")
    return lines


def files_to_sign(paths: Iterable[Path]) -> list[Path]:
    """The report files in ``paths`` (files, or report folders as ``reportgen verify`` reads them)."""
    from reportgen.errors import VerifyInputError
    from reportgen.signing_dsse import SUFFIX
    from reportgen.verify import expand

    try:
        found = expand(list(paths))
    except VerifyInputError as exc:
        raise SigningError(str(exc)) from None
    return [p for p in found if not p.name.endswith(SUFFIX)]
