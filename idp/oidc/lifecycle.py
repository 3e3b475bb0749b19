"""Reacting to the directory's lifecycle events (``directory.events``).

When a person is suspended or leaves, every SSO session of theirs ends, every
grant (and so every refresh and access token) is revoked, and each app of those
sessions gets a back-channel logout token (OIDC Back-Channel Logout 1.0). The
outbox delivers at least once; ending an ended session is a no-op, so this
subscriber is idempotent.
"""

from __future__ import annotations

from directory.events import LifecycleEvent, LifecycleKind
from idp.oidc.logout import Logout


class SessionTerminator:
    """``directory.events.EventSubscriber`` that logs a departing person out."""

    name = "idp.login.sessions"

    def __init__(self, logout: Logout) -> None:
        self._logout = logout

    def handle(self, event: LifecycleEvent) -> None:
        if event.kind not in (LifecycleKind.SUSPENDED, LifecycleKind.LEFT):
            return
        self._logout.end_subject(event.entry_uuid)
        self._logout.deliver_pending()
