"""The small interfaces the CA core needs: its record store, the audit head, and
the facts about a person a certificate is issued to.

``pki.store.SqlCertificateStore`` and ``pki.audit_store.AuditLog`` implement the
first two; the directory's person (``directory.model.Person``) satisfies
:class:`CertificateSubject` structurally, and the composition root hands it in:
pki and directory are siblings, neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from pki.audit import SignedHead
from pki.model import (
    AuditEntry,
    CACertificate,
    CARole,
    CertificateRecord,
    CertStatus,
    CRLRecord,
    HierarchyName,
    RevocationReason,
    RevokedEntry,
)
from pki.ocsp import StatusInfo


class CertificateSubject(Protocol):
    """A person as a certificate needs them (subject, SANs, owner record).

    Read-only: the CA takes these facts from the directory, never from a CSR.
    """

    @property
    def uid(self) -> str: ...

    @property
    def entry_uuid(self) -> str:
        """Stable for the person's life (slapd's entryUUID); a uid may be reused."""
        ...

    @property
    def display_name(self) -> str: ...

    @property
    def department(self) -> Sequence[str]:
        """The path from the top, e.g. ``("市财政局", "预算处")``."""
        ...

    @property
    def email(self) -> str: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def status(self) -> str:
        """Why not active (``"suspended"``, ``"left"``), for the refusal."""
        ...


class CertificateStore(Protocol):
    def add_ca(self, ca: CACertificate, audit: AuditEntry, at: datetime) -> None: ...

    def current_ca(self, role: CARole) -> CACertificate | None: ...

    def add_certificate(self, rec: CertificateRecord, audit: AuditEntry) -> None: ...

    def get(self, serial: str) -> CertificateRecord | None: ...

    def status(self, serial: int, hierarchy: HierarchyName = HierarchyName.ECDSA
               ) -> StatusInfo | None: ...

    def status_generation(self) -> int:
        """A counter every status change moves in its transaction (``pki.ocsp``)."""
        ...

    def find(self, *, uid: str | None = None, status: CertStatus | None = None,
             expiring_before: datetime | None = None, limit: int = 10_000
             ) -> list[CertificateRecord]: ...

    def transition(self, serial: str, *, verb: str, allowed_from: frozenset[CertStatus],
                   to: CertStatus, at: datetime, reason: RevocationReason | None,
                   invalidity_date: datetime | None, audit: AuditEntry
                   ) -> CertificateRecord: ...

    def revoked_entries(self, since: datetime | None = None,
                        hierarchy: HierarchyName = HierarchyName.ECDSA
                        ) -> Iterator[RevokedEntry]: ...

    def next_crl_number(self, issuer: str) -> int: ...

    def add_crl(self, issuer: str, crl: CRLRecord, audit: AuditEntry) -> bool: ...

    def latest_crl(self, issuer: str, delta: bool) -> CRLRecord | None: ...

    def approve_dns(self, app: str, names: list[str], audit: AuditEntry,
                    at: datetime) -> None: ...

    def approved_dns(self, app: str) -> frozenset[str]: ...


class AuditHead(Protocol):
    """The audit log's head, which the issuing CA signs."""

    def sign_head(self, sign: Callable[[bytes], bytes]) -> SignedHead | None: ...

    def signed_head_record(self) -> SignedHead | None: ...
