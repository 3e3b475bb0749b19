"""Publishing certificates and CRLs to the directory, behind a small Protocol.

The directory-backed implementation (``directory.publish.DirectoryPublisher``:
``userCertificate;binary`` on the person's entry,
``certificateRevocationList;binary`` on the CA's) satisfies it structurally and
is wired by the composition root; pki does not import directory. Publishing
happens after the database records the certificate or CRL: the database is the
record, the directory a copy.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


class CertificatePublisher(Protocol):
    def publish(self, uid: str, der: bytes) -> None:
        """Add ``der`` to the ``userCertificate;binary`` of the person ``uid``."""
        ...

    def unpublish(self, uid: str, der: bytes) -> None:
        """Remove ``der`` from the entry of ``uid`` (revoked certificates)."""
        ...

    def publish_crl(self, ca: str, der: bytes) -> None:
        """Replace ``certificateRevocationList;binary`` on the CA's entry."""
        ...


class UnwiredPublisher:
    """Stand-in when no directory is wired: publishes nothing, and says so."""

    def __init__(self) -> None:
        warnings.warn("pki: no certificate publisher wired; certificates and CRLs are "
                      "not published to the directory", RuntimeWarning, stacklevel=2)

    def publish(self, uid: str, der: bytes) -> None:
        log.warning("not publishing a certificate for %s: no publisher wired", uid)

    def unpublish(self, uid: str, der: bytes) -> None:
        log.warning("not unpublishing a certificate of %s: no publisher wired", uid)

    def publish_crl(self, ca: str, der: bytes) -> None:
        log.warning("not publishing the %s CRL: no publisher wired", ca)


@dataclass
class RecordingPublisher:
    """For unit tests: remembers what would have been published."""

    published: list[tuple[str, bytes]] = field(default_factory=list)
    unpublished: list[tuple[str, bytes]] = field(default_factory=list)
    crls: list[tuple[str, bytes]] = field(default_factory=list)

    def publish(self, uid: str, der: bytes) -> None:
        self.published.append((uid, der))

    def unpublish(self, uid: str, der: bytes) -> None:
        self.unpublished.append((uid, der))

    def publish_crl(self, ca: str, der: bytes) -> None:
        self.crls.append((ca, der))
