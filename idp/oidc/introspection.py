"""Token introspection (RFC 7662) of the request resource servers send, without a
web framework.

``POST /introspect`` is a back-channel call made for every request a resource
server serves, so it is a hot path; through Flask, authlib's endpoint and its
request wrappers it cost about three times its own work (the signature check and
the revocation and throttle reads). This module reads the one form of request
nearly every resource server sends and answers it as authlib's endpoint
(``idp.oidc.server.Introspection``) does, with the permission rule and the
payload both paths share (:func:`may_introspect`, :func:`active_payload`):

- a form-encoded body (RFC 7662 section 2.1) of ``token``, optionally
  ``token_type_hint`` (``access_token`` or ``refresh_token``), and for
  ``client_secret_post`` ``client_id`` and ``client_secret``, each once;
- or ``client_secret_basic``: ``Authorization: Basic`` with base64 of
  ``client_id:client_secret`` (RFC 6749 section 2.3.1, RFC 7617).

The parsers take a canonical subset only: every value is 1 or more RFC 3986
unreserved characters (``A-Z a-z 0-9 - . _ ~``, which form-encoding leaves as
they are, so no value is decoded), the base64 is canonical, nothing is repeated,
empty, unknown or over its limit. They return None for anything else, and the
caller hands that request, untouched, to the general path (Flask, authlib), which
answers it as before: ``private_key_jwt``, a percent-encoded value, a query
string, a body that is not UTF-8 or too large, a malformed header. So this
module adds no answer of its own to a hostile request; it only declines it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidClientError

from idp.oidc.clients import AuthMethod
from idp.oidc.tokens import ACCESS, MAX_TOKEN

if TYPE_CHECKING:
    from idp.oidc.clients import Client, ClientRepository
    from idp.oidc.tokens import TokenRecord, TokenService

# The client authentication methods introspection accepts, in the order tried
# (authlib's ``ClientAuthentication``); ``private_key_jwt`` only on the general path.
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
FORM_TYPE = "application/x-www-form-urlencoded"
# Limits at or below the general path's (idp.web.kit: 8192 for a token, 2048 for
# any other value), so a value it refuses as too long is never answered here.
MAX_VALUE = 2048
MAX_FIELDS = {"token": MAX_TOKEN, "token_type_hint": MAX_VALUE, "client_id": MAX_VALUE,
              "client_secret": MAX_VALUE}
MAX_BODY = sum(MAX_FIELDS.values()) + 128  # every field once, names and separators
MAX_AUTHORIZATION = 6 + (2 * MAX_VALUE + 1 + 2) // 3 * 4  # "Basic " + base64(id:secret)
TOKEN_TYPES = ("access_token", "refresh_token")  # RFC 7662 section 2.1, RFC 7009 2.1

_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


@dataclass(frozen=True)
class IntrospectionRequest:
    """A parsed introspection request: who asks (and how), and about which token."""

    client_id: str
    client_secret: str = field(repr=False)  # never the secret or the token in a log
    method: AuthMethod  # BASIC or POST
    token: str = field(repr=False)
    token_type_hint: str | None


def parse_form(body: bytes) -> dict[str, str] | None:
    """The fields of a canonical form body, else None (see the module docstring)."""
    if not body or len(body) > MAX_BODY or not body.isascii():
        return None
    fields: dict[str, str] = {}
    for pair in body.decode("ascii").split("&"):
        name, eq, value = pair.partition("=")
        limit = MAX_FIELDS.get(name)
        if (limit is None or not eq or name in fields or len(value) > limit
                or _UNRESERVED.fullmatch(value) is None):
            return None
        fields[name] = value
    hint = fields.get("token_type_hint")
    if hint is not None and hint not in TOKEN_TYPES:
        return None  # authlib's unsupported_token_type, on the general path
    return fields


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` of a canonical ``Basic`` header, else None."""
    if len(header) > MAX_AUTHORIZATION:
        return None
    scheme, space, value = header.partition(" ")
    if scheme.lower() != "basic" or not space or not value \
            or _BASE64.fullmatch(value) is None:
        return None
    try:
        text = base64.b64decode(value, validate=True)
    except binascii.Error:
        return None
    if not text.isascii():
        return None
    client_id, colon, secret = text.decode("ascii").partition(":")
    if (not colon or len(client_id) > MAX_VALUE or len(secret) > MAX_VALUE
            or _UNRESERVED.fullmatch(client_id) is None
            or _UNRESERVED.fullmatch(secret) is None):
        return None
    return client_id, secret


def parse_request(authorization: str | None, body: bytes) -> IntrospectionRequest | None:
    """The request, if it is one this module answers; None sends it to the general
    path. One client authentication method per request (RFC 6749 section 2.3): a
    ``client_id`` or ``client_secret`` in the body beside ``Basic`` is declined."""
    fields = parse_form(body)
    if fields is None or "token" not in fields:
        return None
    token, hint = fields["token"], fields.get("token_type_hint")
    if authorization is not None:
        if "client_id" in fields or "client_secret" in fields:
            return None
        found = parse_basic(authorization)
        if found is None:
            return None
        return IntrospectionRequest(found[0], found[1], AuthMethod.BASIC, token, hint)
    client_id, secret = fields.get("client_id"), fields.get("client_secret")
    if client_id is None or secret is None:
        return None
    return IntrospectionRequest(client_id, secret, AuthMethod.POST, token, hint)


def authenticate(request: IntrospectionRequest, clients: ClientRepository) -> Client:
    """The client, authenticated by its secret in constant time
    (``Client.check_client_secret``), or ``InvalidClientError`` with the status and
    words authlib's ``ClientAuthentication`` gives for the same request: an unknown
    client is 401 after ``Basic`` and 400 in the body (RFC 6749 section 5.2); a
    wrong secret, or a client that may not use this method, is 401."""
    client = clients.get(request.client_id)
    if client is None:
        raise InvalidClientError(
            status_code=401 if request.method is AuthMethod.BASIC else 400,
            description="The client does not exist on this server.")
    if not (client.check_client_secret(request.client_secret)
            and client.check_endpoint_auth_method(request.method, "introspection")):
        raise InvalidClientError(
            status_code=401,
            description=f"The client cannot authenticate with methods: {CLIENT_AUTH_METHODS}")
    return client


def may_introspect(token: TokenRecord, client: Client) -> bool:
    """RFC 7662 section 4: the server decides who may learn about a token. Only the
    app the token was issued to; any other caller hears ``active: false`` exactly as
    for an unknown token (no app reads another's tokens, and none learns that a
    token exists). A resource server that accepts tokens of other apps validates
    the JWT against /jwks (RFC 9068) instead."""
    return not client.public and hmac.compare_digest(token.client_id.encode(),
                                                     client.client_id.encode())


def active_payload(token: TokenRecord, issuer: str) -> dict[str, Any]:
    """RFC 7662 section 2.2: what an active token's introspection says."""
    return {"active": True, "client_id": token.client_id, "scope": token.scope,
            "sub": token.subject, "iss": issuer, "exp": token.expires_at,
            "iat": token.issued_at,
            "token_type": "access_token" if token.kind == ACCESS else "refresh_token"}


def introspect(request: IntrospectionRequest, client: Client,
               tokens: TokenService) -> dict[str, Any]:
    """The answer about ``request.token`` for the authenticated ``client``: the
    signature, ``exp`` and revocation checked at once (``TokenService.find_any``)."""
    token = tokens.find_any(request.token, request.token_type_hint)
    if (token is None or not may_introspect(token, client) or token.is_expired()
            or token.is_revoked()):
        return {"active": False}
    return active_payload(token, tokens.issuer)
