"""Tokens: RFC 9068 JWT access tokens, OIDC Core ID tokens, opaque refresh tokens.

Access tokens are self-contained JWTs (``typ: at+jwt``, RFC 9068 section 2):
issuing one writes nothing, so a client-credentials grant touches no table. Whether
a token is still *active* (introspection, RFC 7662 section 2.2; ``/userinfo``) is
its signature and claims (``iss``, ``aud``, ``exp``, ``iat``, ``nbf``: RFC 9068
section 4, in ``idp.oidc.claims``), then one query, answering every revocation at
once from rows all workers and nodes share, so a revocation is seen at once
everywhere:

- its ``jti`` is not in ``oauth_revoked_access`` (RFC 7009: one access token
  revoked by itself; the row lives until the token would have expired, then the
  ``token-cleanup`` duty purges it);
- for a token of a person's grant, the grant family is not revoked (logout, a
  replayed code or rotated refresh token, the person suspended or gone: each is one
  UPDATE of ``oauth_grants.revoked_at``, which ends every access token of the family);
- its client still exists (removing an app ends its tokens; rotating its secret
  does not, as before: the secret authenticates the app, not its tokens).

The family travels inside the ``jti``: ``<family>.<random>`` for a person's grant,
``cc.<random>`` for client credentials (families are 32 hex digits, so ``cc`` is
never one). The jti rather than a claim of our own because it must be unique
anyway, it is signed, resource servers treat it as opaque (RFC 9068 section 2.2),
and a family id grants nothing outside the IdP. A jti of any other shape, such as a
token signed before migration 0013, is inactive.

Refresh tokens are opaque, stored as SHA-256 digests, and rotate on every use
(RFC 9700 section 4.14.2) in one write transaction that starts with the
compare-and-set (``UPDATE ... WHERE rotated_at IS NULL ... RETURNING``), so of two
racing uses exactly one wins; presenting a rotated one revokes its whole family. On
PostgreSQL, without a requested scope, that transaction is one autocommitted
statement on an unpinged, held connection, with a retry that cannot be taken for a
reuse (``_rotate_and_succeed``, ``pki.held_connection``). A *grant* (family) is
everything issued from one authorization code; it carries the claims snapshot
taken at login. A client-credentials request has no grant.

The queries on the hot paths are built once and run on a plain connection: building
a statement and an ORM session per request cost more than the query itself. The
revocation query runs as a ``HotRead`` (``idp.login.tables``): on SQLite, on the
thread's own sqlite3 connection, each time a fresh read of what is committed.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import secrets
import string
import time
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Engine,
    Select,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from idp.login.tables import HotRead
from idp.oidc.claims import check_access_token
from idp.oidc.clients import Client
from idp.oidc.driver import (
    CoreTransaction,
    DriverStatement,
    DriverTransaction,
    driver_dialect,
)
from idp.oidc.keys import InvalidToken, KeyStore
from idp.oidc.tables import grants, oauth_clients, revoked_access, rowcount, tokens
from pki.held_connection import HeldConnections, Statement

ACCESS_TTL = 600
ID_TOKEN_TTL = 600
REFRESH_TTL = 8 * 3600
OFFLINE_REFRESH_TTL = 30 * 86400
ACCESS, REFRESH = "access", "refresh"
MAX_TOKEN = 8192
CLIENT_CREDENTIALS = "cc"  # the jti prefix of a token with no grant family
_HEX = frozenset(string.hexdigits.lower())


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def half_hash(value: str) -> str:
    """``at_hash`` for ES256/RS256 (both SHA-256), OIDC Core 3.1.3.6."""
    d = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(d[:16]).rstrip(b"=").decode("ascii")


def new_jti(family: str | None) -> str:
    """``<family>.<random>``, or ``cc.<random>`` for a token without a grant."""
    return f"{family or CLIENT_CREDENTIALS}.{secrets.token_urlsafe(16)}"


def family_of_jti(jti: object) -> str | None:
    """The grant family a jti names; ``""`` for client credentials; None for any
    jti we did not make this way (such a token is inactive)."""
    if not isinstance(jti, str) or len(jti) > 128:
        return None
    prefix, dot, rest = jti.partition(".")
    if not dot or not rest:
        return None
    if prefix == CLIENT_CREDENTIALS:
        return ""
    if len(prefix) == 32 and set(prefix) <= _HEX:
        return prefix
    return None


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


def context_of(family: str, row: Any) -> AuthContext:
    """An ``AuthContext`` from a row carrying the ``oauth_grants`` columns."""
    return AuthContext(subject=row.subject, family=family, sid=row.sid,
                       auth_time=row.auth_time, acr=row.acr,
                       amr=tuple((row.amr or "").split()), claims=json.loads(row.claims))


@dataclass(frozen=True)
class TokenRecord:
    """An access or refresh token as introspection and revocation see it
    (authlib's ``TokenMixin``). Access tokens are described by their claims."""

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


@dataclass(frozen=True)
class ActiveAccess:
    """An access token that is active now: its claims, its record, and the person's
    grant (None for a client-credentials token: no person stands behind it)."""

    claims: dict[str, Any]
    record: TokenRecord
    context: AuthContext | None


class RefreshRefusal(enum.Enum):
    """Why a refresh grant was refused (the grant maps each to an OAuth error)."""

    UNKNOWN = "unknown"  # not ours, expired, revoked, another client's, grant ended
    REUSED = "reused"  # already rotated: the whole family is revoked now
    SCOPE = "scope"  # more scope than granted (RFC 6749 section 6): nothing changed


@dataclass(frozen=True)
class Rotation:
    """A refresh token used once: the old one's record, the grant, the new value."""

    record: TokenRecord
    context: AuthContext
    refresh_token: str
    scope: str  # what the new access token gets (the request's, else the grant's)


# -- statements built once ----------------------------------------------------------
GRANT_COLUMNS = (grants.c.subject, grants.c.sid, grants.c.claims, grants.c.auth_time,
                  grants.c.acr, grants.c.amr)
_JTI_REVOKED = exists().where(revoked_access.c.jti == bindparam("jti")).label("jti_revoked")
# One round trip: the client row (absent: removed), the jti's own revocation and, for a
# person's grant, the family (joined on the same client, so a family id cannot be
# borrowed by another app's token).
_CLIENT_TOKEN_STATUS = select(oauth_clients.c.client_id, _JTI_REVOKED).where(
    oauth_clients.c.client_id == bindparam("client_id"))
_GRANT_TOKEN_STATUS = (
    select(oauth_clients.c.client_id, _JTI_REVOKED, grants.c.family, grants.c.revoked_at,
           *GRANT_COLUMNS)
    .select_from(oauth_clients.outerjoin(grants, and_(
        grants.c.family == bindparam("family"),
        grants.c.client_id == oauth_clients.c.client_id)))
    .where(oauth_clients.c.client_id == bindparam("client_id")))
_ROTATE = (update(tokens).where(
    tokens.c.token_id == bindparam("b_token_id"), tokens.c.kind == REFRESH,
    tokens.c.client_id == bindparam("b_client_id"), tokens.c.rotated_at.is_(None),
    tokens.c.revoked_at.is_(None), tokens.c.expires_at > bindparam("b_now"))
    .values(rotated_at=bindparam("b_now"))
    .returning(tokens.c.family, tokens.c.scope, tokens.c.issued_at, tokens.c.expires_at))
_GRANT = select(grants.c.revoked_at, *GRANT_COLUMNS).where(
    grants.c.family == bindparam("family"))
# On PostgreSQL the compare-and-set reads the grant too (``UPDATE ... FROM``), so a
# rotation is one round trip fewer; only while the grant stands, so an ended grant
# leaves its token as it was, as the separate read's refusal does. SQLite's
# RETURNING may not name a joined table, and there the read costs no round trip.
_ROTATE_WITH_GRANT = (update(tokens).where(
    tokens.c.token_id == bindparam("b_token_id"), tokens.c.kind == REFRESH,
    tokens.c.client_id == bindparam("b_client_id"), tokens.c.rotated_at.is_(None),
    tokens.c.revoked_at.is_(None), tokens.c.expires_at > bindparam("b_now"),
    grants.c.family == tokens.c.family, grants.c.revoked_at.is_(None))
    .values(rotated_at=bindparam("b_now"))
    .returning(tokens.c.family, tokens.c.scope, tokens.c.issued_at, tokens.c.expires_at,
               grants.c.revoked_at, *GRANT_COLUMNS))
_REFRESH_COLUMNS = ["token_id", "kind", "family", "client_id", "scope", "issued_at",
                    "expires_at"]


def _rotate_and_succeed() -> tuple[Select[Any], Select[Any]]:
    """PostgreSQL's rotation in one statement, and its ``landed`` read
    (``pki.held_connection``), both returning ``_ROTATE_WITH_GRANT``'s columns.

    The statement is ``_ROTATE_WITH_GRANT`` as a data-modifying CTE that the
    successor's INSERT selects from: the successor is written exactly when the
    compare-and-set matched, in the same statement, so in the same transaction
    (autocommit). Its lifetime is ``_refresh_values``' rule, read from the scope
    in SQL. ``n_token_id`` is the successor's id, drawn before the statement; the
    ``landed`` read finds it, joined to the old token and its grant, only if an
    earlier run of the statement committed: a retry after a lost answer then gets
    the rotation it made, not a reuse."""
    rotated = _ROTATE_WITH_GRANT.cte("rotated")
    offline = literal("offline_access") == any_(
        func.regexp_split_to_array(rotated.c.scope, literal(r"\s+")))
    successor = insert(tokens).from_select(_REFRESH_COLUMNS, select(
        bindparam("n_token_id", type_=tokens.c.token_id.type), literal(REFRESH),
        rotated.c.family, bindparam("b_client_id", type_=tokens.c.client_id.type),
        rotated.c.scope, bindparam("b_now", type_=tokens.c.issued_at.type),
        bindparam("b_now", type_=tokens.c.expires_at.type)
        + case((offline, OFFLINE_REFRESH_TTL), else_=REFRESH_TTL)).select_from(rotated))
    statement = select(rotated).add_cte(successor.cte("successor"))
    old, new = tokens.alias("old"), tokens.alias("new")
    landed = (select(old.c.family, old.c.scope, old.c.issued_at, old.c.expires_at,
                     grants.c.revoked_at, *GRANT_COLUMNS)
              .select_from(new.join(old, old.c.family == new.c.family)
                           .join(grants, grants.c.family == old.c.family))
              .where(new.c.token_id == bindparam("n_token_id"),
                     old.c.token_id == bindparam("b_token_id"),
                     old.c.client_id == bindparam("b_client_id"),
                     old.c.rotated_at == bindparam("b_now")))
    return statement, landed


_ROTATE_AND_SUCCEED, _SUCCEEDED = _rotate_and_succeed()
_RotatedRow = namedtuple("_RotatedRow", _ROTATE_AND_SUCCEED.selected_columns.keys())  # type: ignore[misc]
_INSERT_REFRESH = insert(tokens)
_OLD_TOKEN = select(tokens.c.family, tokens.c.kind, tokens.c.rotated_at).where(
    tokens.c.token_id == bindparam("token_id"))
_REVOKE_GRANT = update(grants).where(grants.c.family == bindparam("b_family"),
                                     grants.c.revoked_at.is_(None)).values(
    revoked_at=bindparam("b_now"))
_REVOKE_TOKENS = update(tokens).where(tokens.c.family == bindparam("b_family"),
                                      tokens.c.revoked_at.is_(None)).values(
    revoked_at=bindparam("b_now"))


@dataclass(frozen=True)
class _RotationSql:
    """The statements of a rotation: Core ones for ``CoreTransaction``, or the same
    compiled for the driver's cursor (``DriverTransaction``). ``grant`` is None where
    ``rotate`` returns the grant's columns itself."""

    rotate: Any
    grant: Any | None
    insert: Any
    old: Any
    revoke_grant: Any
    revoke_tokens: Any


_CORE_ROTATION = _RotationSql(_ROTATE, _GRANT, _INSERT_REFRESH, _OLD_TOKEN, _REVOKE_GRANT,
                              _REVOKE_TOKENS)


def _driver_rotation(engine: Engine) -> _RotationSql:
    dialect = driver_dialect(engine)
    on_sqlite = engine.dialect.name == "sqlite"
    return _RotationSql(DriverStatement(_ROTATE if on_sqlite else _ROTATE_WITH_GRANT, dialect),
                        DriverStatement(_GRANT, dialect) if on_sqlite else None,
                        DriverStatement(_INSERT_REFRESH, dialect, _REFRESH_COLUMNS),
                        DriverStatement(_OLD_TOKEN, dialect),
                        DriverStatement(_REVOKE_GRANT, dialect),
                        DriverStatement(_REVOKE_TOKENS, dialect))


def _nobody_listens(grant_type: str) -> None:
    pass


class TokenService:
    """Issues, checks and revokes tokens. ``on_issued`` is told the grant type of
    every access token signed (the composition root counts them for ``/metrics``)."""

    def __init__(self, sessions: sessionmaker[Session], keys: KeyStore, issuer: str,
                 clock: Callable[[], float] = time.time,
                 on_issued: Callable[[str], None] = _nobody_listens) -> None:
        self._sessions = sessions
        self._on_issued = on_issued
        self._engine: Engine = sessions.kw["bind"]
        self._keys = keys
        self.issuer = issuer
        self._clock = clock
        self._client_status = HotRead(self._engine, _CLIENT_TOKEN_STATUS)
        self._grant_status = HotRead(self._engine, _GRANT_TOKEN_STATUS)
        # The rotation runs on the driver's cursor (idp.oidc.driver), but for SQLite
        # in memory, whose one connection the pool shares.
        database = self._engine.url.database
        in_memory = self._engine.dialect.name == "sqlite" and database in (None, "",
                                                                          ":memory:")
        self._rotation = None if in_memory else _driver_rotation(self._engine)
        # On PostgreSQL the common rotation is one autocommitted statement on held,
        # unpinged connections (pki.held_connection), one per thread refreshing at once.
        self._one_statement: tuple[HeldConnections, Statement, Statement] | None = None
        self._old_token: HotRead | None = None
        dialect = self._engine.dialect
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            self._one_statement = (HeldConnections.of(self._engine),
                                   Statement(_ROTATE_AND_SUCCEED, self._engine),
                                   Statement(_SUCCEEDED, self._engine))
            self._old_token = HotRead(self._engine, _OLD_TOKEN)

    def _transaction(self) -> DriverTransaction | CoreTransaction:
        if self._rotation is not None:
            return DriverTransaction(self._engine)
        return CoreTransaction(self._engine)

    def now(self) -> int:
        return int(self._clock())

    # -- grants -----------------------------------------------------------------
    def new_grant(self, s: Session, *, client_id: str, subject: str, scope: str,
                  sid: str | None = None, claims: Mapping[str, Any] | None = None,
                  auth_time: int | None = None, acr: str | None = None,
                  amr: tuple[str, ...] = ()) -> str:
        family = secrets.token_hex(16)
        s.execute(insert(grants).values(
            family=family, client_id=client_id, subject=subject, scope=scope, sid=sid,
            claims=json.dumps(dict(claims or {}), ensure_ascii=False), auth_time=auth_time,
            acr=acr, amr=" ".join(amr), created_at=self.now()))
        return family

    def revoke_family(self, family: str) -> None:
        with self._engine.begin() as conn:
            self._revoke_family(conn, family, self.now())

    @staticmethod
    def _revoke_family(conn: Any, family: str, now: int) -> None:
        # The grant row ends its access tokens; its refresh tokens are marked too.
        values = {"b_family": family, "b_now": now}
        conn.execute(_REVOKE_GRANT, values)
        conn.execute(_REVOKE_TOKENS, values)

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
        """Sign an access token; mint and record a refresh token if asked."""
        out = self.access_response(client, ctx.subject, ctx, scope, grant_type)
        if include_refresh_token and grant_type != "client_credentials":
            refresh, row = self._refresh_row(client.client_id, ctx.family, scope, self.now())
            with self._engine.begin() as conn:
                conn.execute(insert(tokens), [row])
            out["refresh_token"] = refresh
        return out

    def issue_client_credentials(self, client: Client, scope: str) -> dict[str, Any]:
        """RFC 6749 section 4.4: the app acts for itself. Nothing is written: the
        token is checked against its client row and the revoked-jti table."""
        return self.access_response(client, client.client_id, None, scope,
                                    "client_credentials")

    def access_response(self, client: Client, subject: str, ctx: AuthContext | None,
                        scope: str, grant_type: str) -> dict[str, Any]:
        """A signed access token (RFC 9068) in a token response (RFC 6749 section 5.1)."""
        now = self.now()
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject, "aud": client.client_id,
            "client_id": client.client_id, "iat": now, "exp": now + ACCESS_TTL,
            "jti": new_jti(ctx.family if ctx is not None else None), "scope": scope,
        }
        if ctx is not None:
            if ctx.auth_time is not None:
                claims["auth_time"] = ctx.auth_time
            if ctx.acr:
                claims["acr"] = ctx.acr
            if ctx.sid:
                claims["sid"] = ctx.sid
        access = self._keys.sign(claims, typ="at+jwt")
        self._on_issued(grant_type)
        return {"token_type": "Bearer", "access_token": access, "expires_in": ACCESS_TTL,
                "scope": scope}

    @staticmethod
    def _refresh_row(client_id: str, family: str, scope: str,
                     now: int) -> tuple[str, dict[str, Any]]:
        refresh = secrets.token_urlsafe(32)
        return refresh, TokenService._refresh_values(refresh, client_id, family, scope, now)

    @staticmethod
    def _refresh_values(refresh: str, client_id: str, family: str, scope: str,
                        now: int) -> dict[str, Any]:
        ttl = OFFLINE_REFRESH_TTL if "offline_access" in scope.split() else REFRESH_TTL
        return dict(token_id=digest(refresh), kind=REFRESH, family=family,
                    client_id=client_id, scope=scope, issued_at=now, expires_at=now + ttl)

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

    # -- refresh ------------------------------------------------------------------
    def rotate_refresh(self, value: str, client_id: str,
                       requested_scope: str | None) -> Rotation | RefreshRefusal:
        """Use a refresh token once (RFC 6749 section 6, RFC 9700 section 4.14.2):
        mark it rotated, read its grant and record its successor, in one write
        transaction whose first statement is the compare-and-set, so the write lock
        is taken first (SQLite cannot upgrade a read transaction that another writer
        overtook) and two racing uses cannot both win. A rotated token presented
        again revokes the family. The successor keeps the original scope (section 6:
        "identical"); a narrower ``requested_scope`` applies to the access token.

        On PostgreSQL, when no scope is requested (the common case), the transaction
        is one autocommitted statement (``_rotate_and_succeed``); a narrower scope is
        checked after the compare-and-set, in a transaction that can be rolled back."""
        if not value or len(value) > MAX_TOKEN:
            return RefreshRefusal.UNKNOWN
        now = self.now()
        token_id = digest(value)
        refresh = secrets.token_urlsafe(32)  # drawn before the write lock is taken
        if self._one_statement is not None and not requested_scope:
            return self._rotate_in_one_statement(token_id, refresh, client_id, now)
        sql = self._rotation or _CORE_ROTATION
        with self._transaction() as txn:
            row = txn.first(sql.rotate, {"b_token_id": token_id, "b_client_id": client_id,
                                         "b_now": now})
            if row is None:
                old = txn.first(sql.old, {"token_id": token_id})
                txn.rollback()
                if old is None or old.kind != REFRESH or old.rotated_at is None:
                    return RefreshRefusal.UNKNOWN
                reused = old.family
            else:
                reused = None
                if requested_scope and not set(requested_scope.split()) <= set(
                        row.scope.split()):
                    txn.rollback()
                    return RefreshRefusal.SCOPE
                grant = row if sql.grant is None else txn.first(sql.grant,
                                                                {"family": row.family})
                if grant is None or grant.revoked_at is not None:
                    txn.rollback()
                    return RefreshRefusal.UNKNOWN
                txn.run(sql.insert, self._refresh_values(refresh, client_id, row.family,
                                                         row.scope, now))
                txn.commit()
        if reused is not None:
            return self._reused(sql, reused, now)
        return self._rotation_of(token_id, client_id, row, grant, refresh, now,
                                 requested_scope)

    def _rotate_in_one_statement(self, token_id: str, refresh: str, client_id: str,
                                 now: int) -> Rotation | RefreshRefusal:
        """The rotation as one statement on a held connection. A row: this rotation
        committed (written now, or by a run whose answer a cut connection lost,
        which ``landed`` finds). No row: nothing was written, and the token's own
        row says why (unknown, or used: then the family is revoked)."""
        assert self._one_statement is not None and self._old_token is not None
        held, statement, landed = self._one_statement
        values = {"b_token_id": token_id, "b_client_id": client_id, "b_now": now,
                  "n_token_id": digest(refresh)}
        found = held.first(statement, values, landed=landed)
        if found is None:
            old = next(iter(self._old_token.all({"token_id": token_id})), None)
            if old is None or old.kind != REFRESH or old.rotated_at is None:
                return RefreshRefusal.UNKNOWN
            return self._reused(self._rotation or _CORE_ROTATION, old.family, now)
        row: Any = _RotatedRow(*found)
        if row.revoked_at is not None:
            # Only ``landed`` can see this: the grant ended after the rotation
            # committed, and its successor with it.
            return RefreshRefusal.UNKNOWN
        return self._rotation_of(token_id, client_id, row, row, refresh, now, None)

    def _reused(self, sql: _RotationSql, family: str, now: int) -> RefreshRefusal:
        # Reuse (RFC 9700 section 4.14.2): the family is revoked in a transaction of
        # its own. On PostgreSQL the failed compare-and-set of a transaction kept the
        # old token's row lock to its end; two racing losers revoking inside theirs
        # each waited for the other (one for the grant row, the other for the token
        # row): a deadlock, and a 503 where a 400 was due.
        values = {"b_family": family, "b_now": now}
        with self._transaction() as txn:
            txn.run(sql.revoke_grant, values)
            txn.run(sql.revoke_tokens, values)
            txn.commit()
        return RefreshRefusal.REUSED

    @staticmethod
    def _rotation_of(token_id: str, client_id: str, row: Any, grant: Any, refresh: str,
                     now: int, requested_scope: str | None) -> Rotation:
        record = TokenRecord(token_id, REFRESH, row.family, client_id, row.scope,
                             row.issued_at, row.expires_at, False, True, grant.subject, now)
        return Rotation(record, context_of(row.family, grant), refresh,
                        requested_scope or row.scope)

    # -- looking up ---------------------------------------------------------------
    def _refresh_record(self, value: str) -> TokenRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(tokens, grants.c.subject).join(
                grants, grants.c.family == tokens.c.family).where(
                tokens.c.token_id == digest(value), tokens.c.kind == REFRESH)).first()
        if row is None:
            return None
        return TokenRecord(row.token_id, row.kind, row.family, row.client_id, row.scope,
                           row.issued_at, row.expires_at, row.revoked_at is not None,
                           row.rotated_at is not None, row.subject, self.now())

    def _access_claims(self, value: str) -> tuple[dict[str, Any], TokenRecord] | None:
        """A JWT access token's claims and record, checked by signature (``idp.oidc.jws``),
        claims (``idp.oidc.claims``: ``iss``, ``aud``, ``exp``, ``iat``, ``nbf``, the
        types) and the shape of its ``jti``; None if any fails. ``revoked`` is not
        known yet: False. Introspection, ``/userinfo`` and revocation all come here."""
        now = self.now()
        try:
            _, claims = self._keys.verify(value, typ="at+jwt")
            checked = check_access_token(claims, issuer=self.issuer, now=now,
                                         lifetime=ACCESS_TTL)
        except InvalidToken:
            return None
        family = family_of_jti(checked.jti)
        if family is None or (family == "" and checked.sub != checked.client_id):
            return None
        return claims, TokenRecord(checked.jti, ACCESS, family, checked.client_id,
                                   checked.scope, checked.iat, checked.exp, False, False,
                                   checked.sub, now)

    def _access_status(self, claims: dict[str, Any], rec: TokenRecord,
                       ) -> tuple[TokenRecord, AuthContext | None]:
        """The one revocation query (see the module docstring)."""
        if rec.family:
            rows = self._grant_status.all({"jti": rec.token_id, "client_id": rec.client_id,
                                           "family": rec.family})
        else:
            rows = self._client_status.all({"jti": rec.token_id, "client_id": rec.client_id})
        row = rows[0] if rows else None  # at most one: client_id is the primary key
        ctx = None
        revoked = row is None or bool(row.jti_revoked)
        if rec.family and not revoked:
            assert row is not None
            revoked = (row.family is None or row.revoked_at is not None
                       or row.subject != rec.subject)
            if not revoked:
                ctx = context_of(rec.family, row)
        if revoked:
            rec = TokenRecord(rec.token_id, rec.kind, rec.family, rec.client_id, rec.scope,
                              rec.issued_at, rec.expires_at, True, False, rec.subject,
                              rec.now)
        return rec, ctx

    def verify_access(self, value: str) -> ActiveAccess | None:
        """A JWT access token that verifies, is ours, unexpired and not revoked."""
        found = self._access_claims(value)
        if found is None or found[1].is_expired():
            return None
        claims, rec = found
        rec, ctx = self._access_status(claims, rec)
        if rec.is_revoked():
            return None
        return ActiveAccess(claims, rec, ctx)

    def _is_access(self, value: str, hint: str | None) -> bool:
        return value.count(".") == 2 and hint != REFRESH + "_token"

    def find_any(self, value: str, hint: str | None = None) -> TokenRecord | None:
        """For introspection: an access JWT (verified, with its revocation status;
        an expired one needs no query) or a refresh token."""
        if not value or len(value) > MAX_TOKEN:
            return None
        if self._is_access(value, hint):
            found = self._access_claims(value)
            if found is None:
                return None
            claims, rec = found
            return rec if rec.is_expired() else self._access_status(claims, rec)[0]
        return self._refresh_record(value)

    def find_to_revoke(self, value: str, hint: str | None = None) -> TokenRecord | None:
        """For revocation: the same, and an access token only while it is active. The
        revocation is recorded by ``jti``, so a token that verifies but is not active
        (one whose ``sub`` is not its grant's person, say) must not be recorded: the
        row would end the genuine token of the same ``jti``."""
        if not value or len(value) > MAX_TOKEN:
            return None
        if self._is_access(value, hint):
            found = self._access_claims(value)
            if found is None:
                return None
            rec = self._access_status(*found)[0]
            return None if rec.is_revoked() else rec
        return self._refresh_record(value)

    def revoke(self, rec: TokenRecord) -> None:
        """RFC 7009 section 2.1: revoking a refresh token also ends the access
        tokens of its grant; revoking an access token ends just that token."""
        if rec.kind == REFRESH:
            self.revoke_family(rec.family)
            return
        if rec.is_expired():
            return  # inactive anyway; nothing to keep
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(revoked_access).values(jti=rec.token_id,
                                                           expires_at=rec.expires_at))
        except IntegrityError:
            pass  # revoked twice: the first row stands

    def purge_expired(self) -> int:
        """Forget revoked access tokens that have expired (the token-cleanup duty):
        their signature check alone refuses them now."""
        with self._engine.begin() as conn:
            result = conn.execute(delete(revoked_access).where(
                revoked_access.c.expires_at <= self.now()))
        return rowcount(result)
