"""The syntax of OAuth 2.0 / OpenID Connect request parameters, checked before
authlib acts on them.

RFC 6749 Appendix A gives each parameter its characters: ``client_id``, ``state``,
``code`` and the tokens are VSCHAR (%x20-7E), ``scope`` is NQCHAR words,
``response_type`` and ``grant_type`` are name characters, ``redirect_uri`` is a
URI reference (RFC 3986: ASCII, no ``\\``, no controls). Sections 3.1 and 3.2 say
no parameter is sent twice. authlib copies ``redirect_uri``, ``response_type`` and
``grant_type`` into error descriptions, which section 4.1.2.1 limits to printable
ASCII, and raises ``ValueError`` while building the error when they are not: a
value refused here keeps every refusal a clean protocol error.

OpenID Connect Core 1.0: ``request`` and ``request_uri`` are refused with
``request_not_supported`` / ``request_uri_not_supported`` (section 6), never
silently ignored (an essential ``acr`` inside one would be lost); the ``claims``
parameter (section 5.5) is a bounded JSON object whose members have the types the
section gives; ``max_age`` (section 3.1.2.1) is ASCII digits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError

from policies.assurance import parse_ascii_int

# A ``max_age`` above a year says nothing a year does not.
MAX_AGE_LIMIT = 366 * 86400
CLAIMS_MAX_CHARS = 2048
CLAIMS_MAX_DEPTH = 4  # {"id_token": {"acr": {"values": [...]}}} is the deepest we read

_VSCHAR = frozenset(chr(c) for c in range(0x20, 0x7F))
_NQCHAR_WORDS = _VSCHAR - {'"', "\\"}  # NQCHAR plus the separating space
_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.: ")
# RFC 3986 characters of a URI; no space, no "\", no "<>\"{}|^`", no controls.
_URI = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                 "-._~:/?#[]@!$&'()*+,;=%")

GRAMMAR: Mapping[str, frozenset[str]] = {
    "client_id": _VSCHAR, "client_secret": _VSCHAR, "state": _VSCHAR, "code": _VSCHAR,
    "nonce": _VSCHAR, "token": _VSCHAR, "refresh_token": _VSCHAR, "code_verifier": _VSCHAR,
    "code_challenge": _VSCHAR, "client_assertion": _VSCHAR, "id_token_hint": _VSCHAR,
    "scope": _NQCHAR_WORDS, "response_type": _NAME, "grant_type": _NAME,
    "code_challenge_method": _NAME, "token_type_hint": _NAME, "response_mode": _NAME,
    "client_assertion_type": _URI, "redirect_uri": _URI, "post_logout_redirect_uri": _URI,
}

# Every other parameter may carry any text (a Chinese ``login_hint``), but no
# control character: nothing we echo into a header or a log may hold CR or LF.
_CONTROLS = frozenset(chr(c) for c in (*range(0x00, 0x20), 0x7F))


class RequestNotSupportedError(OAuth2Error):
    """OIDC Core 6.1: a ``request`` object was sent and this provider reads none."""

    error = "request_not_supported"


class RequestUriNotSupportedError(OAuth2Error):
    """OIDC Core 6.2: a ``request_uri`` was sent and this provider fetches none."""

    error = "request_uri_not_supported"


def malformed(params: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first parameter whose value breaks its grammar, else None."""
    for name, value in params:
        allowed = GRAMMAR.get(name)
        if allowed is not None:
            if not set(value) <= allowed:
                return name
        elif not _CONTROLS.isdisjoint(value):
            return name
    return None


def duplicated(params: Iterable[tuple[str, str]]) -> str | None:
    """RFC 6749 sections 3.1 and 3.2: a parameter sent more than once, else None.
    Every parameter of our endpoints is single-valued."""
    seen: set[str] = set()
    for name, _ in params:
        if name in seen:
            return name
        seen.add(name)
    return None


def parse_max_age(text: str) -> int:
    """OIDC Core 3.1.2.1 ``max_age``: seconds, ASCII digits only (``²`` passes
    ``str.isdigit`` but not ``int``; ``３`` passes ``int``)."""
    value = parse_ascii_int(text, maximum=10**12)
    if value is None:
        raise InvalidRequestError("max_age must be a number of seconds")
    return min(value, MAX_AGE_LIMIT)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _nesting(text: str) -> int:
    """The bracket depth of a JSON text, counted without parsing it (strings skipped),
    so ``json.loads`` never recurses deeper than we allow."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_claims(text: str) -> dict[str, Any]:
    """OIDC Core 5.5: the ``claims`` request, checked for size, depth and the types
    the section gives (``userinfo``/``id_token`` objects, each member null or an
    object whose ``essential`` is a boolean, ``value`` a string or number, ``values``
    an array)."""
    bad = InvalidRequestError("the claims parameter is not a valid claims request")
    if len(text) > CLAIMS_MAX_CHARS or _nesting(text) > CLAIMS_MAX_DEPTH:
        raise bad
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        raise bad from None
    if not isinstance(parsed, dict) or _depth(parsed) > CLAIMS_MAX_DEPTH:
        raise bad
    for target, members in parsed.items():
        if target not in ("userinfo", "id_token"):
            continue  # OIDC Core 5.5: unknown members are ignored
        if not isinstance(members, dict):
            raise bad
        for request in members.values():
            if request is None:
                continue
            if not isinstance(request, dict):
                raise bad
            if "essential" in request and not isinstance(request["essential"], bool):
                raise bad
            if "value" in request and not isinstance(request["value"], str | int | float):
                raise bad
            if "values" in request and not isinstance(request["values"], list):
                raise bad
    return parsed


def check_authorization_request(params: list[tuple[str, str]]) -> None:
    """What authlib does not check at the authorization endpoint; raised after it
    has validated the client and redirect URI, so the error goes back to the app."""
    if (name := duplicated(params)) is not None:
        raise InvalidRequestError(f"the parameter {name} was sent more than once")
    values = dict(params)
    if "request" in values:
        raise RequestNotSupportedError("request objects are not supported")
    if "request_uri" in values:
        raise RequestUriNotSupportedError("request_uri is not supported")
    if "max_age" in values:
        parse_max_age(values["max_age"])
    if "claims" in values:
        parse_claims(values["claims"])
