"""Lifecycle events: what later packages react to when a person's standing changes.

Suspend, restore, leave and move each emit one :class:`LifecycleEvent`. Delivery
is durable and at-least-once: the directory service records the event as
*pending* before it touches LDAP, confirms it once the change is done, and the
outbox (implemented in ``idp.runtime.outbox``, over the database) delivers confirmed
events to every subscriber, retrying a subscriber that fails. Subscribers must
therefore be idempotent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class LifecycleKind(enum.StrEnum):
    SUSPENDED = "suspended"
    RESTORED = "restored"
    LEFT = "left"
    MOVED = "moved"


@dataclass(frozen=True)
class LifecycleEvent:
    kind: LifecycleKind
    uid: str
    entry_uuid: str
    occurred_at: datetime
    actor: str
    # For MOVED: the new department path ("市财政局/预算处"); empty otherwise.
    detail: str = ""


class EventPublisher(Protocol):
    """Records events durably around a directory change."""

    def pending(self, event: LifecycleEvent) -> AbstractContextManager[None]:
        """Record ``event`` as pending; confirm it when the block exits normally,
        cancel it when the block raises."""
        ...


class EventSubscriber(Protocol):
    """Reacts to lifecycle events. ``handle`` raises to ask for a retry."""

    name: str

    def handle(self, event: LifecycleEvent) -> None: ...


@dataclass
class RecordingPublisher:
    """An in-memory publisher for pure unit tests of the directory service."""

    confirmed: list[LifecycleEvent] = field(default_factory=list)
    cancelled: list[LifecycleEvent] = field(default_factory=list)

    def pending(self, event: LifecycleEvent) -> AbstractContextManager[None]:
        return _recording(self, event)


def _recording(pub: RecordingPublisher, event: LifecycleEvent) -> AbstractContextManager[None]:
    from contextlib import contextmanager

    @contextmanager
    def block() -> Iterator[None]:
        try:
            yield
        except BaseException:
            pub.cancelled.append(event)
            raise
        pub.confirmed.append(event)

    return block()
