"""The client-credentials grant (RFC 6749 section 4.4) of the request services
send, without a web framework.

A service asks ``POST /token`` for a token of its own before it calls an API, and
at scale that is the token endpoint's busiest request. This module reads the one
form nearly every service sends (``idp.oidc.canonical``: ``grant_type``
``client_credentials``, optionally ``scope``, and the client's secret by
``client_secret_basic`` or ``client_secret_post``) and answers it as authlib's
grant (``idp.oidc.server.ClientCredentialsGrant``) does: the client
authenticated for the token endpoint, its right to the grant, every requested
scope one the server supports, then one access token from the same
``TokenService.issue_client_credentials``. Anything else it declines (None), and
the general path answers it as before.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidScopeError, UnauthorizedClientError

from idp.oidc.canonical import (
    MAX_VALUE,
    SECRET_POST_FIELDS,
    ClientCall,
    max_body,
    parse_caller,
    parse_form,
)

if TYPE_CHECKING:
    from idp.oidc.clients import Client
    from idp.oidc.tokens import TokenService

GRANT_TYPE = "client_credentials"
MAX_FIELDS = {"grant_type": len(GRANT_TYPE), "scope": MAX_VALUE, **SECRET_POST_FIELDS}
MAX_BODY = max_body(MAX_FIELDS)
_WORDS = frozenset({"scope"})


@dataclass(frozen=True)
class GrantRequest(ClientCall):
    """A parsed client-credentials request: who asks (and how), for which scope
    (None when the request names none)."""

    scope: str | None


def parse_request(authorization: str | None, body: bytes) -> GrantRequest | None:
    """The request, if it is one this module answers; None sends it to the general
    path (see ``idp.oidc.canonical.parse_caller`` for the client's part)."""
    fields = parse_form(body, MAX_FIELDS, _WORDS)
    if fields is None or fields.get("grant_type") != GRANT_TYPE:
        return None
    caller = parse_caller(authorization, fields)
    if caller is None:
        return None
    return GrantRequest(caller.client_id, caller.client_secret, caller.method,
                        fields.get("scope"))


def grant(request: GrantRequest, client: Client, tokens: TokenService,
          scopes_supported: Collection[str]) -> dict[str, Any]:
    """The token response for the authenticated ``client``, or authlib's
    ``unauthorized_client`` (a public client) or ``invalid_scope`` (a scope the
    server does not support), each 400, as the general path gives them."""
    if not client.check_grant_type(GRANT_TYPE):
        raise UnauthorizedClientError(
            f"The client is not authorized to use 'grant_type={GRANT_TYPE}'")
    scope = request.scope
    if scope and not set(scope.split()) <= set(scopes_supported):
        raise InvalidScopeError()
    return tokens.issue_client_credentials(client, scope or "")
