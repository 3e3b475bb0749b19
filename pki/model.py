"""Values of the CA: certificate records, statuses, revocation reasons, settings."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from pki.errors import BadSetting, InvalidReason, InvalidSerial
from pki.keys import KeyAlgorithm


class CertStatus(enum.StrEnum):
    VALID = "valid"
    HOLD = "hold"
    REVOKED = "revoked"


class OwnerKind(enum.StrEnum):
    PERSON = "person"
    APP = "app"
    CA = "ca"


class HierarchyName(enum.StrEnum):
    """Which CA hierarchy: the default one (ECDSA, or RSA/Ed25519 as configured) or
    the SM2 one (GM/T 0015: SM2 keys, SM3withSM2 signatures) beside it."""

    ECDSA = "ecdsa"
    SM2 = "sm2"


class CARole(enum.StrEnum):
    ROOT = "root"
    ISSUING = "issuing"
    OCSP = "ocsp"
    SM2_ROOT = "sm2-root"
    SM2_ISSUING = "sm2-issuing"
    SM2_OCSP = "sm2-ocsp"

    @property
    def kind(self) -> CARole:
        """The role within its hierarchy (SM2_ROOT is a ROOT)."""
        return CARole(self.value.removeprefix("sm2-"))


class RevocationReason(enum.StrEnum):
    """RFC 5280 §5.3.1 CRLReason, named as in the RFC (and in ``openssl ocsp``)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    REMOVE_FROM_CRL = "removeFromCRL"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"

    @property
    def code(self) -> int:
        return _REASON_CODES[self]

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        """Accept ``keyCompromise``, ``key-compromise`` or ``key_compromise``."""
        wanted = text.replace("-", "").replace("_", "").lower()
        for reason in cls:
            if reason.value.lower() == wanted:
                return reason
        raise InvalidReason(text)

    @classmethod
    def for_revocation(cls, text: str | RevocationReason) -> RevocationReason:
        """A reason ``revoke`` may use: hold and removeFromCRL have their own verbs."""
        reason = text if isinstance(text, RevocationReason) else cls.parse(text)
        if reason in (cls.CERTIFICATE_HOLD, cls.REMOVE_FROM_CRL):
            raise InvalidReason(reason.value)
        return reason


_REASON_CODES = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6,
    RevocationReason.REMOVE_FROM_CRL: 8,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
}

_SERIAL = re.compile(r"^[0-9a-f]{1,40}$")


def normalize_serial(text: str) -> str:
    """Serials are written and accepted as lowercase hex without colons."""
    s = text.strip().lower()
    if s.startswith("0x"):
        s = s[2:]
    if not _SERIAL.match(s):
        raise InvalidSerial(text)
    return format(int(s, 16), "x")


def serial_hex(serial: int) -> str:
    return format(serial, "x")


@dataclass(frozen=True)
class CertificateRecord:
    serial: str  # lowercase hex, no leading zeros
    owner_kind: OwnerKind
    owner_uid: str  # person uid, app name, or "ca"
    owner_entry_uuid: str
    profile: str
    subject: str  # RFC 4514
    not_before: datetime
    not_after: datetime
    status: CertStatus
    issued_at: datetime
    der: bytes
    status_changed_at: datetime | None = None
    revoked_at: datetime | None = None
    reason: RevocationReason | None = None
    invalidity_date: datetime | None = None
    hardware_key: bool = False
    hierarchy: HierarchyName = HierarchyName.ECDSA

    def as_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial, "owner": self.owner_uid, "owner_kind": self.owner_kind.value,
            "hierarchy": self.hierarchy.value,
            "entry_uuid": self.owner_entry_uuid, "profile": self.profile,
            "subject": self.subject, "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(), "status": self.status.value,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason.value if self.reason else None,
            "invalidity_date": self.invalidity_date.isoformat() if self.invalidity_date else None,
        }


class RevokedEntry(NamedTuple):
    """One line of a CRL (RFC 5280 §5.1.2.6, §5.3).

    Immutable like the frozen dataclasses beside it, but a named tuple: a full CRL
    makes up to a million of them, and a frozen dataclass takes twice as long
    to make (a setattr per field).
    """

    serial: int
    revoked_at: datetime
    reason: RevocationReason | None = None
    invalidity_date: datetime | None = None


@dataclass(frozen=True)
class CRLRecord:
    number: int
    delta: bool
    base_number: int | None
    this_update: datetime
    next_update: datetime
    entries: int
    der: bytes


@dataclass(frozen=True)
class CACertificate:
    role: CARole
    key_label: str
    serial: str
    der: bytes
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class AuditEntry:
    """What the store appends to the audit log in the same transaction."""

    actor: str
    action: str
    target: str
    details: Mapping[str, str]


def _days(pki: Mapping[str, Any], key: str, default: int) -> int:
    value = pki.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3650:
        raise BadSetting(key, f"expected a whole number of days 1..3650, got {value!r}")
    return value


@dataclass(frozen=True)
class CASettings:
    """What the CA needs from ``[pki]`` (and the directory realm for UPNs)."""

    public_url: str = "http://127.0.0.1:8080"
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256
    organization: str = "北京市人民政府"
    country: str = "CN"
    realm: str = "beijing.gov.cn"
    root_validity: timedelta = timedelta(days=365 * 20)
    issuing_validity: timedelta = timedelta(days=365 * 10)
    crl_lifetime: timedelta = timedelta(days=2)
    crl_refresh: timedelta = timedelta(days=1)
    delta_lifetime: timedelta = timedelta(hours=4)
    delta_refresh: timedelta = timedelta(hours=1)
    ocsp_response_lifetime: timedelta = timedelta(hours=4)
    # A full CRL is rebuilt on each revocation while it is this small; above,
    # revocations go into delta CRLs and the full CRL follows its schedule.
    full_crl_on_revoke_max: int = 100_000
    csr_max_bytes: int = 64 * 1024
    # Pre-signed OCSP responses kept per process (0: none); see pki.ocsp.
    ocsp_cache_size: int = 10_000
    # Which hierarchy these settings are for; ``sm2``: also build the SM2 one.
    hierarchy: HierarchyName = HierarchyName.ECDSA
    sm2: bool = False
    # The root's CRL is signed rarely (at the root ceremony when the root key is
    # offline), so it lives long; /readyz warns this long before it ends.
    root_crl_lifetime: timedelta = timedelta(days=180)
    root_crl_warning: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        size = self.ocsp_cache_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadSetting("ocsp_cache_size", f"expected a whole number >= 0, got {size!r}")
        if self.root_crl_warning >= self.root_crl_lifetime:
            raise BadSetting("root_crl_warn_days", "must be less than root_crl_days")

    @classmethod
    def from_mapping(cls, pki: Mapping[str, Any], realm: str) -> CASettings:
        return cls(
            public_url=str(pki.get("public_url", cls.public_url)).rstrip("/"),
            key_algorithm=KeyAlgorithm(str(pki.get("key_algorithm", "ec-p256"))),
            organization=str(pki.get("organization", cls.organization)),
            country=str(pki.get("country", cls.country)),
            realm=realm,
            ocsp_cache_size=pki.get("ocsp_cache_size", cls.ocsp_cache_size),
            sm2=bool(pki.get("sm2", False)),
            root_crl_lifetime=timedelta(days=_days(pki, "root_crl_days", 180)),
            root_crl_warning=timedelta(days=_days(pki, "root_crl_warn_days", 30)),
        )

    def for_sm2(self) -> CASettings:
        """The same settings for the SM2 hierarchy beside this one."""
        return dataclasses.replace(self, hierarchy=HierarchyName.SM2,
                                   key_algorithm=KeyAlgorithm.SM2, sm2=False)

    @property
    def _prefix(self) -> str:
        # The SM2 hierarchy's roles, key labels, CRL names and URLs start "sm2-".
        return "sm2-" if self.hierarchy is HierarchyName.SM2 else ""

    def role(self, kind: CARole) -> CARole:
        """This hierarchy's role of ``kind`` (ROOT, ISSUING or OCSP)."""
        return CARole(self._prefix + kind.kind.value)

    def name(self, kind: CARole) -> str:
        """Key label, CRL issuer and URL name of this hierarchy's ``kind`` CA."""
        return self._prefix + kind.kind.value

    @property
    def root_cn(self) -> str:
        return "GovTrust SM2 Root CA" if self._prefix else "GovTrust Root CA"

    @property
    def issuing_cn(self) -> str:
        return "GovTrust SM2 Issuing CA" if self._prefix else "GovTrust Issuing CA"

    @property
    def crl_url(self) -> str:
        return f"{self.public_url}/crl/{self._prefix}issuing.crl"

    @property
    def delta_crl_url(self) -> str:
        return f"{self.public_url}/crl/{self._prefix}issuing-delta.crl"

    @property
    def ocsp_url(self) -> str:
        return f"{self.public_url}/ocsp/sm2" if self._prefix else f"{self.public_url}/ocsp"

    @property
    def issuing_ca_url(self) -> str:
        return f"{self.public_url}/ca/{self._prefix}issuing.der"

    @property
    def root_ca_url(self) -> str:
        return f"{self.public_url}/ca/{self._prefix}root.der"

    @property
    def root_crl_url(self) -> str:
        return f"{self.public_url}/crl/{self._prefix}root.crl"
