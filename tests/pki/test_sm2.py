"""The SM2 hierarchy (GM/T 0015, SM3withSM2 with the default ID) judged by tools
that are not ours: GmSSL 3.1.1, OpenSSL 3.0 with ``distid``, pkilint; SM2
requests refused when they are not what they claim; the acceptance flow through
the ``govtrust`` command.

GmSSL is not in Debian: one build per test session (``tests.fixtures.gmssl``,
started at collection, in the background while other tests run).

pkilint knows no SM2: it checks the certificates' and CRL's structure (RFC 5280
profile, extensions, encodings); its signature checks on chains do not apply
(NOTICE ``pkix.unsupported_algorithm``), which the GmSSL/OpenSSL checks cover.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import csr as a_csr
from asn1crypto import ocsp as a_ocsp
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from tongsuopy.crypto import serialization as t_serialization

from directory.model import Person
from idp.runtime.config import Config
from idp.runtime.services import Services
from pki import der, sm2
from pki.audit_store import audit_log
from pki.authority import CertificateAuthority
from pki.errors import BadRequest
from pki.http import create_app
from pki.keys import FileKeyStore, SM2Signer
from pki.lifecycle import CertificateLifecycle
from pki.model import CASettings, CertStatus, HierarchyName
from tests.fixtures.gmssl import GmSSL
from tests.fixtures.pki import VENV_BIN, CAEnv, build_env, make_csr, make_person, pem, run
from tests.fixtures.postgres import free_port

ID = "distid:1234567812345678"
PASSPHRASE = b"test passphrase, not a secret"


@pytest.fixture(scope="module")
def sm2env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CAEnv]:
    folder = tmp_path_factory.mktemp("sm2")
    env = build_env(folder, f"sqlite:///{folder / 'govtrust.db'}",
                    settings=CASettings(sm2=True))
    try:
        yield env
    finally:
        env.engine.dispose()


def openssl_csr(folder: Path, name: str, distid: str | None = "1234567812345678") -> bytes:
    """An SM2 key and request made by OpenSSL, signed with ``distid`` (None: no ID)."""
    key = folder / f"{name}.key"
    run("openssl", "genpkey", "-algorithm", "SM2", "-out", key)
    sigopt = ["-sigopt", f"distid:{distid}"] if distid is not None else []
    run("openssl", "req", "-new", "-key", key, "-sm3", *sigopt, "-subj", "/CN=ignored",
        "-out", folder / f"{name}.csr")
    return (folder / f"{name}.csr").read_bytes()


def _issue(env: CAEnv, person: Person, name: str, profile: str = "user-sign"
           ) -> x509.Certificate:
    issued = env.ca.sm2.issue_from_csr(person, profile, openssl_csr(env.folder, name))
    return issued.certificate


def _signer(env: CAEnv, label: str) -> SM2Signer:
    signer = FileKeyStore(env.folder / "keys", PASSPHRASE).get(label)
    assert isinstance(signer, SM2Signer)
    return signer


def _resign_without_id(env: CAEnv, cert: x509.Certificate, issuer_label: str) -> bytes:
    """``cert`` re-signed by its issuer's key the way OpenSSL does without -sigopt."""
    key = env.write(f"{issuer_label}-plain.key", _signer(env, issuer_label).private_key
                    .private_bytes(t_serialization.Encoding.PEM,
                                   t_serialization.PrivateFormat.PKCS8,
                                   t_serialization.NoEncryption()))
    tbs = env.write("tbs-noid.der", cert.tbs_certificate_bytes)
    run("openssl", "dgst", "-sm3", "-sign", key, "-out", env.folder / "sig-noid.der", tbs)
    os.remove(key)
    return der.signed(cert.tbs_certificate_bytes, sm2.SIGNATURE_ALGORITHM_DER,
                      (env.folder / "sig-noid.der").read_bytes())


def _der_pem(data: bytes) -> bytes:
    return x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.PEM)


def _dgst_verify(env: CAEnv, issuer: x509.Certificate, cert_der: bytes) -> bool:
    """OpenSSL checks one link: SM3withSM2 over the TBS with the default ID."""
    parsed = a_x509.Certificate.load(cert_der)
    pub = sm2.certificate_public_key(issuer.public_bytes(serialization.Encoding.DER))
    env.write("issuer_pub.pem", pub.public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    env.write("tbs.der", parsed["tbs_certificate"].dump())
    env.write("sig.der", bytes(parsed["signature_value"].native))
    proc = run("openssl", "dgst", "-sm3", "-verify", env.folder / "issuer_pub.pem",
               "-sigopt", ID, "-signature", env.folder / "sig.der", env.folder / "tbs.der",
               check=False)
    return proc.returncode == 0 and "Verified OK" in proc.stdout


# -- what we issue, checked by GmSSL and OpenSSL -------------------------------------

def test_certificates_are_sm2_keys_with_sm3withsm2(sm2env: CAEnv, person: Person) -> None:
    cert = _issue(sm2env, person, "shape")
    tbs = a_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    assert tbs["signature_algorithm"]["algorithm"].dotted == sm2.SM3_WITH_SM2_OID
    assert tbs["signature_algorithm"]["parameters"].native is None  # absent, not NULL
    spki = tbs["tbs_certificate"]["subject_public_key_info"]["algorithm"]
    assert spki["algorithm"].dotted == sm2.EC_PUBLIC_KEY_OID
    assert spki["parameters"].chosen.dotted == sm2.SM2_CURVE_OID
    # Same directory data as the default hierarchy: UTF8String Chinese names.
    names = tbs["tbs_certificate"]["subject"].chosen
    assert any(atv["value"].name == "utf8_string" and atv["value"].native == "张伟"
               for rdn in names for atv in rdn)
    urls = [str(u) for u in cert.extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value[0].full_name or []]
    assert urls == [f"<UniformResourceIdentifier(value='{sm2env.ca.sm2.settings.crl_url}')>"]
    assert sm2env.ca.sm2.settings.ocsp_url.endswith("/ocsp/sm2")


def test_gmssl_verifies_root_issuing_leaf(sm2env: CAEnv, person: Person, gmssl: GmSSL) -> None:
    cert = _issue(sm2env, person, "gm")
    chain = sm2env.write("chain.pem", pem(cert) + pem(sm2env.ca.sm2.issuing_certificate))
    root = sm2env.write("root.pem", pem(sm2env.ca.sm2.root_certificate))
    proc = gmssl.run("certverify", "-in", chain, "-cacert", root)
    assert proc.returncode == 0 and proc.stdout.count("Verification success") == 2, proc


def test_openssl_verifies_root_to_issuing_with_the_id(sm2env: CAEnv) -> None:
    root = sm2env.write("root.pem", pem(sm2env.ca.sm2.root_certificate))
    issuing = sm2env.write("issuing.pem", pem(sm2env.ca.sm2.issuing_certificate))
    run("openssl", "verify", "-CAfile", root, "-vfyopt", ID, issuing)


def test_openssl_verifies_the_leaf_link_with_the_id(sm2env: CAEnv, person: Person) -> None:
    # openssl#23471: OpenSSL 3.0 cannot verify a longer SM2 chain; one link by hand.
    cert = _issue(sm2env, person, "link")
    assert _dgst_verify(sm2env, sm2env.ca.sm2.issuing_certificate,
                        cert.public_bytes(serialization.Encoding.DER))


def test_a_certificate_signed_without_the_id_fails_every_check(
        sm2env: CAEnv, person: Person, gmssl: GmSSL) -> None:
    issuing = sm2env.ca.sm2.issuing_certificate
    leaf = _issue(sm2env, person, "noid")
    bad_leaf = _resign_without_id(sm2env, leaf, "sm2-issuing")
    assert not _dgst_verify(sm2env, issuing, bad_leaf)
    chain = sm2env.write("bad-chain.pem", _der_pem(bad_leaf) + pem(issuing))
    root = sm2env.write("root.pem", pem(sm2env.ca.sm2.root_certificate))
    assert gmssl.run("certverify", "-in", chain, "-cacert", root).returncode != 0
    # The issuing CA re-signed by the root without the ID: openssl verify refuses it.
    bad_issuing = sm2env.write("bad-issuing.pem",
                               _der_pem(_resign_without_id(sm2env, issuing, "sm2-root")))
    assert run("openssl", "verify", "-CAfile", root, "-vfyopt", ID, bad_issuing,
               check=False).returncode != 0


def test_gmssl_verifies_the_sm2_crls(sm2env: CAEnv, person: Person, gmssl: GmSSL) -> None:
    cert = _issue(sm2env, person, "crl")
    sm2env.ca.revoke(format(cert.serial_number, "x"), "keyCompromise")
    full = sm2env.ca.sm2.crl()
    delta = sm2env.ca.sm2.crl(delta=True)
    assert x509.load_der_x509_crl(full).get_revoked_certificate_by_serial_number(
        cert.serial_number) is not None
    # Only the SM2 hierarchy's CRL lists it.
    assert x509.load_der_x509_crl(sm2env.ca.crl()).get_revoked_certificate_by_serial_number(
        cert.serial_number) is None
    issuing = sm2env.write("issuing.pem", pem(sm2env.ca.sm2.issuing_certificate))
    proc = gmssl.run("crlverify", "-in", sm2env.write("full.crl", full), "-cacert", issuing)
    assert proc.returncode == 0 and "success" in proc.stdout, proc
    # GmSSL 3.1.1's x509_crl_check refuses our delta CRL ("invalid CRL data or
    # format"; likely its critical deltaCRLIndicator, RFC 5280 §5.2.4, not yet
    # confirmed), so the delta's SM2 signature is checked with tongsuopy instead.
    parsed = x509.load_der_x509_crl(delta)
    assert parsed.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    issuing_key = sm2.certificate_public_key(
        sm2env.ca.sm2.issuing_certificate.public_bytes(serialization.Encoding.DER))
    assert sm2.verify(issuing_key, parsed.signature, parsed.tbs_certlist_bytes)


def test_pkilint_on_the_sm2_structure(sm2env: CAEnv, person: Person) -> None:
    paths = [sm2env.write("lint-leaf.pem", pem(_issue(sm2env, person, "lint"))),
             sm2env.write("lint-root.pem", pem(sm2env.ca.sm2.root_certificate)),
             sm2env.write("lint-issuing.pem", pem(sm2env.ca.sm2.issuing_certificate)),
             sm2env.write("lint-ocsp.pem", pem(sm2env.ca.sm2.ocsp_credentials()[0]))]
    for path in paths:
        proc = run(VENV_BIN / "lint_pkix_cert", "lint", "-s", "WARNING", path, check=False)
        assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout
    proc = run(VENV_BIN / "lint_crl", "lint", "-t", "CRL", "-p", "PKIX",
               sm2env.write("lint.crl", sm2env.ca.sm2.crl()), check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout
    # The chain linter cannot check SM2 signatures: only that NOTICE, nothing else.
    proc = run(VENV_BIN / "lint_pkix_signer_signee_cert_chain", "lint", paths[2], paths[0],
               check=False)
    findings = [line for line in proc.stdout.splitlines() if "(" in line]
    assert findings == ["    pkix.unsupported_algorithm (NOTICE)"], proc.stdout


def _ocsp_request(issuer: x509.Certificate, serial: int) -> bytes:
    import hashlib

    name = issuer.subject.public_bytes(serialization.Encoding.DER)
    key = sm2.certificate_public_key(issuer.public_bytes(serialization.Encoding.DER)).point
    cid = der.sequence(der.sequence(der.oid("1.3.14.3.2.26"), b"\x05\x00"),
                       der.octet_string(hashlib.sha1(name).digest()),  # noqa: S324
                       der.octet_string(hashlib.sha1(key).digest()),  # noqa: S324
                       der.integer(serial))
    return der.sequence(der.sequence(der.sequence(der.sequence(cid))))


def test_ocsp_says_revoked_with_the_reason_signed_with_sm2(sm2env: CAEnv,
                                                           person: Person) -> None:
    cert = _issue(sm2env, person, "ocsp")
    sm2env.ca.revoke(format(cert.serial_number, "x"), "keyCompromise")
    client = create_app(sm2env.ca).test_client()
    reply = client.post("/ocsp/sm2", data=_ocsp_request(sm2env.ca.sm2.issuing_certificate,
                                                        cert.serial_number),
                        content_type="application/ocsp-request")
    basic = a_ocsp.OCSPResponse.load(reply.data)["response_bytes"]["response"].parsed
    single = basic["tbs_response_data"]["responses"][0]
    assert single["cert_status"].name == "revoked"
    assert single["cert_status"].chosen["revocation_reason"].native == "key_compromise"
    assert basic["signature_algorithm"]["algorithm"].dotted == sm2.SM3_WITH_SM2_OID
    responder_der = basic["certs"][0].dump()
    # tongsuopy with the default ID: the responder signed it, the issuing CA the responder.
    assert sm2.verify(sm2.certificate_public_key(responder_der),
                      bytes(basic["signature"].native), basic["tbs_response_data"].dump())
    responder = x509.load_der_x509_certificate(responder_der)
    issuing_key = sm2.certificate_public_key(
        sm2env.ca.sm2.issuing_certificate.public_bytes(serialization.Encoding.DER))
    assert sm2.verify(issuing_key, responder.signature, responder.tbs_certificate_bytes)
    # The default hierarchy's responder does not answer for the SM2 issuer.
    other = client.post("/ocsp", data=_ocsp_request(sm2env.ca.sm2.issuing_certificate,
                                                    cert.serial_number))
    assert a_ocsp.OCSPResponse.load(other.data)["response_status"].native == "unauthorized"


def test_departure_revokes_sm2_certificates_into_the_sm2_crl(sm2env: CAEnv) -> None:
    leaver = make_person("liuyang", display_name="刘洋")
    cert = _issue(sm2env, leaver, "leaver")

    class Left:
        kind, uid, entry_uuid, actor = "left", "liuyang", "uuid-liuyang", "test"

    CertificateLifecycle(sm2env.ca).handle(Left())
    rec = sm2env.ca.get(format(cert.serial_number, "x"))
    assert rec.status is CertStatus.REVOKED and rec.hierarchy is HierarchyName.SM2
    assert x509.load_der_x509_crl(sm2env.ca.sm2.crl()).get_revoked_certificate_by_serial_number(
        cert.serial_number) is not None
    assert (leaver.uid, rec.der) in sm2env.publisher.unpublished
    with sm2env.engine.connect() as conn:
        details = conn.execute(select(audit_log.c.details).where(
            audit_log.c.target == f"cert:{rec.serial}").order_by(audit_log.c.seq)).scalars()
        # Issued and revoked, each record naming the SM2 hierarchy.
        assert [json.loads(d)["hierarchy"] for d in details] == ["sm2", "sm2"]


def test_sm2_keys_are_encrypted_pkcs8_like_the_others(sm2env: CAEnv) -> None:
    path = sm2env.folder / "keys" / "sm2-issuing.key.pem"
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = run("openssl", "asn1parse", "-in", path).stdout
    assert "PBES2" in text and "aes-256-cbc" in text and "hmacWithSHA256" in text


# -- bad input: each refused, nothing recorded ---------------------------------------

def _refused(env: CAEnv, call: object, reason: str) -> None:
    before = env.counts()
    with pytest.raises(BadRequest) as caught:
        call()  # type: ignore[operator]
    assert caught.value.reason == reason
    assert env.counts() == before


def test_an_sm2_csr_signed_without_the_id_is_refused(sm2env: CAEnv, person: Person) -> None:
    csr = openssl_csr(sm2env.folder, "no-id", distid=None)
    _refused(sm2env, lambda: sm2env.ca.sm2.issue_from_csr(person, "user-sign", csr),
             "bad_signature")


def test_an_sm2_csr_signed_with_another_id_is_refused(sm2env: CAEnv, person: Person) -> None:
    csr = openssl_csr(sm2env.folder, "other-id", distid="alice@beijing.gov.cn")
    _refused(sm2env, lambda: sm2env.ca.sm2.issue_from_csr(person, "user-sign", csr),
             "bad_signature")


def test_an_sm2_csr_sent_to_the_ecdsa_path_is_refused(sm2env: CAEnv, person: Person) -> None:
    csr = openssl_csr(sm2env.folder, "to-ecdsa")
    _refused(sm2env, lambda: sm2env.ca.issue_from_csr(person, "user-sign", csr),
             "wrong_hierarchy")


def test_an_ecdsa_csr_sent_to_the_sm2_path_is_refused(sm2env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    _refused(sm2env, lambda: sm2env.ca.sm2.issue_from_csr(person, "user-sign", csr),
             "wrong_hierarchy")


def test_a_p256_key_under_the_sm2_curve_oid_is_refused(sm2env: CAEnv, person: Person) -> None:
    csr_pem = openssl_csr(sm2env.folder, "p256-as-sm2")
    csr_der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    spki = a_csr.CertificationRequest.load(csr_der)["certification_request_info"][
        "subject_pk_info"]
    sm2_point = bytes(spki["public_key"].contents[1:])
    p256_point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    forged = csr_der.replace(sm2_point, p256_point)
    assert forged != csr_der
    _refused(sm2env, lambda: sm2env.ca.sm2.issue_from_csr(person, "user-sign", forged),
             "not_sm2_curve")


def test_sm2_pkcs12_is_refused_with_the_reason(sm2env: CAEnv, person: Person) -> None:
    _refused(sm2env, lambda: sm2env.ca.sm2.issue_pkcs12(person, "user-encrypt",
                                                        b"long enough passphrase"),
             "pkcs12_unsupported")


# -- acceptance: govtrust init --demo with SM2, then issue, revoke, CRL, OCSP ---------

def test_acceptance_init_demo_issue_revoke(tmp_path: Path, gmssl: GmSSL) -> None:
    home = tmp_path / "home"
    # a free port for the home's slapd: not the default 3389, which a running demo may hold
    env = dict(os.environ, GOVTRUST_PKI_SM2="true",
               GOVTRUST_DIRECTORY_URIS=f"ldap://127.0.0.1:{free_port()}")
    env.pop("GOVTRUST_HOME", None)

    def govtrust(*args: str | Path) -> str:
        proc = subprocess.run([str(VENV_BIN / "govtrust"), "--home", str(home),
                               *map(str, args)], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    govtrust("init", "--demo")
    shown = json.loads(govtrust("--json", "ca", "show"))
    assert shown["hierarchies"]["sm2"]["urls"]["ocsp"].endswith("/ocsp/sm2")
    assert [h["role"] for h in shown["hierarchies"]["sm2"]["hierarchy"]] == [
        "sm2-root", "sm2-issuing", "sm2-ocsp"]
    csr = tmp_path / "zhangwei.csr"
    csr.write_bytes(openssl_csr(tmp_path, "zhangwei"))
    leaf = tmp_path / "leaf.pem"
    issued = json.loads(govtrust("--json", "cert", "issue", "--algorithm", "sm2", "--uid",
                                 "zhangwei", "--profile", "user-sign", "--csr", csr,
                                 "--out", leaf))
    assert issued["hierarchy"] == "sm2"
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.read_bytes() + (home / "pki" / "sm2-chain.pem").read_bytes())
    proc = gmssl.run("certverify", "-in", chain, "-cacert", home / "pki" / "sm2-root.pem")
    # leaf, issuing CA (and the root again, as sm2-chain.pem carries it)
    assert proc.returncode == 0 and proc.stdout.count("Verification success") >= 2, proc
    govtrust("cert", "revoke", issued["serial"], "--reason", "keyCompromise")
    services = Services(Config.load(home, environ={}))
    try:
        ca: CertificateAuthority = services.ca
        crl = tmp_path / "sm2.crl"
        crl.write_bytes(create_app(ca).test_client().get("/crl/sm2-issuing.crl").data)
        serial = int(issued["serial"], 16)
        assert x509.load_der_x509_crl(crl.read_bytes()) \
            .get_revoked_certificate_by_serial_number(serial) is not None
        issuing = tmp_path / "sm2-issuing.pem"
        issuing.write_bytes(pem(ca.sm2.issuing_certificate))
        proc = gmssl.run("crlverify", "-in", crl, "-cacert", issuing)
        assert proc.returncode == 0 and "success" in proc.stdout, proc
        reply = create_app(ca).test_client().post(
            "/ocsp/sm2", data=_ocsp_request(ca.sm2.issuing_certificate, serial))
        single = a_ocsp.OCSPResponse.load(reply.data)["response_bytes"]["response"] \
            .parsed["tbs_response_data"]["responses"][0]
        assert single["cert_status"].name == "revoked"
        assert single["cert_status"].chosen["revocation_reason"].native == "key_compromise"
    finally:
        services.close()
    assert "intact" in govtrust("audit", "verify")
