"""Reading a certificate: decoding (bounded), extensions, SAN entries, policy OIDs,
the OCSP and CRL URLs of its AIA and CRL distribution points (RFC 5280 sections
4.2.1.4, 4.2.1.6, 4.2.1.13, 4.2.2.1), the key hash of RFC 6960, and the SM2 key
of a GM/T 0015 certificate. Pure functions; malformed input is a
``CertificateRefused``."""

from __future__ import annotations

from typing import Any

from asn1crypto import core as a_core
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from idp.login.refusals import CertificateRefused, Refusal
from pki import sm2

MAX_CERT_BYTES = 16 * 1024
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # MS-WCCE otherName


# -- parsing -------------------------------------------------------------------------
def load_certificate(data: bytes | str | x509.Certificate) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if len(raw) > MAX_CERT_BYTES:
        raise CertificateRefused(Refusal.TOO_LARGE, f"{len(raw)} bytes")
    try:
        if b"-----BEGIN CERTIFICATE-----" in raw:
            return x509.load_pem_x509_certificate(raw.strip())
        return x509.load_der_x509_certificate(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateRefused(Refusal.MALFORMED, type(exc).__name__) from None


def extension(cert: x509.Certificate, ext_type: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # a duplicated or undecodable extension
        raise CertificateRefused(Refusal.MALFORMED, "bad extensions") from None


def certificate_policies(cert: x509.Certificate) -> frozenset[str]:
    pols = extension(cert, x509.CertificatePolicies)
    return frozenset(p.policy_identifier.dotted_string for p in pols) if pols else frozenset()


def san_emails(cert: x509.Certificate) -> list[str]:
    san = extension(cert, x509.SubjectAlternativeName)
    return list(san.get_values_for_type(x509.RFC822Name)) if san else []


def san_upns(cert: x509.Certificate) -> list[str]:
    san = extension(cert, x509.SubjectAlternativeName)
    out = []
    for other in san.get_values_for_type(x509.OtherName) if san else []:
        if other.type_id == UPN_OID:
            try:
                out.append(str(a_core.UTF8String.load(other.value).native))
            except ValueError:
                continue
    return out


def sm2_key(cert: x509.Certificate) -> sm2.SM2PublicKey | None:
    """The certificate's SM2 key (GM/T 0015), or None when its key is not SM2
    (pyca/cryptography parses SM2 certificates but cannot load their keys)."""
    if cert.public_key_algorithm_oid.dotted_string != sm2.EC_PUBLIC_KEY_OID:
        return None
    try:
        return sm2.certificate_public_key(cert.public_bytes(serialization.Encoding.DER))
    except (sm2.SM2Error, ValueError):
        return None




def spk_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (RFC 6960 KeyHash)."""
    from asn1crypto import keys as a_keys

    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    # contents[0] is the count of unused bits, which the hash leaves out
    return bytes(a_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])


def urls(cert: x509.Certificate, kind: str) -> list[str]:
    out: list[str] = []
    if kind == "ocsp":
        aia = extension(cert, x509.AuthorityInformationAccess)
        for desc in aia or []:
            if (desc.access_method == AuthorityInformationAccessOID.OCSP
                    and isinstance(desc.access_location, x509.UniformResourceIdentifier)):
                out.append(desc.access_location.value)
    else:
        cdp = extension(cert, x509.CRLDistributionPoints)
        for point in cdp or []:
            for name in point.full_name or []:
                if isinstance(name, x509.UniformResourceIdentifier):
                    out.append(name.value)
    return [u for u in out if u.startswith(("http://", "https://"))]


def entry_verdict(entry: x509.RevokedCertificate | None) -> Refusal | None:
    if entry is None:
        return None
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return Refusal.REVOKED
    return Refusal.ON_HOLD if reason is x509.ReasonFlags.certificate_hold else Refusal.REVOKED


