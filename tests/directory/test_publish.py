"""Certificates and CRLs published to the real directory (RFC 4523 attributes)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from directory.errors import NotFound
from directory.publish import DirectoryPublisher

pytestmark = pytest.mark.slapd



def _cert(serial: int) -> bytes:
    """A real DER certificate: slapd checks the syntax of what it stores."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "李娜")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def _crl(number: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
           .last_update(now).next_update(now + timedelta(days=1))
           .add_extension(x509.CRLNumber(number), critical=False)
           .sign(key, hashes.SHA256()))
    return crl.public_bytes(serialization.Encoding.DER)


CERT_A = _cert(1)
CERT_B = _cert(2)


def _person(directory_service: Any) -> Any:
    directory_service.ensure_department("市财政局/预算处")
    return directory_service.add_person(uid="lina", name="李娜", department="市财政局/预算处",
                                        title="处长")


def test_publish_and_unpublish_user_certificates(directory_service: Any) -> None:
    person = _person(directory_service)
    pub = DirectoryPublisher(directory_service.gateway)
    pub.publish(person.uid, CERT_A)
    pub.publish(person.uid, CERT_B)
    pub.publish(person.uid, CERT_A)  # idempotent
    assert sorted(pub.read_certificates("lina")) == sorted([CERT_A, CERT_B])
    pub.unpublish("lina", CERT_A)
    pub.unpublish("lina", CERT_A)  # already gone: fine
    assert pub.read_certificates("lina") == [CERT_B]
    pub.unpublish("nosuchuid", CERT_B)  # a person no longer there: fine


def test_publish_to_a_missing_entry_is_a_typed_error(directory_service: Any) -> None:
    person = _person(directory_service)
    pub = DirectoryPublisher(directory_service.gateway)
    directory_service.gateway.delete(person.dn)
    with pytest.raises(NotFound):
        pub.publish(person.uid, CERT_A)


def test_crl_is_published_and_readable_anonymously(directory_service: Any) -> None:
    pub = DirectoryPublisher(directory_service.gateway)
    first, second = _crl(1), _crl(2)
    pub.publish_crl("issuing", first)
    pub.publish_crl("issuing", second)  # replaced, not added
    assert pub.read_crl("issuing") == second
    out = subprocess.run(
        ["ldapsearch", "-LLL", "-x", "-H", directory_service.settings.uris[0], "-b",
         pub.ca_dn("issuing"), "-s", "base", "certificateRevocationList;binary"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert "certificateRevocationList;binary::" in out


def test_person_entries_stay_private_to_anonymous(directory_service: Any) -> None:
    _person(directory_service)
    out = subprocess.run(
        ["ldapsearch", "-LLL", "-x", "-H", directory_service.settings.uris[0], "-b",
         directory_service.settings.base_dn, "(uid=lina)"],
        capture_output=True, text=True, timeout=30)
    assert "uid=lina" not in out.stdout
