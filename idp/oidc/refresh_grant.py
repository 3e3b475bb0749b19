"""The refresh-token grant with rotation (RFC 6749 section 6, RFC 9700 section
4.14.2) of the request confidential apps send, without a web framework.

An app refreshes every few minutes for each signed-in person, so at scale this is
the token endpoint's other busy request. This module reads the one form nearly
every confidential app sends (``idp.oidc.canonical``: ``grant_type``
``refresh_token``, ``refresh_token``, optionally ``scope``, and the client's
secret by ``client_secret_basic`` or ``client_secret_post``) and answers it as
the authlib grant (``idp.oidc.server.RefreshTokenGrant``) does, with the same
rotation (``TokenService.rotate_refresh``: one write transaction, a reused token
revokes its family) and the same token response. Anything else it declines
(None), among them every public client's request (``none``: no secret), and the
general path answers it as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidScopeError, UnauthorizedClientError

from idp.oidc.canonical import (
    CLIENT_AUTH_METHODS,
    MAX_VALUE,
    SECRET_POST_FIELDS,
    ClientCall,
    max_body,
    parse_caller,
    parse_form,
)
from idp.oidc.tokens import RefreshRefusal

if TYPE_CHECKING:
    from idp.oidc.clients import Client
    from idp.oidc.tokens import Rotation, TokenService

GRANT_TYPE = "refresh_token"
# The methods the grant takes (authlib's words for a refusal name them): a public
# app's "none" too, which only the general path answers.
AUTH_METHODS = [*CLIENT_AUTH_METHODS, "none"]
# Ours are 43 characters; the general path refuses more than 512 (idp.web.kit).
MAX_REFRESH = 512
MAX_FIELDS = {"grant_type": len(GRANT_TYPE), "refresh_token": MAX_REFRESH, "scope": MAX_VALUE,
              **SECRET_POST_FIELDS}
MAX_BODY = max_body(MAX_FIELDS)
_WORDS = frozenset({"scope"})


@dataclass(frozen=True)
class RefreshRequest(ClientCall):
    """A parsed refresh request: who asks (and how), with which refresh token, for
    which scope (None when the request names none)."""

    refresh_token: str = field(repr=False)  # never the token in a log
    scope: str | None


def parse_request(authorization: str | None, body: bytes) -> RefreshRequest | None:
    """The request, if it is one this module answers; None sends it to the general
    path (see ``idp.oidc.canonical.parse_caller`` for the client's part)."""
    fields = parse_form(body, MAX_FIELDS, _WORDS)
    if fields is None or fields.get("grant_type") != GRANT_TYPE \
            or "refresh_token" not in fields:
        return None
    caller = parse_caller(authorization, fields)
    if caller is None:
        return None
    return RefreshRequest(caller.client_id, caller.client_secret, caller.method,
                          fields["refresh_token"], fields.get("scope"))


def rotate(tokens: TokenService, value: str, client_id: str,
           scope: str | None) -> Rotation:
    """Use up the refresh token ``value`` of ``client_id`` and record its successor
    (``TokenService.rotate_refresh``, one transaction), or refuse as authlib's
    grant words it, each 400: ``invalid_scope`` (more than granted: nothing
    changed) or ``invalid_grant`` (unknown, expired, revoked, another client's,
    or reused: the family is revoked now). Both paths' one rule."""
    result = tokens.rotate_refresh(value, client_id, scope)
    if result is RefreshRefusal.SCOPE:
        raise InvalidScopeError()
    if result is RefreshRefusal.REUSED:
        raise InvalidGrantError("The refresh token was already used.")
    if isinstance(result, RefreshRefusal):
        raise InvalidGrantError()
    return result


def refresh(request: RefreshRequest, client: Client, tokens: TokenService) -> dict[str, Any]:
    """The token response for the authenticated ``client``: the refresh token used
    up and its successor recorded (:func:`rotate`), then a new access token."""
    if not client.check_grant_type(GRANT_TYPE):
        raise UnauthorizedClientError(
            f"The client is not authorized to use 'grant_type={GRANT_TYPE}'")
    rotation = rotate(tokens, request.refresh_token, client.client_id, request.scope)
    user = rotation.context
    token = tokens.access_response(client, user.subject, user, rotation.scope, GRANT_TYPE)
    token["refresh_token"] = rotation.refresh_token  # recorded by the rotation
    return token
