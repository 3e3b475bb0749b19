"""The protocol working as specified: tokens verified by an independent library
(PyJWT) against the published JWKS before and after rotation, discovery, userinfo,
consent, prompt/max_age, refresh rotation, client credentials, revocation."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from idp.oidc.clients import build_client
from idp.oidc.provider import Provider
from tests.fixtures.idp import (
    ISSUER,
    REDIRECT,
    ZHANG,
    Registered,
    authorize,
    code_of,
    csrf_of,
    login,
    pkce_pair,
    token_request,
)


def full_login(browser: FlaskClient, rp: FlaskClient, reg: Registered,
               scope: str = "openid profile email department groups") -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, reg.client, pkce=challenge, scope=scope))
    status, body = token_request(rp, reg, grant_type="authorization_code", code=code,
                                 redirect_uri=reg.client.redirect_uris[0],
                                 code_verifier=verifier)
    assert status == 200, body
    return body


def verify_with_pyjwt(rp: FlaskClient, token: str, audience: str,
                      typ: str | None = None) -> dict[str, Any]:
    jwks = rp.get("/jwks").get_json()
    header = jwt.get_unverified_header(token)
    if typ:
        assert header["typ"] == typ
    key = jwt.PyJWK.from_dict([k for k in jwks["keys"] if k["kid"] == header["kid"]][0])
    return jwt.decode(token, key.key, algorithms=["ES256", "RS256"], audience=audience,
                      issuer=ISSUER)


def test_discovery_document(rp: FlaskClient) -> None:
    meta = rp.get("/.well-known/openid-configuration").get_json()
    assert meta["issuer"] == ISSUER
    assert meta["code_challenge_methods_supported"] == ["S256"]
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                 "end_session_endpoint", "introspection_endpoint", "revocation_endpoint"):
        assert meta[name].startswith(ISSUER + "/")
    assert "department" in meta["scopes_supported"]
    assert rp.get("/.well-known/oauth-authorization-server").get_json()["issuer"] == ISSUER


def test_tokens_verify_with_pyjwt_before_and_after_rotation(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider, services: Any) -> None:
    cid = confidential.client.client_id
    before = full_login(browser, rp, confidential)
    idt = verify_with_pyjwt(rp, before["id_token"], cid)
    assert idt["sub"] == ZHANG.entry_uuid and idt["name"] == "张伟"
    assert idt["department"] == "市财政局/预算处" and idt["groups"] == ["财务审核组"]
    assert idt["nonce"] and idt["auth_time"] and idt["acr"] and idt["amr"] == ["pwd"]
    assert idt["sid"]
    at = verify_with_pyjwt(rp, before["access_token"], cid, typ="at+jwt")
    assert at["client_id"] == cid and at["jti"] and "openid" in at["scope"]

    published_next = {k["kid"] for k in rp.get("/jwks").get_json()["keys"]}
    # `govtrust keys rotate`, as an operator runs it, in its own Services
    from click.testing import CliRunner

    from idp.runtime.cli import cli

    result = CliRunner().invoke(cli, ["--home", str(services.config.home), "keys", "rotate"])
    assert result.exit_code == 0, result.output
    provider.keys._loaded = None  # what the 30 s key cache does by itself in each worker
    after = full_login(browser, rp, confidential)
    new_kid = jwt.get_unverified_header(after["id_token"])["kid"]
    assert new_kid != jwt.get_unverified_header(before["id_token"])["kid"]
    assert new_kid in published_next  # it was published before it signed
    # both the old and the new tokens verify against what is published now
    verify_with_pyjwt(rp, before["id_token"], cid)
    verify_with_pyjwt(rp, before["access_token"], cid, typ="at+jwt")
    verify_with_pyjwt(rp, after["id_token"], cid)
    verify_with_pyjwt(rp, after["access_token"], cid, typ="at+jwt")


def test_rs256_per_client(browser: FlaskClient, rp: FlaskClient, provider: Provider) -> None:
    client, secret = provider.clients.add(build_client(
        name="旧系统", redirect_uris=[REDIRECT], level=2, first_party=True, id_token_alg="RS256"))
    body = full_login(browser, rp, Registered(client, secret))
    assert jwt.get_unverified_header(body["id_token"])["alg"] == "RS256"
    verify_with_pyjwt(rp, body["id_token"], client.client_id)


def test_userinfo_returns_chinese_claims(browser: FlaskClient, rp: FlaskClient,
                                         confidential: Registered) -> None:
    body = full_login(browser, rp, confidential)
    resp = rp.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status_code == 200
    info = resp.get_json()
    assert info["sub"] == ZHANG.entry_uuid and info["name"] == "张伟"
    assert info["preferred_username"] == "zhangwei" and info["title"] == "科长"
    assert "张伟".encode() in resp.data  # UTF-8 on the wire, not \\u escapes


def test_userinfo_releases_only_granted_scopes(browser: FlaskClient, rp: FlaskClient,
                                               confidential: Registered) -> None:
    body = full_login(browser, rp, confidential, scope="openid email")
    info = rp.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert set(info.get_json()) == {"sub", "email", "email_verified"}


def test_userinfo_without_valid_token_is_401(rp: FlaskClient) -> None:
    resp = rp.get("/userinfo", headers={"Authorization": "Bearer nonsense"})
    assert resp.status_code == 401 and "invalid_token" in resp.headers["WWW-Authenticate"]


def test_refresh_rotates(browser: FlaskClient, rp: FlaskClient, confidential: Registered) -> None:
    first = full_login(browser, rp, confidential)
    status, second = token_request(rp, confidential, grant_type="refresh_token",
                                   refresh_token=first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    status, third = token_request(rp, confidential, grant_type="refresh_token",
                                  refresh_token=str(second["refresh_token"]))
    assert status == 200


def test_client_credentials_and_introspection(rp: FlaskClient, confidential: Registered) -> None:
    status, body = token_request(rp, confidential, grant_type="client_credentials")
    assert status == 200 and "refresh_token" not in body
    intro = rp.post("/introspect", data={"token": body["access_token"]},
                    auth=(confidential.client.client_id, confidential.secret)).get_json()
    assert intro["active"] is True and intro["client_id"] == confidential.client.client_id
    assert intro["sub"] == confidential.client.client_id


def test_client_secret_post_works(rp: FlaskClient, confidential: Registered) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials",
                                   "client_id": confidential.client.client_id,
                                   "client_secret": confidential.secret})
    assert resp.status_code == 200


def test_revoking_refresh_token_ends_its_access_tokens(browser: FlaskClient, rp: FlaskClient,
                                                       confidential: Registered) -> None:
    body = full_login(browser, rp, confidential)
    auth = (confidential.client.client_id, confidential.secret)
    assert rp.post("/revoke", data={"token": body["refresh_token"],
                                    "token_type_hint": "refresh_token"},
                   auth=auth).status_code == 200
    assert rp.post("/introspect", data={"token": body["access_token"]},
                   auth=auth).get_json() == {"active": False}
    assert rp.get("/userinfo", headers={
        "Authorization": f"Bearer {body['access_token']}"}).status_code == 401


def test_revoking_access_token(rp: FlaskClient, confidential: Registered) -> None:
    _, body = token_request(rp, confidential, grant_type="client_credentials")
    auth = (confidential.client.client_id, confidential.secret)
    assert rp.post("/revoke", data={"token": body["access_token"]}, auth=auth).status_code == 200
    assert rp.post("/introspect", data={"token": body["access_token"]},
                   auth=auth).get_json() == {"active": False}


def test_rotated_client_secret(rp: FlaskClient, confidential: Registered,
                               provider: Provider) -> None:
    new = provider.clients.rotate_secret(confidential.client.client_id)
    provider.clients._cache.clear()  # what the short cache does within seconds
    assert token_request(rp, confidential, grant_type="client_credentials")[0] == 401
    assert token_request(rp, Registered(confidential.client, new),
                         grant_type="client_credentials")[0] == 200


def test_sso_session_serves_a_second_app_without_login(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered, provider: Provider,
        directory: Any) -> None:
    full_login(browser, rp, confidential)
    calls = directory.calls
    other, secret = provider.clients.add(build_client(
        name="公文系统", redirect_uris=["http://127.0.0.1:5100/cb"], level=2, first_party=True))
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": other.client_id,
              "redirect_uri": "http://127.0.0.1:5100/cb", "scope": "openid",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    resp = browser.get("/authorize", query_string=params)
    assert resp.headers["Location"].startswith("http://127.0.0.1:5100/cb?code=")
    assert directory.calls == calls  # no second password check


def test_prompt_login_and_max_age_force_a_fresh_login(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered) -> None:
    full_login(browser, rp, confidential)
    base = {"response_type": "code", "client_id": confidential.client.client_id,
            "redirect_uri": REDIRECT, "scope": "openid"}
    assert browser.get("/authorize", query_string={**base, "prompt": "login"}
                       ).headers["Location"].startswith("/login")
    assert browser.get("/authorize", query_string={**base, "max_age": "0"}
                       ).headers["Location"].startswith("/login")
    assert browser.get("/authorize", query_string={**base, "max_age": "3600"}
                       ).headers["Location"].startswith(REDIRECT + "?code=")
    # and prompt=login is satisfied by the login it asked for (no loop)
    loc = authorize(browser, confidential.client, extra={"prompt": "login"})
    assert loc.startswith(REDIRECT + "?code=")


def test_prompt_none_without_session(browser: FlaskClient, confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid", "prompt": "none", "state": "st"})
    assert resp.headers["Location"] == REDIRECT + "?error=login_required&state=st"


def test_login_hint_prefills_the_form(browser: FlaskClient, confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid", "login_hint": "zhangwei"})
    page = browser.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'value="zhangwei"' in page


def test_third_party_app_asks_consent_once(browser: FlaskClient, rp: FlaskClient,
                                           provider: Provider) -> None:
    client, secret = provider.clients.add(build_client(
        name="第三方统计", redirect_uris=["https://stats.example.gov.cn/cb"], level=2))
    params = {"response_type": "code", "client_id": client.client_id,
              "redirect_uri": "https://stats.example.gov.cn/cb", "scope": "openid email",
              "state": "s1"}
    login(browser)
    page = browser.get("/authorize", query_string=params)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "第三方统计" in html and "电子邮箱" in html
    action = html.split('action="')[1].split('"')[0].replace("&amp;", "&")
    denied = browser.post(action, data={"csrf": csrf_of(html), "decision": "deny"})
    assert "error=access_denied" in denied.headers["Location"]
    page = browser.get("/authorize", query_string=params)
    html = page.get_data(as_text=True)
    allowed = browser.post(action, data={"csrf": csrf_of(html), "decision": "allow"})
    assert allowed.headers["Location"].startswith("https://stats.example.gov.cn/cb?code=")
    again = browser.get("/authorize", query_string=params)
    assert again.headers["Location"].startswith("https://stats.example.gov.cn/cb?code=")


def test_consent_post_without_csrf_is_refused(browser: FlaskClient, provider: Provider) -> None:
    client, _ = provider.clients.add(build_client(
        name="第三方统计", redirect_uris=["https://stats.example.gov.cn/cb"], level=2))
    login(browser)
    resp = browser.post("/consent?" + "&".join([
        "response_type=code", f"client_id={client.client_id}",
        "redirect_uri=https://stats.example.gov.cn/cb", "scope=openid"]),
        data={"decision": "allow"})
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_level_3_app_is_not_served_by_a_password_session(browser: FlaskClient,
                                                         provider: Provider) -> None:
    client, _ = provider.clients.add(build_client(
        name="涉密审批", redirect_uris=[REDIRECT], level=3, first_party=True))
    loc = authorize(browser, client)
    # stepped up, not served: the certificate is asked for, the session is kept
    assert loc.startswith("/login/certificate?"), loc
    loc = authorize(browser, client, extra={"prompt": "none"})
    assert "error=unmet_authentication_requirements" in loc


@pytest.mark.parametrize("path", ["/login", "/authorize", "/token", "/jwks"])
def test_security_headers(rp: FlaskClient, path: str) -> None:
    resp = rp.get(path)
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp  # no inline code at all
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_session_cookie_flags(browser: FlaskClient) -> None:
    page = browser.get("/login")
    token = csrf_of(page.get_data(as_text=True))
    resp = browser.post("/login", data={"uid": "zhangwei", "password": "Corr3ct-horse-battery",
                                        "csrf": token, "return": "/"})
    cookie = [c for c in resp.headers.getlist("Set-Cookie") if c.startswith("gt_sso=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_language_default_and_switch(rp: FlaskClient) -> None:
    zh = rp.get("/login").get_data(as_text=True)
    assert 'lang="zh-CN"' in zh and "用户名" in zh
    en = rp.get("/login?lang=en").get_data(as_text=True)
    assert 'lang="en"' in en and "User name" in en
    assert 'lang="en"' in rp.get("/login").get_data(as_text=True)  # remembered by cookie
    other = rp.application.test_client()
    assert 'lang="en"' in other.get("/login", headers={
        "Accept-Language": "en-GB,en;q=0.9"}).get_data(as_text=True)


def test_suspended_person_is_told_only_after_the_right_password(
        browser: FlaskClient, directory: Any) -> None:
    from dataclasses import replace

    from directory.model import PersonStatus

    directory.people["zhangwei"] = ("pw-Right-1", replace(ZHANG, status=PersonStatus.SUSPENDED))
    _, wrong, _ = login(browser, password="pw-wrong")
    assert "用户名或密码错误" in wrong and "暂停" not in wrong
    _, right, _ = login(browser, password="pw-Right-1")
    assert "暂停" in right


def test_jwks_has_no_private_parts(rp: FlaskClient) -> None:
    for key in rp.get("/jwks").get_json()["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
        assert key["use"] == "sig" and key["alg"] in ("ES256", "RS256")
    assert json.dumps(rp.get("/jwks").get_json())


def assertion_client(provider: Provider) -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    client, secret = provider.clients.add(build_client(
        name="数据交换平台", redirect_uris=[REDIRECT], level=2, auth_method="private_key_jwt",
        jwks=json.dumps({"keys": [{**public, "kid": "k1"}]})))
    assert secret is not None  # issued, but this app authenticates with its key
    return client, key


def _assertion(client_id: str, key: Any, jti: str, aud: str = ISSUER + "/token") -> str:
    import time

    now = int(time.time())
    return jwt.encode({"iss": client_id, "sub": client_id, "aud": aud, "jti": jti,
                       "iat": now, "exp": now + 60}, key, algorithm="ES256",
                      headers={"kid": "k1"})


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_private_key_jwt_client_authentication(rp: FlaskClient, provider: Provider) -> None:
    client, key = assertion_client(provider)
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _assertion(client.client_id, key, "jti-1")}
    ok = rp.post("/token", data=form)
    assert ok.status_code == 200, ok.get_json()
    replay = rp.post("/token", data=form)  # the same jti again
    assert replay.status_code in (400, 401) and replay.get_json()["error"] == "invalid_client"


def test_private_key_jwt_with_foreign_key_or_audience_is_refused(
        rp: FlaskClient, provider: Provider) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    client, key = assertion_client(provider)
    other = ec.generate_private_key(ec.SECP256R1())
    for assertion in (_assertion(client.client_id, other, "jti-2"),
                      _assertion(client.client_id, key, "jti-3", aud="https://elsewhere")):
        resp = rp.post("/token", data={"grant_type": "client_credentials",
                                       "client_assertion_type": ASSERTION_TYPE,
                                       "client_assertion": assertion})
        assert resp.status_code in (400, 401) and resp.get_json()["error"] == "invalid_client"


def test_authorize_by_post_continues_as_get(browser: FlaskClient,
                                            confidential: Registered) -> None:
    form = {"response_type": "code", "client_id": confidential.client.client_id,
            "redirect_uri": REDIRECT, "scope": "openid", "state": "p"}
    resp = browser.post("/authorize", data=form)
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/authorize?")
    login(browser)
    final = browser.get(resp.headers["Location"])
    assert final.headers["Location"].startswith(REDIRECT + "?code=")
