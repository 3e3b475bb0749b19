"""Sign certificates built with pyca/cryptography by any :class:`pki.keys.Signer`.

``CertificateBuilder.sign`` takes a private key *object*, and cryptography asks
that object to sign the TBSCertificate through its public interface
(``sign(data, ECDSA(hash))``, ``sign(data, padding, hash)``, ``sign(data)``); it
never needs the key's numbers. So a key held elsewhere (a PKCS#11 token) is
handed to it as a stand-in key object whose ``sign`` calls the :class:`Signer`:
cryptography chooses the signature AlgorithmIdentifier (RFC 5280 §4.1.1.2,
§4.1.2.3) from the stand-in's type and the hash, and encodes the certificate.
Nothing else of a private key is offered: every other method refuses.

Keys held in this process are given to cryptography as they are (and checked to
be the issuer's); a certificate signed through a stand-in is checked with
``verify_directly_issued_by`` before it leaves, as the signature came from
outside.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.utils import Buffer

from pki import der, sm2
from pki.errors import KeyStoreError
from pki.keys import KeyAlgorithm, Signer, SoftwareSigner


def _refuse(signer: Signer, what: str) -> NoReturn:
    raise KeyStoreError(signer.label, f"{what} is not available: the key stays in its store")


def _check_hash(signer: Signer, requested: hashes.HashAlgorithm | None) -> None:
    # The signer hashes with its own digest; cryptography writes the requested one
    # into the certificate. They must be the same, or the certificate would lie.
    expected = signer.algorithm.hash
    if (requested is None) != (expected is None) or (
            requested is not None and expected is not None and requested.name != expected.name):
        raise KeyStoreError(signer.label, f"asked to sign with {requested!r}, "
                            f"the key signs with {expected!r}")


class _ECKey(ec.EllipticCurvePrivateKey):
    """cryptography's view of an EC key a :class:`Signer` holds."""

    def __init__(self, signer: Signer, public: ec.EllipticCurvePublicKey) -> None:
        self._signer = signer
        self._public = public

    def sign(self, data: Buffer,
             signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            _refuse(self._signer, f"signing with {signature_algorithm!r}")
        algorithm = signature_algorithm.algorithm
        _check_hash(self._signer, algorithm if isinstance(algorithm, hashes.HashAlgorithm)
                    else None)
        return self._signer.sign(bytes(data))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH,
                 peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        _refuse(self._signer, "key agreement")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _refuse(self._signer, "the private value")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        _refuse(self._signer, "the private key")

    def __copy__(self) -> _ECKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _ECKey:
        return self


class _RSAKey(rsa.RSAPrivateKey):
    """cryptography's view of an RSA key a :class:`Signer` holds (PKCS#1 v1.5)."""

    def __init__(self, signer: Signer, public: rsa.RSAPublicKey) -> None:
        self._signer = signer
        self._public = public

    def sign(self, data: Buffer, padding: AsymmetricPadding,
             algorithm: Any) -> bytes:
        if not isinstance(padding, PKCS1v15):
            # The signers make RSASSA-PKCS1-v1_5 signatures (RFC 4055 §5) only.
            _refuse(self._signer, f"signing with {padding.name}")
        _check_hash(self._signer, algorithm if isinstance(algorithm, hashes.HashAlgorithm)
                    else None)
        return self._signer.sign(bytes(data))

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        _refuse(self._signer, "decryption")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _refuse(self._signer, "the private numbers")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        _refuse(self._signer, "the private key")

    def __copy__(self) -> _RSAKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _RSAKey:
        return self



class _Ed25519Key(ed25519.Ed25519PrivateKey):
    """cryptography's view of an Ed25519 key a :class:`Signer` holds."""

    def __init__(self, signer: Signer, public: ed25519.Ed25519PublicKey) -> None:
        self._signer = signer
        self._public = public

    def sign(self, data: Buffer) -> bytes:
        return self._signer.sign(bytes(data))

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        _refuse(self._signer, "the private key")

    def private_bytes_raw(self) -> bytes:
        _refuse(self._signer, "the private key")

    def __copy__(self) -> _Ed25519Key:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _Ed25519Key:
        return self


def key_object(signer: Signer) -> CertificateIssuerPrivateKeyTypes:
    """A private key object cryptography can sign with, backed by ``signer``."""
    if isinstance(signer, SoftwareSigner):
        return signer.private_key
    public = signer.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return _ECKey(signer, public)
    if isinstance(public, rsa.RSAPublicKey):
        return _RSAKey(signer, public)
    if isinstance(public, ed25519.Ed25519PublicKey):
        return _Ed25519Key(signer, public)
    raise KeyStoreError(signer.label, f"unsupported key type {type(public).__name__}")


def sign_certificate(builder: x509.CertificateBuilder, signer: Signer,
                     issuer: x509.Certificate | None = None) -> x509.Certificate:
    """Sign ``builder`` with ``signer``; check against ``issuer`` (itself if None)."""
    algorithm = signer.algorithm
    if algorithm is KeyAlgorithm.SM2:
        return _sign_sm2(builder, signer, issuer)
    digest = algorithm.hash
    assert not isinstance(digest, hashes.SM3)  # SM3 only with SM2, above
    if isinstance(signer, SoftwareSigner):
        # cryptography signed with the key itself; what can still go wrong is a key
        # that is not the issuer's, which the public keys show without a verify.
        cert = builder.sign(signer.private_key, digest)
        if issuer is not None and issuer.public_key() != signer.public_key():
            raise KeyStoreError(signer.label, "the key is not the issuer's")
        return cert
    cert = builder.sign(key_object(signer), digest)
    try:
        cert.verify_directly_issued_by(issuer or cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise KeyStoreError(signer.label, f"signature does not verify: {exc!r}") from None
    return cert


def _sign_sm2(builder: x509.CertificateBuilder, signer: Signer,
              issuer: x509.Certificate | None) -> x509.Certificate:
    """SM3withSM2 (GM/T 0015): the builder encodes the TBS, the SM2 signer signs it."""
    public = signer.public_key()
    if issuer is not None:
        issuer_der = issuer.public_bytes(serialization.Encoding.DER)
        if sm2.certificate_public_key(issuer_der) != public:
            raise KeyStoreError(signer.label, "the key is not the issuer's")
    tbs = sm2.tbs_certificate(builder)
    cert = x509.load_der_x509_certificate(sign_tbs(tbs, signer))
    # The signature came from outside pyca/cryptography: check it before it leaves.
    assert isinstance(public, sm2.SM2PublicKey)
    if not sm2.verify(public, cert.signature, cert.tbs_certificate_bytes):
        raise KeyStoreError(signer.label, "the SM2 signature does not verify")
    return cert


def sign_tbs(tbs: bytes, signer: Signer) -> bytes:
    """A signed object (CRL, ...) from its TBS bytes (RFC 5280 §5.1)."""
    return der.signed(tbs, signer.algorithm.signature_algorithm_der, signer.sign(tbs))
