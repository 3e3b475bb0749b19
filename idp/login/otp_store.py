"""Strong authentication's tables (SQLAlchemy Core): TOTP credentials and recovery codes.

The storage edge of ``idp.login.totp``. Every guarantee that must hold across web
workers and nodes is a single conditional statement whose row count says who
won (RFC 6238 section 5.2: an accepted time step is never accepted again):

- ``accept_step``: ``UPDATE ... SET last_step = :s WHERE last_step < :s`` - of two
  requests presenting the same code, exactly one touches the row. On PostgreSQL
  the second UPDATE waits for the first's row lock and re-checks its WHERE
  (READ COMMITTED); on SQLite writers are serialized.
- ``use_recovery_code``: ``UPDATE ... SET used_at WHERE used_at IS NULL``.

Each change is written with its audit record (``pki.audit_store.append``) in
the same transaction. Secrets arrive here already encrypted; codes only as
keyed digests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from idp.login.tables import rowcount
from pki.audit_store import append

metadata = MetaData()

otp_credentials = Table(
    "otp_credentials",
    metadata,
    Column("person_uuid", String(64), primary_key=True),  # entryUUID
    Column("uid", String(256), nullable=False),
    Column("secret", LargeBinary, nullable=False),  # AES-GCM, AAD = entryUUID
    Column("state", String(8), nullable=False),  # pending | active
    Column("last_step", Integer, nullable=False),  # highest accepted time step, -1 none
    Column("failures", Integer, nullable=False),  # consecutive wrong codes
    Column("last_failure_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("activated_at", DateTime(timezone=True), nullable=True),
)

otp_recovery_codes = Table(
    "otp_recovery_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_uuid", String(64),
           ForeignKey("otp_credentials.person_uuid", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("code_hash", String(64), nullable=False),  # HMAC-SHA256, hex
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True)
class Audit:
    """One audit record to append in the same transaction as the change."""

    actor: str
    action: str
    target: str
    details: Mapping[str, str]


@dataclass(frozen=True)
class CredentialRow:
    person_uuid: str
    uid: str
    secret: bytes
    active: bool
    last_step: int
    failures: int
    created_at: datetime
    activated_at: datetime | None
    last_failure_at: datetime | None = None


def _utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _audit(s: Session, audit: Audit | None) -> None:
    if audit is not None:
        append(s, actor=audit.actor, action=audit.action, target=audit.target,
               details=audit.details)


class SqlOtpStore:
    """Implements ``idp.login.totp.OtpStore`` on the shared database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, person_uuid: str) -> CredentialRow | None:
        with self._sessions() as s:
            row = s.execute(select(otp_credentials).where(
                otp_credentials.c.person_uuid == person_uuid)).first()
        if row is None:
            return None
        return CredentialRow(row.person_uuid, row.uid, bytes(row.secret), row.state == "active",
                             int(row.last_step), int(row.failures), _utc(row.created_at) or
                             datetime.now(UTC), _utc(row.activated_at),
                             _utc(row.last_failure_at))

    def save_pending(self, person_uuid: str, uid: str, secret: bytes, at: datetime,
                     audit: Audit) -> bool:
        """Store a new pending secret (replacing a pending one); False if one is active."""
        for attempt in range(3):
            try:
                with self._sessions.begin() as s:
                    current = s.execute(select(otp_credentials.c.state).where(
                        otp_credentials.c.person_uuid == person_uuid).with_for_update()).first()
                    if current is not None and current.state == "active":
                        return False
                    if current is not None:
                        s.execute(delete(otp_credentials).where(
                            otp_credentials.c.person_uuid == person_uuid,
                            otp_credentials.c.state == "pending"))
                    s.execute(insert(otp_credentials).values(
                        person_uuid=person_uuid, uid=uid, secret=secret, state="pending",
                        last_step=-1, failures=0, created_at=at))
                    _audit(s, audit)
                return True
            except IntegrityError:  # a concurrent enrolment inserted first: look again
                if attempt == 2:
                    raise
        return False

    def activate(self, person_uuid: str, secret: bytes, step: int, at: datetime,
                 audit: Audit) -> bool:
        """Pending -> active with ``step`` used, if the secret is still the one checked."""
        with self._sessions.begin() as s:
            done = rowcount(s.execute(update(otp_credentials).where(
                otp_credentials.c.person_uuid == person_uuid,
                otp_credentials.c.state == "pending",
                otp_credentials.c.secret == secret,
                otp_credentials.c.last_step < step,
            ).values(state="active", last_step=step, failures=0, activated_at=at)))
            if done:
                _audit(s, audit)
        return bool(done)

    def accept_step(self, person_uuid: str, step: int, audit: Audit) -> bool:
        """Record ``step`` as used; False if it (or a later one) was accepted before."""
        with self._sessions.begin() as s:
            done = rowcount(s.execute(update(otp_credentials).where(
                otp_credentials.c.person_uuid == person_uuid,
                otp_credentials.c.state == "active",
                otp_credentials.c.last_step < step,
            ).values(last_step=step, failures=0)))
            if done:
                _audit(s, audit)
        return bool(done)

    def count_failure(self, person_uuid: str, at: datetime, audit: Audit) -> int:
        """Add one failure; return the count (0 when there is no credential)."""
        with self._sessions.begin() as s:
            rowcount(s.execute(update(otp_credentials).where(
                otp_credentials.c.person_uuid == person_uuid,
            ).values(failures=otp_credentials.c.failures + 1, last_failure_at=at)))
            count = s.execute(select(otp_credentials.c.failures).where(
                otp_credentials.c.person_uuid == person_uuid)).scalar()
            _audit(s, audit)
        return int(count or 0)

    def reset_failures(self, person_uuid: str) -> None:
        with self._sessions.begin() as s:
            s.execute(update(otp_credentials).where(
                otp_credentials.c.person_uuid == person_uuid).values(failures=0))

    def delete(self, person_uuid: str, audit: Audit) -> bool:
        with self._sessions.begin() as s:
            s.execute(delete(otp_recovery_codes).where(
                otp_recovery_codes.c.person_uuid == person_uuid))
            done = rowcount(s.execute(delete(otp_credentials).where(
                otp_credentials.c.person_uuid == person_uuid)))
            _audit(s, audit)
        return bool(done)

    # -- recovery codes ----------------------------------------------------------
    def replace_recovery_codes(self, person_uuid: str, hashes: Sequence[str], at: datetime,
                               audit: Audit) -> bool:
        """Drop every old code and store ``hashes``; False without an active credential."""
        with self._sessions.begin() as s:
            state = s.execute(select(otp_credentials.c.state).where(
                otp_credentials.c.person_uuid == person_uuid).with_for_update()).scalar()
            if state != "active":
                return False
            s.execute(delete(otp_recovery_codes).where(
                otp_recovery_codes.c.person_uuid == person_uuid))
            s.execute(insert(otp_recovery_codes), [
                {"person_uuid": person_uuid, "code_hash": h, "created_at": at} for h in hashes])
            _audit(s, audit)
        return True

    def recovery_codes(self, person_uuid: str) -> list[tuple[int, str, bool]]:
        """(id, digest, used) of every current recovery code."""
        with self._sessions() as s:
            return [(int(r.id), str(r.code_hash), r.used_at is not None) for r in s.execute(
                select(otp_recovery_codes.c.id, otp_recovery_codes.c.code_hash,
                       otp_recovery_codes.c.used_at).where(
                    otp_recovery_codes.c.person_uuid == person_uuid
                ).order_by(otp_recovery_codes.c.id))]

    def use_recovery_code(self, person_uuid: str, code_id: int, at: datetime,
                          audit: Audit) -> bool:
        """Mark one code used; False if another request used it first."""
        with self._sessions.begin() as s:
            done = rowcount(s.execute(update(otp_recovery_codes).where(
                otp_recovery_codes.c.id == code_id,
                otp_recovery_codes.c.person_uuid == person_uuid,
                otp_recovery_codes.c.used_at.is_(None)).values(used_at=at)))
            if done:
                s.execute(update(otp_credentials).where(
                    otp_credentials.c.person_uuid == person_uuid).values(failures=0))
                _audit(s, audit)
        return bool(done)

    def recovery_codes_left(self, person_uuid: str) -> int:
        with self._sessions() as s:
            return int(s.execute(select(func.count()).select_from(otp_recovery_codes).where(
                otp_recovery_codes.c.person_uuid == person_uuid,
                otp_recovery_codes.c.used_at.is_(None))).scalar_one())
