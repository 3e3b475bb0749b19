"""The KMC's tables in SQL: escrowed keys (sealed), recovery requests, approvals.

The SQLAlchemy edge of ``pki.kmc``. Every write appends its audit record in the
same transaction. One approval per agent per request is a primary key, so two
racing approvals by one agent record exactly one; the move to ``approved`` and
to ``delivered`` are compare-and-set on the state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pki.audit import AuditRecord
from pki.audit_store import ChainTip, append, append_committed, bound_engine
from pki.errors import KmcRefusal, KmcRefused
from pki.kmc import EscrowRecord, RecoveryRequest, RequestState
from pki.model import AuditEntry

metadata = MetaData()

escrowed_keys = Table(
    "kmc_escrowed_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),  # SHA-256 of the SPKI
    Column("serial", String(40), nullable=True, unique=True),
    Column("owner_uid", String(256), nullable=False, index=True),
    Column("owner_entry_uuid", String(64), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("kek_label", String(64), nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # AES-256-GCM under the KEK
    Column("created_at", DateTime(timezone=True), nullable=False),
)

recovery_requests = Table(
    "kmc_recovery_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("serial", String(40), nullable=False, index=True),
    Column("owner_uid", String(256), nullable=False),
    Column("requester_uid", String(256), nullable=False),
    Column("requester_entry_uuid", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("required", Integer, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
)

recovery_approvals = Table(
    "kmc_recovery_approvals",
    metadata,
    Column("request_id", String(32), ForeignKey("kmc_recovery_requests.id"),
           primary_key=True),
    Column("agent_uid", String(256), primary_key=True),
    Column("agent_entry_uuid", String(64), nullable=False),
    Column("approved_at", DateTime(timezone=True), nullable=False),
)


# Built once (issuance runs them on every escrowed pair): SQLAlchemy caches them.
_INSERT_ESCROW = insert(escrowed_keys)
_LINK = update(escrowed_keys).where(
    escrowed_keys.c.key_id == bindparam("the_key_id"), escrowed_keys.c.serial.is_(None)
).values(serial=bindparam("the_serial"))


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _escrow(row: Any) -> EscrowRecord:
    return EscrowRecord(row.key_id, row.serial, row.owner_uid, row.owner_entry_uuid,
                        row.algorithm, row.kek_label, bytes(row.sealed), _utc(row.created_at))


class SqlEscrowStore:
    """``pki.kmc.EscrowStore`` over a SQLAlchemy session factory."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._engine = bound_engine(sessions)
        # Shared with the CA store and the audit sink of the same database: an
        # escrow record appended here leaves the CA's next compare-and-set current.
        self._tip = ChainTip.of(self._engine)

    def _append(self, s: Session | Connection, audit: AuditEntry, at: datetime
                ) -> AuditRecord:
        return append(s, actor=audit.actor, action=audit.action, target=audit.target,
                      details=audit.details, at=at, tip=self._tip.head)

    def audit(self, entry: AuditEntry, at: datetime) -> None:
        append_committed(self._engine, actor=entry.actor, action=entry.action,
                         target=entry.target, details=entry.details, at=at)

    def add_escrow(self, rec: EscrowRecord, audit: AuditEntry) -> None:
        with self._engine.begin() as s:
            s.execute(_INSERT_ESCROW, {
                "key_id": rec.key_id, "serial": rec.serial, "owner_uid": rec.owner_uid,
                "owner_entry_uuid": rec.owner_entry_uuid, "algorithm": rec.algorithm,
                "kek_label": rec.kek_label, "sealed": rec.sealed,
                "created_at": rec.created_at})
            record = self._append(s, audit, rec.created_at)
        self._tip.committed(record)

    def link_serial(self, key_id: str, serial: str, audit: AuditEntry, at: datetime,
                    then: AuditEntry | None = None) -> None:
        with self._engine.begin() as s:
            done = cast("CursorResult[Any]", s.execute(
                _LINK, {"the_key_id": key_id, "the_serial": serial}))
            if done.rowcount != 1:
                raise KmcRefused(KmcRefusal.NOT_ESCROWED, serial, "escrow row already linked")
            record = self._append(s, audit, at)
            if then is not None:
                record = append(s, actor=then.actor, action=then.action, target=then.target,
                                details=then.details, at=at,
                                tip=(record.seq, record.hash))
        self._tip.committed(record)

    def escrow(self, serial: str) -> EscrowRecord | None:
        with self._sessions() as s:
            row = s.execute(select(escrowed_keys)
                            .where(escrowed_keys.c.serial == serial)).first()
        return None if row is None else _escrow(row)

    def escrows(self, owner_uid: str) -> list[EscrowRecord]:
        with self._sessions() as s:
            rows = s.execute(select(escrowed_keys).where(escrowed_keys.c.owner_uid == owner_uid)
                             .order_by(escrowed_keys.c.created_at)).all()
        return [_escrow(r) for r in rows]

    def add_request(self, req: RecoveryRequest, audit: AuditEntry) -> None:
        with self._sessions.begin() as s:
            s.execute(insert(recovery_requests).values(
                id=req.id, serial=req.serial, owner_uid=req.owner_uid,
                requester_uid=req.requester_uid, requester_entry_uuid=req.requester_entry_uuid,
                reason=req.reason, required=req.required, state=req.state.value,
                created_at=req.created_at, expires_at=req.expires_at, decided_at=None))
            record = self._append(s, audit, req.created_at)
        self._tip.committed(record)

    def _load(self, s: Session, request_id: str) -> RecoveryRequest | None:
        row = s.execute(select(recovery_requests)
                        .where(recovery_requests.c.id == request_id)).first()
        if row is None:
            return None
        agents = s.execute(select(recovery_approvals.c.agent_uid)
                           .where(recovery_approvals.c.request_id == request_id)
                           .order_by(recovery_approvals.c.approved_at,
                                     recovery_approvals.c.agent_uid)).scalars().all()
        return RecoveryRequest(row.id, row.serial, row.owner_uid, row.requester_uid,
                               row.requester_entry_uuid, row.reason, row.required,
                               RequestState(row.state), _utc(row.created_at),
                               _utc(row.expires_at), tuple(agents))

    def request(self, request_id: str) -> RecoveryRequest | None:
        with self._sessions() as s:
            return self._load(s, request_id)

    def requests(self, limit: int = 200) -> list[RecoveryRequest]:
        with self._sessions() as s:
            ids = s.execute(select(recovery_requests.c.id)
                            .order_by(recovery_requests.c.created_at.desc())
                            .limit(limit)).scalars().all()
            found = [self._load(s, i) for i in ids]
        return [r for r in found if r is not None]

    def approve(self, request_id: str, agent_uid: str, agent_entry_uuid: str, at: datetime,
                audit: AuditEntry) -> RecoveryRequest:
        pending = RequestState.PENDING.value
        try:
            with self._sessions.begin() as s:
                # Lock the request first (a write on SQLite, a row lock on PostgreSQL)
                # so the count below sees every approval committed before ours.
                locked = cast("CursorResult[Any]", s.execute(
                    update(recovery_requests).where(recovery_requests.c.id == request_id,
                                                    recovery_requests.c.state == pending)
                    .values(state=pending)))
                if locked.rowcount != 1:
                    raise KmcRefused(KmcRefusal.NOT_PENDING)
                s.execute(insert(recovery_approvals).values(
                    request_id=request_id, agent_uid=agent_uid,
                    agent_entry_uuid=agent_entry_uuid, approved_at=at))
                count = s.execute(select(func.count()).select_from(recovery_approvals)
                                  .where(recovery_approvals.c.request_id == request_id)
                                  ).scalar_one()
                required = s.execute(select(recovery_requests.c.required)
                                     .where(recovery_requests.c.id == request_id)).scalar_one()
                record = self._append(s, AuditEntry(audit.actor, audit.action, audit.target,
                                                    {**audit.details, "approvals": str(count)}),
                                      at)
                if count >= required:
                    s.execute(update(recovery_requests)
                              .where(recovery_requests.c.id == request_id)
                              .values(state=RequestState.APPROVED.value, decided_at=at))
        except IntegrityError:
            raise KmcRefused(KmcRefusal.ALREADY_APPROVED) from None
        self._tip.committed(record)
        with self._sessions() as s:
            fresh = self._load(s, request_id)
        assert fresh is not None
        return fresh

    def mark_delivered(self, request_id: str, at: datetime, audit: AuditEntry) -> bool:
        with self._sessions.begin() as s:
            done = cast("CursorResult[Any]", s.execute(
                update(recovery_requests).where(
                    recovery_requests.c.id == request_id,
                    recovery_requests.c.state == RequestState.APPROVED.value)
                .values(state=RequestState.DELIVERED.value, decided_at=at)))
            if done.rowcount != 1:
                return False
            record = self._append(s, audit, at)
        self._tip.committed(record)
        return True
