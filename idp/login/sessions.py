"""Server-side single sign-on sessions (OIDC Core 1.0 section 3.1.2.3, ``sid`` per
OIDC Front/Back-Channel Logout).

The browser holds only a random 256-bit session id in a ``Secure; HttpOnly;
SameSite=Lax`` cookie; the database holds its SHA-256 digest, who logged in, how
(``acr``/``amr``), when (``auth_time``), and a snapshot of the person's claims.
``sid`` is a second, public random value that may appear in tokens. Sessions end
on logout, on expiry, or when the person is suspended or leaves.

Session fixation (OWASP Session Management, "renew the session ID after any
privilege level change"): every step-up (password, certificate, one-time code)
and every enrolment activation gives the session a new cookie value and forgets
the old one's digest, so a cookie captured at password level never opens what the
session reaches later. The ``sid`` stays: it is not a credential (it appears in ID
tokens the apps already hold, and nothing accepts it in place of the cookie), and
OIDC Back-Channel Logout 1.0 section 2.4 needs the apps that received it to get it
back in their logout tokens. What the session did - subject, methods and their
times, the apps it reached (``idp_session_clients`` by ``sid``), ``created_at`` -
is carried across.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from directory.model import Person
from idp.login.tables import rowcount, session_clients, sso_sessions
from policies.assurance import AssurancePolicy, SessionFacts, load_policy

COOKIE_NAME = "gt_sso"


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
    created_at: float = 0.0  # when the session began (0: unknown, a row from before 0007)
    cert_serial: str | None = None  # the certificate it last logged in with

    def facts(self) -> SessionFacts:
        """What the session has done, for ``policies.assurance.decide`` (every method
        it did: judge it through ``policies.assurance.counted_methods``)."""
        return SessionFacts.from_stored(self.amr, self.auth_time, self.method_times)

    @property
    def started(self) -> datetime:
        """When the session began (not moved by step-ups): what enrolment times are
        compared with (``policies.assurance.enrolled_during``)."""
        return datetime.fromtimestamp(self.created_at or self.auth_time, UTC)


def _printable(text: str) -> str:
    """Header text as stored: control characters dropped (it is shown on a page)."""
    return "".join(ch for ch in text if ch.isprintable())


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _from_row(row: Any) -> SsoSession:
    return SsoSession(sid=row.sid, subject=row.subject, uid=row.uid,
                      auth_time=row.auth_time, acr=row.acr, amr=tuple(row.amr.split()),
                      expires_at=row.expires_at, claims=json.loads(row.claims),
                      method_times=row.method_times, created_at=row.created_at or 0.0,
                      cert_serial=row.cert_serial)


class SessionStore:
    def __init__(self, sessions: sessionmaker[Session], lifetime_hours: float,
                 clock: Callable[[], float] = time.time,
                 policy: AssurancePolicy | None = None) -> None:
        self._sessions = sessions
        self.lifetime = int(lifetime_hours * 3600)
        self._clock = clock
        self._policy = policy  # injected by the composition root; loaded on first use else

    def password_acr(self) -> str:
        """The ``acr`` of a session that has shown a password only."""
        if self._policy is None:
            self._policy = load_policy()
        return self._policy.acr(self._policy.level_for(["pwd"]))

    def create(self, person: Person, *, amr: tuple[str, ...] = ("pwd",),
               acr: str | None = None, user_agent: str = "", address: str = "",
               cert_serial: str | None = None) -> tuple[str, SsoSession]:
        """Start a session; return the cookie value (never stored) and the session.
        ``user_agent`` and ``address`` only describe the device to its owner;
        ``cert_serial`` is the certificate it logged in with, if any."""
        acr = acr or self.password_acr()
        cookie = secrets.token_urlsafe(32)
        started = self._clock()
        now = int(started)
        times = json.dumps({m: now for m in sorted(amr)}, separators=(",", ":"))
        sess = SsoSession(sid=secrets.token_urlsafe(16), subject=person.entry_uuid,
                          uid=person.uid, auth_time=now, acr=acr, amr=amr,
                          expires_at=now + self.lifetime, claims=person_claims(person),
                          method_times=times, created_at=started, cert_serial=cert_serial)
        with self._sessions.begin() as s:
            s.execute(insert(sso_sessions).values(
                id_hash=_digest(cookie), sid=sess.sid, subject=sess.subject, uid=sess.uid,
                claims=json.dumps(sess.claims, ensure_ascii=False), auth_time=now, acr=acr,
                amr=" ".join(amr), expires_at=sess.expires_at, method_times=times,
                user_agent=_printable(user_agent)[:256] or None,
                address=_printable(address)[:64] or None, created_at=started,
                cert_serial=cert_serial))
        return cookie, sess

    def step_up(self, sess: SsoSession, facts: SessionFacts, acr: str, *,
                cert_serial: str | None = None) -> tuple[str, SsoSession]:
        """Record a method done on top of the session and rotate its cookie: the new
        cookie value, and the session with ``amr``, ``acr``, ``auth_time`` and each
        method's time from ``facts`` (``cert_serial`` when the method was a
        certificate). Same ``sid``, ``created_at`` and apps; the old cookie no longer
        finds it. A session that ended meanwhile stays ended (the new cookie finds
        nothing)."""
        auth_time = int(facts.auth_time.timestamp())
        amr = facts.amr
        times = facts.method_times_json()
        serial = cert_serial or sess.cert_serial
        cookie = self._rotate(sess.sid, amr=" ".join(amr), acr=acr, auth_time=auth_time,
                              method_times=times, cert_serial=serial)
        return cookie, dataclasses.replace(sess, auth_time=auth_time, acr=acr, amr=amr,
                                           method_times=times, cert_serial=serial)

    def rotate(self, sess: SsoSession) -> str:
        """A new cookie value for the session, nothing else changed (an enrolment
        activation: a change of what the session may do, not a method done)."""
        return self._rotate(sess.sid)

    def _rotate(self, sid: str, **values: Any) -> str:
        cookie = secrets.token_urlsafe(32)
        with self._sessions.begin() as s:
            # The digest is the row's key: replacing it is what makes the old cookie
            # stop working, in the same statement that records the step-up.
            s.execute(update(sso_sessions).where(
                sso_sessions.c.sid == sid, sso_sessions.c.ended_at.is_(None))
                .values(id_hash=_digest(cookie), **values))
        return cookie

    def get(self, cookie: str | None) -> SsoSession | None:
        if not cookie or len(cookie) > 128:
            return None
        with self._sessions() as s:
            row = s.execute(select(sso_sessions).where(
                sso_sessions.c.id_hash == _digest(cookie))).first()
        if row is None or row.ended_at is not None or row.expires_at <= self._clock():
            return None
        return _from_row(row)

    def by_sid(self, sid: str) -> SsoSession | None:
        with self._sessions() as s:
            row = s.execute(select(sso_sessions).where(sso_sessions.c.sid == sid)).first()
        if row is None or row.ended_at is not None:
            return None
        return _from_row(row)

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
