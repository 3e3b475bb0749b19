"""Token introspection (RFC 7662) of the request resource servers send, without a
web framework.

``POST /introspect`` is a back-channel call made for every request a resource
server serves, so it is a hot path. This module reads the one form of request
nearly every resource server sends (``idp.oidc.canonical``: ``token``, optionally
``token_type_hint`` ``access_token`` or ``refresh_token``, and the client's
secret by ``client_secret_basic`` or ``client_secret_post``) and answers it as
authlib's endpoint (``idp.oidc.server.Introspection``) does, with the permission
rule and the payload both paths share (:func:`may_introspect`,
:func:`active_payload`). Anything else it declines (None), and the general path
answers it as before.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from idp.oidc.canonical import (
    MAX_VALUE,
    SECRET_POST_FIELDS,
    ClientCall,
    max_body,
    parse_caller,
    parse_form,
)
from idp.oidc.tokens import ACCESS, MAX_TOKEN

if TYPE_CHECKING:
    from idp.oidc.clients import Client
    from idp.oidc.tokens import TokenRecord, TokenService

MAX_FIELDS = {"token": MAX_TOKEN, "token_type_hint": MAX_VALUE, **SECRET_POST_FIELDS}
MAX_BODY = max_body(MAX_FIELDS)
TOKEN_TYPES = ("access_token", "refresh_token")  # RFC 7662 section 2.1, RFC 7009 2.1


@dataclass(frozen=True)
class IntrospectionRequest(ClientCall):
    """A parsed introspection request: who asks (and how), and about which token."""

    token: str = field(repr=False)  # never the token in a log
    token_type_hint: str | None


def parse_request(authorization: str | None, body: bytes) -> IntrospectionRequest | None:
    """The request, if it is one this module answers; None sends it to the general
    path (see ``idp.oidc.canonical.parse_caller`` for the client's part)."""
    fields = parse_form(body, MAX_FIELDS)
    if fields is None or "token" not in fields:
        return None
    hint = fields.get("token_type_hint")
    if hint is not None and hint not in TOKEN_TYPES:
        return None  # authlib's unsupported_token_type, on the general path
    caller = parse_caller(authorization, fields)
    if caller is None:
        return None
    return IntrospectionRequest(caller.client_id, caller.client_secret, caller.method,
                                fields["token"], hint)


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
