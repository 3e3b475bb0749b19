"""The certificate authority service: hierarchy, issuance, revocation, CRLs, OCSP.

:class:`CertificateAuthority` is framework-free: it takes a record store, a key
store, settings and a publisher, and returns values or raises ``PKIError``.
Everything it issues or changes is recorded (with its audit record, in one
transaction) before it is returned, published or reflected in a CRL or OCSP.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from pki.assemble import sign_certificate
from pki.audit import SignedHead, head_message
from pki.certs import (
    end_entity_builder,
    general_names,
    issuing_builder,
    new_serial,
    root_builder,
    subject_for,
)
from pki.crl import build_crl
from pki.csr import check_csr, check_key, parse_csr
from pki.errors import BadRequest, NotInitialized, PKIError, UnknownProfile, UnknownSerial
from pki.interfaces import AuditHead, CertificateStore, CertificateSubject
from pki.keys import KeyAlgorithm, KeyStore, PrivateKey, Signer, verify_signature
from pki.model import (
    AuditEntry,
    CACertificate,
    CARole,
    CASettings,
    CertificateRecord,
    CertStatus,
    CRLRecord,
    OwnerKind,
    RevocationReason,
    RevokedEntry,
    normalize_serial,
    serial_hex,
)
from pki.ocsp import OCSPResponder
from pki.publish import CertificatePublisher, UnwiredPublisher
from policies.profiles import KeyKind, Owner, Profile, profiles

log = logging.getLogger(__name__)

ISSUING = "issuing"
ROOT = "root"
ROOT_CRL_LIFETIME = timedelta(days=180)
ROOT_CRL_REFRESH = timedelta(days=30)
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


@dataclass(frozen=True)
class CAInfo:
    role: CARole
    subject: str
    serial: str
    not_before: datetime
    not_after: datetime
    sha256: str
    key_label: str
    key_algorithm: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role.value, "subject": self.subject, "serial": self.serial,
                "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "sha256": self.sha256,
                "key_label": self.key_label, "key_algorithm": self.key_algorithm}


def _now() -> datetime:
    return datetime.now(UTC)


def _info(role: CARole, ca: CACertificate, cert: x509.Certificate) -> CAInfo:
    fp = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    return CAInfo(role, cert.subject.rfc4514_string(), ca.serial, ca.not_before, ca.not_after,
                  fp, ca.key_label, KeyAlgorithm.of(cert.public_key()).value)


class CertificateAuthority:
    """One root, one issuing CA and its delegated OCSP responder."""

    def __init__(self, store: CertificateStore, keys: KeyStore, settings: CASettings, *,
                 publisher: CertificatePublisher | None = None,
                 audit: AuditHead | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.keys = keys
        self.settings = settings
        self.publisher: CertificatePublisher = publisher or UnwiredPublisher()
        self.audit = audit
        self._clock = clock
        self._lock = threading.RLock()
        self._ca: dict[CARole, tuple[CACertificate, x509.Certificate]] = {}
        self._ocsp: tuple[x509.Certificate, Signer, datetime] | None = None
        self._responder: OCSPResponder | None = None

    def now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    # -- hierarchy -------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self.store.current_ca(CARole.ISSUING) is not None

    def initialize(self, actor: str = "init") -> list[CAInfo]:
        """Create what is missing of root, issuing CA, OCSP responder and first CRLs."""
        with self._lock:
            alg = self.settings.key_algorithm
            now = self.now()
            if self.store.current_ca(CARole.ROOT) is None:
                signer = self._new_key(ROOT, alg)
                cert = sign_certificate(root_builder(signer.public_key(), self.settings, now),
                                        signer)
                self._save_ca(CARole.ROOT, ROOT, cert, actor)
            if self.store.current_ca(CARole.ISSUING) is None:
                signer = self._new_key(ISSUING, alg)
                root_cert = self.certificate(CARole.ROOT)
                cert = sign_certificate(
                    issuing_builder(signer.public_key(), root_cert, self.settings, now),
                    self.keys.get(self._ca_record(CARole.ROOT).key_label), root_cert)
                self._save_ca(CARole.ISSUING, ISSUING, cert, actor)
            self.ocsp_credentials(actor)
            self.refresh_if_due(actor)
            return self.hierarchy()

    def _new_key(self, label: str, alg: KeyAlgorithm) -> Signer:
        # A key left by an interrupted init (key made, certificate not recorded) is reused.
        return self.keys.get(label) if self.keys.exists(label) else self.keys.create(label, alg)

    def _save_ca(self, role: CARole, label: str, cert: x509.Certificate, actor: str) -> None:
        ca = CACertificate(role, label, serial_hex(cert.serial_number),
                           cert.public_bytes(serialization.Encoding.DER),
                           cert.not_valid_before_utc, cert.not_valid_after_utc)
        self.store.add_ca(ca, AuditEntry(actor, "ca.create", f"ca:{role.value}", {
            "serial": ca.serial, "subject": cert.subject.rfc4514_string(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex()}), self.now())
        self._ca.pop(role, None)

    def _ca_record(self, role: CARole) -> CACertificate:
        with self._lock:
            hit = self._ca.get(role)
            if hit is None or role is CARole.OCSP:
                ca = self.store.current_ca(role)
                if ca is None:
                    raise NotInitialized(role.value)
                hit = (ca, x509.load_der_x509_certificate(ca.der))
                self._ca[role] = hit
            return hit[0]

    def certificate(self, role: CARole) -> x509.Certificate:
        self._ca_record(role)
        return self._ca[role][1]

    @property
    def root_certificate(self) -> x509.Certificate:
        return self.certificate(CARole.ROOT)

    @property
    def issuing_certificate(self) -> x509.Certificate:
        return self.certificate(CARole.ISSUING)

    def issuing_signer(self) -> Signer:
        return self.keys.get(self._ca_record(CARole.ISSUING).key_label)

    def hierarchy(self) -> list[CAInfo]:
        out = []
        for role in (CARole.ROOT, CARole.ISSUING, CARole.OCSP):
            ca = self.store.current_ca(role)
            if ca is not None:
                out.append(_info(role, ca, x509.load_der_x509_certificate(ca.der)))
        return out

    def urls(self) -> dict[str, str]:
        s = self.settings
        return {"crl": s.crl_url, "delta_crl": s.delta_crl_url, "ocsp": s.ocsp_url,
                "issuing_ca": s.issuing_ca_url, "root_ca": s.root_ca_url,
                "root_crl": s.root_crl_url}

    # -- the delegated OCSP responder (RFC 6960 §4.2.2.2) ----------------------
    def ocsp_credentials(self, actor: str = "system") -> tuple[x509.Certificate, Signer]:
        """The current responder certificate and key, renewed within 1/3 of its end."""
        with self._lock:
            now = self.now()
            cached = self._ocsp
            if cached is not None and now < cached[2]:
                return cached[0], cached[1]
            ca = self.store.current_ca(CARole.OCSP)
            if ca is None or now >= ca.not_after - (ca.not_after - ca.not_before) / 3:
                self._renew_ocsp(actor)
                ca = self.store.current_ca(CARole.OCSP)
                assert ca is not None
            cert = x509.load_der_x509_certificate(ca.der)
            renew_at = ca.not_after - (ca.not_after - ca.not_before) / 3
            # Re-read at most every minute so other nodes' renewals are picked up.
            self._ocsp = (cert, self.keys.get(ca.key_label),
                          min(now + timedelta(minutes=1), renew_at))
            return cert, self._ocsp[1]

    def _renew_ocsp(self, actor: str) -> None:
        profile = self.profile("ocsp-signing")
        label = f"ocsp-{self.now():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        signer = self.keys.create(label, self.settings.key_algorithm)
        key_kind, _ = check_key(signer.public_key(), profile)
        issued = self._issue(profile, signer.public_key(), key_kind,
                             owner=(OwnerKind.CA, "ocsp", ""), person=None, dns_names=(),
                             actor=actor, hardware_key=False)
        cert = issued.certificate
        ca = CACertificate(CARole.OCSP, label, issued.record.serial, issued.record.der,
                           cert.not_valid_before_utc, cert.not_valid_after_utc)
        self.store.add_ca(ca, AuditEntry(actor, "ca.ocsp_renew", "ca:ocsp", {
            "serial": ca.serial, "key_label": label}), self.now())

    @property
    def responder(self) -> OCSPResponder:
        with self._lock:
            if self._responder is None:
                self._responder = OCSPResponder(
                    self.issuing_certificate, self.store.status, self.ocsp_credentials,
                    lifetime=self.settings.ocsp_response_lifetime,
                    cache_size=self.settings.ocsp_cache_size, clock=self._clock)
            return self._responder

    # -- issuance ----------------------------------------------------------------
    @staticmethod
    def profile(name: str) -> Profile:
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
        checked = check_csr(parse_csr(csr, self.settings.csr_max_bytes), profile)
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
        key = key_algorithm.generate()
        kind, _ = check_key(key.public_key(), profile)
        issued = self._issue(profile, key.public_key(), kind,
                             owner=(OwnerKind.PERSON, person.uid, person.entry_uuid),
                             person=person, dns_names=(), actor=actor, hardware_key=False)
        p12 = self._pkcs12(person.uid, key, issued.certificate, passphrase)
        self._publish(person, issued)
        return IssuedKeyPair(issued, key, p12)

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
            checked = check_csr(parse_csr(csr, self.settings.csr_max_bytes), profile)
            names = [self._check_name(n) for n in (dns_names or checked.requested_names)]
            public_key: CertificatePublicKeyTypes = checked.public_key
            kind = checked.key_kind
            key = None
        else:
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
        builder = end_entity_builder(
            profile=profile, public_key=public_key, key_kind=key_kind,
            subject=subject_for(profile, self.settings, person=person, dns_names=dns_names),
            sans=general_names(profile, self.settings, person=person, dns_names=dns_names),
            issuer=issuer, settings=self.settings, now=now, serial=serial,
            hardware_key=hardware_key)
        cert = sign_certificate(builder, self.issuing_signer(), issuer)
        der_bytes = cert.public_bytes(serialization.Encoding.DER)
        record = CertificateRecord(
            serial=serial_hex(serial), owner_kind=owner[0], owner_uid=owner[1],
            owner_entry_uuid=owner[2], profile=profile.name,
            subject=cert.subject.rfc4514_string(), not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc, status=CertStatus.VALID, issued_at=now,
            der=der_bytes, hardware_key=hardware_key)
        # Recorded, with its audit record, before anyone sees it.
        audit = AuditEntry(actor, "cert.issue", f"cert:{record.serial}", {
            "owner": owner[1], "profile": profile.name, "subject": record.subject,
            "not_after": record.not_after.isoformat()})
        self.store.add_certificate(record, audit)
        return IssuedCertificate(record, cert)

    def _publish(self, person: CertificateSubject, issued: IssuedCertificate) -> None:
        try:
            self.publisher.publish(person.uid, issued.record.der)
        except Exception:  # the database is the record; the directory copy can be redone
            log.exception("publishing certificate %s to %s failed", issued.record.serial,
                          person.uid)

    # -- revocation (RFC 5280 §5.3.1) -----------------------------------------
    def get(self, serial: str) -> CertificateRecord:
        s = normalize_serial(serial)
        rec = self.store.get(s)
        if rec is None:
            raise UnknownSerial(s)
        return rec

    def find(self, *, uid: str | None = None, status: CertStatus | None = None,
             expiring_within: timedelta | None = None, limit: int = 10_000
             ) -> list[CertificateRecord]:
        before = self.now() + expiring_within if expiring_within is not None else None
        return self.store.find(uid=uid, status=status, expiring_before=before, limit=limit)

    def revoke(self, serial: str, reason: RevocationReason | str = RevocationReason.UNSPECIFIED,
               invalidity_date: datetime | None = None, *, actor: str = "system",
               refresh: bool = True) -> CertificateRecord:
        why = RevocationReason.for_revocation(reason)
        s = normalize_serial(serial)
        details = {"reason": why.value}
        if invalidity_date is not None:
            invalidity_date = invalidity_date.astimezone(UTC).replace(microsecond=0)
            details["invalidity_date"] = invalidity_date.isoformat()
        # RFC 5280 §5.3.1: a certificate on hold may be revoked for good.
        rec = self.store.transition(
            s, verb="revoke", allowed_from=frozenset({CertStatus.VALID, CertStatus.HOLD}),
            to=CertStatus.REVOKED, at=self.now(), reason=why, invalidity_date=invalidity_date,
            audit=AuditEntry(actor, "cert.revoke", f"cert:{s}", details))
        self._after_change(rec, actor, refresh, unpublish=True)
        return rec

    def hold(self, serial: str, *, actor: str = "system", refresh: bool = True
             ) -> CertificateRecord:
        s = normalize_serial(serial)
        rec = self.store.transition(
            s, verb="hold", allowed_from=frozenset({CertStatus.VALID}), to=CertStatus.HOLD,
            at=self.now(), reason=RevocationReason.CERTIFICATE_HOLD, invalidity_date=None,
            audit=AuditEntry(actor, "cert.hold", f"cert:{s}", {}))
        self._after_change(rec, actor, refresh, unpublish=False)
        return rec

    def release(self, serial: str, *, actor: str = "system", refresh: bool = True
                ) -> CertificateRecord:
        s = normalize_serial(serial)
        rec = self.store.transition(
            s, verb="release", allowed_from=frozenset({CertStatus.HOLD}), to=CertStatus.VALID,
            at=self.now(), reason=RevocationReason.REMOVE_FROM_CRL, invalidity_date=None,
            audit=AuditEntry(actor, "cert.release", f"cert:{s}", {}))
        self._after_change(rec, actor, refresh, unpublish=False)
        return rec

    def _after_change(self, rec: CertificateRecord, actor: str, refresh: bool,
                      unpublish: bool) -> None:
        if unpublish and rec.owner_kind is OwnerKind.PERSON:
            try:
                self.publisher.unpublish(rec.owner_uid, rec.der)
            except Exception:
                log.exception("unpublishing certificate %s failed", rec.serial)
        if refresh:
            self.refresh_after_revocation(actor)

    def refresh_after_revocation(self, actor: str = "system") -> None:
        """A new delta CRL always; a new full CRL while it is small enough."""
        full = self.store.latest_crl(ISSUING, delta=False)
        if full is None or full.entries < self.settings.full_crl_on_revoke_max:
            self.generate_crl(delta=False, actor=actor)
        self.generate_crl(delta=True, actor=actor)

    # -- CRLs (RFC 5280 §5) -----------------------------------------------------
    def generate_crl(self, *, delta: bool = False, actor: str = "system") -> CRLRecord:
        issuer = self.issuing_certificate
        signer = self.issuing_signer()
        for _ in range(5):
            now = self.now()
            base: CRLRecord | None = None
            since: datetime | None = None
            if delta:
                base = self.store.latest_crl(ISSUING, delta=False)
                if base is None:
                    base = self.generate_crl(delta=False, actor=actor)
                # A margin so a change committed while the base was read is not missed.
                since = base.this_update - timedelta(minutes=5)
            number = self.store.next_crl_number(ISSUING)
            counter = _Counter(self.store.revoked_entries(since))
            lifetime = self.settings.delta_lifetime if delta else self.settings.crl_lifetime
            der_bytes = build_crl(issuer=issuer, signer=signer, entries=counter, number=number,
                                  this_update=now, next_update=now + lifetime,
                                  base_number=base.number if base else None)
            rec = CRLRecord(number, delta, base.number if base else None, now, now + lifetime,
                            counter.count, der_bytes)
            audit = AuditEntry(actor, "crl.generate", f"crl:{ISSUING}:{number}", {
                "delta": str(delta).lower(), "entries": str(counter.count),
                "base": str(rec.base_number or "")})
            if self.store.add_crl(ISSUING, rec, audit):
                self._publish_crl(ISSUING, der_bytes)
                self.sign_audit_head()
                return rec
        raise PKIError("could not store a CRL: its number kept being taken")

    def generate_root_crl(self, actor: str = "system") -> CRLRecord:
        """The root's CRL (it lists revoked CA certificates; none so far)."""
        root = self.root_certificate
        signer = self.keys.get(self._ca_record(CARole.ROOT).key_label)
        for _ in range(5):
            now = self.now()
            number = self.store.next_crl_number(ROOT)
            der_bytes = build_crl(issuer=root, signer=signer, entries=(), number=number,
                                  this_update=now, next_update=now + ROOT_CRL_LIFETIME)
            rec = CRLRecord(number, False, None, now, now + ROOT_CRL_LIFETIME, 0, der_bytes)
            if self.store.add_crl(ROOT, rec, AuditEntry(actor, "crl.generate",
                                                         f"crl:{ROOT}:{number}", {})):
                self._publish_crl(ROOT, der_bytes)
                return rec
        raise PKIError("could not store the root CRL")

    def _publish_crl(self, ca: str, der_bytes: bytes) -> None:
        try:
            self.publisher.publish_crl(ca, der_bytes)
        except Exception:
            log.exception("publishing the %s CRL failed", ca)

    def crl(self, *, delta: bool = False, issuer: str = ISSUING) -> bytes:
        """The newest stored CRL (generating one if there is none)."""
        rec = self.store.latest_crl(issuer, delta)
        if rec is None:
            rec = self.generate_root_crl() if issuer == ROOT else self.generate_crl(delta=delta)
        return rec.der

    def refresh_if_due(self, actor: str = "scheduler") -> list[str]:
        """Renew what is due: the OCSP responder, full, delta and root CRLs."""
        done = []
        before = self.store.current_ca(CARole.OCSP)
        self.ocsp_credentials(actor)
        after = self.store.current_ca(CARole.OCSP)
        if after is not None and (before is None or before.serial != after.serial):
            done.append("ocsp-responder")
        now = self.now()
        full = self.store.latest_crl(ISSUING, delta=False)
        if full is None or now >= full.this_update + self.settings.crl_refresh:
            full = self.generate_crl(delta=False, actor=actor)
            done.append("crl")
        delta = self.store.latest_crl(ISSUING, delta=True)
        if (delta is None or delta.base_number != full.number
                or now >= delta.this_update + self.settings.delta_refresh):
            self.generate_crl(delta=True, actor=actor)
            done.append("delta-crl")
        root = self.store.latest_crl(ROOT, delta=False)
        if root is None or now >= root.this_update + ROOT_CRL_REFRESH:
            self.generate_root_crl(actor)
            done.append("root-crl")
        return done

    # -- the audit log's signed head ---------------------------------------------
    def sign_audit_head(self) -> SignedHead | None:
        if self.audit is None:
            return None
        return self.audit.sign_head(self.issuing_signer().sign)

    def verify_audit_head(self, head: SignedHead) -> bool:
        return verify_signature(self.issuing_certificate.public_key(), head.signature,
                                head_message(head.seq, head.hash))


class _Counter(Iterator[RevokedEntry]):
    def __init__(self, entries: Iterable[RevokedEntry]) -> None:
        self._it = iter(entries)
        self.count = 0

    def __next__(self) -> RevokedEntry:
        item = next(self._it)
        self.count += 1
        return item
