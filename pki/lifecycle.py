"""Certificates follow their owner's standing in the directory.

Subscribed to the directory's lifecycle events (``directory.events``), delivered
at least once by the outbox, so every handler is idempotent: a person who leaves
has every valid or held certificate revoked (affiliationChanged, RFC 5280
§5.3.1); a suspension puts valid certificates on hold (certificateHold); a
restore releases held ones. A move changes nothing here: the old certificates
stay valid until renewed with the new department in their subject.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from directory.events import LifecycleEvent, LifecycleKind
from pki.authority import CertificateAuthority
from pki.errors import InvalidTransition
from pki.model import CertStatus, RevocationReason

log = logging.getLogger(__name__)


class CertificateLifecycle:
    """A ``directory.events.EventSubscriber`` over a :class:`CertificateAuthority`."""

    name = "pki.certificates"

    def __init__(self, ca: CertificateAuthority,
                 leave_reason: RevocationReason = RevocationReason.AFFILIATION_CHANGED) -> None:
        self.ca = ca
        self.leave_reason = leave_reason

    def handle(self, event: LifecycleEvent) -> None:
        actor = f"lifecycle:{event.actor}"
        changed = 0
        if event.kind is LifecycleKind.LEFT:
            for rec in self.ca.find(uid=event.uid):
                if rec.status is not CertStatus.REVOKED and self._same(rec.owner_entry_uuid,
                                                                       event):
                    changed += self._apply(lambda s: self.ca.revoke(
                        s, self.leave_reason, actor=actor, refresh=False), rec.serial)
        elif event.kind is LifecycleKind.SUSPENDED:
            for rec in self.ca.find(uid=event.uid, status=CertStatus.VALID):
                if self._same(rec.owner_entry_uuid, event):
                    changed += self._apply(
                        lambda s: self.ca.hold(s, actor=actor, refresh=False), rec.serial)
        elif event.kind is LifecycleKind.RESTORED:
            for rec in self.ca.find(uid=event.uid, status=CertStatus.HOLD):
                if self._same(rec.owner_entry_uuid, event):
                    changed += self._apply(
                        lambda s: self.ca.release(s, actor=actor, refresh=False), rec.serial)
        if changed:
            self.ca.refresh_after_revocation(actor)

    @staticmethod
    def _same(entry_uuid: str, event: LifecycleEvent) -> bool:
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
