"""The claim checks of the JWTs we accept back (``idp.oidc.claims``): an access token
(RFC 9068 section 4) and an ``id_token_hint`` (RP-Initiated Logout 1.0 section 2).
Pure: the claims as we write them pass; one named case per refusal, each with the
claim and the problem it must be refused for. The same cases signed with the IdP's
real key go through the endpoints in tests/hostile/test_tokens.py."""

from __future__ import annotations

from typing import Any

import pytest

from idp.oidc.claims import (
    CLOCK_SKEW,
    AccessClaims,
    ClaimProblem,
    HintClaims,
    InvalidClaim,
    check_access_token,
    check_id_token_hint,
)

ISSUER = "https://idp.example.test"
NOW = 1_800_000_000
TTL = 600
CLIENT = "gt-0123456789abcdef01234567"
ACCESS = {"iss": ISSUER, "sub": "6f1c1d8e-5b8a-4d4e-9b4a-0f6c1e2d3a4b", "aud": CLIENT,
          "client_id": CLIENT, "iat": NOW - 10, "exp": NOW - 10 + TTL,
          "jti": "0" * 32 + ".abc", "scope": "openid profile", "sid": "s", "acr": "2"}
HINT = {"iss": ISSUER, "sub": ACCESS["sub"], "aud": CLIENT, "azp": CLIENT, "iat": NOW - 10,
        "exp": NOW - 10 + TTL, "sid": "s", "nonce": "n", "name": "张伟"}


def without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != name}


def access(claims: dict[str, Any]) -> AccessClaims:
    return check_access_token(claims, issuer=ISSUER, now=NOW, lifetime=TTL)


def hint(claims: dict[str, Any]) -> HintClaims:
    return check_id_token_hint(claims, issuer=ISSUER, now=NOW, lifetime=TTL)


def test_access_token_as_we_write_it_passes() -> None:
    assert access(ACCESS) == AccessClaims(
        jti=ACCESS["jti"], sub=ACCESS["sub"], client_id=CLIENT, scope="openid profile",
        iat=NOW - 10, exp=NOW - 10 + TTL)


def test_access_token_from_a_node_whose_clock_is_ahead_passes() -> None:
    ahead = {**ACCESS, "iat": NOW + CLOCK_SKEW, "exp": NOW + CLOCK_SKEW + TTL}
    assert access(ahead).iat == NOW + CLOCK_SKEW
    assert access({**ACCESS, "nbf": NOW + CLOCK_SKEW}).sub == ACCESS["sub"]


def test_access_token_without_scope_has_the_empty_scope() -> None:
    assert access(without(ACCESS, "scope")).scope == ""


M, BAD, OURS = ClaimProblem.MISSING, ClaimProblem.MALFORMED, ClaimProblem.NOT_OURS
EARLY, LIFE = ClaimProblem.NOT_YET_VALID, ClaimProblem.LIFETIME

ACCESS_REFUSED: dict[str, tuple[dict[str, Any], str, ClaimProblem]] = {
    "iss_another": ({**ACCESS, "iss": "https://evil.example"}, "iss", OURS),
    "iss_trailing_slash": ({**ACCESS, "iss": ISSUER + "/"}, "iss", OURS),
    "iss_case": ({**ACCESS, "iss": ISSUER.upper()}, "iss", OURS),
    "iss_missing": (without(ACCESS, "iss"), "iss", M),
    "iss_list": ({**ACCESS, "iss": [ISSUER]}, "iss", BAD),
    "aud_another_client": ({**ACCESS, "aud": "gt-ffffffffffffffffffffffff"}, "aud", OURS),
    "aud_a_resource": ({**ACCESS, "aud": "https://api.example.test"}, "aud", OURS),
    "aud_list_with_ours_and_another": ({**ACCESS, "aud": [CLIENT, "https://api"]}, "aud",
                                       OURS),
    "aud_missing": (without(ACCESS, "aud"), "aud", M),
    "aud_null": ({**ACCESS, "aud": None}, "aud", OURS),
    "client_id_missing": (without(ACCESS, "client_id"), "client_id", M),
    "client_id_too_long": ({**ACCESS, "client_id": "g" * 65, "aud": "g" * 65}, "client_id",
                           BAD),
    "client_id_number": ({**ACCESS, "client_id": 7, "aud": 7}, "client_id", BAD),
    "sub_missing": (without(ACCESS, "sub"), "sub", M),
    "sub_empty": ({**ACCESS, "sub": ""}, "sub", BAD),
    "sub_number": ({**ACCESS, "sub": 12}, "sub", BAD),
    "sub_huge": ({**ACCESS, "sub": "张" * 2000}, "sub", BAD),
    "jti_missing": (without(ACCESS, "jti"), "jti", M),
    "jti_huge": ({**ACCESS, "jti": "0" * 32 + "." + "a" * 200}, "jti", BAD),
    "scope_list": ({**ACCESS, "scope": ["openid"]}, "scope", BAD),
    "scope_huge": ({**ACCESS, "scope": "openid " * 400}, "scope", BAD),
    "exp_missing": (without(ACCESS, "exp"), "exp", M),
    "exp_just_past": ({**ACCESS, "iat": NOW - TTL - 1, "exp": NOW - 1}, "exp",
                      ClaimProblem.EXPIRED),
    "exp_now": ({**ACCESS, "iat": NOW - TTL, "exp": NOW}, "exp", ClaimProblem.EXPIRED),
    "exp_string": ({**ACCESS, "exp": str(NOW + 60)}, "exp", BAD),
    "exp_fraction": ({**ACCESS, "exp": NOW + 60.5}, "exp", BAD),
    "exp_true": ({**ACCESS, "exp": True}, "exp", BAD),
    "exp_ten_years": ({**ACCESS, "exp": NOW + 10 * 365 * 86400}, "exp", LIFE),
    "exp_beyond_int32": ({**ACCESS, "exp": 2**40}, "exp", LIFE),
    "exp_before_iat": ({**ACCESS, "iat": NOW, "exp": NOW - 5}, "exp", LIFE),
    "iat_missing": (without(ACCESS, "iat"), "iat", M),
    "iat_far_future": ({**ACCESS, "iat": NOW + 86400, "exp": NOW + 86400 + TTL}, "iat", EARLY),
    "iat_just_beyond_the_skew": ({**ACCESS, "iat": NOW + CLOCK_SKEW + 1,
                                  "exp": NOW + CLOCK_SKEW + 1 + TTL}, "iat", EARLY),
    "iat_negative": ({**ACCESS, "iat": -1}, "iat", BAD),
    "iat_null": ({**ACCESS, "iat": None}, "iat", BAD),
    "nbf_future": ({**ACCESS, "nbf": NOW + 3600}, "nbf", EARLY),
    "nbf_just_beyond_the_skew": ({**ACCESS, "nbf": NOW + CLOCK_SKEW + 1}, "nbf", EARLY),
    "nbf_string": ({**ACCESS, "nbf": "0"}, "nbf", BAD),
}


@pytest.mark.parametrize(("claims", "claim", "problem"), list(ACCESS_REFUSED.values()),
                         ids=list(ACCESS_REFUSED))
def test_access_token_refused(claims: dict[str, Any], claim: str,
                              problem: ClaimProblem) -> None:
    with pytest.raises(InvalidClaim) as caught:
        access(claims)
    assert (caught.value.claim, caught.value.problem) == (claim, problem)


def test_id_token_hint_as_we_write_it_passes() -> None:
    assert hint(HINT) == HintClaims(client_id=CLIENT, sub=HINT["sub"], sid="s")
    assert hint(without(HINT, "sid")).sid is None


def test_expired_id_token_hint_passes() -> None:
    # RP-Initiated Logout 1.0 section 2: the OP should accept it after exp.
    old = {**HINT, "iat": NOW - 86400, "exp": NOW - 86400 + TTL}
    assert hint(old).client_id == CLIENT


HINT_REFUSED: dict[str, tuple[dict[str, Any], str, ClaimProblem]] = {
    "iss_another": ({**HINT, "iss": "https://evil.example"}, "iss", OURS),
    "iss_missing": (without(HINT, "iss"), "iss", M),
    "aud_not_azp": ({**HINT, "aud": "gt-ffffffffffffffffffffffff"}, "aud", OURS),
    "aud_list": ({**HINT, "aud": [CLIENT, "gt-other"]}, "aud", OURS),
    "aud_missing": (without(HINT, "aud"), "aud", M),
    "azp_missing": (without(HINT, "azp"), "azp", M),
    "an_access_token": ({**HINT, "scope": "openid"}, "scope", OURS),
    "a_logout_token": ({**HINT, "events": {}}, "events", OURS),
    "sub_missing": (without(HINT, "sub"), "sub", M),
    "sub_number": ({**HINT, "sub": 1}, "sub", BAD),
    "sid_number": ({**HINT, "sid": 42}, "sid", BAD),
    "sid_empty": ({**HINT, "sid": ""}, "sid", BAD),
    "iat_far_future": ({**HINT, "iat": NOW + 86400, "exp": NOW + 86400 + TTL}, "iat", EARLY),
    "nbf_future": ({**HINT, "nbf": NOW + 3600}, "nbf", EARLY),
    "exp_ten_years": ({**HINT, "exp": NOW + 10 * 365 * 86400}, "exp", LIFE),
    "exp_missing": (without(HINT, "exp"), "exp", M),
    "iat_missing": (without(HINT, "iat"), "iat", M),
}


@pytest.mark.parametrize(("claims", "claim", "problem"), list(HINT_REFUSED.values()),
                         ids=list(HINT_REFUSED))
def test_id_token_hint_refused(claims: dict[str, Any], claim: str,
                               problem: ClaimProblem) -> None:
    with pytest.raises(InvalidClaim) as caught:
        hint(claims)
    assert (caught.value.claim, caught.value.problem) == (claim, problem)
