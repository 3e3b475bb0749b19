"""Certificates follow their owner's standing in the directory.

Subscribed (by the composition root) to the directory's lifecycle events,
delivered at least once by the outbox, so every handler is idempotent: a person who leaves
has every valid or held certificate revoked (affiliationChanged, RFC 5280
§5.3.1); a suspension puts valid certificates on hold (certificateHold); a
restore releases held ones. A move changes nothing here: the old certificates
stay valid until renewed with the new department in their subject.

pki does not import directory: :class:`StandingChange` names the facts of an
event this handler reads, which ``directory.events.LifecycleEvent`` has.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Protocol

from pki.authority import CertificateAuthority
from pki.errors import InvalidTransition
from pki.model import CertStatus, HierarchyName, RevocationReason

log = logging.getLogger(__name__)


class Standing(enum.StrEnum):
    """The kinds of change this handler acts on (the directory's event kinds)."""

    SUSPENDED = "suspended"
    RESTORED = "restored"
    LEFT = "left"


class StandingChange(Protocol):
    """A change in a person's standing, as the directory reports it."""

    @property
    def kind(self) -> str:
        """``"suspended"``, ``"restored"``, ``"left"``; any other kind is ignored."""
        ...

    @property
    def uid(self) -> str: ...

    @property
    def entry_uuid(self) -> str: ...

    @property
    def actor(self) -> str: ...


class CertificateLifecycle:
    """An event subscriber (``name`` + ``handle``) over a :class:`CertificateAuthority`."""

    name = "pki.certificates"

    def __init__(self, ca: CertificateAuthority,
                 leave_reason: RevocationReason = RevocationReason.AFFILIATION_CHANGED) -> None:
        self.ca = ca
        self.leave_reason = leave_reason

    def handle(self, event: StandingChange) -> None:
        actor = f"lifecycle:{event.actor}"
        # The hierarchies (default, SM2) whose CRLs must show a change.
        changed: set[HierarchyName] = set()
        kind = str(event.kind)
        if kind == Standing.LEFT:
            for rec in self.ca.find(uid=event.uid):
                if rec.status is not CertStatus.REVOKED and self._same(rec.owner_entry_uuid,
                                                                       event):
                    if self._apply(lambda s: self.ca.revoke(
                            s, self.leave_reason, actor=actor, refresh=False), rec.serial):
                        changed.add(rec.hierarchy)
        elif kind == Standing.SUSPENDED:
            for rec in self.ca.find(uid=event.uid, status=CertStatus.VALID):
                if self._same(rec.owner_entry_uuid, event):
                    if self._apply(lambda s: self.ca.hold(s, actor=actor, refresh=False),
                                   rec.serial):
                        changed.add(rec.hierarchy)
        elif kind == Standing.RESTORED:
            for rec in self.ca.find(uid=event.uid, status=CertStatus.HOLD):
                if self._same(rec.owner_entry_uuid, event):
                    if self._apply(lambda s: self.ca.release(s, actor=actor, refresh=False),
                                   rec.serial):
                        changed.add(rec.hierarchy)
        for hierarchy in sorted(changed):
            self.ca.authority_for(hierarchy).refresh_after_revocation(actor)

    @staticmethod
    def _same(entry_uuid: str, event: StandingChange) -> bool:
        # A uid may be reused after someone leaves; entryUUID names the person.
        return not event.entry_uuid or not entry_uuid or entry_uuid == event.entry_uuid

    @staticmethod
    def _apply(action: Callable[[str], object], serial: str) -> int:
        try:
            action(serial)
        except InvalidTransition:
            # Changed meanwhile (another delivery of this event): nothing to do.
            return 0
        return 1
