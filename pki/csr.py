"""Certificate requests (PKCS#10, RFC 2986): parse, verify, check against a profile.

Only the public key and, for TLS servers, the requested DNS names are taken from
a CSR. Its subject and any other SAN are ignored; extensions the profile does
not grant make the request fail rather than be silently dropped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID

from pki import sm2
from pki.errors import BadRequest
from policies.profiles import EKU_OIDS, KeyKind, Profile

# Extensions a CSR may ask for; each is checked against the profile below.
_GRANTABLE = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
}
_KU_FIELDS = ("digital_signature", "content_commitment", "key_encipherment",
              "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")


@dataclass(frozen=True)
class CheckedRequest:
    public_key: CertificatePublicKeyTypes
    key_kind: KeyKind
    key_description: str  # "ec-secp256r1", "rsa-3072", "ed25519"
    requested_names: tuple[str, ...]  # dNSName / iPAddress SAN entries, for tls-server


def parse_csr(data: bytes, max_bytes: int) -> x509.CertificateSigningRequest:
    """PEM or DER; anything else (or too large) is a :class:`BadRequest`."""
    if len(data) > max_bytes:
        raise BadRequest("too_large", f"{len(data)} bytes exceeds the cap of {max_bytes}")
    if not data:
        raise BadRequest("garbage", "empty request")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (ValueError, x509.InvalidVersion) as exc:
        # InvalidVersion (a version other than v1, RFC 2986 §4.1) is no ValueError.
        raise BadRequest("garbage", f"not a PKCS#10 request: {exc}") from None


def describe_key(key: CertificatePublicKeyTypes) -> tuple[KeyKind | None, str]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return KeyKind.EC, f"ec-{key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return KeyKind.RSA, f"rsa-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyKind.ED25519, "ed25519"
    return None, type(key).__name__


def check_key(key: CertificatePublicKeyTypes, profile: Profile) -> tuple[KeyKind, str]:
    kind, desc = describe_key(key)
    allowed = profile.keys
    if kind is KeyKind.EC:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        if key.curve.name not in allowed.ec_curves:
            raise BadRequest("weak_key", f"{desc} is not allowed by {profile.name}")
    elif kind is KeyKind.RSA:
        assert isinstance(key, rsa.RSAPublicKey)
        if not allowed.allows_rsa(key.key_size):
            raise BadRequest("weak_key", f"{desc} is not allowed by {profile.name}")
        if key.public_numbers().e < 65537:
            raise BadRequest("weak_key", "RSA public exponent below 65537")
    elif kind is KeyKind.ED25519:
        if not allowed.ed25519:
            raise BadRequest("weak_key", f"ed25519 is not allowed by {profile.name}")
    else:
        raise BadRequest("weak_key", f"unsupported key type {desc}")
    return kind, desc


def check_csr(csr: x509.CertificateSigningRequest, profile: Profile) -> CheckedRequest:
    """A request for the default hierarchy (ECDSA, RSA, Ed25519); SM2 ones are refused."""
    # A key pyca/cryptography loads is on a curve it knows, never sm2p256v1: with
    # a signature other than SM3withSM2 that proves the request is not SM2, and
    # spares every issuance a second parse of the DER (asn1crypto) to prove it.
    loaded: CertificatePublicKeyTypes | None = None
    key_error: Exception | None = None
    try:
        loaded = csr.public_key()
    except Exception as exc:  # unsupported key types raise here; refused below, in order
        key_error = exc
    if (loaded is None or csr.signature_algorithm_oid.dotted_string == sm2.SM3_WITH_SM2_OID) \
            and sm2.request_is_sm2(csr.public_bytes(serialization.Encoding.DER)):
        raise BadRequest("wrong_hierarchy", "an SM2 request: the SM2 hierarchy issues it "
                         "(cert issue --algorithm sm2)")
    # RFC 2986 §3: the signature proves possession of the private key.
    try:
        ok = csr.is_signature_valid
    except Exception as exc:  # unsupported signature algorithms raise here
        raise BadRequest("bad_signature", f"cannot check the signature: {exc}") from None
    if not ok:
        raise BadRequest("bad_signature", "the request's signature does not verify")
    if key_error is not None:
        raise BadRequest("weak_key", f"unsupported public key: {key_error}") from None
    key = loaded
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey
                      | ed25519.Ed25519PublicKey):
        raise BadRequest("weak_key", f"unsupported key type {type(key).__name__}")
    return _check_extensions(csr, key, profile)


def check_sm2_csr(csr: x509.CertificateSigningRequest, profile: Profile) -> CheckedRequest:
    """A request for the SM2 hierarchy: SM3withSM2 over an SM2 key, verified with the
    default ID (GM/T 0009); anything else is refused."""
    der_bytes = csr.public_bytes(serialization.Encoding.DER)
    if not sm2.request_is_sm2(der_bytes):
        raise BadRequest("wrong_hierarchy", "not an SM2 request: the default hierarchy "
                         "issues it (cert issue without --algorithm sm2)")
    try:
        key = sm2.check_request(der_bytes)
    except sm2.SM2Error as exc:
        raise BadRequest(exc.reason, exc.detail) from None
    return _check_extensions(csr, key, profile)


def _check_extensions(csr: x509.CertificateSigningRequest, key: CertificatePublicKeyTypes,
                      profile: Profile) -> CheckedRequest:
    kind, desc = check_key(key, profile)
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise BadRequest("garbage", f"malformed extensions: {exc}") from None
    names: list[str] = []
    for ext in extensions:
        if ext.oid not in _GRANTABLE:
            raise BadRequest("extension_not_granted",
                             f"extension {ext.oid.dotted_string} is not granted by {profile.name}")
        value = ext.value
        if isinstance(value, x509.BasicConstraints):
            if value.ca:  # RFC 5280 §4.2.1.9: end entities are never CAs
                raise BadRequest("ca_requested", "the request asks for CA:TRUE")
        elif isinstance(value, x509.KeyUsage):
            granted = profile.key_usage_for(kind)
            asked = {f for f in _KU_FIELDS if getattr(value, f)}
            if not asked <= granted:
                raise BadRequest("extension_not_granted",
                                 f"key usage {sorted(asked - granted)} not granted")
        elif isinstance(value, x509.ExtendedKeyUsage):
            asked_eku = {o.dotted_string for o in value}
            if not asked_eku <= set(profile.extended_key_usage):
                names_by_oid = {v: k for k, v in EKU_OIDS.items()}
                extra = sorted(names_by_oid.get(o, o) for o in asked_eku
                               - set(profile.extended_key_usage))
                raise BadRequest("extension_not_granted", f"extended key usage {extra}")
        elif isinstance(value, x509.SubjectAlternativeName):
            names.extend(value.get_values_for_type(x509.DNSName))
            names.extend(str(ip) for ip in value.get_values_for_type(x509.IPAddress)
                         if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address))
    return CheckedRequest(key, kind, desc, tuple(names))
