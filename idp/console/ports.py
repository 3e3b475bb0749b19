"""What the console needs from the composition root, as a ``Protocol``.

``idp.runtime.services.Services`` satisfies it; the console never imports the
composition root (imports point down: runtime → console).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from directory.service import DirectoryService
    from idp.login.totp import TotpService
    from idp.oidc.provider import Provider
    from pki.audit import ChainReport
    from pki.audit_store import AuditLog
    from pki.authority import CertificateAuthority
    from pki.kmc import KeyManagementCentre
    from policies.assurance import AssurancePolicy


class ConsoleServices(Protocol):
    """The services the console's views draw on."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def ca(self) -> CertificateAuthority: ...

    @property
    def directory(self) -> DirectoryService: ...

    @property
    def kmc(self) -> KeyManagementCentre: ...

    @property
    def provider(self) -> Provider: ...

    @property
    def totp(self) -> TotpService: ...

    @property
    def assurance_policy(self) -> AssurancePolicy: ...

    def deliver_events(self) -> int: ...

    def verify_audit(self, *, sign: bool = True) -> ChainReport: ...
