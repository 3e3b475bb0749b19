"""Tokens: RFC 9068 JWT access tokens, OIDC Core ID tokens, opaque refresh tokens.

Access tokens are JWTs (``typ: at+jwt``, RFC 9068 section 2) whose ``jti`` is
recorded, so introspection (RFC 7662) and revocation (RFC 7009) can answer for
them. Refresh tokens are opaque, stored as SHA-256 digests, and rotate on every
use (RFC 9700 section 4.14.2); presenting a rotated one revokes its whole grant
family. A *grant* (family) is everything issued from one authorization code or
one client-credentials request; it carries the claims snapshot taken at login.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.oidc.clients import Client
from idp.oidc.keys import InvalidToken, KeyStore
from idp.oidc.tables import grants, rowcount, tokens

ACCESS_TTL = 600
ID_TOKEN_TTL = 600
REFRESH_TTL = 8 * 3600
OFFLINE_REFRESH_TTL = 30 * 86400
ACCESS, REFRESH = "access", "refresh"
MAX_TOKEN = 8192


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def half_hash(value: str) -> str:
    """``at_hash`` for ES256/RS256 (both SHA-256), OIDC Core 3.1.3.6."""
    d = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(d[:16]).rstrip(b"=").decode("ascii")


def claims_for_scope(snapshot: Mapping[str, Any], scope: str) -> dict[str, Any]:
    """The identity claims a scope releases (OIDC Core 5.4, plus ours)."""
    scopes = set(scope.split())
    out: dict[str, Any] = {}
    if "profile" in scopes:
        for name in ("name", "preferred_username", "title"):
            if snapshot.get(name):
                out[name] = snapshot[name]
    if "email" in scopes and snapshot.get("email"):
        out["email"] = snapshot["email"]
        out["email_verified"] = True  # the directory is the authority for it
    if "department" in scopes and snapshot.get("department"):
        out["department"] = snapshot["department"]
    if "groups" in scopes:
        out["groups"] = list(snapshot.get("groups", []))
    return out


@dataclass(frozen=True)
class AuthContext:
    """The resource owner as authlib sees it: who, how, and the grant family."""

    subject: str
    family: str
    sid: str | None = None
    auth_time: int | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)

    def get_user_id(self) -> str:
        return self.subject


@dataclass(frozen=True)
class TokenRecord:
    """A recorded access or refresh token (authlib's ``TokenMixin``)."""

    token_id: str
    kind: str
    family: str
    client_id: str
    scope: str
    issued_at: int
    expires_at: int
    revoked: bool
    rotated: bool
    subject: str
    now: int

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_at - self.issued_at

    def is_expired(self) -> bool:
        return self.expires_at <= self.now

    def is_revoked(self) -> bool:
        return self.revoked or self.rotated


class TokenService:
    def __init__(self, sessions: sessionmaker[Session], keys: KeyStore, issuer: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._sessions = sessions
        self._keys = keys
        self.issuer = issuer
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    # -- grants -----------------------------------------------------------------
    def new_grant(self, s: Session, *, client_id: str, subject: str, scope: str,
                  sid: str | None = None, claims: Mapping[str, Any] | None = None,
                  auth_time: int | None = None, acr: str | None = None,
                  amr: tuple[str, ...] = ()) -> str:
        return self._insert_grant(s, secrets.token_hex(16), client_id=client_id,
                                  subject=subject, scope=scope, sid=sid, claims=claims,
                                  auth_time=auth_time, acr=acr, amr=amr)

    def _insert_grant(self, s: Session, family: str, *, client_id: str, subject: str,
                      scope: str, sid: str | None = None,
                      claims: Mapping[str, Any] | None = None, auth_time: int | None = None,
                      acr: str | None = None, amr: tuple[str, ...] = ()) -> str:
        s.execute(insert(grants).values(
            family=family, client_id=client_id, subject=subject, scope=scope, sid=sid,
            claims=json.dumps(dict(claims or {}), ensure_ascii=False), auth_time=auth_time,
            acr=acr, amr=" ".join(amr), created_at=self.now()))
        return family

    def context(self, family: str) -> AuthContext | None:
        with self._sessions() as s:
            row = s.execute(select(grants).where(grants.c.family == family)).first()
        if row is None or row.revoked_at is not None:
            return None
        return AuthContext(subject=row.subject, family=family, sid=row.sid,
                           auth_time=row.auth_time, acr=row.acr,
                           amr=tuple((row.amr or "").split()), claims=json.loads(row.claims))

    def revoke_family(self, family: str) -> None:
        now = self.now()
        with self._sessions.begin() as s:
            s.execute(update(grants).where(grants.c.family == family, grants.c.revoked_at.is_(None))
                      .values(revoked_at=now))
            s.execute(update(tokens).where(tokens.c.family == family,
                                           tokens.c.revoked_at.is_(None)).values(revoked_at=now))

    def revoke_subject(self, subject: str) -> int:
        """Revoke every grant of ``subject`` (a person who was suspended or left)."""
        with self._sessions() as s:
            families = [r.family for r in s.execute(select(grants.c.family).where(
                grants.c.subject == subject, grants.c.revoked_at.is_(None))).all()]
        for family in families:
            self.revoke_family(family)
        return len(families)

    # -- issuing ----------------------------------------------------------------
    def issue(self, *, client: Client, ctx: AuthContext, scope: str, grant_type: str,
              include_refresh_token: bool) -> dict[str, Any]:
        """Sign an access token, mint a refresh token if asked, record both."""
        out, rows = self._mint(client, ctx, scope, grant_type, include_refresh_token)
        with self._sessions.begin() as s:  # signed before the write lock is taken
            s.execute(insert(tokens), rows)
        return out

    def issue_client_credentials(self, client: Client, scope: str) -> dict[str, Any]:
        """RFC 6749 section 4.4: the app acts for itself; its grant and token are one write."""
        ctx = AuthContext(subject=client.client_id, family=secrets.token_hex(16))
        # Sign first, then write: the database's write lock (SQLite's is one per
        # file) is held for the two inserts only, not for the signature too.
        out, rows = self._mint(client, ctx, scope, "client_credentials", False)
        with self._sessions.begin() as s:
            self._insert_grant(s, ctx.family, client_id=client.client_id,
                               subject=client.client_id, scope=scope)
            s.execute(insert(tokens), rows)
        return out

    def _mint(self, client: Client, ctx: AuthContext, scope: str, grant_type: str,
              include_refresh_token: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The signed tokens and the rows that record them (written by the caller)."""
        now = self.now()
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": ctx.subject, "aud": client.client_id,
            "client_id": client.client_id, "iat": now, "exp": now + ACCESS_TTL, "jti": jti,
            "scope": scope,
        }
        if ctx.auth_time is not None:
            claims["auth_time"] = ctx.auth_time
        if ctx.acr:
            claims["acr"] = ctx.acr
        if ctx.sid:
            claims["sid"] = ctx.sid
        access = self._keys.sign(claims, typ="at+jwt")
        out: dict[str, Any] = {"token_type": "Bearer", "access_token": access,
                               "expires_in": ACCESS_TTL, "scope": scope}
        rows = [dict(token_id=jti, kind=ACCESS, family=ctx.family, client_id=client.client_id,
                     scope=scope, issued_at=now, expires_at=now + ACCESS_TTL)]
        if include_refresh_token and grant_type != "client_credentials":
            refresh = secrets.token_urlsafe(32)
            ttl = OFFLINE_REFRESH_TTL if "offline_access" in scope.split() else REFRESH_TTL
            rows.append(dict(token_id=digest(refresh), kind=REFRESH, family=ctx.family,
                             client_id=client.client_id, scope=scope, issued_at=now,
                             expires_at=now + ttl))
            out["refresh_token"] = refresh
        return out, rows

    def id_token(self, *, client: Client, ctx: AuthContext, scope: str, nonce: str | None,
                 access_token: str | None) -> str:
        now = self.now()
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": ctx.subject, "aud": client.client_id,
            "azp": client.client_id, "iat": now, "exp": now + ID_TOKEN_TTL,
        }
        for name, value in (("auth_time", ctx.auth_time), ("acr", ctx.acr),
                            ("sid", ctx.sid), ("nonce", nonce)):
            if value is not None:
                claims[name] = value
        if ctx.amr:
            claims["amr"] = list(ctx.amr)
        if access_token:
            claims["at_hash"] = half_hash(access_token)
        claims.update(claims_for_scope(ctx.claims, scope))
        return self._keys.sign(claims, alg=client.id_token_alg)

    # -- looking up ---------------------------------------------------------------
    def _record(self, s: Session, token_id: str) -> TokenRecord | None:
        row = s.execute(select(tokens, grants.c.subject).join(
            grants, grants.c.family == tokens.c.family).where(tokens.c.token_id == token_id)
        ).first()
        if row is None:
            return None
        return TokenRecord(row.token_id, row.kind, row.family, row.client_id, row.scope,
                           row.issued_at, row.expires_at, row.revoked_at is not None,
                           row.rotated_at is not None, row.subject, self.now())

    def find_refresh(self, value: str) -> TokenRecord | None:
        if not value or len(value) > MAX_TOKEN:
            return None
        with self._sessions() as s:
            rec = self._record(s, digest(value))
        return rec if rec is not None and rec.kind == REFRESH else None

    def consume_refresh(self, rec: TokenRecord) -> bool:
        """Mark a refresh token used, atomically. False means it had already been
        used (or revoked): the caller treats that as reuse and revokes the family."""
        with self._sessions.begin() as s:
            changed = rowcount(s.execute(update(tokens).where(
                tokens.c.token_id == rec.token_id, tokens.c.rotated_at.is_(None),
                tokens.c.revoked_at.is_(None)).values(rotated_at=self.now())))
        return bool(changed)

    def verify_access(self, value: str) -> tuple[dict[str, Any], TokenRecord] | None:
        """A JWT access token that verifies, is recorded, unexpired and not revoked."""
        try:
            _, claims = self._keys.verify(value, typ="at+jwt")
        except InvalidToken:
            return None
        jti = claims.get("jti")
        if not isinstance(jti, str) or claims.get("iss") != self.issuer:
            return None
        with self._sessions() as s:
            rec = self._record(s, jti)
        if rec is None or rec.kind != ACCESS or rec.is_expired() or rec.is_revoked():
            return None
        return claims, rec

    def find_any(self, value: str, hint: str | None = None) -> TokenRecord | None:
        """For introspection and revocation: an access JWT (verified) or a refresh token."""
        if not value or len(value) > MAX_TOKEN:
            return None
        if value.count(".") == 2 and hint != REFRESH + "_token":
            try:
                _, claims = self._keys.verify(value, typ="at+jwt")
            except InvalidToken:
                return None
            jti = claims.get("jti")
            if not isinstance(jti, str):
                return None
            with self._sessions() as s:
                return self._record(s, jti)
        return self.find_refresh(value)

    def revoke(self, rec: TokenRecord) -> None:
        """RFC 7009 section 2.1: revoking a refresh token also ends the access
        tokens of its grant; revoking an access token ends just that token."""
        if rec.kind == REFRESH:
            self.revoke_family(rec.family)
            return
        with self._sessions.begin() as s:
            s.execute(update(tokens).where(tokens.c.token_id == rec.token_id,
                                           tokens.c.revoked_at.is_(None))
                      .values(revoked_at=self.now()))

    def family_active(self, family: str) -> bool:
        with self._sessions() as s:
            row = s.execute(select(grants.c.revoked_at).where(grants.c.family == family)).first()
        return row is not None and row.revoked_at is None

    def active_tokens(self, family: str) -> int:
        now = self.now()
        with self._sessions() as s:
            return len(s.execute(select(tokens.c.token_id).where(
                tokens.c.family == family, tokens.c.revoked_at.is_(None),
                or_(tokens.c.rotated_at.is_(None), tokens.c.kind == ACCESS),
                tokens.c.expires_at > now)).all())
