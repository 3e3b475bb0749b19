"""Every "Bad input" case of the IdP issue: the RFC error code, and no side effect."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from idp.errors import InvalidClientMetadata
from idp.login.tables import sso_sessions
from idp.oidc.clients import validate_redirect_uri
from idp.oidc.provider import Provider
from idp.oidc.tables import auth_codes, oauth_clients, tokens
from tests.fixtures.idp import (
    PASSWORD,
    REDIRECT,
    Registered,
    authorize,
    code_of,
    csrf_of,
    login,
    pkce_pair,
    token_request,
)


def count(provider: Provider, table: object) -> int:
    with provider.db() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def code_exchange(rp: FlaskClient, reg: Registered, code: str, verifier: str | None = None,
                  redirect_uri: str = REDIRECT) -> tuple[int, dict[str, object]]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier
    return token_request(rp, reg, **form)


# -- the authorization endpoint --------------------------------------------------------

def test_unknown_client_at_authorize_gets_error_page_and_no_redirect(
        browser: FlaskClient, provider: Provider) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": "gt-nobody", "redirect_uri": REDIRECT,
        "scope": "openid", "state": "s"})
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert count(provider, auth_codes) == 0


NEAR_MISSES = {
    "extra_path": "http://127.0.0.1:5000/callback/extra",
    "at_in_authority": "http://127.0.0.1:5000@evil.example/callback",
    "case_change": "http://127.0.0.1:5000/Callback",
    "dot_dot_semicolon": "http://127.0.0.1:5000/callback/..;/evil",
    "added_query": "http://127.0.0.1:5000/callback?next=evil",
    "different_port": "http://127.0.0.1:5001/callback",
    "fragment": "http://127.0.0.1:5000/callback#frag",
    "scheme_case": "HTTP://127.0.0.1:5000/callback",
    "trailing_slash": "http://127.0.0.1:5000/callback/",
}


@pytest.mark.parametrize("uri", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_near_miss_redirect_uri_is_refused_without_redirect(
        browser: FlaskClient, confidential: Registered, provider: Provider, uri: str) -> None:
    login(browser)  # even with a live session nothing is issued
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": uri, "scope": "openid", "state": "s"})
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert count(provider, auth_codes) == 0


def test_missing_redirect_uri_is_refused(browser: FlaskClient, confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id, "scope": "openid"})
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_public_client_without_pkce_is_refused(browser: FlaskClient, public: Registered,
                                              provider: Provider) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": public.client.client_id,
        "redirect_uri": public.client.redirect_uris[0], "scope": "openid", "state": "s"})
    assert resp.status_code == 302
    assert "error=invalid_request" in resp.headers["Location"]
    assert count(provider, auth_codes) == 0


def test_plain_pkce_method_is_refused(browser: FlaskClient, confidential: Registered,
                                      provider: Provider) -> None:
    verifier, _ = pkce_pair()
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid", "code_challenge": verifier,
        "code_challenge_method": "plain"})
    assert resp.status_code == 302 and "error=invalid_request" in resp.headers["Location"]
    assert count(provider, auth_codes) == 0


def test_unknown_scope_is_refused(browser: FlaskClient, confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid admin"})
    assert resp.status_code == 302 and "error=invalid_scope" in resp.headers["Location"]


def test_unsupported_response_type_is_refused(browser: FlaskClient,
                                              confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "token", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid"})
    # RFC 6749 section 4.1.2.1: the redirect URI is registered, so the error goes there
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(REDIRECT + "?error=unsupported_response_type")


def test_oversized_authorize_parameter_is_refused(browser: FlaskClient,
                                                  confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid", "state": "x" * 5000})
    assert resp.status_code == 400 and "Location" not in resp.headers


# -- registration ------------------------------------------------------------------------

@pytest.mark.parametrize("uri", [
    "https://*.example.gov.cn/cb", "javascript:alert(1)", "data:text/html,hi",
    "http://apps.example.gov.cn/cb", "https://apps.example.gov.cn/cb#x",
    "https://user@apps.example.gov.cn/cb", "/relative/cb", "",
], ids=["wildcard", "javascript", "data", "http_not_loopback", "fragment", "userinfo",
        "relative", "empty"])
def test_bad_redirect_uri_cannot_be_registered(uri: str) -> None:
    with pytest.raises(InvalidClientMetadata):
        validate_redirect_uri(uri)


@pytest.mark.parametrize("uri", ["https://apps.example.gov.cn/cb", "http://127.0.0.1:5000/cb",
                                 "http://[::1]:8080/cb", "http://localhost/cb"])
def test_good_redirect_uri_can_be_registered(uri: str) -> None:
    assert validate_redirect_uri(uri) == uri


# -- the token endpoint --------------------------------------------------------------------

def test_unknown_client_at_token_endpoint(rp: FlaskClient, provider: Provider) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials"},
                   auth=("gt-nobody", "whatever"))
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"
    assert count(provider, tokens) == 0


def test_wrong_secret_is_refused_and_the_code_stays_usable(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    wrong = Registered(confidential.client, "not-the-secret")
    status, body = code_exchange(rp, wrong, code, verifier)
    assert status == 401 and body["error"] == "invalid_client"
    assert count(provider, tokens) == 0
    status, body = code_exchange(rp, confidential, code, verifier)
    assert status == 200, body


def test_missing_pkce_verifier_is_refused(browser: FlaskClient, rp: FlaskClient,
                                          confidential: Registered, provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, body = code_exchange(rp, confidential, code)
    assert status == 400 and body["error"] == "invalid_request"
    assert count(provider, tokens) == 0
    assert code_exchange(rp, confidential, code, verifier)[0] == 200


def test_wrong_pkce_verifier_is_refused(browser: FlaskClient, rp: FlaskClient,
                                        confidential: Registered, provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    other, _ = pkce_pair()
    status, body = code_exchange(rp, confidential, code, other)
    assert status == 400 and body["error"] == "invalid_grant"
    assert count(provider, tokens) == 0
    assert code_exchange(rp, confidential, code, verifier)[0] == 200


def test_public_client_missing_verifier_is_refused(browser: FlaskClient, rp: FlaskClient,
                                                   public: Registered,
                                                   provider: Provider) -> None:
    _, challenge = pkce_pair()
    code = code_of(authorize(browser, public.client, pkce=challenge))
    status, body = code_exchange(rp, public, code, redirect_uri=public.client.redirect_uris[0])
    assert status == 400 and body["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_verifier_without_prior_challenge_is_refused(browser: FlaskClient, rp: FlaskClient,
                                                     confidential: Registered,
                                                     provider: Provider) -> None:
    code = code_of(authorize(browser, confidential.client))
    verifier, _ = pkce_pair()
    status, body = code_exchange(rp, confidential, code, verifier)
    assert status == 400 and body["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_replayed_code_is_refused_and_revokes_what_it_issued(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, first = code_exchange(rp, confidential, code, verifier)
    assert status == 200
    status, body = code_exchange(rp, confidential, code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    # what the first exchange issued no longer works
    intro = rp.post("/introspect", data={"token": first["access_token"]},
                    auth=(confidential.client.client_id, confidential.secret))
    assert intro.get_json() == {"active": False}
    status, body = token_request(rp, confidential, grant_type="refresh_token",
                                 refresh_token=str(first["refresh_token"]))
    assert status == 400 and body["error"] == "invalid_grant"


def test_expired_code_is_refused(browser: FlaskClient, rp: FlaskClient,
                                 confidential: Registered, provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    with provider.db.begin() as s:  # 61 s later
        s.execute(update(auth_codes).values(expires_at=auth_codes.c.expires_at - 61))
    status, body = code_exchange(rp, confidential, code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    assert count(provider, tokens) == 0


def test_code_of_another_client_is_refused(browser: FlaskClient, rp: FlaskClient,
                                           confidential: Registered, provider: Provider) -> None:
    from idp.oidc.clients import build_client

    other, secret = provider.clients.add(build_client(
        name="其他应用", redirect_uris=[REDIRECT], level=2, first_party=True))
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, body = code_exchange(rp, Registered(other, secret), code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    assert code_exchange(rp, confidential, code, verifier)[0] == 200


def test_code_with_different_redirect_uri_is_refused(browser: FlaskClient, rp: FlaskClient,
                                                     confidential: Registered,
                                                     provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, body = code_exchange(rp, confidential, code, verifier,
                                 redirect_uri=REDIRECT + "/x")
    assert status == 400 and body["error"] == "invalid_grant"
    assert count(provider, tokens) == 0


def test_rotated_refresh_token_reuse_revokes_the_family(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    _, first = code_exchange(rp, confidential, code, verifier)
    status, second = token_request(rp, confidential, grant_type="refresh_token",
                                   refresh_token=str(first["refresh_token"]))
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    status, body = token_request(rp, confidential, grant_type="refresh_token",
                                 refresh_token=str(first["refresh_token"]))
    assert status == 400 and body["error"] == "invalid_grant"
    # the whole family is gone: the newest refresh token and access token too
    status, body = token_request(rp, confidential, grant_type="refresh_token",
                                 refresh_token=str(second["refresh_token"]))
    assert status == 400 and body["error"] == "invalid_grant"
    intro = rp.post("/introspect", data={"token": second["access_token"]},
                    auth=(confidential.client.client_id, confidential.secret))
    assert intro.get_json() == {"active": False}


def test_refresh_token_of_another_client_is_refused(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    from idp.oidc.clients import build_client

    other, secret = provider.clients.add(build_client(
        name="其他应用", redirect_uris=[REDIRECT], level=2, first_party=True))
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    _, first = code_exchange(rp, confidential, code, verifier)
    status, body = token_request(rp, Registered(other, secret), grant_type="refresh_token",
                                 refresh_token=str(first["refresh_token"]))
    assert status == 400 and body["error"] == "invalid_grant"
    assert token_request(rp, confidential, grant_type="refresh_token",
                         refresh_token=str(first["refresh_token"]))[0] == 200


def test_unsupported_grant_type(rp: FlaskClient, confidential: Registered) -> None:
    status, body = token_request(rp, confidential, grant_type="password", username="zhangwei",
                                 password="x")
    assert status == 400 and body["error"] == "unsupported_grant_type"


def test_public_client_cannot_use_client_credentials(rp: FlaskClient, public: Registered,
                                                     provider: Provider) -> None:
    status, body = token_request(rp, public, grant_type="client_credentials")
    assert status in (400, 401) and body["error"] in ("invalid_client", "unauthorized_client")
    assert count(provider, tokens) == 0


def test_malformed_json_body_at_token_endpoint(rp: FlaskClient, confidential: Registered,
                                               provider: Provider) -> None:
    resp = rp.post("/token", data='{"grant_type": "client_credentials",',
                   content_type="application/json",
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_well_formed_json_body_is_refused_too(rp: FlaskClient, confidential: Registered) -> None:
    resp = rp.post("/token", data=json.dumps({"grant_type": "client_credentials"}),
                   content_type="application/json",
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"


def test_malformed_form_body_at_token_endpoint(rp: FlaskClient, confidential: Registered,
                                               provider: Provider) -> None:
    resp = rp.post("/token", data=b"grant_type=client_credentials&scope=\xff\xfe%zz",
                   content_type="application/x-www-form-urlencoded",
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_parameters_in_query_string_are_refused(rp: FlaskClient, confidential: Registered,
                                                provider: Provider) -> None:
    resp = rp.post("/token?client_secret=" + str(confidential.secret),
                   data={"grant_type": "client_credentials",
                         "client_id": confidential.client.client_id})
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_oversized_parameter_at_token_endpoint(rp: FlaskClient, confidential: Registered,
                                               provider: Provider) -> None:
    status, body = token_request(rp, confidential, grant_type="client_credentials",
                                 scope="openid " * 1000)
    assert status == 400 and body["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_oversized_body_at_token_endpoint(rp: FlaskClient, confidential: Registered,
                                          provider: Provider) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials", "pad": "x" * 70_000},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 413 and resp.get_json()["error"] == "invalid_request"
    assert count(provider, tokens) == 0


def test_failures_are_throttled_per_client(rp: FlaskClient, confidential: Registered) -> None:
    from idp.login.throttle import TOKEN_PER_CLIENT

    wrong = Registered(confidential.client, "nope")
    for _ in range(TOKEN_PER_CLIENT.failures):
        assert token_request(rp, wrong, grant_type="client_credentials")[0] == 401
    status, body = token_request(rp, confidential, grant_type="client_credentials")
    assert status == 429 and body["error"] == "slow_down"


# -- introspection -------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, object], claims: dict[str, object], key: bytes | None) -> str:
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)


def _real_claims(rp: FlaskClient, reg: Registered) -> tuple[str, dict[str, object]]:
    _, body = token_request(rp, reg, grant_type="client_credentials")
    token = str(body["access_token"])
    payload = token.split(".")[1]
    return token, json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_alg_none_token_is_inactive_at_introspection(rp: FlaskClient,
                                                     confidential: Registered,
                                                     provider: Provider) -> None:
    token, claims = _real_claims(rp, confidential)
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    forged = _forge({"alg": "none", "typ": "at+jwt", "kid": kid}, claims, None)
    resp = rp.post("/introspect", data={"token": forged},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 200 and resp.get_json() == {"active": False}


def test_hs256_token_signed_with_public_key_is_inactive(rp: FlaskClient,
                                                        confidential: Registered,
                                                        provider: Provider) -> None:
    token, claims = _real_claims(rp, confidential)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    jwk_json = json.dumps([k for k in provider.keys.jwks()["keys"]
                           if k["kid"] == header["kid"]][0]).encode()
    forged = _forge({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}, claims, jwk_json)
    resp = rp.post("/introspect", data={"token": forged},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.get_json() == {"active": False}
    # and the genuine token is active, so the refusal is the forgery's
    resp = rp.post("/introspect", data={"token": token},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.get_json()["active"] is True


def test_introspection_needs_client_authentication(rp: FlaskClient,
                                                   confidential: Registered) -> None:
    token, _ = _real_claims(rp, confidential)
    resp = rp.post("/introspect", data={"token": token})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"


def test_introspection_with_json_body_is_refused(rp: FlaskClient,
                                                 confidential: Registered) -> None:
    resp = rp.post("/introspect", data="{not json", content_type="application/json",
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"


def test_revocation_of_unknown_token_is_ok_and_changes_nothing(
        rp: FlaskClient, confidential: Registered, provider: Provider) -> None:
    token, _ = _real_claims(rp, confidential)
    resp = rp.post("/revoke", data={"token": "no-such-token"},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 200
    with provider.db() as s:
        assert s.execute(select(func.count()).select_from(tokens).where(
            tokens.c.revoked_at.is_not(None))).scalar_one() == 0


def test_revocation_with_wrong_secret_is_refused(rp: FlaskClient, confidential: Registered,
                                                 provider: Provider) -> None:
    token, _ = _real_claims(rp, confidential)
    resp = rp.post("/revoke", data={"token": token},
                   auth=(confidential.client.client_id, "wrong"))
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    intro = rp.post("/introspect", data={"token": token},
                    auth=(confidential.client.client_id, confidential.secret))
    assert intro.get_json()["active"] is True


# -- login and logout --------------------------------------------------------------------

def test_unknown_uid_and_wrong_password_look_the_same(browser: FlaskClient,
                                                      provider: Provider) -> None:
    s1, wrong_pw, _ = login(browser, password="wrong-password")
    s2, unknown, _ = login(browser, uid="nosuchperson", password="wrong-password")
    assert s1 == s2 == 200

    def strip(html: str) -> str:
        return html.replace("nosuchperson", "zhangwei")

    assert csrf_of(wrong_pw) and strip(unknown).count("用户名或密码错误") == 1
    assert wrong_pw.replace(csrf_of(wrong_pw), "") == strip(unknown).replace(
        csrf_of(unknown), "")
    assert count(provider, sso_sessions) == 0


def test_login_without_csrf_token_is_refused(browser: FlaskClient, provider: Provider) -> None:
    browser.get("/login")
    resp = browser.post("/login", data={"uid": "zhangwei", "password": "x", "csrf": "forged"})
    assert resp.status_code == 400
    assert count(provider, sso_sessions) == 0


def test_login_failures_are_throttled_per_uid(browser: FlaskClient, directory: object) -> None:
    from idp.login.throttle import LOGIN_PER_UID

    for _ in range(LOGIN_PER_UID.failures):
        login(browser, password="wrong-password")
    status, html, _ = login(browser)  # even the right password now waits
    assert status == 429 and "尝试次数过多" in html


def test_unregistered_post_logout_redirect_uri_is_refused(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    _, body = code_exchange(rp, confidential, code, verifier)
    resp = browser.get("/logout", query_string={
        "id_token_hint": body["id_token"],
        "post_logout_redirect_uri": "http://127.0.0.1:5000/bye/../evil"})
    assert resp.status_code == 400 and "Location" not in resp.headers
    with provider.db() as s:
        assert s.execute(select(func.count()).select_from(sso_sessions).where(
            sso_sessions.c.ended_at.is_(None))).scalar_one() == 1


def test_removed_client_cannot_get_tokens(rp: FlaskClient, confidential: Registered,
                                          provider: Provider) -> None:
    provider.clients.remove(confidential.client.client_id)
    with provider.db() as s:
        assert s.execute(select(oauth_clients)).first() is None
    status, body = token_request(rp, confidential, grant_type="client_credentials")
    assert status == 401 and body["error"] == "invalid_client"


def test_crlf_in_login_return_goes_home_without_a_500(browser: FlaskClient,
                                                      provider: Provider) -> None:
    page = browser.get("/login")
    resp = browser.post("/login", data={"uid": "zhangwei", "password": PASSWORD,
                                        "csrf": csrf_of(page.get_data(as_text=True)),
                                        "return": "/authorize?x=1\r\nSet-Cookie: a=b"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"


@pytest.mark.parametrize("value", ["/console/\\evil", "/console/\x00", "/console/例子",
                                   "/authorize?a=1 b"],
                         ids=["backslash", "nul", "non_ascii", "space"])
def test_safe_return_refuses_unsafe_characters(app: object, value: str) -> None:
    from idp.web.kit import safe_return

    assert safe_return(value) == "/"


def test_login_csrf_failure_says_the_page_expired(browser: FlaskClient) -> None:
    browser.get("/login")
    resp = browser.post("/login", data={"uid": "zhangwei", "password": "x", "csrf": "forged"})
    assert "页面已过期，请重新提交" in resp.get_data(as_text=True)
