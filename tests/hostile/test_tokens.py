"""JWTs signed with the IdP's own, real key but carrying claims it never writes: as
an access token at ``/userinfo``, ``/introspect`` and ``/revoke``, as an
``id_token_hint`` at ``/logout``, and client assertions (``private_key_jwt``, signed
with the app's real key) at ``/token``. A good signature is not enough: each case is
refused (401, ``{"active": false}``, 400, ``invalid_client``) and changes nothing
(no revocation row, no grant ended, no session ended, no assertion remembered, no
token issued). Each table starts from a genuine token re-signed unchanged, which
must be accepted, so every refusal is the changed claim's. The claim checks
themselves are unit-tested in tests/oidc/test_claims.py."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.login.tables import sso_sessions
from idp.oidc.claims import CLOCK_SKEW
from idp.oidc.provider import Provider
from idp.oidc.tables import (
    backchannel_deliveries,
    grants,
    revoked_access,
    tokens,
    used_assertions,
)
from idp.oidc.tokens import ACCESS_TTL, ID_TOKEN_TTL
from tests.fixtures.idp import (
    ISSUER,
    REDIRECT,
    Registered,
    authorize,
    code_of,
    pkce_pair,
    token_request,
    tokens_issued,
)
from tests.oidc.test_protocol import ASSERTION_TYPE, assertion_client

Change = Callable[[dict[str, Any], int], dict[str, Any]]
OTHER_CLIENT = "gt-ffffffffffffffffffffffff"
OTHER_PERSON = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def exchange(browser: FlaskClient, rp: FlaskClient, reg: Registered) -> dict[str, Any]:
    """Log in and exchange the code: a live session and a genuine token response."""
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, reg.client, pkce=challenge))
    status, body = token_request(rp, reg, grant_type="authorization_code", code=code,
                                 redirect_uri=REDIRECT, code_verifier=verifier)
    assert status == 200, body
    return body


def state(provider: Provider) -> tuple[int, ...]:
    """What refusing a token could wrongly write: revoked jtis, ended grants, used
    or revoked refresh tokens, ended sessions, queued back-channel logouts, and
    remembered client assertions."""
    def n(table: Any, *where: Any) -> int:
        with provider.db() as s:
            return int(s.execute(select(func.count()).select_from(table).where(*where))
                       .scalar_one())
    return (n(revoked_access), n(grants, grants.c.revoked_at.is_not(None)),
            n(tokens, tokens.c.revoked_at.is_not(None) | tokens.c.rotated_at.is_not(None)),
            n(sso_sessions, sso_sessions.c.ended_at.is_not(None)),
            n(backchannel_deliveries), n(used_assertions))


def _timed(iat: int, exp: int) -> Change:
    return lambda c, now: {**c, "iat": now + iat, "exp": now + exp}


def _set(**values: Any) -> Change:
    return lambda c, now: {**c, **values}


def _drop(name: str) -> Change:
    return lambda c, now: {k: v for k, v in c.items() if k != name}


# -- access tokens -----------------------------------------------------------------------

ACCESS_CHANGES: dict[str, Change] = {
    "aud_another_client": _set(aud=OTHER_CLIENT),
    "aud_a_resource_server": _set(aud="https://api.example.gov.cn"),
    "aud_list_with_ours_and_another": lambda c, now: {**c, "aud": [c["aud"], OTHER_CLIENT]},
    "iss_another": _set(iss="https://evil.example"),
    "iss_trailing_slash": _set(iss=ISSUER + "/"),
    "nbf_in_the_future": lambda c, now: {**c, "nbf": now + 3600},
    "iat_far_in_the_future": _timed(86400, 86400 + ACCESS_TTL),
    "exp_just_past": _timed(-ACCESS_TTL - 1, -1),
    "exp_in_ten_years": _timed(0, 10 * 365 * 86400),
    "exp_beyond_int32": lambda c, now: {**c, "exp": 2**40},
    "exp_a_fraction": lambda c, now: {**c, "exp": now + 60.5},
    "sub_another_person": _set(sub=OTHER_PERSON),
    "client_id_another": _set(client_id=OTHER_CLIENT, aud=OTHER_CLIENT),
    "sub_extra_large": _set(sub="张" * 1000),
    "scope_extra_large": _set(scope="openid " * 300),
    "jti_extra_large": lambda c, now: {**c, "jti": c["jti"] + "x" * 200},
    **{f"{name}_missing": _drop(name)
       for name in ("iss", "sub", "aud", "client_id", "iat", "exp", "jti")},
}


def _introspect(rp: FlaskClient, reg: Registered, token: str) -> dict[str, Any]:
    resp = rp.post("/introspect", data={"token": token},
                   auth=(reg.client.client_id, str(reg.secret)))
    assert resp.status_code == 200
    return dict(resp.get_json())


def _userinfo(rp: FlaskClient, token: str) -> int:
    return rp.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code


def test_genuine_access_token_re_signed_unchanged_is_accepted(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    body = exchange(browser, rp, confidential)
    again = provider.keys.sign(claims_of(body["access_token"]), typ="at+jwt")
    assert _userinfo(rp, again) == 200
    assert _introspect(rp, confidential, again)["active"] is True


@pytest.mark.parametrize("change", ACCESS_CHANGES.values(), ids=ACCESS_CHANGES.keys())
def test_access_token_with_claims_we_never_write_is_refused_and_changes_nothing(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider, change: Change) -> None:
    body = exchange(browser, rp, confidential)
    forged = provider.keys.sign(change(claims_of(body["access_token"]), int(time.time())),
                                typ="at+jwt")
    before, issued = state(provider), tokens_issued(rp)
    assert _userinfo(rp, forged) == 401
    assert _introspect(rp, confidential, forged) == {"active": False}
    revoke = rp.post("/revoke", data={"token": forged},
                     auth=(confidential.client.client_id, str(confidential.secret)))
    assert revoke.status_code == 200  # RFC 7009 section 2.2: an invalid token is no error
    assert state(provider) == before and tokens_issued(rp) == issued
    # the genuine token, of the same grant and jti, is untouched
    assert _userinfo(rp, body["access_token"]) == 200
    assert _introspect(rp, confidential, body["access_token"])["active"] is True


def test_client_credentials_token_with_another_audience_is_refused(
        rp: FlaskClient, confidential: Registered, provider: Provider) -> None:
    _, body = token_request(rp, confidential, grant_type="client_credentials")
    claims = claims_of(str(body["access_token"]))
    assert _introspect(rp, confidential, provider.keys.sign(claims, typ="at+jwt"))["active"]
    forged = provider.keys.sign({**claims, "aud": OTHER_CLIENT}, typ="at+jwt")
    assert _introspect(rp, confidential, forged) == {"active": False}


# -- id_token_hint at /logout --------------------------------------------------------------

HINT_CHANGES: dict[str, Change] = {
    "iss_another": _set(iss="https://evil.example"),
    "aud_another_client": _set(aud=OTHER_CLIENT),
    "aud_and_azp_an_unknown_client": _set(aud=OTHER_CLIENT, azp=OTHER_CLIENT),
    "nbf_in_the_future": lambda c, now: {**c, "nbf": now + 3600},
    "iat_far_in_the_future": _timed(86400, 86400 + ID_TOKEN_TTL),
    "exp_in_ten_years": _timed(0, 10 * 365 * 86400),
    "sid_not_a_string": _set(sid=42),
    "sub_extra_large": _set(sub="张" * 1000),
    "with_a_scope": _set(scope="openid"),
    **{f"{name}_missing": _drop(name) for name in ("iss", "sub", "aud", "azp", "iat", "exp")},
}


def _live_sessions(provider: Provider) -> int:
    with provider.db() as s:
        return int(s.execute(select(func.count()).select_from(sso_sessions).where(
            sso_sessions.c.ended_at.is_(None))).scalar_one())


def test_genuine_id_token_re_signed_unchanged_ends_the_session(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    body = exchange(browser, rp, confidential)
    again = provider.keys.sign(claims_of(body["id_token"]))
    resp = browser.get("/logout", query_string={"id_token_hint": again})
    assert resp.status_code == 200 and _live_sessions(provider) == 0


def test_expired_id_token_hint_is_still_accepted(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    # RP-Initiated Logout 1.0 section 2: accepted after exp.
    body = exchange(browser, rp, confidential)
    now = int(time.time())
    old = _timed(-3600, -3600 + ID_TOKEN_TTL)(claims_of(body["id_token"]), now)
    resp = browser.get("/logout", query_string={"id_token_hint": provider.keys.sign(old)})
    assert resp.status_code == 200 and _live_sessions(provider) == 0


@pytest.mark.parametrize("change", HINT_CHANGES.values(), ids=HINT_CHANGES.keys())
def test_id_token_hint_with_claims_we_never_write_is_refused_and_ends_nothing(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider, change: Change) -> None:
    body = exchange(browser, rp, confidential)
    forged = provider.keys.sign(change(claims_of(body["id_token"]), int(time.time())))
    before = state(provider)
    resp = browser.get("/logout", query_string={
        "id_token_hint": forged, "post_logout_redirect_uri": "http://127.0.0.1:5000/bye"})
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert state(provider) == before and _live_sessions(provider) == 1
    assert _userinfo(rp, body["access_token"]) == 200


# -- client assertions (private_key_jwt) at /token -----------------------------------------

ASSERTION_CHANGES: dict[str, Change] = {
    "aud_another_server": _set(aud="https://elsewhere.example/token"),
    "aud_our_userinfo": _set(aud=ISSUER + "/userinfo"),
    "iss_not_the_client": _set(iss=OTHER_CLIENT),
    "exp_just_past_the_leeway": _timed(-120, -CLOCK_SKEW - 1),
    "exp_two_hours_ahead": _timed(0, 7200),
    "exp_beyond_int32": lambda c, now: {**c, "exp": 2**40},
    "exp_a_fraction": lambda c, now: {**c, "exp": now + 60.5},
    "nbf_in_the_future": lambda c, now: {**c, "nbf": now + 3600},
    "iat_far_in_the_future": lambda c, now: {**c, "iat": now + 3600},
    **{f"{name}_missing": _drop(name) for name in ("iss", "sub", "aud", "exp", "jti")},
}


def _assertion(client_id: str, key: Any, change: Change | None = None) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": ISSUER + "/token",
              "jti": f"jti-{time.monotonic_ns()}", "iat": now, "exp": now + 60}
    return jwt.encode(change(claims, now) if change else claims, key, algorithm="ES256",
                      headers={"kid": "k1"})


def _with_assertion(rp: FlaskClient, assertion: str) -> tuple[int, dict[str, Any]]:
    resp = rp.post("/token", data={"grant_type": "client_credentials",
                                   "client_assertion_type": ASSERTION_TYPE,
                                   "client_assertion": assertion})
    return resp.status_code, dict(resp.get_json())


def test_genuine_client_assertion_is_accepted(rp: FlaskClient, provider: Provider) -> None:
    client, key = assertion_client(provider)
    issued = tokens_issued(rp, "client_credentials")
    status, body = _with_assertion(rp, _assertion(client.client_id, key))
    assert status == 200 and "access_token" in body, body
    assert tokens_issued(rp, "client_credentials") == issued + 1


@pytest.mark.parametrize("change", ASSERTION_CHANGES.values(), ids=ASSERTION_CHANGES.keys())
def test_client_assertion_with_claims_we_refuse_issues_nothing(
        rp: FlaskClient, provider: Provider, change: Change) -> None:
    client, key = assertion_client(provider)
    before, issued = state(provider), tokens_issued(rp)
    status, body = _with_assertion(rp, _assertion(client.client_id, key, change))
    assert status in (400, 401) and body["error"] == "invalid_client", body
    assert "access_token" not in body
    assert state(provider) == before and tokens_issued(rp) == issued
