"""Certification paths (RFC 5280 section 6): building a path from the leaf to a
trust anchor with every signature checked, and the leaf and issuer checks
(validity, basic constraints, key usage, EKU clientAuth). pyca's ``ClientVerifier``
validates the paths it can; this walk names the precise refusal, and covers the
keys pyca will not take (Ed25519, SM2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from idp.login.certfields import extension, sm2_key
from idp.login.certsettings import ExternalCA
from idp.login.refusals import CertificateRefused, Refusal
from pki import sm2
from pki.model import serial_hex

MAX_DEPTH = 5


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.signature_algorithm_oid.dotted_string == sm2.SM3_WITH_SM2_OID:
        # GM/T 0015: SM3withSM2 with the default ID, which pyca cannot check.
        key = sm2_key(issuer)
        return (key is not None and cert.issuer == issuer.subject
                and sm2.verify(key, cert.signature, cert.tbs_certificate_bytes))
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def verify_raw(public_key: Any, signature: bytes, data: bytes,
                algorithm: hashes.HashAlgorithm | None) -> bool:
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm is not None:
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey) and algorithm is not None:
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Anchor:
    """A CA we trust: ours (issuing or root) or a configured external one."""

    certificate: x509.Certificate
    name: str
    ours: bool
    external: ExternalCA | None


def walk_path(cert: x509.Certificate, intermediates: Sequence[x509.Certificate],
               anchors: Sequence[Anchor], refuse: Callable[..., CertificateRefused]
               ) -> tuple[list[x509.Certificate], Anchor]:
    """RFC 5280 section 6.1: name chaining and a signature at every link, up to an
    anchor. A known CA's name without its signature is a forged chain."""
    path = [cert]
    current = cert
    for _ in range(MAX_DEPTH):
        named_anchors = [a for a in anchors if a.certificate.subject == current.issuer]
        for anchor in named_anchors:
            if verify_signed_by(current, anchor.certificate):
                return path + ([] if current is anchor.certificate
                               else [anchor.certificate]), anchor
        named = [c for c in intermediates if c.subject == current.issuer and c != current]
        nxt = next((c for c in named if verify_signed_by(current, c)), None)
        if nxt is None:
            if named_anchors or named:
                raise refuse(Refusal.FORGED_CHAIN,
                             f"not signed by {current.issuer.rfc4514_string()}")
            raise refuse(Refusal.UNKNOWN_CA, current.issuer.rfc4514_string())
        bc = extension(nxt, x509.BasicConstraints)
        ku = extension(nxt, x509.KeyUsage)
        if bc is None or not bc.ca or (ku is not None and not ku.key_cert_sign):
            raise refuse(Refusal.NOT_A_CA, nxt.subject.rfc4514_string())
        path.append(nxt)
        current = nxt
    raise refuse(Refusal.UNKNOWN_CA, "path too long")


def check_leaf(cert: x509.Certificate, now: datetime,
                refuse: Callable[..., CertificateRefused]) -> None:
    """The leaf's own fitness for login, each fault its own refusal."""
    # RFC 5280 section 6.1.3 (a)(2): the current time within validity.
    if now < cert.not_valid_before_utc:
        raise refuse(Refusal.NOT_YET_VALID, cert.not_valid_before_utc.isoformat())
    if now > cert.not_valid_after_utc:
        raise refuse(Refusal.EXPIRED, cert.not_valid_after_utc.isoformat())
    bc = extension(cert, x509.BasicConstraints)
    if bc is not None and bc.ca:
        raise refuse(Refusal.IS_A_CA)
    # Section 4.2.1.3: a login is a signature (the TLS CertificateVerify).
    ku = extension(cert, x509.KeyUsage)
    if ku is None or not ku.digital_signature:
        raise refuse(Refusal.NO_DIGITAL_SIGNATURE)
    # Section 4.2.1.12.
    eku = extension(cert, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise refuse(Refusal.NO_CLIENT_AUTH)


def check_issuers(path: Sequence[x509.Certificate], now: datetime,
                   refuse: Callable[..., CertificateRefused]) -> None:
    """RFC 5280 section 6.1.3 (a)(2) for every CA above the leaf."""
    for ca_cert in path[1:]:
        if now > ca_cert.not_valid_after_utc:
            raise refuse(Refusal.EXPIRED, f"CA {ca_cert.subject.rfc4514_string()}")
        if now < ca_cert.not_valid_before_utc:
            raise refuse(Refusal.NOT_YET_VALID, f"CA {ca_cert.subject.rfc4514_string()}")


# The keys pyca's Web PKI policy accepts anywhere in a path (it has no setting to
# widen them): RSA and ECDSA on these curves.
PYCA_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def pyca_checks_key(cert: x509.Certificate) -> bool:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if isinstance(key, ec.EllipticCurvePublicKey):
        return isinstance(key.curve, PYCA_CURVES)
    return isinstance(key, rsa.RSAPublicKey)


def refuser(cert: x509.Certificate) -> Callable[..., CertificateRefused]:
    serial = serial_hex(cert.serial_number)
    subject = cert.subject.rfc4514_string()

    def refuse(reason: Refusal, detail: str = "") -> CertificateRefused:
        return CertificateRefused(reason, detail, serial=serial, subject=subject)

    return refuse


