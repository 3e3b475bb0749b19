"""Certificates signed through a key object that calls a Signer (pki.assemble).

The stand-in keys are what a PKCS#11 token is given to cryptography as; here a
signer over an in-process key that is not a ``SoftwareSigner`` takes that route
for every algorithm the CA supports, without a token (test_hsm.py covers the
token itself).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from pki.assemble import key_object, sign_certificate
from pki.certs import root_builder
from pki.errors import KeyStoreError
from pki.keys import KeyAlgorithm, PrivateKey, SoftwareSigner
from pki.model import CASettings


@dataclass(frozen=True)
class External:
    """A signer whose key cryptography never sees (as a token's)."""

    inner: SoftwareSigner

    @property
    def label(self) -> str:
        return "external"

    @property
    def algorithm(self) -> KeyAlgorithm:
        return self.inner.algorithm

    def public_key(self) -> CertificatePublicKeyTypes:
        return self.inner.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.inner.sign(data)


def _external(algorithm: KeyAlgorithm) -> tuple[External, PrivateKey]:
    key = algorithm.generate()
    return External(SoftwareSigner("inner", key)), key


# SM2 keys are not pyca/cryptography keys: tests/pki/test_sm2.py signs with them.
@pytest.mark.parametrize("algorithm", [a for a in KeyAlgorithm if a is not KeyAlgorithm.SM2])
def test_an_external_signer_signs_a_verifiable_certificate(algorithm: KeyAlgorithm) -> None:
    signer, _ = _external(algorithm)
    builder = root_builder(signer.public_key(), CASettings(), datetime.now(UTC))
    cert = sign_certificate(builder, signer)
    cert.verify_directly_issued_by(cert)
    # The AlgorithmIdentifier is the one the key and hash call for (RFC 5280 §4.1.1.2).
    assert cert.signature_algorithm_oid.dotted_string == {
        KeyAlgorithm.EC_P256: "1.2.840.10045.4.3.2", KeyAlgorithm.EC_P384: "1.2.840.10045.4.3.3",
        KeyAlgorithm.RSA_3072: "1.2.840.113549.1.1.11",
        KeyAlgorithm.RSA_4096: "1.2.840.113549.1.1.11",
        KeyAlgorithm.ED25519: "1.3.101.112"}[algorithm]


def test_a_software_signer_is_given_to_cryptography_as_it_is() -> None:
    key = KeyAlgorithm.EC_P256.generate()
    assert key_object(SoftwareSigner("soft", key)) is key


def test_the_stand_in_refuses_to_reveal_the_private_key() -> None:
    signer, _ = _external(KeyAlgorithm.EC_P256)
    stand_in = key_object(signer)
    with pytest.raises(KeyStoreError):
        stand_in.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    assert copy.deepcopy(stand_in) is stand_in


def test_the_stand_in_refuses_a_hash_the_key_does_not_sign_with() -> None:
    signer, _ = _external(KeyAlgorithm.EC_P256)
    stand_in = key_object(signer)
    assert isinstance(stand_in, ec.EllipticCurvePrivateKey)
    with pytest.raises(KeyStoreError):
        stand_in.sign(b"tbs", ec.ECDSA(hashes.SHA512()))


def test_the_stand_in_refuses_rsa_pss() -> None:
    signer, _ = _external(KeyAlgorithm.RSA_3072)
    builder = root_builder(signer.public_key(), CASettings(), datetime.now(UTC))
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    with pytest.raises(KeyStoreError):
        builder.sign(key_object(signer), hashes.SHA256(), rsa_padding=pss)


def test_a_signature_from_the_wrong_key_is_refused() -> None:
    signer, _ = _external(KeyAlgorithm.EC_P256)
    other, _ = _external(KeyAlgorithm.EC_P256)
    # The certificate names ``signer``'s key, but ``other`` signs it.
    builder = root_builder(signer.public_key(), CASettings(), datetime.now(UTC))
    with pytest.raises(KeyStoreError, match="does not verify"):
        sign_certificate(builder, other, sign_certificate(builder, signer))
