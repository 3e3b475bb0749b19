"""The audit log in SQL: append-only, hash-chained (see ``pki.audit``).

Appends are serialized through a one-row ``audit_head`` table: the append first
updates that row (a write lock on SQLite, a row lock on PostgreSQL), so two
concurrent appends can never chain onto the same predecessor.

A writer that remembers the head it last committed (a :class:`ChainTip`) appends
with one compare-and-set update of that row instead of bump, read and set: the
update names the remembered ``(seq, hash)`` and writes the new head, and when
another writer moved the head meanwhile it matches no row and the append falls
back to reading the head under the lock. Either way the row lock is taken
first, and nothing is chained onto a stale head.

Every writer of one database in a process shares one tip (:meth:`ChainTip.of`):
the CA store, the KMC store and the audit sink append to the same chain, and a
tip of its own per writer would be stale after any other writer's append (each
CA issuance after a KMC escrow record used to miss its compare-and-set).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    ARRAY,
    Column,
    Connection,
    CursorResult,
    DateTime,
    Engine,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from pki.audit import (
    GENESIS,
    AuditRecord,
    ChainReport,
    SignedHead,
    head_message,
    record_hash,
    verify_chain,
)

if TYPE_CHECKING:
    from pki.model import AuditEntry

metadata = MetaData()

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", String(256), nullable=False, index=True),
    Column("action", String(64), nullable=False, index=True),
    Column("target", String(512), nullable=False, index=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    # The CA's signature over the last signed (seq, hash), DER/base64; see pki.
    Column("signed_seq", Integer, nullable=True),
    Column("signed_hash", String(64), nullable=True),
    Column("signature", Text, nullable=True),
)


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; the chain hashes the UTC ISO form.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# Statements built once and executed with parameters: SQLAlchemy caches them.
_BUMP = update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq + 1)
# Where the head is now: (seq, hash).
HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_SET_HASH = update(audit_head).where(audit_head.c.id == 1).values(hash=bindparam("new_hash"))
# The compare-and-set of the head (parameters: head_move) and the record's insert
# (log_row), for writers that run them on their own (pki.store's SQLite path).
MOVE_HEAD = update(audit_head).where(
    audit_head.c.id == 1, audit_head.c.seq == bindparam("old_seq"),
    audit_head.c.hash == bindparam("old_hash")).values(seq=bindparam("new_seq"),
                                                       hash=bindparam("new_hash"))
INSERT_RECORD = insert(audit_log)
# The record a committed head_move (parameters: its new_seq, new_hash) made the
# head: a row if that record is stored, none if it never was.
MOVED_TO = select(audit_log.c.seq).where(audit_log.c.seq == bindparam("new_seq"),
                                         audit_log.c.hash == bindparam("new_hash"))


class ChainTip:
    """The audit head this writer last committed, so that its next append can
    move the head with one compare-and-set update instead of reading it.

    A hint, never trusted: the update only matches while the stored head is still
    the remembered one. Tell it only what a committed transaction wrote
    (:meth:`committed`), never what a rolled-back one would have. Shared by
    threads: a stale value after a race costs one fallback read, nothing more.
    """

    _shared: dict[object, ChainTip] = {}
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self.head: tuple[int, str] | None = None

    @classmethod
    def of(cls, engine: Engine) -> ChainTip:
        """The tip every writer of ``engine``'s database in this process shares
        (keyed by the URL: two engines on one database share it too)."""
        with cls._shared_lock:
            tip = cls._shared.get(engine.url)
            if tip is None:
                tip = cls._shared[engine.url] = cls()
            return tip

    def committed(self, record: AuditRecord) -> None:
        self.head = (record.seq, record.hash)


_unseen: dict[object, list[Callable[[Sequence[AuditRecord]], None]]] = {}
_unseen_lock = threading.Lock()


def listen_unseen(engine: Engine, callback: Callable[[Sequence[AuditRecord]], None]) -> None:
    """Tell ``callback`` of audit records committed to ``engine``'s database by a
    path SQLAlchemy's execute and commit events do not see (the issuance hot paths:
    SQLite's driver cursor, PostgreSQL's one autocommitted statement). Records
    appended any other way are seen by those events, and never announced here."""
    with _unseen_lock:
        _unseen.setdefault(engine.url, []).append(callback)


def announce_unseen(engine: Engine, records: Sequence[AuditRecord]) -> None:
    """Called by such a path once its transaction has committed."""
    for callback in _unseen.get(engine.url, ()):
        callback(records)


def follow(head: tuple[int, str], *, actor: str, action: str, target: str,
           details: Mapping[str, str] | None = None, at: datetime | None = None
           ) -> AuditRecord:
    """The record that comes after ``head`` (seq, hash): pure, nothing stored."""
    details = {str(k): str(v) for k, v in (details or {}).items()}
    at = _utc(at) if at is not None else datetime.now(UTC)
    seq, prev = head[0] + 1, head[1]
    return AuditRecord(seq, at, actor, action, target, details, prev,
                       record_hash(seq, at, actor, action, target, details, prev))


def head_move(record: AuditRecord) -> dict[str, object]:
    """Parameters of the compare-and-set that makes ``record`` the head."""
    return {"old_seq": record.seq - 1, "old_hash": record.prev_hash,
            "new_seq": record.seq, "new_hash": record.hash}


def follow_all(head: tuple[int, str], entries: Sequence[tuple[AuditEntry, datetime]]
               ) -> list[AuditRecord]:
    """The records of ``entries`` (each with its time) chained in order after
    ``head``: pure, nothing stored."""
    records = []
    for entry, at in entries:
        record = follow(head, actor=entry.actor, action=entry.action, target=entry.target,
                        details=entry.details, at=at)
        records.append(record)
        head = (record.seq, record.hash)
    return records


def heads_move(records: Sequence[AuditRecord]) -> dict[str, object]:
    """Parameters of the compare-and-set that makes the last of ``records`` (a run
    chained in order) the head, from the first one's predecessor."""
    return {"old_seq": records[0].seq - 1, "old_hash": records[0].prev_hash,
            "new_seq": records[-1].seq, "new_hash": records[-1].hash}


def log_row(record: AuditRecord) -> dict[str, object]:
    """``record`` as a row of ``audit_log``."""
    return {"seq": record.seq, "at": record.at, "actor": record.actor,
            "action": record.action, "target": record.target,
            "details": json.dumps(record.details, ensure_ascii=False, sort_keys=True),
            "prev_hash": record.prev_hash, "hash": record.hash}


def append(session: Session | Connection, *, actor: str, action: str, target: str,
           details: Mapping[str, str] | None = None, at: datetime | None = None,
           tip: tuple[int, str] | None = None) -> AuditRecord:
    """Append one record inside the caller's transaction (so a certificate and
    its audit record commit together).

    ``tip`` is the head the caller believes current (:attr:`ChainTip.head`): the
    record is chained onto it if the stored head is still that one, else onto the
    stored head, read under the row lock.
    """
    at = _utc(at) if at is not None else datetime.now(UTC)
    record = None
    if tip is not None:
        record = follow(tip, actor=actor, action=action, target=target, details=details,
                        at=at)
        moved = cast(CursorResult[Any], session.execute(MOVE_HEAD, head_move(record)))
        if moved.rowcount != 1:
            record = None  # another writer moved the head: read it, below
    if record is None:
        # Take the lock first: bump seq, then read what we now own.
        bumped = cast(CursorResult[Any], session.execute(_BUMP))
        if bumped.rowcount != 1:
            raise RuntimeError("audit_head row missing: the database is not migrated")
        row = session.execute(HEAD).one()
        record = follow((int(row.seq) - 1, str(row.hash)), actor=actor, action=action,
                        target=target, details=details, at=at)
        session.execute(_SET_HASH, {"new_hash": record.hash})
    session.execute(INSERT_RECORD, log_row(record))
    return record


# Takes the head's lock without moving it (a write on SQLite, a row lock on PostgreSQL).
_LOCK_HEAD = update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq)


def append_many(conn: Session | Connection, entries: Sequence[tuple[AuditEntry, datetime]],
                tip: tuple[int, str] | None = None) -> list[AuditRecord]:
    """Append ``entries`` (each with its time), in order, inside the caller's
    transaction, with one move of the head: a compare-and-set from ``tip`` if the
    stored head is still that one, else from the head read under its lock."""
    if not entries:
        return []

    def move(records: list[AuditRecord]) -> bool:
        done = cast(CursorResult[Any], conn.execute(MOVE_HEAD, heads_move(records)))
        return done.rowcount == 1

    records = follow_all(tip, entries) if tip is not None else []
    if not records or not move(records):
        locked = cast(CursorResult[Any], conn.execute(_LOCK_HEAD))
        if locked.rowcount != 1:
            raise RuntimeError("audit_head row missing: the database is not migrated")
        row = conn.execute(HEAD).one()
        records = follow_all((int(row.seq), str(row.hash)), entries)
        if not move(records):  # under the lock nobody else moves it
            raise RuntimeError("audit head moved under its lock")
    conn.execute(INSERT_RECORD, [log_row(r) for r in records])
    return records


def insert_with_append(table: Table, columns: Sequence[str]) -> Insert:
    """One PostgreSQL statement that inserts a row of ``table`` and appends an
    audit record, both only if the head is still the one the record follows.

    Parameters: ``row_<column>`` for each of ``columns``, ``log_<column>`` for
    :func:`log_row`, and :func:`head_move`. The head's compare-and-set is a
    data-modifying CTE the two inserts select from: it moves the head and both
    rows are written (the appended ``seq`` is returned), or the head had moved,
    nothing is written and no row is returned (append in a transaction instead).
    One statement is one transaction, and one round trip where a transaction of
    three statements takes five.
    """
    moved = MOVE_HEAD.returning(audit_head.c.seq).cte("moved")
    row = insert(table).from_select(list(columns), select(
        *[bindparam(f"row_{c}", type_=table.c[c].type) for c in columns]).select_from(moved))
    log_columns = [c.name for c in audit_log.c]
    return insert(audit_log).from_select(log_columns, select(
        *[bindparam(f"log_{c}", type_=audit_log.c[c].type) for c in log_columns])
        .select_from(moved)).add_cte(row.cte(f"{table.name}_row")).returning(audit_log.c.seq)


def insert_many_with_append(table: Table, columns: Sequence[str]) -> Insert:
    """:func:`insert_with_append` for several rows and records at once (PostgreSQL).

    Parameters: ``rows_<column>`` and ``logs_<column>``, one array per column
    (unnested into rows), and :func:`head_move`'s from the first record's
    predecessor to the last record. Both inserts select from the head's
    compare-and-set: every row and record is written, or none.
    """
    moved = MOVE_HEAD.returning(audit_head.c.seq).cte("moved")

    def unnested(t: Table, prefix: str, names: Sequence[str]) -> Any:
        return func.unnest(*[bindparam(f"{prefix}_{c}", type_=ARRAY(t.c[c].type))
                             for c in names]).table_valued(*names).render_derived(name=prefix)

    rows = unnested(table, "rows", columns)
    row = insert(table).from_select(list(columns), select(
        *[rows.c[c] for c in columns]).select_from(rows).join(moved, true()))
    log_columns = [c.name for c in audit_log.c]
    logs = unnested(audit_log, "logs", log_columns)
    return insert(audit_log).from_select(log_columns, select(
        *[logs.c[c] for c in log_columns]).select_from(logs).join(moved, true())
        ).add_cte(row.cte(f"{table.name}_rows")).returning(audit_log.c.seq)


def iter_records(session: Session, batch: int = 5000) -> Iterator[AuditRecord]:
    last = 0
    while True:
        rows = session.execute(select(audit_log).where(audit_log.c.seq > last)
                               .order_by(audit_log.c.seq).limit(batch)).all()
        if not rows:
            return
        for r in rows:
            try:
                details = json.loads(r.details)
            except ValueError:
                details = {"<unparseable>": r.details}
            yield AuditRecord(r.seq, _utc(r.at), r.actor, r.action, r.target,
                              details, r.prev_hash, r.hash)
            last = r.seq


def bound_engine(sessions: sessionmaker[Session]) -> Engine:
    bind = sessions.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("the session factory must be bound to an Engine")
    return bind


def append_committed(engine: Engine, *, actor: str, action: str, target: str,
                     details: Mapping[str, str] | None = None, at: datetime | None = None
                     ) -> AuditRecord:
    """Append one record in a transaction of its own, onto the shared tip."""
    tip = ChainTip.of(engine)
    with engine.begin() as conn:
        record = append(conn, actor=actor, action=action, target=target, details=details,
                        at=at, tip=tip.head)
    tip.committed(record)
    return record


class AuditLog:
    """The audit sink every package writes to (``directory.audit.AuditSink``)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._engine = bound_engine(sessions)

    def record(self, *, actor: str, action: str, target: str,
               details: Mapping[str, str] | None = None) -> None:
        append_committed(self._engine, actor=actor, action=action, target=target,
                         details=details)

    def head(self) -> tuple[int, str]:
        with self._sessions() as session:
            row = session.execute(select(audit_head).where(audit_head.c.id == 1)).first()
            return (0, GENESIS) if row is None else (int(row.seq), str(row.hash))

    def signed_head(self) -> tuple[int, str] | None:
        with self._sessions() as session:
            row = session.execute(select(audit_head).where(audit_head.c.id == 1)).first()
            if row is None or row.signed_seq is None:
                return None
            return int(row.signed_seq), str(row.signed_hash)

    def verify(self, expected_head: tuple[int, str] | None = None) -> ChainReport:
        with self._sessions() as session:
            return verify_chain(iter_records(session), expected_head)

    def sign_head(self, sign: Callable[[bytes], bytes]) -> SignedHead | None:
        """Sign the current head with ``sign`` (the issuing CA) and keep it.

        The head row is locked while signing, so the signature always names
        the head that is stored beside it.
        """
        with self._sessions.begin() as session:
            bumped = cast("CursorResult[Any]", session.execute(
                update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq)))
            if bumped.rowcount == 0:
                return None
            row = session.execute(select(audit_head.c.seq, audit_head.c.hash)
                                  .where(audit_head.c.id == 1)).one()
            seq, digest = int(row.seq), str(row.hash)
            signature = sign(head_message(seq, digest))
            session.execute(update(audit_head).where(audit_head.c.id == 1).values(
                signed_seq=seq, signed_hash=digest,
                signature=base64.b64encode(signature).decode()))
        return SignedHead(seq, digest, signature)

    def signed_head_record(self) -> SignedHead | None:
        with self._sessions() as session:
            row = session.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        if row is None or row.signed_seq is None or row.signature is None:
            return None
        try:
            signature = base64.b64decode(row.signature, validate=True)
        except ValueError:
            signature = b""
        return SignedHead(int(row.signed_seq), str(row.signed_hash), signature)
