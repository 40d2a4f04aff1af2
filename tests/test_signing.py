"""Signed reports (``reportgen sign``, ``run --sign``, ``verify --cert``) with keys made here.

A CA, a signer certificate it issues (EC P-256; as PEM key + chain, encrypted PEM and PKCS#12
with a passphrase), an RSA key of a stranger, and a timestamp authority are generated with
``cryptography``. A tiny-model run writes every format from the command line, unsigned (signed
later by ``reportgen sign`` in copies) and with ``--sign`` (end to end). A signed run verifies
with the CA or the signer's certificate and names the signer; it fails with the stranger's, when
a byte is edited after signing, when a revision is appended to the PDF, and without signatures.
The signed PDF still passes the PDF/A-3b self-check and verify's re-rendering.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("pyhanko")
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reportgen.cli import main
from reportgen_plugins.renderers.pdfa_check import pdfa_problems

PASSPHRASE = "correct horse battery staple"
REPORTS = ("report.html", "report.pdf", "results.json", "provenance.intoto.json")
SPEC = """\
title: Signed
models:
  - id: tiny
    source: "tiny:5"
prompts:
  - id: p1
    text: "Is it signed?"
generation: {max_new_tokens: 3}
methods:
  - method: inseq.saliency
report:
  formats: [html, json, pdf]
cache: false
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool = False, tsa: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca and not tsa,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if tsa:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test Audit CA", ca_key, _name("Test Audit CA"), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    signer = _cert("Report Signer", key, ca.subject, ca_key)
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = _cert("Someone Else", stranger_key, _name("Someone Else"), stranger_key)
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # pyHanko's in-process TSA signs with RSA
    tsa = _cert("Test TSA", tsa_key, ca.subject, ca_key, tsa=True)
    plain = serialization.NoEncryption()
    der = serialization.Encoding.DER
    files = {
        "ca": d / "ca.pem",
        "cert": d / "signer.cert.pem",
        "key": d / "signer.key.pem",
        "enc": d / "signer.enc.pem",
        "p12": d / "signer.p12",
        "stranger": d / "stranger.pem",
        "stranger_p12": d / "stranger.p12",
    }
    files["ca"].write_bytes(_pem(ca))
    files["cert"].write_bytes(_pem(signer, ca))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, plain))
    files["enc"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(PASSPHRASE.encode())
        )
    )
    files["p12"].write_bytes(
        pkcs12.serialize_key_and_certificates(b"signer", key, signer, [ca], serialization.BestAvailableEncryption(PASSPHRASE.encode()))
    )
    files["stranger"].write_bytes(_pem(stranger))
    files["stranger_p12"].write_bytes(pkcs12.serialize_key_and_certificates(b"x", stranger_key, stranger, None, plain))
    secrets = [
        PASSPHRASE.encode(),
        key.private_bytes(der, serialization.PrivateFormat.PKCS8, plain),
        files["key"].read_bytes().split(b"\n")[1],  # a line of the PEM key's base64
    ]
    return {**files, "tsa": (tsa, tsa_key), "signer": signer, "secrets": secrets}


@pytest.fixture(scope="module")
def runner_env(smollm_tokenizer: Any) -> Any:
    """The CLI sees a registry with the tiny-model loader."""
    from conftest import TinyLoader

    from reportgen import hookimpl
    from reportgen.plugins import Registry, get_plugin_manager

    loader = TinyLoader(smollm_tokenizer)

    class Plugin:
        @hookimpl
        def reportgen_register_model_loaders(self, register: Any) -> None:
            register(loader)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="tests-signing")
    reg = Registry(pm)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("reportgen.runner.get_registry", lambda: reg)
        mp.setattr("reportgen.plugins.get_registry", lambda: reg)
        yield mp


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def _run(folder: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    (folder / "audit.yaml").write_text(SPEC, encoding="utf-8")
    with pytest.MonkeyPatch.context() as here:
        here.chdir(folder)
        return cli("run", "audit.yaml", "-o", "out", "-q", *extra, env=env)


@pytest.fixture(scope="module")
def unsigned(runner_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("unsigned")
    res = _run(folder)
    assert res.exit_code == 0, res.output
    return folder / "out"


@pytest.fixture(scope="module")
def signed_run(runner_env: Any, pki: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """``run --sign`` with the PKCS#12 key, its passphrase in the default variable."""
    folder = tmp_path_factory.mktemp("signed")
    res = _run(folder, "--sign", str(pki["p12"]), env={"REPORTGEN_KEY_PASSPHRASE": PASSPHRASE})
    assert res.exit_code == 0, res.output
    return folder / "out", res


def signed_copy(unsigned: Path, tmp_path: Path, pki: dict[str, Any], *extra: str) -> tuple[Path, Any]:
    out = tmp_path / "out"
    shutil.copytree(unsigned, out)
    res = cli("sign", str(out), "--key", str(pki["key"]), "--cert", str(pki["cert"]), *extra)
    assert res.exit_code == 0, res.output
    return out, res


def verify_lines(res: Any, out: Path) -> dict[str, list[str]]:
    """verify's output grouped per file name: the head line and its indented lines."""
    groups: dict[str, list[str]] = {}
    current = None
    for line in res.output.splitlines():
        if line.startswith(str(out) + "/"):
            current = Path(line.split(":")[0]).name
            groups[current] = [line]
        elif current and line.startswith("  "):
            groups[current].append(line.strip())
    return groups


# --------------------------------------------------------------------------- run --sign, end to end


def test_run_sign_verifies_with_the_ca_and_names_the_signer(signed_run: tuple[Path, Any], pki: dict[str, Any]) -> None:
    out, res = signed_run
    assert sum(line.startswith("signed: ") for line in res.output.splitlines()) == 4, res.output
    for name in ("report.html", "results.json", "provenance.intoto.json"):
        assert (out / (name + ".dsse.json")).is_file()
    ok = cli("verify", str(out), "--cert", str(pki["ca"]))
    assert ok.exit_code == 0, ok.output
    groups = verify_lines(ok, out)
    assert set(groups) == set(REPORTS)
    for name, lines in groups.items():
        assert lines[0].startswith(f"{out / name}: ok"), lines
        kind = "PAdES" if name.endswith(".pdf") else "DSSE"
        assert any(
            line.startswith(f"signed: {kind} signature by Report Signer at ") and "(certificate chains to ca.pem)" in line for line in lines
        ), lines


def test_run_sign_fails_with_another_certificate(signed_run: tuple[Path, Any], pki: dict[str, Any]) -> None:
    out, _ = signed_run
    res = cli("verify", str(out), "--cert", str(pki["stranger"]))
    assert res.exit_code == 8, res.output
    assert res.stderr.strip().splitlines() == [  # one line, no library's traceback
        "error: verification failed: report.html, report.pdf, results.json, provenance.intoto.json; each difference is listed above"
    ]
    groups = verify_lines(res, out)
    for name in REPORTS:
        problems = [line for line in groups[name] if line.startswith("- ")]
        assert problems == [f"- {name}: signature: signed by Report Signer, whose certificate does not chain to stranger.pem"], groups[name]


def test_the_passphrase_and_the_key_are_written_nowhere(signed_run: tuple[Path, Any], pki: dict[str, Any]) -> None:
    out, res = signed_run
    blobs = [p.read_bytes() for p in out.parent.rglob("*") if p.is_file()] + [res.output.encode()]
    for secret in pki["secrets"]:
        assert not any(secret in blob for blob in blobs)
    statement = json.loads((out / "provenance.intoto.json").read_text("utf-8"))
    assert "--sign" not in statement["predicate"]["buildDefinition"]["externalParameters"]["command"]


def test_run_sign_with_a_wrong_passphrase_exits_2_before_anything_is_written(runner_env: Any, pki: dict[str, Any], tmp_path: Path) -> None:
    res = _run(tmp_path, "--sign", str(pki["p12"]), env={"REPORTGEN_KEY_PASSPHRASE": "wrong"})
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [
        f"error: {pki['p12']}: cannot open the PKCS#12 archive: the passphrase in REPORTGEN_KEY_PASSPHRASE is wrong, "
        "or it is not a PKCS#12 file"
    ]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- reportgen sign


def test_sign_then_verify_with_the_signer_certificate(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    out, res = signed_copy(unsigned, tmp_path, pki)
    assert sorted(line.split()[1] for line in res.output.splitlines()) == sorted(str(out / n) for n in REPORTS)
    for name in ("report.html", "results.json", "provenance.intoto.json"):  # detached: the file itself is untouched
        assert (out / name).read_bytes() == (unsigned / name).read_bytes()
    assert (out / "report.pdf").read_bytes().startswith((unsigned / "report.pdf").read_bytes())  # an incremental update
    ok = cli("verify", str(out), "--cert", str(pki["cert"]), "--spec", str(unsigned.parent / "audit.yaml"))
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("signature by Report Signer") == 4
    pdf = verify_lines(ok, out)["report.pdf"]
    assert any("the revision before the signature is identical to a fresh rendering" in line for line in pdf), pdf
    alone = cli("verify", str(out / "report.pdf"))  # the statement beside it names the revision before the signature
    assert alone.exit_code == 0 and "sha256 of the revision before the signature, named in provenance.intoto.json" in alone.output


def test_an_rsa_pkcs12_key_without_passphrase_and_a_self_signed_certificate(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    report = tmp_path / "results.json"
    shutil.copy(unsigned / "results.json", report)
    res = cli("sign", str(report), "--key", str(pki["stranger_p12"]), env={"REPORTGEN_KEY_PASSPHRASE": "set for another key"})
    assert res.exit_code == 0, res.output
    ok = cli("verify", str(report) + ".dsse.json", "--cert", str(pki["stranger"]))  # the envelope stands for its file
    assert ok.exit_code == 0, ok.output
    assert "DSSE signature by Someone Else at " in ok.output and "(certificate chains to stranger.pem)" in ok.output
    assert cli("verify", str(report), "--cert", str(pki["ca"])).exit_code == 8


def test_without_cert_a_signature_is_named_but_not_trusted(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    out, _ = signed_copy(unsigned, tmp_path, pki)
    res = cli("verify", str(out))
    assert res.exit_code == 0, res.output
    lines = [line.strip() for line in res.output.splitlines() if line.strip().startswith("signed: ")]
    assert len(lines) == 4 and all(line.endswith("(not checked against a trusted certificate)") for line in lines), lines
    assert "chains to" not in res.output


def test_signed_pdf_passes_the_pdfa_self_check(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    out, _ = signed_copy(unsigned, tmp_path, pki)
    assert pdfa_problems(unsigned / "report.pdf") == []
    assert pdfa_problems(out / "report.pdf") == []


def test_the_envelope_is_dsse_over_the_file_digest(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    """Oracle: the PAE built here by hand, verified with the signer's public key."""
    out, _ = signed_copy(unsigned, tmp_path, pki)
    env = json.loads((out / "results.json.dsse.json").read_text("utf-8"))
    payload = base64.b64decode(env["payload"])
    kind = env["payloadType"]
    assert kind == "application/vnd.in-toto+json"
    pae = b"DSSEv1 " + str(len(kind)).encode() + b" " + kind.encode() + b" " + str(len(payload)).encode() + b" " + payload
    (sig,) = env["signatures"]
    public = pki["signer"].public_key()
    public.verify(base64.b64decode(sig["sig"]), pae, ec.ECDSA(hashes.SHA256()))
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert sig["keyid"] == hashlib.sha256(spki).hexdigest()
    assert x509.load_pem_x509_certificate(sig["certificates"][0].encode()) == pki["signer"]
    statement = json.loads(payload)
    digest = hashlib.sha256((out / "results.json").read_bytes()).hexdigest()
    assert statement["subject"] == [{"name": "results.json", "digest": {"sha256": digest}}]


@pytest.mark.parametrize("key", ["enc", "p12"])
def test_encrypted_keys_need_the_passphrase_variable(unsigned: Path, tmp_path: Path, pki: dict[str, Any], key: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(unsigned, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cert = ["--cert", str(pki["cert"])] if key == "enc" else []
    missing = cli("sign", str(out), "--key", str(pki[key]), *cert, "--key-pass-env", "MY_PASS", env={"MY_PASS": None})  # type: ignore[dict-item]
    wrong = cli("sign", str(out), "--key", str(pki[key]), *cert, "--key-pass-env", "MY_PASS", env={"MY_PASS": "nope"})
    for res in (missing, wrong):
        assert res.exit_code == 2, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith(f"error: {pki[key]}: ")
    assert "MY_PASS" in missing.stderr and "is wrong" in wrong.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
    ok = cli("sign", str(out), "--key", str(pki[key]), *cert, "--key-pass-env", "MY_PASS", env={"MY_PASS": PASSPHRASE})
    assert ok.exit_code == 0, ok.output
    assert cli("verify", str(out), "--cert", str(pki["ca"])).exit_code == 0


def test_bad_key_files_exit_2(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    report = tmp_path / "results.json"
    shutil.copy(unsigned / "results.json", report)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    cases = {
        ("--key", str(garbage), "--cert", str(pki["cert"])): "cannot load the private key",
        ("--key", str(pki["key"])): "no certificate for this key",
        ("--key", str(pki["key"]), "--cert", str(pki["stranger"])): "is not the certificate of the key",
        ("--key", str(tmp_path / "absent.pem")): "cannot read",
    }
    for args, message in cases.items():
        res = cli("sign", str(report), *args)
        assert res.exit_code == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1, (args, res.output)
    assert not (tmp_path / "results.json.dsse.json").exists()


def test_sign_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch, pki: dict[str, Any], tmp_path: Path) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pyhanko", None)
    res = cli("sign", str(tmp_path), "--key", str(pki["key"]))
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: signing needs the sign extra (pyhanko is not installed): pip install 'reportgen[sign]'"


def test_a_signed_pdf_is_not_signed_again(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    out, _ = signed_copy(unsigned, tmp_path, pki)
    before = (out / "report.pdf").read_bytes()
    res = cli("sign", str(out / "report.pdf"), "--key", str(pki["stranger_p12"]))
    assert res.exit_code == 2 and "already signed" in res.stderr
    assert (out / "report.pdf").read_bytes() == before


# --------------------------------------------------------------------------- tampering


def _problems(res: Any, out: Path, name: str) -> list[str]:
    return [line[2:] for line in verify_lines(res, out)[name] if line.startswith("- ")]


def test_a_byte_edited_after_signing_fails(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    out, _ = signed_copy(unsigned, tmp_path, pki)
    results = out / "results.json"  # whitespace only: the manifest still holds, the signature does not
    results.write_bytes(results.read_bytes() + b"\n")
    pdf = out / "report.pdf"  # a byte of the binary comment on line 2: the PDF still reads
    raw = bytearray(pdf.read_bytes())
    second = raw.index(b"\n") + 2
    raw[second] ^= 0x01
    pdf.write_bytes(bytes(raw))
    res = cli("verify", str(out), "--cert", str(pki["ca"]))
    assert res.exit_code == 8, res.output
    assert _problems(res, out, "results.json") == [
        f"results.json: signature: the file was changed after Report Signer signed it: its sha256 is "
        f"{hashlib.sha256(results.read_bytes()).hexdigest()}, the signature names {hashlib.sha256(results.read_bytes()[:-1]).hexdigest()}"
    ]
    assert "report.pdf: signature: the PAdES signature by Report Signer does not verify: the signed bytes were changed" in _problems(
        res, out, "report.pdf"
    )
    for name in ("report.html", "provenance.intoto.json"):
        assert _problems(res, out, name) == [] or all("signature" not in p for p in _problems(res, out, name))


def test_a_revision_appended_after_signing_fails(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    import io

    from pyhanko.pdf_utils.generic import NameObject, TextStringObject
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    out, _ = signed_copy(unsigned, tmp_path, pki)
    pdf = out / "report.pdf"
    w = IncrementalPdfFileWriter(io.BytesIO(pdf.read_bytes()))
    w.root[NameObject("/Lang")] = TextStringObject("fr")
    w.update_root()
    buf = io.BytesIO()
    w.write(buf)
    pdf.write_bytes(buf.getvalue())
    res = cli("verify", str(pdf), "--cert", str(pki["ca"]))
    assert res.exit_code == 8, res.output
    assert (
        "report.pdf: signature: the file was changed after Report Signer signed it (a revision was appended after the signature)"
        in _problems(res, out, "report.pdf")
    )


def test_cert_requires_every_file_signed(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    out, _ = signed_copy(unsigned, tmp_path, pki)
    (out / "report.html.dsse.json").unlink()
    res = cli("verify", str(out), "--cert", str(pki["ca"]))
    assert res.exit_code == 8, res.output
    assert _problems(res, out, "report.html") == ["report.html: is not signed (no report.html.dsse.json beside it)"]
    plain = cli("verify", str(unsigned / "report.pdf"), "--cert", str(pki["ca"]))
    assert plain.exit_code == 8 and "report.pdf: is not signed (no PAdES signature in it)" in plain.output


def test_an_envelope_from_another_file_fails(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    out, _ = signed_copy(unsigned, tmp_path, pki)
    shutil.copy(out / "results.json.dsse.json", out / "report.html.dsse.json")
    res = cli("verify", str(out / "report.html"))
    assert res.exit_code == 8
    assert _problems(res, out, "report.html") == [
        "report.html: signature: its signature envelope names no file report.html (it signs another file)"
    ]


# --------------------------------------------------------------------------- timestamps


def test_unreachable_tsa_warns_and_signs_without(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    out, res = signed_copy(unsigned, tmp_path, pki, "--tsa", "http://127.0.0.1:9/")
    warnings = res.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: the timestamp authority http://127.0.0.1:9/ cannot be reached")
    assert warnings[0].endswith("; signing without a timestamp")
    ok = cli("verify", str(out), "--cert", str(pki["ca"]))
    assert ok.exit_code == 0, ok.output
    assert ok.output.count(", no timestamp (") == 4


def test_a_timestamp_is_verified_and_shown(unsigned: Path, tmp_path: Path, pki: dict[str, Any]) -> None:
    """pyHanko's in-process timestamp authority stands in for an HTTP one (no network in tests)."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.timestamps import DummyTimeStamper

    from reportgen.signing import load_key, sign_files

    tsa, tsa_key = pki["tsa"]
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(tsa.public_bytes(serialization.Encoding.DER)),
        tsa_key=asn1_keys.PrivateKeyInfo.load(
            tsa_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        ),
        fixed_dt=when,
    )
    out = tmp_path / "out"
    shutil.copytree(unsigned, out)
    sign_files([out / n for n in REPORTS], load_key(pki["key"], pki["cert"]), stamper)
    res = cli("verify", str(out), "--cert", str(pki["ca"]))
    assert res.exit_code == 0, res.output
    assert res.output.count(", timestamp 2026-01-02T03:04:05Z by Test TSA (certificate chains to ca.pem)") == 4, res.output
    assert pdfa_problems(out / "report.pdf") == []
