"""Department applications (OAuth 2.0 clients): registration values, redirect URI
rules and client secrets.

Redirect URIs follow RFC 9700 section 2.1 and RFC 6749 section 3.1.2: compared by
exact string match only (no wildcards, no normalisation), absolute, without a
fragment, ``https`` except for loopback ``http`` (RFC 8252 section 7.3), and never
``javascript:`` or ``data:``. Client secrets are 256-bit random values shown once
and stored as HMAC-SHA256 under the ``client-secret-key`` secret, compared in
constant time. The SQL repository at the bottom is the storage edge.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.errors import InvalidClientMetadata, UnknownClient
from idp.oidc.tables import oauth_clients, rowcount

SCOPES = ("openid", "profile", "email", "department", "groups", "offline_access")
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")
MAX_URI = 2000


class AuthMethod(enum.StrEnum):
    BASIC = "client_secret_basic"
    POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"
    NONE = "none"


class InfoClass(enum.StrEnum):
    PUBLIC = "public"  # 社会公开类
    SHARED = "shared"  # 部门共享类
    RESTRICTED = "restricted"  # 依法专用类


def validate_redirect_uri(uri: str, field_name: str = "redirect_uri") -> str:
    """Return ``uri`` if it may be registered, else raise ``InvalidClientMetadata``."""
    if not uri or len(uri) > MAX_URI or any(c.isspace() or ord(c) < 0x21 for c in uri):
        raise InvalidClientMetadata(field_name, "empty, too long or contains blanks")
    if "*" in uri:
        raise InvalidClientMetadata(field_name, "wildcards are not allowed")
    try:
        parts = urlsplit(uri)
    except ValueError:  # an unbalanced "[" in the host: "Invalid IPv6 URL"
        raise InvalidClientMetadata(field_name, "not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme in ("javascript", "data", "vbscript", "file"):
        raise InvalidClientMetadata(field_name, f"scheme {scheme!r} is not allowed")
    if "#" in uri:  # RFC 6749 section 3.1.2: MUST NOT include a fragment
        raise InvalidClientMetadata(field_name, "a fragment is not allowed")
    if not parts.netloc or "@" in parts.netloc or "\\" in uri:
        raise InvalidClientMetadata(field_name, "must be absolute, without user info")
    host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    if scheme == "https":
        return uri
    if scheme == "http" and host in LOOPBACK_HOSTS:
        return uri
    raise InvalidClientMetadata(field_name, "must use https (http only on loopback)")


def redirect_uri_matches(registered: Iterable[str], presented: str) -> bool:
    """Exact, case-sensitive string comparison (RFC 9700 section 4.1.3)."""
    return any(hmac.compare_digest(r.encode(), presented.encode()) for r in registered)


def hash_secret(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Client:
    """One registered department app. Implements authlib's ``ClientMixin``."""

    client_id: str
    name: str
    public: bool
    auth_method: AuthMethod
    redirect_uris: tuple[str, ...]
    level: int = 2
    info_class: InfoClass = InfoClass.PUBLIC
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    allowed_departments: tuple[str, ...] = ()
    allowed_group: str | None = None
    first_party: bool = False
    id_token_alg: str = "ES256"
    jwks: str | None = None
    secret_hash: str | None = field(default=None, repr=False)
    secret_key: bytes = field(default=b"", repr=False, compare=False)

    # -- authlib ClientMixin --------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core 3.1.2.1 makes redirect_uri required; no default is offered.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        # unknown scopes were refused already (invalid_scope); keep the request's order
        return " ".join(s for s in scope.split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_matches(self.redirect_uris, redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.public or not self.secret_hash:
            return False
        return hmac.compare_digest(hash_secret(self.secret_key, client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            # public clients authenticate nowhere but identify themselves at /token
            return method == "none" and endpoint == "token"
        if self.auth_method is AuthMethod.PRIVATE_KEY_JWT:
            return method == "private_key_jwt"
        # a confidential client may use either secret method
        return method in (AuthMethod.BASIC, AuthMethod.POST)

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type in ("authorization_code", "refresh_token"):
            return True
        return grant_type == "client_credentials" and not self.public

    # -- helpers ----------------------------------------------------------------
    def to_public_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id, "name": self.name, "public": self.public,
            "token_endpoint_auth_method": self.auth_method.value,
            "redirect_uris": list(self.redirect_uris),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "backchannel_logout_uri": self.backchannel_logout_uri, "level": self.level,
            "info_class": self.info_class.value,
            "allowed_departments": list(self.allowed_departments),
            "allowed_group": self.allowed_group, "first_party": self.first_party,
            "id_token_signed_response_alg": self.id_token_alg,
        }


def build_client(*, name: str, redirect_uris: Sequence[str], level: int, public: bool = False,
                 first_party: bool = False, info_class: str = "public",
                 post_logout_redirect_uris: Sequence[str] = (),
                 backchannel_logout_uri: str | None = None,
                 allowed_departments: Sequence[str] = (), allowed_group: str | None = None,
                 auth_method: str | None = None, id_token_alg: str = "ES256",
                 jwks: str | None = None) -> Client:
    """Validate registration values and return a new ``Client`` (without a secret)."""
    if not name.strip() or len(name) > 256:
        raise InvalidClientMetadata("name", "required, at most 256 characters")
    if not redirect_uris:
        raise InvalidClientMetadata("redirect_uri", "at least one is required")
    uris = tuple(validate_redirect_uri(u) for u in redirect_uris)
    post = tuple(validate_redirect_uri(u, "post_logout_redirect_uri")
                 for u in post_logout_redirect_uris)
    if backchannel_logout_uri is not None:
        validate_redirect_uri(backchannel_logout_uri, "backchannel_logout_uri")
    if level not in (1, 2, 3, 4):
        raise InvalidClientMetadata("level", "must be 1, 2, 3 or 4")
    try:
        klass = InfoClass(info_class)
    except ValueError:
        raise InvalidClientMetadata("info_class", "public, shared or restricted") from None
    if klass is InfoClass.RESTRICTED and (level < 3 or not allowed_group):
        raise InvalidClientMetadata("info_class", "restricted apps need level >= 3 and a group")
    if id_token_alg not in ("ES256", "RS256"):
        raise InvalidClientMetadata("id_token_signed_response_alg", "ES256 or RS256")
    if public:
        method = AuthMethod.NONE
    else:
        try:
            method = AuthMethod(auth_method or AuthMethod.BASIC)
        except ValueError:
            raise InvalidClientMetadata("token_endpoint_auth_method", "unknown") from None
        if method is AuthMethod.NONE:
            raise InvalidClientMetadata("token_endpoint_auth_method", "none is for public")
        if method is AuthMethod.PRIVATE_KEY_JWT:
            _check_jwks(jwks)
    return Client(
        client_id="gt-" + secrets.token_hex(12), name=name.strip(), public=public,
        auth_method=method, redirect_uris=uris, level=level, info_class=klass,
        post_logout_redirect_uris=post, backchannel_logout_uri=backchannel_logout_uri,
        allowed_departments=tuple(allowed_departments), allowed_group=allowed_group,
        first_party=first_party, id_token_alg=id_token_alg, jwks=jwks,
    )


def _check_jwks(jwks: str | None) -> None:
    """A public JWK Set (RFC 7517 section 5) with signing keys only."""
    try:
        data = json.loads(jwks or "")
    except ValueError:
        raise InvalidClientMetadata("jwks", "private_key_jwt needs the app's JWKS") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidClientMetadata("jwks", "must be a JWK Set with at least one key")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("EC", "RSA"):
            raise InvalidClientMetadata("jwks", "EC or RSA keys only")
        if {"d", "p", "q"} & set(key):
            raise InvalidClientMetadata("jwks", "contains a private key")


class ClientRepository:
    """Clients in SQL. ``get`` is on every token request, so it caches briefly;
    a removed client or rotated secret takes effect within ``ttl`` seconds on
    every worker, or at once where something calls :meth:`invalidate` (on
    PostgreSQL, the change listener of ``idp.runtime.changes``)."""

    def __init__(self, sessions: sessionmaker[Session], secret_key: bytes,
                 ttl: float = 5.0) -> None:
        self._sessions = sessions
        self._key = secret_key
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Client | None]] = {}

    def add(self, client: Client) -> tuple[Client, str | None]:
        """Store ``client``; return it and its secret (shown once; None if public)."""
        secret = None if client.public else new_secret()
        stored = replace(client, secret_key=self._key,
                         secret_hash=hash_secret(self._key, secret) if secret else None)
        with self._sessions.begin() as s:
            s.execute(insert(oauth_clients).values(**_row(stored)))
        return stored, secret

    def get(self, client_id: str) -> Client | None:
        if not client_id or len(client_id) > 64 or not client_id.isascii() \
                or not client_id.isprintable():
            return None  # no registration has such an id (RFC 6749 A.1: VSCHAR)
        now = time.monotonic()
        hit = self._cache.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._sessions() as s:
            row = s.execute(select(oauth_clients)
                            .where(oauth_clients.c.client_id == client_id)).first()
        client = None if row is None else self._client(row)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[client_id] = (now + self._ttl, client)
        return client

    def invalidate(self, client_id: str | None = None) -> None:
        """Forget the cached copy of ``client_id`` (of every client with None)."""
        if client_id is None:
            self._cache.clear()
        else:
            self._cache.pop(client_id, None)

    def list(self) -> list[Client]:
        with self._sessions() as s:
            rows = s.execute(select(oauth_clients).order_by(oauth_clients.c.name)).all()
        return [self._client(r) for r in rows]

    def remove(self, client_id: str) -> None:
        with self._sessions.begin() as s:
            if not rowcount(s.execute(delete(oauth_clients)
                             .where(oauth_clients.c.client_id == client_id))):
                raise UnknownClient(client_id)
        self._cache.pop(client_id, None)

    def rotate_secret(self, client_id: str) -> str:
        client = self.get(client_id)
        if client is None:
            raise UnknownClient(client_id)
        if client.public:
            raise InvalidClientMetadata("public", "a public client has no secret")
        secret = new_secret()
        with self._sessions.begin() as s:
            s.execute(update(oauth_clients).where(oauth_clients.c.client_id == client_id)
                      .values(secret_hash=hash_secret(self._key, secret)))
        self._cache.pop(client_id, None)
        return secret

    def _client(self, row: Any) -> Client:
        return Client(
            client_id=row.client_id, name=row.name, public=bool(row.public),
            auth_method=AuthMethod(row.auth_method),
            redirect_uris=tuple(json.loads(row.redirect_uris)), level=int(row.level),
            info_class=InfoClass(row.info_class),
            post_logout_redirect_uris=tuple(json.loads(row.post_logout_uris)),
            backchannel_logout_uri=row.backchannel_logout_uri,
            allowed_departments=tuple(json.loads(row.allowed_departments)),
            allowed_group=row.allowed_group, first_party=bool(row.first_party),
            id_token_alg=row.id_token_alg, jwks=row.jwks, secret_hash=row.secret_hash,
            secret_key=self._key,
        )


def _row(c: Client) -> dict[str, Any]:
    return dict(
        client_id=c.client_id, name=c.name, secret_hash=c.secret_hash, public=c.public,
        auth_method=c.auth_method.value, redirect_uris=json.dumps(list(c.redirect_uris)),
        post_logout_uris=json.dumps(list(c.post_logout_redirect_uris)),
        backchannel_logout_uri=c.backchannel_logout_uri, level=c.level,
        info_class=c.info_class.value,
        allowed_departments=json.dumps(list(c.allowed_departments), ensure_ascii=False),
        allowed_group=c.allowed_group, first_party=c.first_party, id_token_alg=c.id_token_alg,
        jwks=c.jwks, created_at=datetime.now(UTC),
    )
