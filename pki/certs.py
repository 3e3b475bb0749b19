"""Building the CA, OCSP responder and end-entity certificates (RFC 5280 §4).

Pure: takes keys, names and settings, returns unsigned builders; ``pki.assemble``
signs them. Subject names are UTF8String (Chinese names survive), country a
PrintableString (RFC 5280 Appendix A, X520countryName).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID, ObjectIdentifier

from pki import der
from pki.errors import BadRequest
from pki.interfaces import CertificateSubject
from pki.model import CASettings
from policies.profiles import (
    HARDWARE_KEY_POLICY,
    KeyKind,
    Profile,
    SanSource,
    SubjectSource,
)

UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # Microsoft UPN otherName


def new_serial() -> int:
    """RFC 5280 §4.1.2.2: positive, at most 20 octets, here 159 bits from a CSPRNG.

    The top bit is cleared so the INTEGER stays positive in 20 octets; a zero first
    octet is redrawn so every serial is exactly 20 octets long.
    """
    while True:
        raw = bytearray(secrets.token_bytes(20))
        raw[0] &= 0x7F
        if raw[0]:
            return int.from_bytes(raw, "big")


def ca_name(common_name: str, settings: CASettings) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, settings.country),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def upn(uid: str, realm: str) -> x509.OtherName:
    # The UPN's value is a UTF8String (MS-WCCE); DER-encode it ourselves.
    return x509.OtherName(UPN_OID, der.tlv(0x0C, f"{uid}@{realm}".encode()))


def subject_for(profile: Profile, settings: CASettings, *,
                person: CertificateSubject | None = None,
                dns_names: Sequence[str] = ()) -> x509.Name:
    attrs: list[x509.NameAttribute[str]] = []
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME}
    for item in profile.subject:
        values: list[str]
        if item.source is SubjectSource.COUNTRY:
            values = [settings.country]
        elif item.source is SubjectSource.ORGANIZATION:
            values = [settings.organization]
        elif item.source is SubjectSource.DEPARTMENT:
            values = list(person.department) if person else []
        elif item.source is SubjectSource.DISPLAY_NAME:
            values = [person.display_name] if person and person.display_name else []
        elif item.source is SubjectSource.FIRST_DNS_NAME:
            values = [dns_names[0]] if dns_names else []
        else:
            values = [item.value]
        for value in values:
            if not value or len(value) > 64:  # RFC 5280 Appendix A upper bounds
                raise BadRequest("bad_subject", f"{item.attribute} value {value!r} unusable")
            attrs.append(x509.NameAttribute(oids[item.attribute], value))
    if not any(a.oid == NameOID.COMMON_NAME for a in attrs):
        raise BadRequest("bad_subject", "no common name for the subject")
    return x509.Name(attrs)


def general_names(profile: Profile, settings: CASettings, *,
                  person: CertificateSubject | None,
                  dns_names: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for source in profile.subject_alt_name:
        if source is SanSource.EMAIL and person is not None and person.email:
            names.append(x509.RFC822Name(person.email))
        elif source is SanSource.UPN and person is not None:
            names.append(upn(person.uid, settings.realm))
        elif source is SanSource.APPROVED_DNS:
            for name in dns_names:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    names.append(x509.DNSName(name))
    return names


def _distribution(urls: Iterable[str]) -> list[x509.DistributionPoint]:
    return [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in urls]


def root_builder(public_key: CertificatePublicKeyTypes, settings: CASettings,
                 now: datetime) -> x509.CertificateBuilder:
    name = ca_name(settings.root_cn, settings)
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public_key)
            .serial_number(new_serial())
            .not_valid_before(now).not_valid_after(now + settings.root_validity)
            # RFC 5280 §4.2.1.9 / §4.2.1.3: a CA, one intermediate below it.
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def issuing_builder(public_key: CertificatePublicKeyTypes, root: x509.Certificate,
                    settings: CASettings, now: datetime) -> x509.CertificateBuilder:
    not_after = min(now + settings.issuing_validity, root.not_valid_after_utc)
    return (x509.CertificateBuilder()
            .subject_name(ca_name(settings.issuing_cn, settings)).issuer_name(root.subject)
            .public_key(public_key).serial_number(new_serial())
            .not_valid_before(now).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_aki(root), critical=False)
            .add_extension(x509.CRLDistributionPoints(_distribution([settings.root_crl_url])),
                           critical=False)
            .add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier(settings.root_ca_url)),
            ]), critical=False))


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def key_usage(usages: frozenset[str]) -> x509.KeyUsage:
    fields = ("digital_signature", "content_commitment", "key_encipherment",
              "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
              "encipher_only", "decipher_only")
    return x509.KeyUsage(**{f: f in usages for f in fields})


def end_entity_builder(*, profile: Profile, public_key: CertificatePublicKeyTypes,
                       key_kind: KeyKind, subject: x509.Name, sans: list[x509.GeneralName],
                       issuer: x509.Certificate, settings: CASettings, now: datetime,
                       serial: int, hardware_key: bool = False) -> x509.CertificateBuilder:
    usages = profile.key_usage_for(key_kind)
    if not usages:
        raise BadRequest("weak_key", f"{profile.name} grants no key usage for {key_kind}")
    not_after = min(now + timedelta(days=profile.validity_days), issuer.not_valid_after_utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer.subject)
               .public_key(public_key).serial_number(serial)
               .not_valid_before(now).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(key_usage(usages), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                              critical=False)
               .add_extension(_aki(issuer), critical=False))
    if profile.extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ObjectIdentifier(o) for o in profile.extended_key_usage]), critical=False)
    if sans:
        # RFC 5280 §4.2.1.6: non-critical, as the subject is not empty.
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    policies = list(profile.policies) + ([HARDWARE_KEY_POLICY] if hardware_key else [])
    if policies:
        builder = builder.add_extension(x509.CertificatePolicies(
            [x509.PolicyInformation(ObjectIdentifier(p), None) for p in policies]),
            critical=False)
    if profile.ocsp_nocheck:
        # RFC 6960 §4.2.2.2.1: clients need not check the responder's own status.
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    else:
        builder = (builder
                   .add_extension(x509.CRLDistributionPoints(_distribution([settings.crl_url])),
                                  critical=False)
                   # RFC 5280 §4.2.1.15: where the delta CRLs are.
                   .add_extension(x509.FreshestCRL(_distribution([settings.delta_crl_url])),
                                  critical=False)
                   .add_extension(x509.AuthorityInformationAccess([
                       x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                              x509.UniformResourceIdentifier(settings.ocsp_url)),
                       x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                              x509.UniformResourceIdentifier(
                                                  settings.issuing_ca_url)),
                   ]), critical=False))
    return builder
