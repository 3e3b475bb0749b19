"""Hostile input at the OIDC endpoints (issue 9, "Hostile input" 5, 6 and 8): each case
gets a clean protocol error, issues nothing, and logs no traceback."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.login.tables import sso_sessions
from idp.oidc.provider import Provider
from idp.oidc.tables import auth_codes, tokens
from tests.fixtures.idp import (
    REDIRECT,
    Registered,
    authorize,
    code_of,
    login,
    pkce_pair,
    token_request,
)


def count(provider: Provider, table: object) -> int:
    with provider.db() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The serve log shows no traceback for any hostile case (testing mode would
    also raise an unhandled exception straight into the test)."""
    caplog.set_level(logging.WARNING)
    yield
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def query(client: Registered, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": client.client.client_id,
            "redirect_uri": REDIRECT, "scope": "openid", "state": "s", "nonce": "n",
            **extra}


def error_of(location: str) -> str:
    assert location.startswith(REDIRECT + "?"), location
    return parse_qs(urlsplit(location).query)["error"][0]


# -- 5. /authorize: values authlib would copy into an error ----------------------------

BAD_REDIRECTS = {
    "backslash": REDIRECT + "\\..\\evil",
    "crlf": REDIRECT + "\r\nSet-Cookie: x=y",
    "idn": "http://例子.测试/callback",
    "full_width": "http://127.0.0.1:5000/ｃａｌｌｂａｃｋ",
}


@pytest.mark.parametrize("uri", BAD_REDIRECTS.values(), ids=BAD_REDIRECTS.keys())
def test_malformed_redirect_uri_gets_an_error_page_not_a_500(
        browser: FlaskClient, confidential: Registered, provider: Provider, uri: str) -> None:
    resp = browser.get("/authorize", query_string=query(confidential, redirect_uri=uri))
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert count(provider, auth_codes) == 0


def test_non_ascii_response_type_goes_back_as_invalid_request(
        browser: FlaskClient, confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string=query(confidential, response_type="cödé"))
    assert resp.status_code == 302 and error_of(resp.headers["Location"]) == "invalid_request"


def test_crlf_in_state_is_refused_without_echoing_it(browser: FlaskClient,
                                                     confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string=query(confidential, state="a\r\nb"))
    loc = resp.headers["Location"]
    assert error_of(loc) == "invalid_request" and "state=" not in loc


def test_non_ascii_grant_type_at_token_is_invalid_request(rp: FlaskClient,
                                                         confidential: Registered) -> None:
    status, body = token_request(rp, confidential, grant_type="授权码")
    assert status == 400 and body["error"] == "invalid_request"


# -- 5. Authorization: Basic that does not decode ----------------------------------------

BAD_BASIC = {
    "not_utf8": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "not_base64": "Basic !!!not-base64!!!",
    "no_colon": "Basic " + base64.b64encode(b"gt-client-without-colon").decode(),
}


@pytest.mark.parametrize("endpoint", ["/token", "/introspect", "/revoke"])
@pytest.mark.parametrize("header", BAD_BASIC.values(), ids=BAD_BASIC.keys())
def test_malformed_basic_credentials_are_invalid_client(rp: FlaskClient, provider: Provider,
                                                        endpoint: str, header: str) -> None:
    resp = rp.post(endpoint, data={"grant_type": "client_credentials", "token": "t"},
                   headers={"Authorization": header})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    assert count(provider, tokens) == 0


# -- 6. what a signed-in person can be led into ------------------------------------------

def test_superscript_max_age_is_invalid_request(browser: FlaskClient,
                                               confidential: Registered) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(confidential, max_age="²"))
    assert resp.status_code == 302 and error_of(resp.headers["Location"]) == "invalid_request"


def test_full_width_max_age_is_invalid_request(browser: FlaskClient,
                                              confidential: Registered) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(confidential, max_age="３"))
    assert error_of(resp.headers["Location"]) == "invalid_request"


BAD_CLAIMS = {
    "id_token_string": '{"id_token": "acr"}',
    "id_token_null": '{"id_token": null}',
    "acr_values_number": '{"id_token": {"acr": {"essential": true, "values": 4}}}',
    "essential_string": '{"id_token": {"acr": {"essential": "yes", "values": ["x"]}}}',
    "array_not_object": "[" * 1000 + "]" * 1000,
    "deep_objects": '{"a":' * 600 + "1" + "}" * 600,
    "not_json": "{id_token",
}


@pytest.mark.parametrize("claims", BAD_CLAIMS.values(), ids=BAD_CLAIMS.keys())
def test_malformed_claims_parameter_is_invalid_request(
        browser: FlaskClient, confidential: Registered, provider: Provider,
        claims: str) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(confidential, claims=claims))
    if resp.status_code == 400:  # longer than a parameter may be: refused before parsing
        assert "Location" not in resp.headers
    else:
        assert error_of(resp.headers["Location"]) == "invalid_request"
    assert count(provider, auth_codes) == 0


def test_well_formed_claims_request_still_works(browser: FlaskClient,
                                                confidential: Registered) -> None:
    claims = json.dumps({"id_token": {"acr": None, "name": {"essential": True}},
                         "userinfo": {"email": None}})
    loc = authorize(browser, confidential.client, extra={"claims": claims})
    assert code_of(loc)


# -- 8. OIDC conformance -------------------------------------------------------------------

def test_request_object_is_refused_with_request_not_supported(
        browser: FlaskClient, confidential: Registered, provider: Provider) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(confidential, request="eyJ.eyJ.sig"))
    assert error_of(resp.headers["Location"]) == "request_not_supported"
    assert count(provider, auth_codes) == 0


def test_request_uri_is_refused_with_request_uri_not_supported(
        browser: FlaskClient, confidential: Registered, provider: Provider) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(
        confidential, request_uri="https://evil.example/req.jwt"))
    assert error_of(resp.headers["Location"]) == "request_uri_not_supported"
    assert count(provider, auth_codes) == 0


def test_discovery_says_request_objects_are_not_supported(browser: FlaskClient) -> None:
    meta = browser.get("/.well-known/openid-configuration").get_json()
    assert meta["request_parameter_supported"] is False
    assert meta["request_uri_parameter_supported"] is False


def test_duplicate_nonce_at_authorize_is_refused(browser: FlaskClient,
                                                 confidential: Registered,
                                                 provider: Provider) -> None:
    login(browser)
    params = list(query(confidential).items()) + [("nonce", "second")]
    resp = browser.get("/authorize", query_string=params)
    assert error_of(resp.headers["Location"]) == "invalid_request"
    assert count(provider, auth_codes) == 0


def test_duplicate_max_age_at_authorize_is_refused(browser: FlaskClient,
                                                   confidential: Registered) -> None:
    login(browser)
    params = list(query(confidential).items()) + [("max_age", "0"), ("max_age", "9999")]
    resp = browser.get("/authorize", query_string=params)
    assert error_of(resp.headers["Location"]) == "invalid_request"


def _code(browser: FlaskClient, reg: Registered) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    return code_of(authorize(browser, reg.client, pkce=challenge)), verifier


def test_duplicate_code_at_token_is_refused(browser: FlaskClient, rp: FlaskClient,
                                            confidential: Registered,
                                            provider: Provider) -> None:
    code, verifier = _code(browser, confidential)
    body = (f"grant_type=authorization_code&code={code}&code=other&redirect_uri={REDIRECT}"
            f"&code_verifier={verifier}")
    resp = rp.post("/token", data=body, content_type="application/x-www-form-urlencoded",
                   auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_basic_and_client_secret_post_together_are_refused(
        rp: FlaskClient, confidential: Registered, provider: Provider) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials",
                                   "client_id": confidential.client.client_id,
                                   "client_secret": "wrong-body-secret"},
                   auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_basic_with_another_body_client_id_is_refused(
        rp: FlaskClient, confidential: Registered, public: Registered,
        provider: Provider) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials",
                                   "client_id": public.client.client_id},
                   auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_client_assertion_and_basic_together_are_refused(
        rp: FlaskClient, confidential: Registered, provider: Provider) -> None:
    resp = rp.post("/token", data={
        "grant_type": "client_credentials", "client_assertion": "eyJ.eyJ.sig",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
        auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_basic_with_the_same_body_client_id_still_works(rp: FlaskClient,
                                                        confidential: Registered) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials",
                                   "client_id": confidential.client.client_id},
                   auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 200, resp.get_json()


def _exchange(browser: FlaskClient, rp: FlaskClient, reg: Registered) -> dict[str, object]:
    code, verifier = _code(browser, reg)
    status, body = token_request(rp, reg, grant_type="authorization_code", code=code,
                                 redirect_uri=REDIRECT, code_verifier=verifier)
    assert status == 200, body
    return body


def _live_sessions(provider: Provider) -> int:
    with provider.db() as s:
        return int(s.execute(select(func.count()).select_from(sso_sessions).where(
            sso_sessions.c.ended_at.is_(None))).scalar_one())


def test_access_token_as_id_token_hint_is_refused(browser: FlaskClient, rp: FlaskClient,
                                                  confidential: Registered,
                                                  provider: Provider) -> None:
    body = _exchange(browser, rp, confidential)
    resp = browser.get("/logout", query_string={"id_token_hint": body["access_token"]})
    assert resp.status_code == 400
    assert _live_sessions(provider) == 1
    # the genuine ID token still ends the session without asking
    done = browser.get("/logout", query_string={"id_token_hint": body["id_token"]})
    assert done.status_code == 200 and _live_sessions(provider) == 0


def test_userinfo_refuses_a_client_credentials_token(rp: FlaskClient,
                                                     confidential: Registered) -> None:
    status, body = token_request(rp, confidential, grant_type="client_credentials",
                                 scope="openid")
    assert status == 200, body
    resp = rp.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_token"


def test_another_app_introspecting_a_token_hears_inactive(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    from idp.oidc.clients import build_client

    other, secret = provider.clients.add(build_client(
        name="其他应用", redirect_uris=[REDIRECT], level=2, first_party=True))
    body = _exchange(browser, rp, confidential)
    for token in (body["access_token"], body["refresh_token"]):
        resp = rp.post("/introspect", data={"token": token}, auth=(other.client_id, secret))
        assert resp.status_code == 200 and resp.get_json() == {"active": False}
        own = rp.post("/introspect", data={"token": token},
                      auth=(confidential.client.client_id, str(confidential.secret)))
        assert own.get_json()["active"] is True
