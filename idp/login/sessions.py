"""Server-side single sign-on sessions (OIDC Core 1.0 section 3.1.2.3, ``sid`` per
OIDC Front/Back-Channel Logout).

The browser holds only a random 256-bit session id in a ``Secure; HttpOnly;
SameSite=Lax`` cookie; the database holds its SHA-256 digest, who logged in, how
(``acr``/``amr``), when (``auth_time``), and a snapshot of the person's claims.
``sid`` is a second, public random value that may appear in tokens. Sessions end
on logout, on expiry, or when the person is suspended or leaves.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from directory.model import Person
from idp.login.tables import rowcount, session_clients, sso_sessions
from policies.assurance import SessionFacts, acr_for, level_for

COOKIE_NAME = "gt_sso"
ACR_PASSWORD = acr_for(level_for(["pwd"]))


def person_claims(person: Person) -> dict[str, Any]:
    """The identity claims the IdP releases, from a directory entry."""
    return {
        "sub": person.entry_uuid, "name": person.display_name,
        "preferred_username": person.uid, "email": person.email,
        "department": person.department_path, "title": person.title,
        "groups": list(person.groups), "locale": person.preferred_language,
    }


@dataclass(frozen=True)
class SsoSession:
    sid: str
    subject: str
    uid: str
    auth_time: int
    acr: str
    amr: tuple[str, ...]
    expires_at: int
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
    method_times: str | None = None  # SessionFacts.method_times_json()

    def facts(self) -> SessionFacts:
        """What the session has done, for ``policies.assurance.decide``."""
        return SessionFacts.from_stored(self.amr, self.auth_time, self.method_times)


def _printable(text: str) -> str:
    """Header text as stored: control characters dropped (it is shown on a page)."""
    return "".join(ch for ch in text if ch.isprintable())


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class SessionStore:
    def __init__(self, sessions: sessionmaker[Session], lifetime_hours: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._sessions = sessions
        self.lifetime = int(lifetime_hours * 3600)
        self._clock = clock

    def create(self, person: Person, *, amr: tuple[str, ...] = ("pwd",),
               acr: str = ACR_PASSWORD, user_agent: str = "", address: str = ""
               ) -> tuple[str, SsoSession]:
        """Start a session; return the cookie value (never stored) and the session.
        ``user_agent`` and ``address`` only describe the device to its owner."""
        cookie = secrets.token_urlsafe(32)
        now = int(self._clock())
        times = json.dumps({m: now for m in sorted(amr)}, separators=(",", ":"))
        sess = SsoSession(sid=secrets.token_urlsafe(16), subject=person.entry_uuid,
                          uid=person.uid, auth_time=now, acr=acr, amr=amr,
                          expires_at=now + self.lifetime, claims=person_claims(person),
                          method_times=times)
        with self._sessions.begin() as s:
            s.execute(insert(sso_sessions).values(
                id_hash=_digest(cookie), sid=sess.sid, subject=sess.subject, uid=sess.uid,
                claims=json.dumps(sess.claims, ensure_ascii=False), auth_time=now, acr=acr,
                amr=" ".join(amr), expires_at=sess.expires_at, method_times=times,
                user_agent=_printable(user_agent)[:256] or None,
                address=_printable(address)[:64] or None))
        return cookie, sess

    def step_up(self, sess: SsoSession, facts: SessionFacts, acr: str) -> SsoSession:
        """Record a method done on top of the session (same sid and cookie):
        ``amr``, ``acr``, ``auth_time`` and each method's time from ``facts``."""
        auth_time = int(facts.auth_time.timestamp())
        amr = facts.amr
        times = facts.method_times_json()
        with self._sessions.begin() as s:
            s.execute(update(sso_sessions).where(
                sso_sessions.c.sid == sess.sid, sso_sessions.c.ended_at.is_(None))
                .values(amr=" ".join(amr), acr=acr, auth_time=auth_time, method_times=times))
        return SsoSession(sid=sess.sid, subject=sess.subject, uid=sess.uid,
                          auth_time=auth_time, acr=acr, amr=amr, expires_at=sess.expires_at,
                          claims=sess.claims, method_times=times)

    def get(self, cookie: str | None) -> SsoSession | None:
        if not cookie or len(cookie) > 128:
            return None
        with self._sessions() as s:
            row = s.execute(select(sso_sessions).where(
                sso_sessions.c.id_hash == _digest(cookie))).first()
        if row is None or row.ended_at is not None or row.expires_at <= self._clock():
            return None
        return SsoSession(sid=row.sid, subject=row.subject, uid=row.uid,
                          auth_time=row.auth_time, acr=row.acr, amr=tuple(row.amr.split()),
                          expires_at=row.expires_at, claims=json.loads(row.claims),
                          method_times=row.method_times)

    def by_sid(self, sid: str) -> SsoSession | None:
        with self._sessions() as s:
            row = s.execute(select(sso_sessions).where(sso_sessions.c.sid == sid)).first()
        if row is None or row.ended_at is not None:
            return None
        return SsoSession(sid=row.sid, subject=row.subject, uid=row.uid,
                          auth_time=row.auth_time, acr=row.acr, amr=tuple(row.amr.split()),
                          expires_at=row.expires_at, claims=json.loads(row.claims),
                          method_times=row.method_times)

    def add_client(self, sid: str, client_id: str) -> None:
        """Remember that ``client_id`` received tokens in this session (for logout)."""
        try:
            with self._sessions.begin() as s:
                exists = s.execute(select(session_clients.c.sid).where(
                    session_clients.c.sid == sid,
                    session_clients.c.client_id == client_id)).first()
                if exists is None:
                    s.execute(insert(session_clients).values(sid=sid, client_id=client_id))
        except IntegrityError:  # a concurrent request recorded it first
            pass

    def clients(self, sid: str) -> list[str]:
        with self._sessions() as s:
            return [r.client_id for r in s.execute(select(session_clients.c.client_id)
                                                   .where(session_clients.c.sid == sid)).all()]

    def end(self, sid: str) -> bool:
        """End a session; False if it had already ended."""
        with self._sessions.begin() as s:
            return bool(rowcount(s.execute(update(sso_sessions).where(
                sso_sessions.c.sid == sid, sso_sessions.c.ended_at.is_(None))
                .values(ended_at=int(self._clock())))))

    def active_for_subject(self, subject: str) -> list[str]:
        now = int(self._clock())
        with self._sessions() as s:
            return [r.sid for r in s.execute(select(sso_sessions.c.sid).where(
                sso_sessions.c.subject == subject, sso_sessions.c.ended_at.is_(None),
                sso_sessions.c.expires_at > now)).all()]
