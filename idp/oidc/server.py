"""The OAuth 2.0 / OpenID Connect authorization server, on authlib's machinery.

Grants: authorization code (RFC 6749 section 4.1) with PKCE (RFC 7636, ``S256``
only, required for public clients, and a ``code_verifier`` without a prior
``code_challenge`` refused per RFC 9700 section 4.8.2), refresh token with
rotation and family revocation on reuse (RFC 9700 section 4.14.2), client
credentials (RFC 6749 section 4.4). Codes live at most 60 s, are bound to the
client and redirect URI, and are consumed atomically; a replayed code revokes
every token issued from it (RFC 6749 section 4.1.2). Introspection (RFC 7662)
and revocation (RFC 7009) are client-authenticated authlib endpoints; the common
introspection and client-credentials requests are answered before Flask
(``idp.oidc.introspection``, ``idp.oidc.client_grant``).
Only this module and ``idp.web.kit`` know authlib's Flask adapter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from authlib.common.encoding import urlsafe_b64encode
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
)
from authlib.oauth2.rfc6749 import grants as rfc6749_grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import grants as oidc_grants
from authlib.oidc.core.grants.util import validate_nonce
from joserfc.jwk import KeySet
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from idp.login.sessions import SessionStore, SsoSession
from idp.oidc.canonical import CLIENT_AUTH_METHODS
from idp.oidc.claims import CLOCK_SKEW
from idp.oidc.clients import SCOPES, Client, ClientRepository
from idp.oidc.introspection import active_payload, may_introspect
from idp.oidc.params import check_authorization_request, malformed
from idp.oidc.refresh_grant import AUTH_METHODS as REFRESH_AUTH_METHODS
from idp.oidc.refresh_grant import rotate
from idp.oidc.tables import auth_codes, grants, rowcount, used_assertions
from idp.oidc.tokens import (
    GRANT_COLUMNS,
    AuthContext,
    Rotation,
    TokenRecord,
    TokenService,
    context_of,
    digest,
)

CODE_TTL = 60
MAX_ASSERTION_SECONDS = 3600  # how far ahead a client assertion's exp may be


@dataclass(frozen=True)
class CodeRecord:
    """A stored authorization code (authlib's ``AuthorizationCodeMixin``)."""

    code_hash: str
    family: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int | None
    acr: str | None
    amr: tuple[str, ...]
    context: AuthContext

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int | None:
        return self.auth_time

    def get_acr(self) -> str | None:
        return self.acr

    def get_amr(self) -> list[str]:
        return list(self.amr)


@dataclass(frozen=True)
class Core:
    """What the grants need, reachable as ``grant.server.core``."""

    sessions: sessionmaker[Session]
    clients: ClientRepository
    tokens: TokenService
    store: SessionStore


def _core(grant: Any) -> Core:
    return grant.server.core


def s256(verifier: str) -> str:
    return urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode("ascii")


def _compare_s256(verifier: str, challenge: str) -> bool:
    return hmac.compare_digest(s256(verifier).encode(), challenge.encode())


class S256Only(CodeChallenge):
    """PKCE with ``S256`` only; required for public clients at both endpoints."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": _compare_s256}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        super().validate_code_challenge(grant, redirect_uri)
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        if grant.request.client.public and not data.get("code_challenge"):
            raise InvalidRequestError("PKCE (S256) is required for public clients")


class AuthorizationCodeGrant(rfc6749_grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post",
                                   "private_key_jwt", "none"]
    AUTHORIZATION_CODE_LENGTH = 43

    def save_authorization_code(self, code: str, request: Any) -> None:
        core = _core(self)
        sess: SsoSession = request.user
        client: Client = request.client
        data = request.payload.data
        with core.sessions.begin() as s:
            family = core.tokens.new_grant(
                s, client_id=client.client_id, subject=sess.subject, scope=request.scope,
                sid=sess.sid, claims=sess.claims, auth_time=sess.auth_time, acr=sess.acr,
                amr=sess.amr)
            s.execute(insert(auth_codes).values(
                code_hash=digest(code), family=family, client_id=client.client_id,
                redirect_uri=request.payload.redirect_uri, nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                expires_at=int(time.time()) + CODE_TTL))
        core.store.add_client(sess.sid, client.client_id)

    def query_authorization_code(self, code: str, client: Client) -> CodeRecord | None:
        if not code or len(code) > 256:
            return None
        core = _core(self)
        with core.sessions() as s:  # the code and its grant: one read
            row = s.execute(select(auth_codes, grants.c.scope, grants.c.revoked_at,
                                   *GRANT_COLUMNS).join(
                grants, grants.c.family == auth_codes.c.family).where(
                auth_codes.c.code_hash == digest(code))).first()
        if row is None or row.client_id != client.client_id:
            return None
        if row.used_at is not None:
            # RFC 6749 section 4.1.2: a code used twice revokes what it issued.
            core.tokens.revoke_family(row.family)
            return None
        if row.expires_at <= time.time() or row.revoked_at is not None:
            return None
        ctx = context_of(row.family, row)
        return CodeRecord(row.code_hash, row.family, row.client_id, row.redirect_uri,
                          row.scope, row.nonce, row.code_challenge,
                          row.code_challenge_method, ctx.auth_time, ctx.acr, ctx.amr, ctx)

    def create_token_response(self) -> Any:
        code: CodeRecord = self.request.authorization_code
        core = _core(self)
        with core.sessions.begin() as s:  # consume first: two racing requests, one wins
            won = rowcount(s.execute(update(auth_codes).where(
                auth_codes.c.code_hash == code.code_hash, auth_codes.c.used_at.is_(None))
                .values(used_at=int(time.time()))))
        if not won:
            core.tokens.revoke_family(code.family)
            raise InvalidGrantError("The code was already used.")
        return super().create_token_response()

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        """Consumed in ``create_token_response``; the row stays to detect replay."""

    def authenticate_user(self, authorization_code: CodeRecord) -> AuthContext | None:
        # Read with the code; a revocation racing the exchange still ends what is
        # issued, since every token of the family is checked against the grant row.
        return authorization_code.context


class OpenIDCode(oidc_grants.OpenIDCode):
    """Adds the ID token (OIDC Core 3.1.3.6). ``prompt``/``max_age`` are handled by
    the authorization endpoint itself, which knows the SSO session."""

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False  # nonces are the client's replay defence; codes are single-use

    def process_token(self, grant: Any, response: Any) -> Any:
        _, token, _ = response
        scope = token.get("scope") or ""
        if "openid" not in scope.split():
            return token
        request = grant.request
        code: CodeRecord = request.authorization_code
        token["id_token"] = _core(grant).tokens.id_token(
            client=request.client, ctx=request.user, scope=scope, nonce=code.nonce,
            access_token=token.get("access_token"))
        return token

    def validate_openid_authorization_request(self, grant: Any, redirect_uri: str) -> None:
        datalist = grant.request.payload.datalist
        check_authorization_request([(k, v) for k, vs in datalist.items() for v in vs])
        validate_nonce(grant.request, self.exists_nonce, self.require_nonce)

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)
        grant.register_hook("after_validate_authorization_request_payload",
                            self.validate_openid_authorization_request)


class RefreshTokenGrant(rfc6749_grants.RefreshTokenGrant):
    """Refresh with rotation (RFC 9700 section 4.14.2). The token is used up while
    the request is validated, in one write transaction (``TokenService.rotate_refresh``):
    authlib's separate look-up, check, issue and revoke steps would be four. The
    general path: a confidential app's canonical request is answered before Flask
    (``idp.oidc.refresh_grant``) with the same rotation and answer."""

    TOKEN_ENDPOINT_AUTH_METHODS = REFRESH_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def validate_token_request(self) -> None:
        client = self._validate_request_client()
        self.request.client = client
        value = self.request.form.get("refresh_token")
        if value is None:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        self.request.refresh_token = rotate(_core(self).tokens, value, client.client_id,
                                            self.request.payload.scope)

    def authenticate_user(self, refresh_token: Rotation) -> AuthContext | None:
        return refresh_token.context

    def issue_token(self, user: AuthContext, refresh_token: Rotation) -> dict[str, Any]:
        tokens = _core(self).tokens
        token = tokens.access_response(self.request.client, user.subject, user,
                                       refresh_token.scope, "refresh_token")
        token["refresh_token"] = refresh_token.refresh_token  # recorded by the rotation
        return token

    def revoke_old_credential(self, refresh_token: Rotation) -> None:
        """Already rotated, atomically, in ``validate_token_request``."""


class ClientCredentialsGrant(rfc6749_grants.ClientCredentialsGrant):
    """The general path of the grant: the request ``idp.oidc.client_grant`` reads
    is answered before Flask, with the same answer."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS


class PrivateKeyJwt(JWTBearerClientAssertion):
    """``private_key_jwt`` client authentication (OIDC Core 9, RFC 7523 section 2.2):
    an assertion signed with a key from the client's registered JWKS, addressed to
    our token endpoint or issuer, each ``jti`` accepted once."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, core: Core) -> None:
        super().__init__(validate_jti=True, leeway=CLOCK_SKEW)
        self._core = core

    def verify_claims(self, claims: Any) -> None:
        """authlib checks ``iss`` = ``sub`` = the client, ``aud`` ours, ``exp``, and
        ``nbf`` and ``iat`` if present, with ``CLOCK_SKEW``; then the ``jti`` once.
        First, ``exp`` must be an integer at most ``MAX_ASSERTION_SECONDS`` ahead
        (RFC 7523 section 3, item 4: one "unreasonably far in the future" may be
        rejected): its ``jti`` is remembered until ``exp``, so a later one would keep
        a row for ever (or overflow its ``INTEGER``), and a fractional one, which
        joserfc accepts, would be remembered for an hour only, then replayable."""
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int):
            raise InvalidClientError(description="Invalid claim: 'exp'")
        if exp > int(time.time()) + MAX_ASSERTION_SECONDS:
            raise InvalidClientError(description="The assertion expires too late.")
        super().verify_claims(claims)

    def get_audiences(self) -> list[str]:
        issuer = self._core.tokens.issuer
        return [issuer, issuer + "/token"]

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if not client.jwks:
            return KeySet([])
        data = json.loads(client.jwks)
        return KeySet.import_key_set(data if "keys" in data else {"keys": [data]})

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        if not isinstance(jti, str) or len(jti) > 256:
            return False
        now = int(time.time())
        exp = claims.get("exp")
        try:
            with self._core.sessions.begin() as s:
                s.execute(delete(used_assertions).where(used_assertions.c.expires_at < now))
                s.execute(insert(used_assertions).values(
                    client_id=str(claims.get("sub"))[:64], jti=jti,
                    expires_at=int(exp) if isinstance(exp, int) else now + 3600))
        except IntegrityError:
            return False
        return True


class Introspection(IntrospectionEndpoint):
    """The general path of ``/introspect``: the request ``idp.oidc.introspection``
    declines (``private_key_jwt``, anything not in its canonical form), with the
    same permission rule and payload."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _core(self).tokens.find_any(token_string, token_type_hint)

    def check_permission(self, token: TokenRecord, client: Client, request: Any) -> bool:
        return may_introspect(token, client)

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        return active_payload(token, _core(self).tokens.issuer)


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _core(self).tokens.find_to_revoke(token_string, token_type_hint)

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        _core(self).tokens.revoke(token)


class Server(AuthorizationServer):
    core: Core

    def __init__(self, core: Core) -> None:
        super().__init__()
        self.core = core
        self._query_client = core.clients.get
        self._save_token = lambda token, request: None  # recorded when issued
        self.scopes_supported = list(SCOPES)
        self.register_token_generator("default", self._generate)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwt(core))
        self.register_grant(AuthorizationCodeGrant, [S256Only(required=True), OpenIDCode()])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)

    def authenticate_client(self, request: Any, methods: list[str],
                            endpoint: str = "token") -> Client:
        """RFC 6749 section 2.3: "The client MUST NOT use more than one authentication
        method in each request." Basic with a body secret or assertion, or with a body
        ``client_id`` naming another client, or a body secret beside an assertion, is
        refused before any method is tried (authlib would take the first that works)."""
        form = request.form
        header = request.headers.get("Authorization")
        used = [name for name, present in (
            ("client_secret_basic", header is not None),
            ("client_secret_post", "client_secret" in form),
            ("private_key_jwt", "client_assertion" in form)) if present]
        if len(used) > 1:
            raise InvalidRequestError("use one client authentication method per request")
        if header is not None:
            client_id, _ = basic_credentials(header)
            body_id = form.get("client_id")
            if body_id is not None and not hmac.compare_digest(body_id.encode(),
                                                               client_id.encode()):
                raise InvalidRequestError("client_id in the body is not the authenticated one")
        client: Client = super().authenticate_client(request, methods, endpoint)
        return client

    def _generate(self, grant_type: str, client: Client, user: AuthContext | None = None,
                  scope: str | None = None, expires_in: int | None = None,
                  include_refresh_token: bool = True) -> dict[str, Any]:
        if user is None:  # client credentials: the app acts for itself
            return self.core.tokens.issue_client_credentials(client, scope or "")
        return self.core.tokens.issue(client=client, ctx=user, scope=scope or "",
                                      grant_type=grant_type,
                                      include_refresh_token=include_refresh_token)


def basic_credentials(header: str) -> tuple[str, str]:
    """RFC 6749 section 2.3.1 / RFC 7617: ``Basic`` base64 of the form-encoded
    ``client_id:client_secret`` in UTF-8. Anything else is ``invalid_client`` (401),
    never a decoding exception."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClientError("only the Basic authorization scheme is accepted",
                                 status_code=401)
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClientError("the Basic credentials are not valid base64 of UTF-8",
                                 status_code=401) from None
    client_id, colon, secret = text.partition(":")
    if not colon or not client_id:
        raise InvalidClientError("the Basic credentials need client_id:client_secret",
                                 status_code=401)
    client_id, secret = unquote(client_id), unquote(secret)
    # The grammar the body's parameters are held to (RFC 6749 A.1, A.2: VSCHAR): a
    # form-encoded NUL or control character is refused here, never looked up.
    if malformed((("client_id", client_id), ("client_secret", secret))) is not None:
        raise InvalidClientError("the Basic credentials have characters a client_id or "
                                 "client_secret may not have", status_code=401)
    return client_id, secret


def new_state() -> str:
    return secrets.token_urlsafe(16)
