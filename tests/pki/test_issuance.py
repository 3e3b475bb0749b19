"""Issuance from CSRs and PKCS#12, and one named test per bad input."""

from __future__ import annotations

import subprocess

import pytest
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID, ObjectIdentifier

from directory.model import Person
from pki.errors import AlreadyRevoked, InvalidSerial, NotOnHold, UnknownSerial
from pki.model import CertStatus, RevocationReason
from policies.profiles import HARDWARE_KEY_POLICY
from tests.fixtures.pki import CAEnv, make_csr, run


def test_certificate_takes_subject_and_sans_from_the_directory(env: CAEnv,
                                                                person: Person) -> None:
    csr, _ = make_csr(subject="CN=evil,O=Other",
                      extensions=[(x509.SubjectAlternativeName([x509.DNSName("evil.example")]),
                                   False)])
    issued = env.ca.issue_from_csr(person, "user-auth", csr)
    cert = issued.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "张伟"
    assert [a.value for a in cert.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)] == ["市财政局", "预算处"]
    # UTF8String on the wire, PrintableString for the country (RFC 5280 App. A).
    parsed = a_x509.Certificate.load(issued.record.der)
    cn = [rdn for rdn in parsed.subject.chosen if rdn[0]["type"].native == "common_name"][0]
    assert cn[0]["value"].name == "utf8_string"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["zhangwei@beijing.gov.cn"]
    assert san.get_values_for_type(x509.DNSName) == []
    upn = san.get_values_for_type(x509.OtherName)[0]
    assert upn.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"
    assert upn.value[2:] == b"zhangwei@beijing.gov.cn" and upn.value[0] == 0x0C
    cert.verify_directly_issued_by(env.ca.issuing_certificate)


def test_serial_is_twenty_positive_octets(env: CAEnv, person: Person) -> None:
    for _ in range(5):
        csr, _ = make_csr()
        serial = env.ca.issue_from_csr(person, "user-auth", csr).certificate.serial_number
        assert 0 < serial < 2**159 and serial >= 2**152  # RFC 5280 §4.1.2.2


def test_issued_certificate_is_recorded_audited_and_published(env: CAEnv,
                                                              person: Person) -> None:
    before = env.counts()
    csr, _ = make_csr()
    issued = env.ca.issue_from_csr(person, "user-sign", csr)
    assert env.counts() == (before[0] + 1, before[1] + 1)
    rec = env.ca.get(issued.record.serial)
    assert rec.der == issued.record.der and rec.owner_entry_uuid == person.entry_uuid
    assert env.publisher.published[-1] == (person.uid, issued.record.der)
    ku = issued.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.content_commitment and ku.digital_signature


@pytest.mark.parametrize("key", [
    ec.generate_private_key(ec.SECP384R1()),
    rsa.generate_private_key(65537, 2048),
    ed25519.Ed25519PrivateKey.generate(),
], ids=["p384", "rsa2048", "ed25519"])
def test_allowed_key_types_are_accepted(env: CAEnv, person: Person, key: object) -> None:
    csr, _ = make_csr(key)  # type: ignore[arg-type]
    env.ca.issue_from_csr(person, "user-auth", csr)


def test_user_encrypt_uses_key_agreement_for_ec(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    cert = env.ca.issue_from_csr(person, "user-encrypt", csr).certificate
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_agreement and not ku.key_encipherment


def test_hardware_key_gets_the_hardware_policy_oid(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    cert = env.ca.issue_from_csr(person, "user-auth", csr, hardware_key=True).certificate
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert ObjectIdentifier(HARDWARE_KEY_POLICY) in [p.policy_identifier for p in policies]


def test_pkcs12_opens_with_openssl_and_key_matches(env: CAEnv, person: Person) -> None:
    result = env.ca.issue_pkcs12(person, "user-auth", b"correct horse 42")
    path = env.write("user.p12", result.pkcs12)
    run("openssl", "pkcs12", "-info", "-noout", "-in", path, "-passin", "pass:correct horse 42")
    bad = run("openssl", "pkcs12", "-info", "-noout", "-in", path, "-passin", "pass:wrong",
              check=False)
    assert bad.returncode != 0
    key, cert, extra = pkcs12.load_key_and_certificates(result.pkcs12, b"correct horse 42")
    assert cert is not None and key is not None and len(extra) == 2
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        cert.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    # The PKCS#12 is AES-256-CBC under PBKDF2, not the legacy RC2/3DES.
    info = subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(path),
                           "-passin", "pass:correct horse 42"], capture_output=True, text=True)
    assert "AES-256-CBC" in info.stderr and "PBKDF2" in info.stderr


def test_tls_server_names_come_from_the_approved_list(env: CAEnv) -> None:
    env.ca.approve_dns("govtrust", ["localhost", "127.0.0.1"])
    result = env.ca.issue_tls_server("govtrust", dns_names=["localhost", "127.0.0.1"])
    cert = result.issued.certificate  # type: ignore[union-attr]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    csr, _ = make_csr(extensions=[(x509.SubjectAlternativeName(
        [x509.DNSName("localhost")]), False)])
    from_csr = env.ca.issue_tls_server("govtrust", csr=csr)
    assert from_csr.record.owner_uid == "govtrust"  # type: ignore[union-attr]


# -- bad input of the lifecycle (bad CSRs: tests/hostile/test_cli_import.py) ---------

def test_unknown_serial_is_a_typed_error(env: CAEnv) -> None:
    before = env.counts()
    with pytest.raises(UnknownSerial) as info:
        env.ca.revoke("1234abcd", RevocationReason.KEY_COMPROMISE)
    assert info.value.serial == "1234abcd"
    with pytest.raises(InvalidSerial):
        env.ca.revoke("12:34:zz")
    assert env.counts() == before


def test_second_revocation_is_refused_and_records_nothing(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    serial = env.ca.issue_from_csr(person, "user-auth", csr).record.serial
    first = env.ca.revoke(serial, "keyCompromise", refresh=False)
    assert first.status is CertStatus.REVOKED
    before, record = env.counts(), env.ca.store.get(serial)
    with pytest.raises(AlreadyRevoked) as info:
        env.ca.revoke(serial, "superseded", refresh=False)
    assert info.value.serial == serial
    # A revocation updates the certificate's row and adds none: the row itself
    # (status, reason, time) is compared, not only the count.
    assert env.counts() == before and env.ca.store.get(serial) == record
    assert env.ca.get(serial).reason is RevocationReason.KEY_COMPROMISE


def test_hold_and_release(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    serial = env.ca.issue_from_csr(person, "user-auth", csr).record.serial
    assert env.ca.hold(serial, refresh=False).status is CertStatus.HOLD
    assert env.ca.release(serial, refresh=False).status is CertStatus.VALID
    with pytest.raises(NotOnHold):
        env.ca.release(serial, refresh=False)
    env.ca.hold(serial, refresh=False)
    assert env.ca.revoke(serial, "keyCompromise").status is CertStatus.REVOKED


def test_hash_of_ca_keys_signature_algorithms(env: CAEnv) -> None:
    assert env.ca.issuing_certificate.signature_hash_algorithm == hashes.SHA256()


def test_signing_with_a_key_that_is_not_the_issuers_is_refused(env: CAEnv) -> None:
    from dataclasses import dataclass

    from pki.assemble import sign_certificate
    from pki.certs import root_builder
    from pki.errors import KeyStoreError
    from pki.keys import KeyAlgorithm, SoftwareSigner

    stranger = SoftwareSigner("stranger", KeyAlgorithm.EC_P256.generate())
    builder = root_builder(stranger.public_key(), env.ca.settings, env.ca.now())
    with pytest.raises(KeyStoreError):
        sign_certificate(builder, stranger, env.ca.issuing_certificate)

    @dataclass(frozen=True)
    class External:  # an external signer (as a token would be) with the wrong key
        label: str = "external"
        algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256

        def public_key(self):  # type: ignore[no-untyped-def]
            return stranger.public_key()

        def sign(self, data: bytes) -> bytes:
            return stranger.sign(data)

    with pytest.raises(KeyStoreError):
        sign_certificate(builder, External(), env.ca.issuing_certificate)
    # The same external route with the right issuer works (self-signed here).
    assert sign_certificate(builder, External()).subject == builder._subject_name
