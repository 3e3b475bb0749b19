"""The key management centre (KMC, after GM/T 0034): escrowed encryption keys for
the dual-certificate system (双证书), and their recovery.

A person's signing key is theirs alone: it comes from their own CSR and is never
escrowed. Their encryption key is generated here, sealed under the KMC storage
key (``pki.kek``) and kept, so that records encrypted to them stay readable when
the key is lost or the person is gone. The CA issues the ``user-encrypt``
certificate for it; the person receives the key wrapped to their signing
certificate (CMS EnvelopedData, ``pki.envelope``) or in a passphrase PKCS#12.
In the SM2 hierarchy the key is an SM2 key, the certificate comes from the SM2
issuing CA, and the key reaches the person only as a GM/T 0009 ``SM2EnvelopedKey``
to their SM2 signing certificate (``pki.sm2_envelope``): pyca/cryptography cannot
hold an SM2 key, so there is no SM2 PKCS#12.

Recovery: the owner recovers their own key in a level-3 session (or, without a
session, from the operator's CLI but only wrapped to the owner's own signing
certificate). Anyone else's key needs a request naming a reason and m of n
approvals from the key recovery agents (each in their own level-3 session, never
the requester), and is delivered once, to the requester named in the request.

Framework-free: the store (``pki.kmc_store``), the KEK and the CA are handed in;
people are anything with ``uid``, ``entry_uuid`` and ``groups``. Every step and
every refusal is an audit record naming the certificate serial: ``kmc.generated``,
``kmc.escrowed``, ``kmc.exported``, ``kmc.recovery_requested``,
``kmc.recovery_approved``, ``kmc.recovery_refused``, ``kmc.escrow_refused``.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from pki import sm2, sm2_envelope
from pki.envelope import UnsupportedRecipient, envelope
from pki.errors import BadSetting, KeyStoreError, KmcRefusal, KmcRefused, PKIError
from pki.interfaces import CertificateSubject
from pki.issuance import PKCS12_KDF_ROUNDS, IssuedCertificate
from pki.kek import KeyEncryptionKey
from pki.keys import KeyAlgorithm
from pki.model import AuditEntry, CertificateRecord, CertStatus, HierarchyName, OwnerKind

ESCROWED_PROFILE = "user-encrypt"
# Signing and authentication keys prove who acted: a copy anywhere else would
# let its holder act as the person, so they are never escrowed (GM/T 0034).
NEVER_ESCROWED = frozenset({"user-sign", "user-auth"})
SIGNING_PROFILES = NEVER_ESCROWED  # what a key may be wrapped to
MIN_PASSPHRASE = 8
MAX_REASON = 500


@dataclass(frozen=True)
class KmcSettings:
    """The ``[kmc]`` section."""

    approvals_required: int = 2
    agents_group: str = "key-recovery-agents"
    requester_groups: tuple[str, ...] = ("security-admins", "key-recovery-agents")
    request_hours: int = 72
    required_level: int = 3
    kek_label: str = "kmc-kek"

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> KmcSettings:
        approvals = int(section.get("approvals_required", 2))
        # Split control: one approval would let one agent alone read anyone's mail.
        if not 2 <= approvals <= 20:
            raise BadSetting("kmc.approvals_required", "must be 2..20")
        hours = int(section.get("request_hours", 72))
        if not 1 <= hours <= 24 * 90:
            raise BadSetting("kmc.request_hours", "must be 1..2160")
        level = int(section.get("required_level", 3))
        if not 3 <= level <= 4:
            raise BadSetting("kmc.required_level", "must be 3 or 4")
        return cls(approvals_required=approvals,
                   agents_group=str(section.get("agents_group", "key-recovery-agents")),
                   requester_groups=tuple(str(g) for g in section.get(
                       "requester_groups", ("security-admins", "key-recovery-agents"))),
                   request_hours=hours, required_level=level,
                   kek_label=str(section.get("kek_label", "kmc-kek")))


class Actor(Protocol):
    """Who asks (``directory.model.Person`` fits): their groups decide their role."""

    @property
    def uid(self) -> str: ...

    @property
    def entry_uuid(self) -> str: ...

    @property
    def groups(self) -> Sequence[str]: ...


class RequestState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DELIVERED = "delivered"


@dataclass(frozen=True)
class EscrowRecord:
    key_id: str  # SHA-256 of the SubjectPublicKeyInfo, hex
    serial: str | None  # the encryption certificate, once issued
    owner_uid: str
    owner_entry_uuid: str
    algorithm: str
    kek_label: str
    sealed: bytes = field(repr=False)
    created_at: datetime


@dataclass(frozen=True)
class RecoveryRequest:
    id: str
    serial: str
    owner_uid: str
    requester_uid: str
    requester_entry_uuid: str
    reason: str
    required: int
    state: RequestState
    created_at: datetime
    expires_at: datetime
    approvals: tuple[str, ...] = ()

    def expired(self, now: datetime) -> bool:
        return self.state is not RequestState.DELIVERED and now >= self.expires_at


class EscrowStore(Protocol):
    """Where escrowed keys and recovery requests live (``pki.kmc_store``). Each
    write appends its audit record in the same transaction."""

    def add_escrow(self, rec: EscrowRecord, audit: AuditEntry) -> None: ...

    def link_serial(self, key_id: str, serial: str, audit: AuditEntry,
                    at: datetime, then: AuditEntry | None = None) -> None:
        """Link the escrow row to its certificate; ``then`` (the key's export at
        issuance) is appended after ``audit`` in the same transaction."""

    def escrow(self, serial: str) -> EscrowRecord | None: ...

    def escrows(self, owner_uid: str) -> list[EscrowRecord]: ...

    def add_request(self, req: RecoveryRequest, audit: AuditEntry) -> None: ...

    def request(self, request_id: str) -> RecoveryRequest | None: ...

    def requests(self, limit: int = 200) -> list[RecoveryRequest]: ...

    def approve(self, request_id: str, agent_uid: str, agent_entry_uuid: str,
                at: datetime, audit: AuditEntry) -> RecoveryRequest:
        """Add one approval (refusing a second by the same agent, or one on a
        request no longer pending) and move the request to approved once it has
        enough: one transaction."""
        ...

    def mark_delivered(self, request_id: str, at: datetime, audit: AuditEntry) -> bool:
        """approved → delivered, compare-and-set: False if someone was first."""
        ...

    def audit(self, entry: AuditEntry, at: datetime) -> None: ...


class EscrowIssuer(Protocol):
    """What the KMC needs of the CA (``pki.authority.CertificateAuthority``)."""

    def issue_for_generated_key(self, person: CertificateSubject, profile_name: str,
                                public_key: Any, *, actor: str = ...) -> IssuedCertificate: ...

    def get(self, serial: str) -> CertificateRecord: ...

    @property
    def root_certificate(self) -> x509.Certificate: ...

    @property
    def issuing_certificate(self) -> x509.Certificate: ...

    def now(self) -> datetime: ...

    def hierarchy_of(self, name: HierarchyName) -> EscrowIssuer: ...


# -- how the key reaches a person ---------------------------------------------------
@dataclass(frozen=True)
class WrapTo:
    """CMS EnvelopedData to this certificate (the person's own signing certificate)."""

    certificate: x509.Certificate


@dataclass(frozen=True)
class Pkcs12:
    """A PKCS#12 with the key and its certificate under this passphrase."""

    passphrase: bytes = field(repr=False)


Delivery = WrapTo | Pkcs12


class DeliveryFormat(enum.StrEnum):
    CMS = "cms"  # DER ContentInfo/EnvelopedData holding the PKCS#8 key in PEM
    PKCS12 = "pkcs12"
    SM2_ENVELOPED_KEY = "sm2-enveloped-key"  # DER GM/T 0009 §7.4 SM2EnvelopedKey


@dataclass(frozen=True)
class DeliveredKey:
    serial: str
    format: DeliveryFormat
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class EscrowedIssue:
    issued: IssuedCertificate
    key: DeliveredKey


def _is_sm2(algorithm: str) -> bool:
    return algorithm == KeyAlgorithm.SM2.value


def key_id(public_key: Any) -> str:
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


class KeyManagementCentre:
    """Escrow at issuance; self-recovery; m-of-n organisational recovery."""

    def __init__(self, store: EscrowStore, kek: KeyEncryptionKey, ca: EscrowIssuer,
                 settings: KmcSettings | None = None, *,
                 key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.kek = kek
        self.ca = ca
        self.settings = settings or KmcSettings()
        self.key_algorithm = key_algorithm
        self._clock = clock

    def now(self) -> datetime:
        if self._clock is not None:
            return self._clock().astimezone(UTC).replace(microsecond=0)
        return self.ca.now()

    # -- refusals: audited, then raised --------------------------------------------
    def _refuse(self, action: str, actor: str, reason: KmcRefusal, serial: str,
                detail: str = "", **extra: str) -> KmcRefused:
        details = {"reason": reason.value, "serial": serial, **extra}
        if detail:
            details["detail"] = detail
        self.store.audit(AuditEntry(actor, action, f"cert:{serial}" if serial else "kmc",
                                    details), self.now())
        return KmcRefused(reason, serial, detail)

    # -- escrow at issuance ---------------------------------------------------------
    def issue_escrowed(self, person: CertificateSubject, delivery: Delivery, *,
                       profile_name: str = ESCROWED_PROFILE, actor: str = "system",
                       hierarchy: HierarchyName = HierarchyName.ECDSA) -> EscrowedIssue:
        """Generate the encryption key, escrow it, issue its certificate, deliver it.

        The key is sealed and recorded (``kmc.generated``) before the CA issues
        anything: a certificate is never out there for a key nobody holds. A crash
        between issuance and ``kmc.escrowed`` leaves a row found by its key id.
        ``hierarchy`` SM2: an SM2 key from the SM2 issuing CA, delivered as an
        ``SM2EnvelopedKey`` to the person's SM2 signing certificate.
        """
        if profile_name != ESCROWED_PROFILE:
            raise self._refuse("kmc.escrow_refused", actor, KmcRefusal.SIGNING_KEY
                               if profile_name in NEVER_ESCROWED else KmcRefusal.NOT_ESCROWED,
                               "", f"{profile_name} keys are not escrowed", uid=person.uid)
        algorithm = (KeyAlgorithm.SM2 if hierarchy is HierarchyName.SM2
                      else self.key_algorithm).value
        # Before any key exists: an SM2 CA that is not configured refuses here.
        issuer = self.ca.hierarchy_of(hierarchy)
        self._check_delivery(delivery, person.entry_uuid, "", actor, "kmc.escrow_refused",
                             algorithm)
        public: Any
        if _is_sm2(algorithm):
            sm2_key = sm2.generate_private_key()
            public = sm2.SM2PublicKey.of(sm2_key.public_key())
            pkcs8 = sm2_envelope.pkcs8(sm2_key)
            del sm2_key
        else:
            key = self.key_algorithm.generate()
            public = key.public_key()
            pkcs8 = key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        kid = key_id(public)
        now = self.now()
        self.store.add_escrow(
            EscrowRecord(kid, None, person.uid, person.entry_uuid, algorithm,
                         self.kek.label, self.kek.wrap(pkcs8, kid.encode()), now),
            AuditEntry(actor, "kmc.generated", f"key:{kid}", {
                "owner": person.uid, "algorithm": algorithm, "kek": self.kek.label}))
        issued = issuer.issue_for_generated_key(person, profile_name, public, actor=actor)
        serial = issued.record.serial
        escrowed = AuditEntry(actor, "kmc.escrowed", f"cert:{serial}", {
            "serial": serial, "key_id": kid, "owner": person.uid})
        try:
            data = _package(pkcs8, issued.certificate, delivery, self.ca, algorithm)
        except BaseException:
            self.store.link_serial(kid, serial, escrowed, self.now())
            raise
        # The link and the export go on record in one transaction, still before the
        # key is handed over (one commit where there were two).
        fmt = _format(delivery, algorithm)
        self.store.link_serial(kid, serial, escrowed, self.now(), then=self._exported(
            serial, fmt, to=person.uid, purpose="issue", actor=actor))
        return EscrowedIssue(issued, DeliveredKey(serial, fmt, data))

    # -- the owner's own key ---------------------------------------------------------
    def recover_own(self, person: Actor, serial: str, delivery: Delivery, *,
                    level: int | None, actor: str) -> DeliveredKey:
        """The owner's escrowed key. ``level`` is their session's; None means the
        operator's CLI, which may only wrap it to the owner's own certificate."""
        action = "kmc.recovery_refused"
        escrowed = self._escrowed(serial, actor)
        if escrowed.owner_entry_uuid != person.entry_uuid:
            raise self._refuse(action, actor, KmcRefusal.NOT_OWNER, serial, uid=person.uid)
        if level is None:
            if not isinstance(delivery, WrapTo):
                raise self._refuse(action, actor, KmcRefusal.NO_SESSION, serial,
                                   "without a session only --wrap-to the owner's certificate")
        elif level < self.settings.required_level:
            raise self._refuse(action, actor, KmcRefusal.LEVEL_TOO_LOW, serial,
                               level=str(level))
        self._check_delivery(delivery, person.entry_uuid, serial, actor, action,
                             escrowed.algorithm)
        return self._export(escrowed, delivery, to=person.uid, purpose="self", actor=actor)

    # -- organisational / judicial recovery -----------------------------------------
    def request_recovery(self, requester: Actor, serial: str, reason: str, *,
                         level: int) -> RecoveryRequest:
        action, actor = "kmc.recovery_refused", requester.uid
        if level < self.settings.required_level:
            raise self._refuse(action, actor, KmcRefusal.LEVEL_TOO_LOW, serial,
                               level=str(level))
        if not set(self.settings.requester_groups) & set(requester.groups):
            raise self._refuse(action, actor, KmcRefusal.NOT_ALLOWED_TO_REQUEST, serial)
        reason = " ".join(reason.split())
        if not reason or len(reason) > MAX_REASON:
            raise self._refuse(action, actor, KmcRefusal.NO_REASON, serial)
        escrowed = self._escrowed(serial, actor)
        now = self.now()
        req = RecoveryRequest(
            id=secrets.token_hex(8), serial=serial, owner_uid=escrowed.owner_uid,
            requester_uid=requester.uid, requester_entry_uuid=requester.entry_uuid,
            reason=reason, required=self.settings.approvals_required,
            state=RequestState.PENDING, created_at=now,
            expires_at=now + timedelta(hours=self.settings.request_hours))
        self.store.add_request(req, AuditEntry(actor, "kmc.recovery_requested",
                                               f"cert:{serial}", {
            "serial": serial, "request": req.id, "owner": escrowed.owner_uid,
            "reason": reason, "required": str(req.required)}))
        return req

    def approve(self, request_id: str, agent: Actor, *, level: int) -> RecoveryRequest:
        action, actor = "kmc.recovery_refused", agent.uid
        req = self._request(request_id, actor)
        serial, extra = req.serial, {"request": req.id}
        if level < self.settings.required_level:
            raise self._refuse(action, actor, KmcRefusal.LEVEL_TOO_LOW, serial,
                               level=str(level), **extra)
        if self.settings.agents_group not in agent.groups:
            raise self._refuse(action, actor, KmcRefusal.NOT_AGENT, serial, **extra)
        if agent.entry_uuid == req.requester_entry_uuid or agent.uid == req.requester_uid:
            raise self._refuse(action, actor, KmcRefusal.REQUESTER_APPROVAL, serial, **extra)
        if req.expired(self.now()):
            raise self._refuse(action, actor, KmcRefusal.EXPIRED, serial, **extra)
        if req.state is not RequestState.PENDING:
            raise self._refuse(action, actor, KmcRefusal.NOT_PENDING, serial,
                               state=req.state.value, **extra)
        if agent.uid in req.approvals:
            raise self._refuse(action, actor, KmcRefusal.ALREADY_APPROVED, serial, **extra)
        try:
            return self.store.approve(req.id, agent.uid, agent.entry_uuid, self.now(),
                                      AuditEntry(actor, "kmc.recovery_approved",
                                                 f"cert:{serial}", {
                                                     "serial": serial, "request": req.id,
                                                     "approvals": str(len(req.approvals) + 1),
                                                     "required": str(req.required)}))
        except KmcRefused as raced:  # a concurrent duplicate or the last approval
            raise self._refuse(action, actor, raced.reason, serial, **extra) from None

    def collect(self, request_id: str, requester: Actor, delivery: Delivery, *,
                level: int) -> DeliveredKey:
        """The approved key, once, to the requester named in the request."""
        action, actor = "kmc.recovery_refused", requester.uid
        req = self._request(request_id, actor)
        serial, extra = req.serial, {"request": req.id}
        if requester.entry_uuid != req.requester_entry_uuid:
            raise self._refuse(action, actor, KmcRefusal.NOT_REQUESTER, serial, **extra)
        if level < self.settings.required_level:
            raise self._refuse(action, actor, KmcRefusal.LEVEL_TOO_LOW, serial,
                               level=str(level), **extra)
        if req.state is not RequestState.APPROVED:
            reason = (KmcRefusal.NOT_PENDING if req.state is RequestState.DELIVERED
                      else KmcRefusal.NOT_APPROVED)
            raise self._refuse(action, actor, reason, serial, state=req.state.value, **extra)
        if req.expired(self.now()):
            raise self._refuse(action, actor, KmcRefusal.EXPIRED, serial, **extra)
        escrowed = self._escrowed(serial, actor)
        self._check_delivery(delivery, requester.entry_uuid, serial, actor, action,
                             escrowed.algorithm)
        pkcs8, cert = self._open(escrowed, actor)
        fmt = _format(delivery, escrowed.algorithm)
        # Packaged first (a refusal leaves the request approved), then marked
        # delivered with the export's audit record before the key leaves.
        data = _package(pkcs8, cert, delivery, self.ca, escrowed.algorithm)
        audit = AuditEntry(actor, "kmc.exported", f"cert:{serial}", {
            "serial": serial, "to": requester.uid, "purpose": f"request:{req.id}",
            "format": fmt.value})
        if not self.store.mark_delivered(req.id, self.now(), audit):
            raise self._refuse(action, actor, KmcRefusal.NOT_PENDING, serial, **extra)
        return DeliveredKey(serial, fmt, data)

    def escrowed_keys(self, owner_uid: str) -> list[EscrowRecord]:
        return [e for e in self.store.escrows(owner_uid) if e.serial]

    def requests(self) -> list[RecoveryRequest]:
        return self.store.requests()

    def get_request(self, request_id: str) -> RecoveryRequest | None:
        return self.store.request(request_id)

    # -- helpers ------------------------------------------------------------------------
    def _request(self, request_id: str, actor: str) -> RecoveryRequest:
        req = self.store.request(request_id) if _plain_id(request_id) else None
        if req is None:
            raise self._refuse("kmc.recovery_refused", actor, KmcRefusal.UNKNOWN_REQUEST, "",
                               request=request_id[:32])
        return req

    def _escrowed(self, serial: str, actor: str) -> EscrowRecord:
        action = "kmc.recovery_refused"
        try:
            rec = self.ca.get(serial)
        except PKIError:
            raise self._refuse(action, actor, KmcRefusal.UNKNOWN_CERTIFICATE,
                               serial[:64]) from None
        if rec.profile in NEVER_ESCROWED:
            raise self._refuse(action, actor, KmcRefusal.SIGNING_KEY, serial,
                               profile=rec.profile)
        escrowed = self.store.escrow(serial)
        if escrowed is None:
            raise self._refuse(action, actor, KmcRefusal.NOT_ESCROWED, serial)
        return escrowed

    def _check_delivery(self, delivery: Delivery, entry_uuid: str, serial: str, actor: str,
                        action: str, algorithm: str) -> None:
        if isinstance(delivery, Pkcs12):
            if _is_sm2(algorithm):
                # pyca/cryptography cannot hold an SM2 key, and a PKCS#12 would put the
                # key under a passphrase instead of the person's own SM2 key.
                raise self._refuse(action, actor, KmcRefusal.SM2_ENVELOPE_ONLY, serial,
                                   "an SM2 key goes only as an SM2EnvelopedKey to the "
                                   "person's SM2 signing certificate (--wrap-to)")
            if len(delivery.passphrase) < MIN_PASSPHRASE:
                raise self._refuse(action, actor, KmcRefusal.WEAK_PASSPHRASE, serial)
            return
        problem = self._recipient_problem(delivery.certificate, entry_uuid, algorithm)
        if problem:
            raise self._refuse(action, actor, KmcRefusal.BAD_RECIPIENT, serial, problem)

    def _recipient_problem(self, cert: x509.Certificate, entry_uuid: str,
                           algorithm: str) -> str:
        """Why ``cert`` may not receive the key ('' if it may): it must be the
        person's own valid signing or authentication certificate from this CA, and
        from the key's own hierarchy (an SM2 key only to an SM2 certificate, which is
        the only kind an ``SM2EnvelopedKey`` can be sealed to; an ECDSA key never to
        an SM2 certificate, which no CMS envelope of ours can reach)."""
        try:
            rec = self.ca.get(format(cert.serial_number, "x"))
        except PKIError:
            return "not a certificate of this CA"
        if rec.der != cert.public_bytes(serialization.Encoding.DER):
            return "not a certificate of this CA"
        if rec.owner_kind is not OwnerKind.PERSON or rec.owner_entry_uuid != entry_uuid:
            return "not the person's own certificate"
        if rec.profile not in SIGNING_PROFILES:
            return f"a {rec.profile} certificate: wrap to the signing certificate"
        if rec.status is not CertStatus.VALID or self.now() >= rec.not_after:
            return f"certificate is {rec.status.value}"
        if _is_sm2(algorithm) != (rec.hierarchy is HierarchyName.SM2):
            return (f"an {'SM2' if _is_sm2(algorithm) else 'ECDSA'} key goes to a signing "
                    f"certificate of its own hierarchy, not the {rec.hierarchy.value} one")
        if rec.hierarchy is HierarchyName.SM2:
            return ""  # an SM2 key of our SM2 issuing CA: SM2EnvelopedKey reaches it
        if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            return "its key cannot receive an envelope: use a PKCS#12"
        return ""

    def _open(self, escrowed: EscrowRecord, actor: str) -> tuple[bytes, x509.Certificate]:
        assert escrowed.serial is not None
        if escrowed.kek_label != self.kek.label:
            raise self._refuse("kmc.recovery_refused", actor, KmcRefusal.KEK_UNAVAILABLE,
                               escrowed.serial, f"sealed under {escrowed.kek_label}")
        try:
            pkcs8 = self.kek.unwrap(escrowed.sealed, escrowed.key_id.encode())
        except KeyStoreError as err:
            raise self._refuse("kmc.recovery_refused", actor, KmcRefusal.KEK_UNAVAILABLE,
                               escrowed.serial, err.reason) from None
        cert = x509.load_der_x509_certificate(self.ca.get(escrowed.serial).der)
        return pkcs8, cert

    def _export(self, escrowed: EscrowRecord, delivery: Delivery, *, to: str, purpose: str,
                actor: str) -> DeliveredKey:
        pkcs8, cert = self._open(escrowed, actor)
        assert escrowed.serial is not None
        return self._deliver(pkcs8, cert, escrowed.serial, delivery, escrowed.algorithm,
                             to=to, purpose=purpose, actor=actor)

    def _deliver(self, pkcs8: bytes, cert: x509.Certificate, serial: str, delivery: Delivery,
                 algorithm: str, *, to: str, purpose: str, actor: str) -> DeliveredKey:
        data = _package(pkcs8, cert, delivery, self.ca, algorithm)
        fmt = _format(delivery, algorithm)
        # The export is on record before the key is handed over.
        self.store.audit(self._exported(serial, fmt, to=to, purpose=purpose, actor=actor),
                         self.now())
        return DeliveredKey(serial, fmt, data)

    @staticmethod
    def _exported(serial: str, fmt: DeliveryFormat, *, to: str, purpose: str,
                  actor: str) -> AuditEntry:
        return AuditEntry(actor, "kmc.exported", f"cert:{serial}", {
            "serial": serial, "to": to, "purpose": purpose, "format": fmt.value})


def _format(delivery: Delivery, algorithm: str) -> DeliveryFormat:
    if isinstance(delivery, Pkcs12):
        return DeliveryFormat.PKCS12
    return DeliveryFormat.SM2_ENVELOPED_KEY if _is_sm2(algorithm) else DeliveryFormat.CMS


def _plain_id(value: str) -> bool:
    return 0 < len(value) <= 32 and all(c in "0123456789abcdef" for c in value)


def _package(pkcs8: bytes, cert: x509.Certificate, delivery: Delivery,
             ca: EscrowIssuer, algorithm: str) -> bytes:
    if _is_sm2(algorithm):
        if not isinstance(delivery, WrapTo):  # refused (and audited) before this
            raise KmcRefused(KmcRefusal.SM2_ENVELOPE_ONLY, "", "SM2 keys go as envelopes")
        try:
            recipient = sm2.certificate_public_key(
                delivery.certificate.public_bytes(serialization.Encoding.DER))
        except sm2.SM2Error as err:
            raise KmcRefused(KmcRefusal.BAD_RECIPIENT, "", str(err)) from None
        return sm2_envelope.enveloped_key(sm2_envelope.load_pkcs8(pkcs8), recipient)
    key = serialization.load_der_private_key(pkcs8, None)
    if isinstance(delivery, WrapTo):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            return envelope(pem, delivery.certificate)
        except UnsupportedRecipient as err:
            raise KmcRefused(KmcRefusal.BAD_RECIPIENT, "", str(err)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KmcRefused(KmcRefusal.BAD_RECIPIENT, "", "key type cannot go into PKCS#12")
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(PKCS12_KDF_ROUNDS)
                  .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                  .hmac_hash(hashes.SHA256())
                  .build(delivery.passphrase))
    return pkcs12.serialize_key_and_certificates(
        b"encryption", key, cert, [ca.issuing_certificate, ca.root_certificate], encryption)
