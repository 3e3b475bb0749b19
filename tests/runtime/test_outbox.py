"""The durable lifecycle outbox on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from directory.events import LifecycleEvent, LifecycleKind
from idp.runtime.db import session_factory
from idp.runtime.outbox import Outbox


def _event(uid: str = "zhangwei", kind: LifecycleKind = LifecycleKind.LEFT) -> LifecycleEvent:
    return LifecycleEvent(kind=kind, uid=uid, entry_uuid="e-" + uid,
                          occurred_at=datetime.now(UTC), actor="admin", detail="")


@dataclass
class Flaky:
    """Fails its first ``failures`` calls, then records what it handled."""

    name: str
    failures: int = 0
    handled: list[LifecycleEvent] = field(default_factory=list)
    calls: int = 0

    def handle(self, event: LifecycleEvent) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("subscriber down")
        self.handled.append(event)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_confirmed_event_reaches_every_subscriber_once(migrated_engine: Any) -> None:
    a, b = Flaky("certs"), Flaky("sessions")
    box = Outbox(session_factory(migrated_engine), [a, b])
    with box.pending(_event()):
        pass
    assert box.deliver() == 2
    assert box.deliver() == 0  # nothing delivered twice once acknowledged
    assert [e.uid for e in a.handled] == ["zhangwei"] == [e.uid for e in b.handled]
    assert a.handled[0].kind is LifecycleKind.LEFT
    assert box.undelivered() == []


def test_failed_change_cancels_the_event(migrated_engine: Any) -> None:
    sub = Flaky("certs")
    box = Outbox(session_factory(migrated_engine), [sub])
    with pytest.raises(RuntimeError), box.pending(_event()):
        raise RuntimeError("ldap modify failed")
    assert box.deliver() == 0
    assert sub.calls == 0


def test_subscriber_that_fails_is_retried_later_and_others_are_not_repeated(
        migrated_engine: Any) -> None:
    clock = Clock()
    flaky, steady = Flaky("certs", failures=2), Flaky("sessions")
    box = Outbox(session_factory(migrated_engine), [flaky, steady], clock=clock)
    with box.pending(_event()):
        pass
    assert box.deliver() == 1  # steady succeeded, flaky failed
    assert [name for _, name in box.undelivered()] == ["certs"]
    assert box.deliver() == 0  # backing off: not retried yet
    clock.now += timedelta(minutes=11)
    assert box.deliver() == 0  # second failure
    clock.now += timedelta(minutes=11)
    assert box.deliver() == 1
    assert len(flaky.handled) == 1 and len(steady.handled) == 1
    assert box.undelivered() == []


def test_events_survive_a_restart(migrated_engine: Any) -> None:
    # "Crash" after confirming: a new Outbox over the same database delivers.
    box = Outbox(session_factory(migrated_engine), [])
    with box.pending(_event("lina", LifecycleKind.SUSPENDED)):
        pass
    sub = Flaky("certs")
    reborn = Outbox(session_factory(migrated_engine), [sub])
    reborn.deliver()
    assert [(e.uid, e.kind) for e in sub.handled] == [("lina", LifecycleKind.SUSPENDED)]


def test_crash_between_change_and_confirm_is_recovered(migrated_engine: Any) -> None:
    clock = Clock()
    sessions = session_factory(migrated_engine)
    box = Outbox(sessions, [], clock=clock)
    # Simulate a crash inside the block: the generator is never resumed.
    crashed = box.pending(_event("wangfang"))
    crashed.__enter__()
    other = box.pending(_event("liqiang"))
    other.__enter__()
    sub = Flaky("certs")
    reborn = Outbox(sessions, [sub], clock=clock)
    assert reborn.deliver() == 0  # pending events are not delivered
    assert reborn.recover(lambda e: True) == (0, 0)  # too recent to judge
    clock.now += timedelta(minutes=1)
    # The directory shows wangfang's change happened, liqiang's did not.
    assert reborn.recover(lambda e: e.uid == "wangfang") == (1, 1)
    reborn.deliver()
    assert [e.uid for e in sub.handled] == ["wangfang"]


def test_duplicate_subscriber_name_is_refused(migrated_engine: Any) -> None:
    box = Outbox(session_factory(migrated_engine), [Flaky("certs")])
    with pytest.raises(ValueError):
        box.subscribe(Flaky("certs"))
