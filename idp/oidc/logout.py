"""Logout: OpenID Connect RP-Initiated Logout 1.0 and Back-Channel Logout 1.0.

RP-initiated: ``post_logout_redirect_uri`` must equal, character for character,
one the client registered (RP-Initiated Logout section 3); the client is known
from ``client_id`` or from the ``aud`` of an ``id_token_hint`` we signed, whose
claims ``idp.oidc.claims.check_id_token_hint`` checks (expired hints are accepted,
section 2; not-yet-valid ones, another issuer's or another audience's are not).
Back-channel: ending a session queues one
delivery per app of the session that registered a ``backchannel_logout_uri``;
each delivery POSTs a freshly signed logout token (section 2.4, ``typ:
logout+jwt``, ``events`` with the back-channel logout member, ``sid`` and
``sub``, no ``nonce``) and is retried with backoff until the app answers 200 or
204 (section 2.8). Pending deliveries live in the database, so any worker can
finish them.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.errors import IdPError
from idp.login.sessions import SessionStore
from idp.oidc.claims import InvalidClaim, check_id_token_hint
from idp.oidc.clients import Client, ClientRepository, redirect_uri_matches
from idp.oidc.keys import InvalidToken, KeyStore
from idp.oidc.tables import backchannel_deliveries, grants, rowcount
from idp.oidc.tokens import ID_TOKEN_TTL, TokenService

log = logging.getLogger(__name__)

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = 120
MAX_ATTEMPTS = 12
LEASE_SECONDS = 30


class LogoutError(IdPError, ValueError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class EndSessionRequest:
    client: Client | None
    redirect_uri: str | None
    state: str | None
    hint_sid: str | None
    hint_sub: str | None


def validate_end_session(params: dict[str, str], keys: KeyStore,
                         clients: ClientRepository, issuer: str,
                         now: int | None = None) -> EndSessionRequest:
    hint_sid = hint_sub = None
    client_id = params.get("client_id") or None
    hint = params.get("id_token_hint")
    if hint:
        try:
            # Only our ID tokens (header ``typ: JWT``, an ``azp``): an access token
            # (``at+jwt``) or a logout token (``logout+jwt``) we signed is not a hint
            # of a login the person saw, and must not end a session unasked.
            _, claims = keys.verify(hint, typ="jwt")
            checked = check_id_token_hint(
                claims, issuer=issuer, now=int(time.time()) if now is None else now,
                lifetime=ID_TOKEN_TTL)
        except InvalidClaim as exc:
            raise LogoutError(f"id_token_hint: {exc.claim} {exc.problem.value}") from None
        except InvalidToken:
            raise LogoutError("id_token_hint does not verify") from None
        if client_id and checked.client_id != client_id:
            raise LogoutError("client_id does not match the id_token_hint")
        client_id = checked.client_id
        hint_sid, hint_sub = checked.sid, checked.sub
    client = clients.get(client_id) if client_id else None
    if client_id and client is None:
        raise LogoutError("unknown client")
    redirect = params.get("post_logout_redirect_uri") or None
    if redirect is not None:
        if client is None:
            raise LogoutError("post_logout_redirect_uri needs client_id or id_token_hint")
        if not redirect_uri_matches(client.post_logout_redirect_uris, redirect):
            raise LogoutError("post_logout_redirect_uri is not registered")
    return EndSessionRequest(client, redirect, params.get("state") or None,
                             hint_sid, hint_sub)


Poster = Callable[[str, bytes], int]


def make_poster(ca_file: str | None = None, timeout: float = 5.0) -> Poster:
    context = ssl.create_default_context()  # the system's trust store, plus ours
    if ca_file:
        context.load_verify_locations(cafile=ca_file)

    def post(uri: str, body: bytes) -> int:
        req = urllib.request.Request(uri, data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    return post


class Logout:
    """Ends SSO sessions and delivers back-channel logout tokens."""

    def __init__(self, sessions: sessionmaker[Session], store: SessionStore,
                 tokens: TokenService, keys: KeyStore, clients: ClientRepository,
                 issuer: str, poster: Poster | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._sessions = sessions
        self._store = store
        self._tokens = tokens
        self._keys = keys
        self._clients = clients
        self._issuer = issuer
        self._post = poster or make_poster()
        self._clock = clock

    def logout_token(self, client: Client, subject: str, sid: str | None) -> str:
        now = int(self._clock())
        claims = {"iss": self._issuer, "aud": client.client_id, "iat": now,
                  "exp": now + LOGOUT_TOKEN_TTL, "jti": secrets.token_urlsafe(16),
                  "sub": subject, "events": {LOGOUT_EVENT: {}}}
        if sid:
            claims["sid"] = sid
        return self._keys.sign(claims, alg=client.id_token_alg, typ="logout+jwt")

    def end_session(self, sid: str) -> int:
        """End one SSO session: revoke its online grants, queue back-channel logout.
        Returns the number of deliveries queued."""
        sess = self._store.by_sid(sid)
        if sess is None or not self._store.end(sid):
            return 0
        with self._sessions() as s:
            families = s.execute(select(grants.c.family, grants.c.scope).where(
                grants.c.sid == sid, grants.c.revoked_at.is_(None))).all()
        for row in families:  # offline_access grants outlive the session by design
            if "offline_access" not in row.scope.split():
                self._tokens.revoke_family(row.family)
        return self._queue(sess.subject, sid, self._store.clients(sid))

    def end_subject(self, subject: str) -> int:
        """End every session of a person and revoke all of their grants."""
        queued = 0
        for sid in self._store.active_for_subject(subject):
            queued += self.end_session(sid)
        self._tokens.revoke_subject(subject)
        return queued

    def _queue(self, subject: str, sid: str | None, client_ids: list[str]) -> int:
        rows = []
        now = int(self._clock())
        for cid in client_ids:
            client = self._clients.get(cid)
            if client is None or not client.backchannel_logout_uri:
                continue
            rows.append(dict(client_id=cid, uri=client.backchannel_logout_uri, subject=subject,
                             sid=sid, attempts=0, next_attempt=now, done=False,
                             created_at=now))
        if rows:
            with self._sessions.begin() as s:
                s.execute(insert(backchannel_deliveries), rows)
        return len(rows)

    def deliver_pending(self, limit: int = 50) -> int:
        """Try every due delivery once; return how many the apps acknowledged."""
        now = int(self._clock())
        with self._sessions() as s:
            due = s.execute(select(backchannel_deliveries).where(
                backchannel_deliveries.c.done.is_(False),
                backchannel_deliveries.c.next_attempt <= now,
                backchannel_deliveries.c.attempts < MAX_ATTEMPTS).limit(limit)).all()
        delivered = 0
        for row in due:
            with self._sessions.begin() as s:  # lease it, so one worker sends it
                leased = rowcount(s.execute(update(backchannel_deliveries).where(
                    backchannel_deliveries.c.id == row.id,
                    backchannel_deliveries.c.next_attempt == row.next_attempt)
                    .values(next_attempt=now + LEASE_SECONDS)))
            if not leased:
                continue
            client = self._clients.get(row.client_id)
            ok, error = False, "client removed"
            if client is not None:
                body = urllib.parse.urlencode(
                    {"logout_token": self.logout_token(client, row.subject, row.sid)}).encode()
                try:
                    status = self._post(row.uri, body)
                    ok, error = status in (200, 204), f"HTTP {status}"
                except (OSError, ValueError) as exc:
                    error = type(exc).__name__
            attempts = row.attempts + 1
            with self._sessions.begin() as s:
                s.execute(update(backchannel_deliveries).where(
                    backchannel_deliveries.c.id == row.id).values(
                    done=ok, attempts=attempts, last_error=None if ok else error,
                    next_attempt=now + min(600, 2 ** attempts)))
            if ok:
                delivered += 1
            else:
                log.warning("back-channel logout to %s failed (attempt %d): %s",
                            row.client_id, attempts, error)
        return delivered

    def deliver_soon(self) -> None:
        """Deliver in the background now; failures stay queued for a later pass."""
        threading.Thread(target=self._deliver_quietly, daemon=True).start()

    def _deliver_quietly(self) -> None:
        try:
            self.deliver_pending()
        except Exception:  # a background pass must never take a worker down
            log.exception("back-channel logout pass failed")

    def pending(self) -> int:
        with self._sessions() as s:
            return len(s.execute(select(backchannel_deliveries.c.id).where(
                backchannel_deliveries.c.done.is_(False))).all())
