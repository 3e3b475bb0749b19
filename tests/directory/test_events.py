"""Lifecycle events: durable in the database, delivered at least once, recoverable."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from directory.events import LifecycleEvent, LifecycleKind
from directory.gateway import LdapGateway
from directory.service import DirectoryService
from directory.slapd import ManagedSlapd
from idp.runtime.db import make_engine, session_factory
from idp.runtime.outbox import Outbox, outbox_events
from pki.audit_store import AuditLog
from tests.fixtures.schema import migrate
from tests.fixtures.slapd import wipe

pytestmark = pytest.mark.slapd


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Flaky:
    """Fails the first ``failures`` times, then records what it handled."""

    name: str = "revoke-certificates"
    failures: int = 1
    handled: list[LifecycleEvent] = field(default_factory=list)

    def handle(self, event: LifecycleEvent) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("CA not reachable yet")
        self.handled.append(event)


@dataclass
class World:
    service: DirectoryService
    outbox: Outbox
    clock: Clock
    subscriber: Flaky
    database: Path


@pytest.fixture
def world(slapd: ManagedSlapd, tmp_path: Path) -> Iterator[World]:
    """Like ``directory_service``, but with an outbox on a clock the test moves."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    clock, sub = Clock(), Flaky()
    outbox = Outbox(sessions, [sub], clock=clock)
    if not slapd.is_running():
        slapd.start()
    wipe(slapd)
    gateway = LdapGateway(slapd.settings)
    svc = DirectoryService(slapd.settings, gateway, AuditLog(sessions), outbox)
    svc.ensure_department("市规划和自然资源委员会/规划处")
    svc.ensure_department("市财政局")
    svc.add_person(uid="zhoujie", name="周杰", department="市规划和自然资源委员会/规划处")
    try:
        yield World(svc, outbox, clock, sub, tmp_path / "events.db")
    finally:
        gateway.close()
        engine.dispose()


def test_failing_subscriber_gets_the_event_later(world: World) -> None:
    svc, outbox = world.service, world.outbox
    person = svc.suspend("zhoujie", actor="admin")
    assert outbox.deliver() == 0  # the subscriber failed; the event stays owed
    assert len(outbox.undelivered()) == 1
    assert outbox.deliver() == 0  # backoff: not retried before its time
    world.clock.now += timedelta(minutes=1)
    assert outbox.deliver() == 1
    [event] = world.subscriber.handled
    assert (event.kind, event.uid, event.entry_uuid, event.actor) == (
        LifecycleKind.SUSPENDED, "zhoujie", person.entry_uuid, "admin")
    assert outbox.undelivered() == []
    world.clock.now += timedelta(hours=1)
    assert outbox.deliver() == 0  # delivered once, not again


def test_events_are_durable_in_the_database(world: World) -> None:
    svc = world.service
    svc.suspend("zhoujie")
    svc.restore("zhoujie")
    svc.move("zhoujie", "市财政局")
    svc.leave("zhoujie")
    # A second process opening the same file sees every event, ready for delivery.
    engine = make_engine(f"sqlite:///{world.database}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(outbox_events).order_by(outbox_events.c.id)).all()
    finally:
        engine.dispose()
    assert [(r.kind, r.state) for r in rows] == [
        ("suspended", "ready"), ("restored", "ready"), ("moved", "ready"), ("left", "ready")]
    assert rows[2].detail == "市财政局"


def test_failed_change_leaves_no_event(world: World) -> None:
    svc = world.service
    with pytest.raises(Exception):  # noqa: B017 - any refusal; the point is what is left
        svc.move("zhoujie", "市不存在局")
    svc.gateway.close()
    svc.leave("zhoujie")
    with pytest.raises(Exception):  # noqa: B017
        svc.restore("zhoujie")
    engine = make_engine(f"sqlite:///{world.database}")
    try:
        with engine.connect() as conn:
            kinds = [r.kind for r in conn.execute(select(outbox_events)).all()]
    finally:
        engine.dispose()
    assert kinds == ["left"]


def test_recovery_asks_the_directory_what_happened(world: World) -> None:
    svc, outbox = world.service, world.outbox
    person = svc.show("zhoujie")
    at = world.clock.now

    def event(kind: LifecycleKind, detail: str = "") -> LifecycleEvent:
        return LifecycleEvent(kind, "zhoujie", person.entry_uuid, at, "admin", detail)

    # A crash after the LDAP change but before "ready": the event is still pending.
    crashed = outbox.pending(event(LifecycleKind.SUSPENDED))
    crashed.__enter__()
    svc.gateway.modify(person.dn, [("replace", "govStatus", ["suspended"])])
    # And one whose change never reached the directory.
    never = outbox.pending(event(LifecycleKind.MOVED, "市财政局"))
    never.__enter__()
    assert svc.happened(event(LifecycleKind.SUSPENDED))
    assert not svc.happened(event(LifecycleKind.MOVED, "市财政局"))
    world.clock.now += timedelta(minutes=5)
    assert outbox.recover(svc.happened) == (1, 1)
    world.clock.now += timedelta(minutes=5)
    assert outbox.deliver() == 0 and outbox.deliver() == 0
    world.clock.now += timedelta(minutes=5)
    assert outbox.deliver() == 1
    assert [e.kind for e in world.subscriber.handled] == [LifecycleKind.SUSPENDED]
