"""The CA inventory in SQL: certificates, CA certificates, CRLs, approved DNS names.

The only pki module that knows SQLAlchemy. Every write that the audit log must
show appends its audit record in the same transaction (``pki.audit_store.append``),
so a certificate is never recorded without its audit record or the reverse.
Status changes are compare-and-set on the current status, so two racing
revocations of one certificate record exactly one, and each moves the status
generation (one counter, same transaction): an OCSP responder that keeps answers
checks them against it with one read of a one-row table.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from pki.audit import AuditRecord
from pki.audit_store import (
    HEAD,
    INSERT_RECORD,
    MOVE_HEAD,
    MOVED_TO,
    ChainTip,
    announce_unseen,
    append,
    append_many,
    follow,
    follow_all,
    head_move,
    heads_move,
    insert_many_with_append,
    insert_with_append,
    log_row,
)
from pki.errors import AlreadyRevoked, InvalidTransition, NotOnHold, UnknownSerial
from pki.group_commit import GroupCommit
from pki.held_connection import HeldConnection, Statement
from pki.model import (
    AuditEntry,
    CACertificate,
    CARole,
    CertificateRecord,
    CertStatus,
    CRLRecord,
    HierarchyName,
    OwnerKind,
    RevocationReason,
    RevokedEntry,
)
from pki.ocsp import StatusInfo

metadata = MetaData()

ca_certificates = Table(
    "ca_certificates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("role", String(16), nullable=False, index=True),
    Column("key_label", String(64), nullable=False),
    Column("serial", String(40), nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("der", LargeBinary, nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(40), primary_key=True),
    Column("owner_kind", String(16), nullable=False),
    Column("owner_uid", String(256), nullable=False, index=True),
    Column("owner_entry_uuid", String(64), nullable=False),
    Column("profile", String(32), nullable=False),
    Column("subject", Text, nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("status_changed_at", DateTime(timezone=True), nullable=True, index=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(32), nullable=True),
    Column("invalidity_date", DateTime(timezone=True), nullable=True),
    Column("hardware_key", Boolean, nullable=False, default=False),
    # Which CA hierarchy issued it ("ecdsa" or "sm2"): its CRLs and OCSP answers.
    Column("hierarchy", String(16), nullable=False, default="ecdsa", index=True),
    Column("der", LargeBinary, nullable=False),
)

crls = Table(
    "crls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(16), nullable=False),
    Column("number", Integer, nullable=False),
    Column("delta", Boolean, nullable=False),
    Column("base_number", Integer, nullable=True),
    Column("this_update", DateTime(timezone=True), nullable=False),
    Column("next_update", DateTime(timezone=True), nullable=False),
    Column("entries", Integer, nullable=False),
    Column("der", LargeBinary, nullable=False),
    UniqueConstraint("issuer", "number", name="uq_crls_issuer_number"),
)

approved_dns_names = Table(
    "approved_dns_names",
    metadata,
    Column("app", String(128), primary_key=True),
    Column("dns_name", String(253), primary_key=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

# One row (id 1): moved by every status change (migration 0012).
status_generation = Table(
    "pki_status_generation",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
)
_GENERATION = select(status_generation.c.value).where(status_generation.c.id == 1)
_GENERATION_SQL = "SELECT value FROM pki_status_generation WHERE id = 1"

_GET = select(certificates).where(certificates.c.serial == bindparam("serial"))
_STATUS = select(certificates.c.status, certificates.c.revoked_at, certificates.c.reason) \
    .where(certificates.c.serial == bindparam("serial"),
           certificates.c.hierarchy == bindparam("hierarchy"))


def _utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _must(at: datetime | None) -> datetime:
    value = _utc(at)
    assert value is not None
    return value


def _audit(session: Session | Connection, audit: AuditEntry, at: datetime,
           tip: ChainTip) -> AuditRecord:
    """Append ``audit`` in the caller's transaction, onto ``tip`` if it is still the
    head; tell ``tip`` the record only once that transaction has committed."""
    return append(session, actor=audit.actor, action=audit.action, target=audit.target,
                  details=audit.details, at=at, tip=tip.head)


# What a new certificate's row sets (the revocation columns stay NULL).
_NEW_CERTIFICATE = [c.name for c in certificates.c
                    if c.name not in ("revoked_at", "reason", "invalidity_date")]
_INSERT_CERTIFICATE = insert(certificates)
_INSERT_CERTIFICATE_AND_APPEND = insert_with_append(certificates, _NEW_CERTIFICATE)
_INSERT_CERTIFICATES_AND_APPEND = insert_many_with_append(certificates, _NEW_CERTIFICATE)
# Compare-and-sets a PostgreSQL issuance tries, each after reading the head another
# node moved, before it takes the head's lock in a transaction instead.
_HEAD_TRIES = 3


class _DriverStatement:
    """A Core statement compiled once for SQLite and run on the driver's cursor.

    Issuance records a certificate with three small statements, and on SQLite
    SQLAlchemy's work around each execution (connection and transaction objects,
    cache lookup, parameter processing, result set-up) costs more than SQLite's
    own. The statement is still Core, compiled by SQLAlchemy for the dialect with
    its bind processors (dates stored as SQLAlchemy stores them): the rows are
    those ``Connection.execute`` would write.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect,
                 columns: list[str] | None = None) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=columns))
        if compiled.positiontup is None:
            raise TypeError(f"{dialect.name} does not take positional parameters")
        self.sql = compiled.string
        # Per position: the value's name, a literal the statement itself holds
        # (``id = 1``), and the type's bind processor.
        self._binds: list[tuple[str, bool, Any, Any]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            literal = not bind.required and bind.callable is None and bind.value is not None
            self._binds.append((bind.key, literal, bind.value,
                                bind.type.dialect_impl(dialect).bind_processor(dialect)))

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for key, literal, value, process in self._binds:
            if not literal:
                value = values[key]  # a KeyError names the value the caller forgot
            out.append(value if process is None else process(value))
        return tuple(out)


def _driver_batches(conn: Connection, statement: Select[Any], size: int
                    ) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``statement``, in lists of up to ``size``, as the driver's cursor
    gives them (no result processing: the caller applies what it needs), streamed
    from the server on PostgreSQL (a named, server-side cursor in ``conn``'s
    transaction) and from SQLite's cursor as it steps."""
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    values: Any = (tuple(params[name] for name in compiled.positiontup)
                   if compiled.positiontup is not None else params)
    driver: Any = conn.connection.driver_connection
    cursor = driver.cursor(name="govtrust_rows") if dialect.name == "postgresql" \
        else driver.cursor()
    try:
        cursor.execute(compiled.string, values)
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


def _bump_generation(session: Session) -> None:
    """Move the status generation in the caller's transaction (see the docstring)."""
    done = cast("CursorResult[Any]", session.execute(
        update(status_generation).where(status_generation.c.id == 1)
        .values(value=status_generation.c.value + 1)))
    if done.rowcount == 0:  # tables made without the migration's first row
        session.execute(insert(status_generation).values(id=1, value=1))


def _row(rec: CertificateRecord) -> dict[str, Any]:
    """``rec`` as a new row of ``certificates``."""
    return {"serial": rec.serial, "owner_kind": rec.owner_kind.value,
            "owner_uid": rec.owner_uid, "owner_entry_uuid": rec.owner_entry_uuid,
            "profile": rec.profile, "subject": rec.subject, "not_before": rec.not_before,
            "not_after": rec.not_after, "status": rec.status.value,
            "issued_at": rec.issued_at, "status_changed_at": rec.issued_at,
            "hardware_key": rec.hardware_key, "hierarchy": rec.hierarchy.value,
            "der": rec.der}


def _record(row: object) -> CertificateRecord:
    r = row
    return CertificateRecord(
        serial=r.serial,  # type: ignore[attr-defined]
        owner_kind=OwnerKind(r.owner_kind),  # type: ignore[attr-defined]
        owner_uid=r.owner_uid,  # type: ignore[attr-defined]
        owner_entry_uuid=r.owner_entry_uuid,  # type: ignore[attr-defined]
        profile=r.profile,  # type: ignore[attr-defined]
        subject=r.subject,  # type: ignore[attr-defined]
        not_before=_must(r.not_before),  # type: ignore[attr-defined]
        not_after=_must(r.not_after),  # type: ignore[attr-defined]
        status=CertStatus(r.status),  # type: ignore[attr-defined]
        issued_at=_must(r.issued_at),  # type: ignore[attr-defined]
        der=bytes(r.der),  # type: ignore[attr-defined]
        status_changed_at=_utc(r.status_changed_at),  # type: ignore[attr-defined]
        revoked_at=_utc(r.revoked_at),  # type: ignore[attr-defined]
        reason=RevocationReason(r.reason) if r.reason else None,  # type: ignore[attr-defined]
        invalidity_date=_utc(r.invalidity_date),  # type: ignore[attr-defined]
        hardware_key=bool(r.hardware_key),  # type: ignore[attr-defined]
        hierarchy=HierarchyName(r.hierarchy),  # type: ignore[attr-defined]
    )


class _HeldPath(NamedTuple):
    """PostgreSQL's fast path: the held connection and the statements it runs."""

    held: HeldConnection
    one: Statement  # a certificate and its audit record, if the head is as believed
    many: Statement  # the same for a batch
    moved_to: Statement  # whether a run whose answer was lost had committed
    head: Statement  # where the head is now


class _CursorPath(NamedTuple):
    """SQLite's fast path: the statements run on the driver's cursor."""

    insert_row: _DriverStatement
    move_head: _DriverStatement
    insert_record: _DriverStatement
    head: _DriverStatement


class SqlCertificateStore:
    """The CA's records, over a SQLAlchemy session factory."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("the session factory must be bound to an Engine")
        self._engine = bind
        # The audit head last committed by any writer of this database here.
        self._tip = ChainTip.of(bind)
        # Issuances that arrive while one is being committed go in its successor's
        # transaction together (pki.group_commit): one commit for the lot.
        self._issued: GroupCommit[tuple[CertificateRecord, AuditEntry]] = \
            GroupCommit(self.add_certificates)
        dialect = bind.dialect
        # PostgreSQL records an issuance in one autocommitted, prepared statement on
        # a connection held for it (pki.held_connection: no ping, one round trip);
        # SQLite in a transaction of three statements run on the driver's cursor.
        self._held: _HeldPath | None = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            self._held = _HeldPath(HeldConnection(bind),
                                   Statement(_INSERT_CERTIFICATE_AND_APPEND, bind),
                                   Statement(_INSERT_CERTIFICATES_AND_APPEND, bind),
                                   Statement(MOVED_TO, bind), Statement(HEAD, bind))
        self._driver = (_CursorPath(
            _DriverStatement(_INSERT_CERTIFICATE, dialect, _NEW_CERTIFICATE),
            _DriverStatement(MOVE_HEAD, dialect), _DriverStatement(INSERT_RECORD, dialect),
            _DriverStatement(HEAD, dialect)) if dialect.name == "sqlite" else None)
        # SQLite file: the generation is read on a plain sqlite3 connection of each
        # thread (a few microseconds, against tens through a pooled connection).
        database = bind.url.database if bind.dialect.name == "sqlite" else None
        self._sqlite_path = database if database and database != ":memory:" else None
        self._local = threading.local()

    # -- CA certificates -------------------------------------------------------
    def add_ca(self, ca: CACertificate, audit: AuditEntry, at: datetime) -> None:
        with self._sessions.begin() as s:
            s.execute(insert(ca_certificates).values(
                role=ca.role.value, key_label=ca.key_label, serial=ca.serial,
                not_before=ca.not_before, not_after=ca.not_after, created_at=at, der=ca.der))
            record = _audit(s, audit, at, self._tip)
        self._tip.committed(record)

    def current_ca(self, role: CARole) -> CACertificate | None:
        with self._sessions() as s:
            row = s.execute(select(ca_certificates).where(ca_certificates.c.role == role.value)
                            .order_by(ca_certificates.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return CACertificate(CARole(row.role), row.key_label, row.serial, bytes(row.der),
                             _must(row.not_before), _must(row.not_after))

    # -- end-entity certificates ---------------------------------------------
    def add_certificate(self, rec: CertificateRecord, audit: AuditEntry) -> None:
        """Record ``rec`` with its audit record; return once both are committed.

        Concurrent callers share a commit (``pki.group_commit``): each returns only
        after the transaction holding its certificate commits, and if that
        transaction fails, every caller in it gets the error and none of its
        certificates is recorded.
        """
        self._issued.submit((rec, audit))

    def add_certificates(self, items: Sequence[tuple[CertificateRecord, AuditEntry]]) -> None:
        """Record ``items`` and their audit records, in this order, in one
        transaction: all of them or, if it fails, none."""
        if len(items) == 1:
            self._add_one(*items[0])
            return
        rows = [_row(rec) for rec, _ in items]
        entries = [(audit, rec.issued_at) for rec, audit in items]
        tip = self._tip.head
        if self._held is not None and tip is not None:
            # PostgreSQL: the whole batch in one autocommitted statement, as for one.
            path = self._held
            records = follow_all(tip, entries)
            params: dict[str, object] = {f"rows_{c}": [r[c] for r in rows]
                                         for c in _NEW_CERTIFICATE}
            logs = [log_row(r) for r in records]
            params.update({f"logs_{c}": [log[c] for log in logs] for c in logs[0]})
            params.update(heads_move(records))
            if path.held.first(path.many, params, landed=path.moved_to) is not None:
                self._tip.committed(records[-1])
                announce_unseen(self._engine, records)
                return
        with self._engine.begin() as conn:
            conn.execute(_INSERT_CERTIFICATE, rows)
            records = append_many(conn, entries, tip=tip)
        self._tip.committed(records[-1])

    def _add_one(self, rec: CertificateRecord, audit: AuditEntry) -> None:
        # The hot path of issuance. With the audit head this store wrote last, the
        # certificate and its record go in at once (one statement on PostgreSQL,
        # three on SQLite's cursor). If another writer (another process or node)
        # moved the head meanwhile, SQLite reads it under the write lock it already
        # holds and chains onto it; PostgreSQL reads it and tries again. Only a head
        # that keeps moving sends them the general way, a transaction that reads the
        # head under its lock.
        row = _row(rec)
        tip = self._tip.head
        if tip is not None:

            def chained(head: tuple[int, str]) -> AuditRecord:
                return follow(head, actor=audit.actor, action=audit.action,
                              target=audit.target, details=audit.details, at=rec.issued_at)

            record = self._add_following(row, tip, chained)
            if record is not None:
                self._tip.committed(record)
                announce_unseen(self._engine, [record])
                return
        with self._engine.begin() as s:
            s.execute(_INSERT_CERTIFICATE, row)
            record = append(s, actor=audit.actor, action=audit.action, target=audit.target,
                            details=audit.details, at=rec.issued_at)
        self._tip.committed(record)

    def _add_following(self, row: dict[str, Any], tip: tuple[int, str],
                       chained: Callable[[tuple[int, str]], AuditRecord]
                       ) -> AuditRecord | None:
        """Insert ``row`` and the audit record ``chained`` makes to follow the
        stored head, ``tip`` if it is still that one; the record written, or None
        (nothing written) if no fast path is known or the head kept moving."""
        if self._held is not None:
            path = self._held
            for _ in range(_HEAD_TRIES):
                record = chained(tip)
                params: dict[str, object] = {f"row_{k}": v for k, v in row.items()}
                params.update({f"log_{k}": v for k, v in log_row(record).items()})
                params.update(head_move(record))
                if path.held.first(path.one, params, landed=path.moved_to) is not None:
                    return record
                # Moved by another node or process: read where it is now (a read
                # writes nothing, so it is its own landed check).
                head = path.held.first(path.head, {}, landed=path.head)
                if head is None:
                    return None
                tip = (int(head[0]), str(head[1]))
            return None
        if self._driver is None:
            return None
        new_row, move_head, insert_record, head_now = self._driver  # a _CursorPath
        dialect = self._engine.dialect
        # Every parameter (the record's JSON too) is made before the first
        # statement takes SQLite's write lock, which is held until the commit.
        record = chained(tip)
        row_params = new_row.parameters(row)
        head_params = move_head.parameters(head_move(record))
        record_params = insert_record.parameters(log_row(record))
        raw = self._engine.raw_connection()  # from the pool, with its pragmas
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(new_row.sql, row_params)  # takes the write lock
                moved = cursor.execute(move_head.sql, head_params)
                if moved.rowcount != 1:
                    # Another process wrote since: the head it left cannot move
                    # while this transaction holds the lock, so chain onto it.
                    seq, digest = cursor.execute(head_now.sql,
                                                 head_now.parameters({})).fetchone()
                    record = chained((int(seq), str(digest)))
                    moved = cursor.execute(move_head.sql,
                                           move_head.parameters(head_move(record)))
                    if moved.rowcount != 1:
                        raise RuntimeError("audit head moved under the write lock")
                    record_params = insert_record.parameters(log_row(record))
                cursor.execute(insert_record.sql, record_params)
                raw.commit()
            except dialect.loaded_dbapi.Error as exc:
                # A rollback that fails too leaves the pool to discard the connection.
                with contextlib.suppress(dialect.loaded_dbapi.Error):
                    raw.rollback()
                # As Connection.execute would raise it (OperationalError: disk full, ...).
                raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                          dialect=dialect) from exc
            except BaseException:
                with contextlib.suppress(dialect.loaded_dbapi.Error):
                    raw.rollback()
                raise
            finally:
                cursor.close()
            return record
        finally:
            raw.close()

    def get(self, serial: str) -> CertificateRecord | None:
        # A plain connection: read before every key delivery and revocation.
        with self._engine.connect() as conn:
            row = conn.execute(_GET, {"serial": serial}).first()
        return None if row is None else _record(row)

    def status(self, serial: int, hierarchy: HierarchyName = HierarchyName.ECDSA
               ) -> StatusInfo | None:
        """``serial``'s status if ``hierarchy`` issued it (else None: unknown there)."""
        # On every OCSP request: a plain connection and a prepared statement.
        with self._engine.connect() as conn:
            row = conn.execute(_STATUS, {"serial": format(serial, "x"),
                                         "hierarchy": hierarchy.value}).first()
        if row is None:
            return None
        return StatusInfo(CertStatus(row.status), _utc(row.revoked_at),
                          RevocationReason(row.reason) if row.reason else None)

    def status_generation(self) -> int:
        """The counter every status change moves in its own transaction.

        An answer built from statuses read after this value was read is current as
        long as the value has not moved: a revocation committed on any process or
        node moves it before anyone can read the new status. The table comes with
        migration 0012 (``govtrust db upgrade``).
        """
        if self._sqlite_path is not None:
            row = self._sqlite().execute(_GENERATION_SQL).fetchone()
        else:
            with self._engine.connect() as db:
                row = db.execute(_GENERATION).first()
        return int(row[0]) if row is not None else 0

    def _sqlite(self) -> sqlite3.Connection:
        # One connection per thread and process: a connection must not cross a fork.
        held = getattr(self._local, "conn", None)
        if held is not None and held[0] == os.getpid():
            return cast(sqlite3.Connection, held[1])
        conn = sqlite3.connect(self._sqlite_path or "", timeout=30, check_same_thread=False)
        self._local.conn = (os.getpid(), conn)
        return conn

    def find(self, *, uid: str | None = None, status: CertStatus | None = None,
             expiring_before: datetime | None = None, limit: int = 10_000
             ) -> list[CertificateRecord]:
        q = select(certificates)
        if uid is not None:
            q = q.where(certificates.c.owner_uid == uid)
        if status is not None:
            q = q.where(certificates.c.status == status.value)
        if expiring_before is not None:
            q = q.where(certificates.c.not_after <= expiring_before)
        q = q.order_by(certificates.c.issued_at, certificates.c.serial).limit(limit)
        with self._sessions() as s:
            return [_record(r) for r in s.execute(q)]

    def transition(self, serial: str, *, verb: str, allowed_from: frozenset[CertStatus],
                   to: CertStatus, at: datetime, reason: RevocationReason | None,
                   invalidity_date: datetime | None, audit: AuditEntry) -> CertificateRecord:
        """Move one certificate to ``to`` if its status is in ``allowed_from``."""
        fresh: CertificateRecord | None = None
        with self._sessions.begin() as s:
            row = s.execute(select(certificates.c.status).where(certificates.c.serial == serial)
                            .with_for_update()).first()
            if row is None:
                raise UnknownSerial(serial)
            current = CertStatus(row.status)
            if current in allowed_from:
                values: dict[str, object] = {"status": to.value, "status_changed_at": at}
                if to is CertStatus.VALID:
                    # A release keeps removeFromCRL so the next delta CRL can say so.
                    values.update(revoked_at=None, reason=reason.value if reason else None,
                                  invalidity_date=None)
                else:
                    values.update(revoked_at=at, reason=reason.value if reason else None,
                                  invalidity_date=invalidity_date)
                done = cast("CursorResult[Any]", s.execute(update(certificates).where(
                    certificates.c.serial == serial, certificates.c.status == current.value)
                    .values(**values)))
                if done.rowcount == 1:
                    _bump_generation(s)
                    record = _audit(s, audit, at, self._tip)
                    fresh = _record(s.execute(select(certificates)
                                              .where(certificates.c.serial == serial)).one())
                else:
                    current = CertStatus(s.execute(select(certificates.c.status).where(
                        certificates.c.serial == serial)).scalar_one())
        if fresh is not None:
            self._tip.committed(record)
            return fresh
        if current is CertStatus.REVOKED and verb == "revoke":
            raise AlreadyRevoked(serial)
        if verb == "release":
            raise NotOnHold(serial, current.value)
        raise InvalidTransition(serial, current.value, verb)

    # -- CRLs -------------------------------------------------------------------
    def revoked_entries(self, since: datetime | None = None,
                        hierarchy: HierarchyName = HierarchyName.ECDSA
                        ) -> Iterator[RevokedEntry]:
        """Revoked and held certificates of ``hierarchy`` (changed at or after
        ``since``), streamed."""
        if since is not None:
            yield from self._changed_entries(since, hierarchy)
            return
        c = certificates.c
        q = select(c.serial, c.status, c.revoked_at, c.reason, c.invalidity_date).where(
            c.hierarchy == hierarchy.value,
            c.status.in_((CertStatus.REVOKED.value, CertStatus.HOLD.value)))
        reasons = {r.value: r for r in RevocationReason}
        hold, on_hold = CertStatus.HOLD.value, RevocationReason.CERTIFICATE_HOLD
        dialect = self._engine.dialect
        # What SQLAlchemy makes of a stored time (SQLite: text), None if the driver's
        # value is it already (psycopg).
        to_time: Any = c.revoked_at.type.dialect_impl(dialect).result_processor(dialect, None)
        # A full CRL lists up to a million rows: read in batches from the driver's
        # cursor, with no Row made per row (that was half the time of a CRL).
        with self._engine.connect() as conn:
            for rows in _driver_batches(conn, q, 20_000):
                if to_time is not None:
                    for serial, status, revoked_at, reason, invalidity in rows:
                        yield RevokedEntry(
                            int(serial, 16), to_time(revoked_at),
                            on_hold if status == hold else reasons.get(reason) if reason
                            else None, to_time(invalidity))
                else:
                    for serial, status, revoked_at, reason, invalidity in rows:
                        yield RevokedEntry(
                            int(serial, 16), revoked_at,
                            on_hold if status == hold else reasons.get(reason) if reason
                            else None, invalidity)

    def _changed_entries(self, since: datetime, hierarchy: HierarchyName
                         ) -> Iterator[RevokedEntry]:
        """A delta CRL's entries (RFC 5280 §5.2.4): what changed since its base,
        including releases from hold (as removeFromCRL)."""
        c = certificates.c
        listed = c.status.in_((CertStatus.REVOKED.value, CertStatus.HOLD.value))
        q = select(c.serial, c.status, c.revoked_at, c.reason, c.invalidity_date,
                   c.status_changed_at).where(
            c.hierarchy == hierarchy.value, c.status_changed_at >= since,
            or_(listed, and_(c.status == CertStatus.VALID.value,
                             c.reason == RevocationReason.REMOVE_FROM_CRL.value)))
        reasons = {r.value: r for r in RevocationReason}
        hold, valid = CertStatus.HOLD.value, CertStatus.VALID.value
        with self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=20_000).execute(q)
            for serial, status, revoked_at, reason, invalidity, changed in result:
                if status == valid:
                    yield RevokedEntry(int(serial, 16), _must(changed),
                                       RevocationReason.REMOVE_FROM_CRL)
                    continue
                yield RevokedEntry(
                    int(serial, 16), revoked_at,
                    RevocationReason.CERTIFICATE_HOLD if status == hold
                    else reasons.get(reason) if reason else None,
                    invalidity)

    def next_crl_number(self, issuer: str) -> int:
        with self._sessions() as s:
            top = s.execute(select(func.max(crls.c.number))
                            .where(crls.c.issuer == issuer)).scalar()
        return int(top or 0) + 1

    def add_crl(self, issuer: str, crl: CRLRecord, audit: AuditEntry) -> bool:
        """Store a CRL; False if its number was taken meanwhile (build again)."""
        try:
            with self._sessions.begin() as s:
                s.execute(insert(crls).values(
                    issuer=issuer, number=crl.number, delta=crl.delta,
                    base_number=crl.base_number, this_update=crl.this_update,
                    next_update=crl.next_update, entries=crl.entries, der=crl.der))
                record = _audit(s, audit, crl.this_update, self._tip)
                # Keep the last few of each kind; the newest is what is served.
                keep = select(crls.c.id).where(crls.c.issuer == issuer,
                                               crls.c.delta == crl.delta) \
                    .order_by(crls.c.number.desc()).limit(3)
                s.execute(delete(crls).where(crls.c.issuer == issuer,
                                             crls.c.delta == crl.delta,
                                             crls.c.id.not_in(keep.scalar_subquery())))
        except IntegrityError:
            return False
        self._tip.committed(record)
        return True

    def latest_crl(self, issuer: str, delta: bool) -> CRLRecord | None:
        with self._sessions() as s:
            row = s.execute(select(crls).where(crls.c.issuer == issuer, crls.c.delta == delta)
                            .order_by(crls.c.number.desc()).limit(1)).first()
        if row is None:
            return None
        return CRLRecord(row.number, bool(row.delta), row.base_number, _must(row.this_update),
                         _must(row.next_update), row.entries, bytes(row.der))

    # -- approved DNS names of department apps -------------------------------
    def approve_dns(self, app: str, names: list[str], audit: AuditEntry, at: datetime) -> None:
        with self._sessions.begin() as s:
            have = set(s.execute(select(approved_dns_names.c.dns_name)
                                 .where(approved_dns_names.c.app == app)).scalars())
            for name in names:
                if name not in have:
                    s.execute(insert(approved_dns_names).values(app=app, dns_name=name,
                                                                added_at=at))
            record = _audit(s, audit, at, self._tip)
        self._tip.committed(record)

    def approved_dns(self, app: str) -> frozenset[str]:
        with self._sessions() as s:
            return frozenset(s.execute(select(approved_dns_names.c.dns_name)
                                       .where(approved_dns_names.c.app == app)).scalars())
