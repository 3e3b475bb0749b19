"""The claims of the JWTs this IdP accepts back from others: its own access tokens
(RFC 9068 section 4, at ``/userinfo``, ``/introspect`` and ``/revoke``) and its own
ID tokens as ``id_token_hint`` (OpenID Connect RP-Initiated Logout 1.0 section 2).

``idp.oidc.jws`` has checked the header (``typ``, ``alg``, ``kid``) and the
signature; this module checks the payload against what we write, claim by claim,
so that a token our key signed for another purpose, another issuer or another time
is refused even though its signature is good. The claims are the ones RFC 7519
section 4.1 registers, with the rules RFC 9068 section 4 gives a resource server:

- ``iss`` is exactly our issuer (RFC 9068 section 4, item 3);
- ``aud`` is the client the token names in ``client_id`` (we write ``aud`` as that
  one string; item 4 has the recipient check that the audience is one it expects);
- ``exp`` has not passed, with no leeway (RFC 7519 section 4.1.4 allows "some small
  leeway"; ours is none: every node signs and checks with NTP-set clocks, and a
  leeway on ``exp`` would only lengthen every token's life);
- ``iat`` and ``nbf`` (RFC 7519 sections 4.1.6 and 4.1.5; we write no ``nbf``, but a
  present one is honoured) are not later than now plus ``CLOCK_SKEW``, the one
  leeway, for a token another node signed with a clock a little ahead;
- ``exp - iat`` is positive and at most the lifetime we give such tokens, so a token
  valid "for ten years" or "from next year" is refused whoever signed it (and no
  ``exp`` beyond what an ``INTEGER`` column holds reaches the revocation table);
- numeric dates are integers (we write no fractions; ``true`` is not 1), the string
  claims are non-empty strings of bounded length.

No I/O: the caller passes the issuer, the time and the lifetime. Each refusal is an
``InvalidClaim`` naming the claim and why (``ClaimProblem``), never a message to
branch on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from idp.oidc.jws import InvalidToken

CLOCK_SKEW = 30  # seconds; for iat and nbf only (see the module docstring)
MAX_SUBJECT = 255  # entryUUIDs are 36 characters, client ids 27
MAX_CLIENT_ID = 64  # the column's width (idp.oidc.tables.oauth_clients)
MAX_SCOPE = 1024


class ClaimProblem(enum.Enum):
    MISSING = "missing"
    MALFORMED = "malformed"  # wrong JSON type, empty, or too long
    NOT_OURS = "not ours"  # a value we never write: another issuer, audience, client
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"  # iat or nbf later than now plus CLOCK_SKEW
    LIFETIME = "lifetime"  # exp - iat not in (0, the lifetime we give]


class InvalidClaim(InvalidToken):
    """A token that verified has a claim we refuse: ``.claim`` and ``.problem``."""

    def __init__(self, claim: str, problem: ClaimProblem) -> None:
        self.claim = claim
        self.problem = problem
        super().__init__(f"{claim}: {problem.value}")


@dataclass(frozen=True)
class AccessClaims:
    """The claims of an access token that passed every check."""

    jti: str
    sub: str
    client_id: str
    scope: str
    iat: int
    exp: int


@dataclass(frozen=True)
class HintClaims:
    """What an ``id_token_hint`` that passed every check says: the app it was issued
    to, the person, and the SSO session (``sid``) if it names one."""

    client_id: str
    sub: str
    sid: str | None


def _string(claims: Mapping[str, Any], name: str, longest: int,
            required: bool = True) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if name not in claims:
        raise InvalidClaim(name, ClaimProblem.MISSING)
    if not isinstance(value, str) or not value or len(value) > longest:
        raise InvalidClaim(name, ClaimProblem.MALFORMED)
    return value


def _date(claims: Mapping[str, Any], name: str) -> int:
    """A NumericDate as we write it: an integer number of seconds (RFC 7519 section 2)."""
    if name not in claims:
        raise InvalidClaim(name, ClaimProblem.MISSING)
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidClaim(name, ClaimProblem.MALFORMED)
    return value


def _issuer(claims: Mapping[str, Any], issuer: str) -> None:
    if _string(claims, "iss", 2048) != issuer:
        raise InvalidClaim("iss", ClaimProblem.NOT_OURS)


def _times(claims: Mapping[str, Any], now: int, lifetime: int, *,
           expired_ok: bool) -> tuple[int, int]:
    """``iat`` and ``exp``, checked against ``now`` and ``lifetime``; ``nbf`` if any."""
    iat, exp = _date(claims, "iat"), _date(claims, "exp")
    if iat > now + CLOCK_SKEW:
        raise InvalidClaim("iat", ClaimProblem.NOT_YET_VALID)
    if "nbf" in claims and _date(claims, "nbf") > now + CLOCK_SKEW:
        raise InvalidClaim("nbf", ClaimProblem.NOT_YET_VALID)
    if not 0 < exp - iat <= lifetime:
        raise InvalidClaim("exp", ClaimProblem.LIFETIME)
    if not expired_ok and exp <= now:
        raise InvalidClaim("exp", ClaimProblem.EXPIRED)
    return iat, exp


def check_access_token(claims: Mapping[str, Any], *, issuer: str, now: int,
                       lifetime: int) -> AccessClaims:
    """The claims of an access token we signed (``typ: at+jwt``, RFC 9068 section 2.2),
    checked as RFC 9068 section 4 asks: ``iss``, ``aud``, ``exp``, ``iat``, ``nbf``,
    and the types of ``sub``, ``client_id``, ``jti`` and ``scope``. Whether the
    ``jti`` is of our shape and the token still active is ``idp.oidc.tokens``'."""
    _issuer(claims, issuer)
    client_id = _string(claims, "client_id", MAX_CLIENT_ID)
    assert client_id is not None
    if "aud" not in claims:
        raise InvalidClaim("aud", ClaimProblem.MISSING)
    # RFC 9068 section 3 lets aud be an array; ours is always the one string.
    if claims["aud"] != client_id:
        raise InvalidClaim("aud", ClaimProblem.NOT_OURS)
    sub = _string(claims, "sub", MAX_SUBJECT)
    jti = _string(claims, "jti", 128)
    scope = claims.get("scope", "")
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE:
        raise InvalidClaim("scope", ClaimProblem.MALFORMED)
    iat, exp = _times(claims, now, lifetime, expired_ok=False)
    assert sub is not None and jti is not None
    return AccessClaims(jti=jti, sub=sub, client_id=client_id, scope=scope, iat=iat,
                        exp=exp)


def check_id_token_hint(claims: Mapping[str, Any], *, issuer: str, now: int,
                        lifetime: int) -> HintClaims:
    """The claims of an ID token we signed, presented back as ``id_token_hint``.
    RP-Initiated Logout 1.0 section 2: we must have issued it (``iss``), and one whose
    ``exp`` has passed is still accepted; one that is not yet valid, or valid longer
    than we make ID tokens, is not. It must be an ID token (OIDC Core 2: ``azp``
    beside ``aud``, both the client; no ``scope`` as an access token has, no
    ``events`` as a logout token has) and name its person (``sub``)."""
    _issuer(claims, issuer)
    if "scope" in claims or "events" in claims:
        raise InvalidClaim("scope" if "scope" in claims else "events",
                           ClaimProblem.NOT_OURS)
    azp = _string(claims, "azp", MAX_CLIENT_ID)
    if "aud" not in claims:
        raise InvalidClaim("aud", ClaimProblem.MISSING)
    if claims["aud"] != azp:
        raise InvalidClaim("aud", ClaimProblem.NOT_OURS)
    sub = _string(claims, "sub", MAX_SUBJECT)
    sid = _string(claims, "sid", 128, required=False)
    _times(claims, now, lifetime, expired_ok=True)
    assert azp is not None and sub is not None
    return HintClaims(client_id=azp, sub=sub, sid=sid)
