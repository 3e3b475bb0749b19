"""The durable event outbox: directory lifecycle events, delivered at least once.

A directory change runs inside ``Outbox.pending(event)``: the event is written
as *pending* before LDAP is touched and marked *ready* once the change is done
(deleted if it failed). ``deliver`` hands every ready event to each subscriber
that has not yet acknowledged it, recording per-subscriber success, so a
subscriber that fails is retried later (with backoff) and the others are not
repeated. A crash between the LDAP change and *ready* leaves a pending event;
``recover`` asks a checker (the directory itself) whether the change happened
and promotes or drops it. Nothing is lost; subscribers must be idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Column,
    CursorResult,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from directory.events import EventSubscriber, LifecycleEvent, LifecycleKind

log = logging.getLogger(__name__)

metadata = MetaData()

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False, index=True),  # pending | ready
    Column("kind", String(32), nullable=False),
    Column("uid", String(256), nullable=False),
    Column("entry_uuid", String(64), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

outbox_deliveries = Table(
    "outbox_deliveries",
    metadata,
    Column("event_id", ForeignKey("outbox_events.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber", String(128), primary_key=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("done", Integer, nullable=False, default=0),
    Column("next_attempt", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
)

PENDING = "pending"
READY = "ready"
MAX_BACKOFF = timedelta(minutes=10)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _event(row: object) -> LifecycleEvent:
    return LifecycleEvent(
        kind=LifecycleKind(row.kind),  # type: ignore[attr-defined]
        uid=row.uid,  # type: ignore[attr-defined]
        entry_uuid=row.entry_uuid,  # type: ignore[attr-defined]
        occurred_at=_utc(row.occurred_at),  # type: ignore[attr-defined]
        actor=row.actor,  # type: ignore[attr-defined]
        detail=row.detail or "",  # type: ignore[attr-defined]
    )


class Outbox:
    """Implements ``directory.events.EventPublisher`` over the database."""

    def __init__(self, sessions: sessionmaker[Session],
                 subscribers: Sequence[EventSubscriber] = (),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sessions = sessions
        self._subscribers = list(subscribers)
        self._clock = clock
        self.published = 0  # events this instance made ready (a CLI command's own)

    def subscribe(self, subscriber: EventSubscriber) -> None:
        if any(s.name == subscriber.name for s in self._subscribers):
            raise ValueError(f"subscriber {subscriber.name!r} is already registered")
        self._subscribers.append(subscriber)

    # -- publishing ---------------------------------------------------------
    @contextmanager
    def pending(self, event: LifecycleEvent) -> Iterator[None]:
        with self._sessions.begin() as s:
            inserted = cast(CursorResult[Any], s.execute(insert(outbox_events).values(
                state=PENDING, kind=event.kind.value, uid=event.uid,
                entry_uuid=event.entry_uuid, actor=event.actor, detail=event.detail,
                occurred_at=event.occurred_at, created_at=self._clock(),
            )))
            event_id = inserted.inserted_primary_key[0]  # type: ignore[index]
        try:
            yield
        except BaseException:
            with self._sessions.begin() as s:
                s.execute(delete(outbox_events).where(outbox_events.c.id == event_id))
            raise
        with self._sessions.begin() as s:
            s.execute(update(outbox_events).where(outbox_events.c.id == event_id)
                      .values(state=READY))
        self.published += 1

    # -- recovery -------------------------------------------------------------
    def recover(self, happened: Callable[[LifecycleEvent], bool],
                older_than: timedelta = timedelta(seconds=30)) -> tuple[int, int]:
        """Settle pending events left by a crash: promote those whose change is
        visible in the directory, drop the others. Returns (promoted, dropped)."""
        cutoff = self._clock() - older_than
        promoted = dropped = 0
        with self._sessions() as s:
            rows = s.execute(select(outbox_events).where(
                outbox_events.c.state == PENDING, outbox_events.c.created_at <= cutoff)).all()
        for row in rows:
            with self._sessions.begin() as s:
                if happened(_event(row)):
                    s.execute(update(outbox_events).where(outbox_events.c.id == row.id)
                              .values(state=READY))
                    promoted += 1
                else:
                    s.execute(delete(outbox_events).where(outbox_events.c.id == row.id))
                    dropped += 1
        return promoted, dropped

    # -- delivery -------------------------------------------------------------
    def deliver(self) -> int:
        """Hand each ready event to each subscriber that still owes it; return how
        many handlings succeeded. Failures are recorded and retried with backoff."""
        now = self._clock()
        succeeded = 0
        with self._sessions() as s:
            events = s.execute(select(outbox_events).where(outbox_events.c.state == READY)
                               .order_by(outbox_events.c.id)).all()
            done = {(r.event_id, r.subscriber): r for r in s.execute(
                select(outbox_deliveries)).all()}
        for row in events:
            event = _event(row)
            for sub in self._subscribers:
                state = done.get((row.id, sub.name))
                if state is not None and (state.done or (
                        state.next_attempt and _utc(state.next_attempt) > now)):
                    continue
                attempts = (state.attempts if state is not None else 0) + 1
                try:
                    sub.handle(event)
                except Exception as exc:  # a subscriber's failure must not stop others
                    log.warning("outbox: %s failed on event %s (attempt %d): %s",
                                sub.name, row.id, attempts, type(exc).__name__)
                    backoff = min(MAX_BACKOFF, timedelta(seconds=2 ** min(attempts, 10)))
                    self._mark(row.id, sub.name, attempts, False, now + backoff, repr(exc))
                else:
                    self._mark(row.id, sub.name, attempts, True, None, None)
                    succeeded += 1
        return succeeded

    def _mark(self, event_id: int, subscriber: str, attempts: int, ok: bool,
              next_attempt: datetime | None, error: str | None) -> None:
        values = dict(attempts=attempts, done=1 if ok else 0, next_attempt=next_attempt,
                      last_error=error[:2000] if error else None)
        with self._sessions.begin() as s:
            changed = cast(CursorResult[Any], s.execute(update(outbox_deliveries).where(
                outbox_deliveries.c.event_id == event_id,
                outbox_deliveries.c.subscriber == subscriber).values(**values))).rowcount
            if not changed:
                s.execute(insert(outbox_deliveries).values(
                    event_id=event_id, subscriber=subscriber, **values))

    def undelivered(self) -> list[tuple[int, str]]:
        """(event id, subscriber) pairs still owed, for status pages and tests."""
        with self._sessions() as s:
            events = [r.id for r in s.execute(select(outbox_events.c.id).where(
                outbox_events.c.state == READY)).all()]
            done = {(r.event_id, r.subscriber) for r in s.execute(
                select(outbox_deliveries).where(outbox_deliveries.c.done == 1)).all()}
        return [(e, sub.name) for e in events for sub in self._subscribers
                if (e, sub.name) not in done]

    def oldest_undelivered(self) -> datetime | None:
        """When the oldest ready event still owed to a subscriber was written (the
        outbox lag a metric reports); None when nothing is owed."""
        names = [sub.name for sub in self._subscribers]
        if not names:
            return None
        done = (select(func.count()).select_from(outbox_deliveries)
                .where(outbox_deliveries.c.event_id == outbox_events.c.id,
                       outbox_deliveries.c.done == 1,
                       outbox_deliveries.c.subscriber.in_(names))
                .scalar_subquery())
        with self._sessions() as s:
            at = s.execute(select(func.min(outbox_events.c.created_at)).where(
                outbox_events.c.state == READY, done < len(names))).scalar()
        return None if at is None else _utc(at)
