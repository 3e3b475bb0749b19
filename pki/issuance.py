"""Issuance: certificates for people (from a CSR, or with a generated key as
PKCS#12) and TLS server certificates for department apps (RFC 5280 §4).

Subject and SANs come from the directory's facts about the person
(:class:`pki.interfaces.CertificateSubject`) or the app's approved names, never
from the CSR. Every certificate is recorded with its audit record before it is
returned or published.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from pki.assemble import sign_certificate
from pki.certs import end_entity_builder, general_names, new_serial, subject_for
from pki.csr import check_csr, check_key, check_sm2_csr, parse_csr
from pki.errors import BadRequest, UnknownProfile
from pki.hierarchy import CAHierarchy
from pki.interfaces import CertificateSubject
from pki.keys import KeyAlgorithm, PrivateKey
from pki.model import (
    AuditEntry,
    CARole,
    CertificateRecord,
    CertStatus,
    HierarchyName,
    OwnerKind,
    serial_hex,
)
from policies.profiles import KeyKind, Owner, Profile, profiles

log = logging.getLogger(__name__)

PKCS12_KDF_ROUNDS = 200_000
_DNS = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}"
                  r"[a-z0-9])?)*$")


@dataclass(frozen=True)
class IssuedCertificate:
    record: CertificateRecord
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedKeyPair:
    issued: IssuedCertificate
    private_key: PrivateKey
    pkcs12: bytes  # AES-256-CBC, PBKDF2-SHA256 (empty when no passphrase was given)


class Issuance(CAHierarchy):
    """Issuing end-entity certificates with the issuing CA."""

    @staticmethod
    def profile(name: str) -> Profile:
        """The certificate profile ``name`` (policies/profiles)."""
        try:
            return profiles()[name]
        except KeyError:
            raise UnknownProfile(name) from None

    def _person_profile(self, name: str, person: CertificateSubject) -> Profile:
        profile = self.profile(name)
        if profile.owner is not Owner.PERSON:
            raise BadRequest("wrong_profile", f"{name} is not issued to people")
        if not person.is_active:
            raise BadRequest("person_inactive", f"{person.uid} is {person.status}")
        return profile

    def issue_from_csr(self, person: CertificateSubject, profile_name: str, csr: bytes, *,
                       actor: str = "system", hardware_key: bool = False) -> IssuedCertificate:
        """A certificate for ``person``'s key in ``csr``; subject and SANs from the entry."""
        profile = self._person_profile(profile_name, person)
        parsed = parse_csr(csr, self.settings.csr_max_bytes)
        checked = (check_sm2_csr(parsed, profile) if self.settings.hierarchy is HierarchyName.SM2
                   else check_csr(parsed, profile))
        issued = self._issue(profile, checked.public_key, checked.key_kind,
                             owner=(OwnerKind.PERSON, person.uid, person.entry_uuid),
                             person=person, dns_names=(), actor=actor,
                             hardware_key=hardware_key)
        self._publish(person, issued)
        return issued

    def issue_pkcs12(self, person: CertificateSubject, profile_name: str, passphrase: bytes, *,
                     actor: str = "system",
                     key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256) -> IssuedKeyPair:
        """Generate the key here and return it with the certificate as PKCS#12."""
        profile = self._person_profile(profile_name, person)
        if not profile.pkcs12:
            raise BadRequest("wrong_profile", f"{profile_name} keys are not generated here")
        if len(passphrase) < 8:
            raise BadRequest("weak_passphrase", "the PKCS#12 passphrase needs 8+ characters")
        if self.settings.hierarchy is HierarchyName.SM2:
            # pyca/cryptography cannot hold an SM2 key to put in a PKCS#12, and
            # tongsuopy writes none; SM2 keys come as CSRs (see the README).
            raise BadRequest("pkcs12_unsupported", "SM2 keys are not generated here: send "
                             "an SM2 CSR (openssl req -new -sm3 -sigopt "
                             "distid:1234567812345678)")
        key = key_algorithm.generate()
        kind, _ = check_key(key.public_key(), profile)
        issued = self._issue(profile, key.public_key(), kind,
                             owner=(OwnerKind.PERSON, person.uid, person.entry_uuid),
                             person=person, dns_names=(), actor=actor, hardware_key=False)
        p12 = self._pkcs12(person.uid, key, issued.certificate, passphrase)
        self._publish(person, issued)
        return IssuedKeyPair(issued, key, p12)

    def issue_for_generated_key(self, person: CertificateSubject, profile_name: str,
                                public_key: CertificatePublicKeyTypes, *,
                                actor: str = "system") -> IssuedCertificate:
        """A certificate for a key generated by a trusted part of this CA (the KMC's
        escrowed encryption keys): no CSR, so no proof of possession to check."""
        profile = self._person_profile(profile_name, person)
        kind, _ = check_key(public_key, profile)
        issued = self._issue(profile, public_key, kind,
                             owner=(OwnerKind.PERSON, person.uid, person.entry_uuid),
                             person=person, dns_names=(), actor=actor, hardware_key=False)
        self._publish(person, issued)
        return issued

    def _pkcs12(self, name: str, key: PrivateKey,
                cert: x509.Certificate, passphrase: bytes) -> bytes:
        encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                      .kdf_rounds(PKCS12_KDF_ROUNDS)
                      .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                      .hmac_hash(hashes.SHA256())
                      .build(passphrase))
        return pkcs12.serialize_key_and_certificates(
            name.encode(), key, cert, [self.issuing_certificate, self.root_certificate],
            encryption)

    def approve_dns(self, app: str, names: Sequence[str], *, actor: str = "system") -> None:
        """Add names (DNS or IP literals) to the approved list of a department app."""
        clean = [self._check_name(n) for n in names]
        self.store.approve_dns(app, clean, AuditEntry(actor, "app.approve_dns", f"app:{app}",
                                                      {"names": ",".join(clean)}), self.now())

    @staticmethod
    def _check_name(name: str) -> str:
        name = name.strip().lower().rstrip(".")
        try:
            return str(ipaddress.ip_address(name))
        except ValueError:
            pass
        if not _DNS.match(name):
            raise BadRequest("bad_dns_name", f"not a DNS name: {name!r}")
        return name

    def issue_tls_server(self, app: str, *, csr: bytes | None = None,
                         dns_names: Sequence[str] = (), passphrase: bytes | None = None,
                         actor: str = "system") -> IssuedCertificate | IssuedKeyPair:
        """A TLS server certificate for ``app``; every name must be on its approved list.

        With ``csr`` the names come from ``dns_names`` or else the CSR's SAN; without
        it a P-256 key is generated and returned (as PKCS#12 too, if ``passphrase``).
        """
        profile = self.profile("tls-server")
        approved = self.store.approved_dns(app)
        if csr is not None:
            parsed = parse_csr(csr, self.settings.csr_max_bytes)
            checked = (check_sm2_csr(parsed, profile)
                       if self.settings.hierarchy is HierarchyName.SM2
                       else check_csr(parsed, profile))
            names = [self._check_name(n) for n in (dns_names or checked.requested_names)]
            public_key: CertificatePublicKeyTypes = checked.public_key
            kind = checked.key_kind
            key = None
        else:
            if self.settings.hierarchy is HierarchyName.SM2:
                raise BadRequest("pkcs12_unsupported", "SM2 keys are not generated here: "
                                 "send an SM2 CSR")
            names = [self._check_name(n) for n in dns_names]
            key = KeyAlgorithm.EC_P256.generate()
            public_key = key.public_key()
            kind = KeyKind.EC
        if not names:
            raise BadRequest("dns_not_approved", "no DNS names requested")
        refused = [n for n in names if n not in approved]
        if refused:
            raise BadRequest("dns_not_approved", f"not approved for {app}: {refused}")
        names = list(dict.fromkeys(names))
        issued = self._issue(profile, public_key, kind, owner=(OwnerKind.APP, app, ""),
                             person=None, dns_names=names, actor=actor, hardware_key=False)
        if key is None:
            return issued
        p12 = self._pkcs12(app, key, issued.certificate, passphrase) if passphrase else b""
        return IssuedKeyPair(issued, key, p12)

    def _issue(self, profile: Profile, public_key: CertificatePublicKeyTypes,
               key_kind: KeyKind, *, owner: tuple[OwnerKind, str, str],
               person: CertificateSubject | None,
               dns_names: Sequence[str], actor: str, hardware_key: bool) -> IssuedCertificate:
        issuer = self.issuing_certificate
        now = self.now()
        serial = new_serial()
        subject = subject_for(profile, self.settings, person=person, dns_names=dns_names)
        builder = end_entity_builder(
            profile=profile, public_key=public_key, key_kind=key_kind, subject=subject,
            sans=general_names(profile, self.settings, person=person, dns_names=dns_names),
            issuer=issuer, settings=self.settings, now=now, serial=serial,
            hardware_key=hardware_key)
        cert = sign_certificate(builder, self.issuing_signer(), issuer)
        der_bytes = cert.public_bytes(serialization.Encoding.DER)
        record = CertificateRecord(
            serial=serial_hex(serial), owner_kind=owner[0], owner_uid=owner[1],
            owner_entry_uuid=owner[2], profile=profile.name,
            # The name as built: reading cert.subject back would decode it again.
            subject=subject.rfc4514_string(), not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc, status=CertStatus.VALID, issued_at=now,
            der=der_bytes, hardware_key=hardware_key, hierarchy=self.name)
        # Recorded, with its audit record, before anyone sees it.
        audit = AuditEntry(actor, "cert.issue", f"cert:{record.serial}", {
            "owner": owner[1], "profile": profile.name, "subject": record.subject,
            "not_after": record.not_after.isoformat(), "hierarchy": self.name.value,
            "issuer": self.settings.name(CARole.ISSUING)})
        self.store.add_certificate(record, audit)
        return IssuedCertificate(record, cert)

    def _publish(self, person: CertificateSubject, issued: IssuedCertificate) -> None:
        try:
            self.publisher.publish(person.uid, issued.record.der)
        except Exception:  # the database is the record; the directory copy can be redone
            log.exception("publishing certificate %s to %s failed", issued.record.serial,
                          person.uid)

