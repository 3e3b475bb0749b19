"""The canonical form of a client's back-channel call, read without a web framework.

``POST /introspect`` and the client-credentials ``POST /token`` are the calls a
resource server or a service makes for every request it serves, so they are hot
paths; through Flask, authlib's endpoints and their request wrappers they cost
up to three times their own work. ``idp.oidc.introspection`` and
``idp.oidc.client_grant`` answer the one form nearly every client sends; this
module reads that form and authenticates its client as authlib's
``ClientAuthentication`` does:

- a form-encoded body (RFC 6749 appendix B) of the endpoint's own fields, each
  once, and for ``client_secret_post`` ``client_id`` and ``client_secret``;
- or ``client_secret_basic``: ``Authorization: Basic`` with base64 of
  ``client_id:client_secret`` (RFC 6749 section 2.3.1, RFC 7617).

The parsers take a canonical subset only: every value is 1 or more RFC 3986
unreserved characters (``A-Z a-z 0-9 - . _ ~``, which form-encoding leaves as
they are, so no value is decoded; a scope may join such words with ``+``, the
form-encoded space), the base64 is canonical, nothing is repeated, empty,
unknown or over its limit. They return None for anything else, and the caller
hands that request, untouched, to the general path (Flask, authlib), which
answers it as before: ``private_key_jwt``, a percent-encoded value, a query
string, a body that is not UTF-8 or too large, a malformed header. So these
paths add no answer of their own to a hostile request; they only decline it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from authlib.oauth2.rfc6749 import InvalidClientError

from idp.oidc.clients import AuthMethod

if TYPE_CHECKING:
    from idp.oidc.clients import Client, ClientRepository

# The client authentication methods both endpoints accept, in the order tried
# (authlib's ``ClientAuthentication``); ``private_key_jwt`` only on the general path.
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
FORM_TYPE = "application/x-www-form-urlencoded"
# At or below the general path's limit for any value but a token (idp.web.kit:
# 2048), so a value it refuses as too long is never answered here.
MAX_VALUE = 2048
MAX_AUTHORIZATION = 6 + (2 * MAX_VALUE + 1 + 2) // 3 * 4  # "Basic " + base64(id:secret)
# The fields of client authentication in the body (client_secret_post).
SECRET_POST_FIELDS = {"client_id": MAX_VALUE, "client_secret": MAX_VALUE}

UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")
# Space-separated words (RFC 6749 section 3.3), form-encoded: "+" for each space.
WORDS = re.compile(r"[A-Za-z0-9._~-]+(?:\+[A-Za-z0-9._~-]+)*")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


@dataclass(frozen=True)
class ClientCall:
    """Who calls, and how they authenticate (``BASIC`` or ``POST``)."""

    client_id: str
    client_secret: str = field(repr=False)  # never the secret in a log
    method: AuthMethod


def max_body(limits: Mapping[str, int]) -> int:
    """The longest body with every field of ``limits`` once: names and separators."""
    return sum(limits.values()) + 128


def parse_form(body: bytes, limits: Mapping[str, int],
               words: frozenset[str] = frozenset()) -> dict[str, str] | None:
    """The fields of a canonical form body, each named in ``limits`` with its
    longest value, else None. The fields named in ``words`` may hold ``+``-joined
    words and are returned with spaces (as form-decoding would give them)."""
    if not body or len(body) > max_body(limits) or not body.isascii():
        return None
    fields: dict[str, str] = {}
    for pair in body.decode("ascii").split("&"):
        name, eq, value = pair.partition("=")
        limit = limits.get(name)
        if (limit is None or not eq or name in fields or len(value) > limit
                or (WORDS if name in words else UNRESERVED).fullmatch(value) is None):
            return None
        fields[name] = value.replace("+", " ") if name in words else value
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
            or UNRESERVED.fullmatch(client_id) is None
            or UNRESERVED.fullmatch(secret) is None):
        return None
    return client_id, secret


def parse_caller(authorization: str | None, fields: Mapping[str, str]) -> ClientCall | None:
    """The caller of a request with these body ``fields``, if it is one these paths
    answer. One client authentication method per request (RFC 6749 section 2.3): a
    ``client_id`` or ``client_secret`` in the body beside ``Basic`` is declined."""
    if authorization is not None:
        if "client_id" in fields or "client_secret" in fields:
            return None
        found = parse_basic(authorization)
        if found is None:
            return None
        return ClientCall(found[0], found[1], AuthMethod.BASIC)
    client_id, secret = fields.get("client_id"), fields.get("client_secret")
    if client_id is None or secret is None:
        return None
    return ClientCall(client_id, secret, AuthMethod.POST)


def authenticate(call: ClientCall, clients: ClientRepository, endpoint: str,
                 methods: list[str] = CLIENT_AUTH_METHODS) -> Client:
    """The client, authenticated by its secret in constant time
    (``Client.check_client_secret``), or ``InvalidClientError`` with the status and
    words authlib's ``ClientAuthentication`` gives for the same request to an
    endpoint or grant that takes ``methods``: an unknown client is 401 after
    ``Basic`` and 400 in the body (RFC 6749 section 5.2); a wrong secret, or a
    client that may not use this method here, is 401."""
    client = clients.get(call.client_id)
    if client is None:
        raise InvalidClientError(
            status_code=401 if call.method is AuthMethod.BASIC else 400,
            description="The client does not exist on this server.")
    if not (client.check_client_secret(call.client_secret)
            and client.check_endpoint_auth_method(call.method, endpoint)):
        raise InvalidClientError(
            status_code=401,
            description=f"The client cannot authenticate with methods: {methods}")
    return client
