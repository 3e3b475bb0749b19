"""``POST /introspect`` answered before Flask (``idp.web.client_calls``) answers as
the Flask view does: each request here is sent through the fast path and through
the Flask app alone, and the two answers must be the same to the byte (status,
headers, body). A request in the canonical form must be answered by the fast path
itself; any other goes to Flask with its body intact. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from idp.login.throttle import TOKEN_PER_CLIENT, Throttle
from idp.oidc.clients import build_client
from tests.fixtures.client_calls import Pair
from tests.fixtures.idp import (
    REDIRECT,
    authorize,
    code_of,
    freeze_throttle,
    pkce_pair,
    token_request,
)

pytestmark = pytest.mark.postgres


def test_active_client_credentials_token_by_basic_and_by_post(pair: Pair) -> None:
    token = pair.client_credentials()
    resp = pair.answered(data={"token": token}, auth=pair.basic())
    assert resp.status_code == 200 and resp.get_json()["active"] is True
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Strict-Transport-Security"]
    client_id, secret = pair.basic()
    resp = pair.answered(data={"token": token, "client_id": client_id,
                               "client_secret": secret})
    assert resp.get_json()["active"] is True


@pytest.mark.parametrize("hint", ["access_token", "refresh_token"])
def test_hints(pair: Pair, hint: str) -> None:
    token = pair.client_credentials()
    resp = pair.answered(data={"token": token, "token_type_hint": hint}, auth=pair.basic())
    assert resp.get_json()["active"] is (hint == "access_token")


def test_a_persons_tokens_and_their_revocation(pair: Pair) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(pair.browser, pair.app.client, pkce=challenge))
    status, body = token_request(pair.browser, pair.app, grant_type="authorization_code",
                                 code=code, redirect_uri=REDIRECT, code_verifier=verifier)
    assert status == 200, body
    access, refresh = str(body["access_token"]), str(body["refresh_token"])
    for token in (access, refresh):
        got = pair.answered(data={"token": token}, auth=pair.basic()).get_json()
        assert got["active"] is True and got["sub"] == body.get("sub", got["sub"])
        # Another app hears what it hears of an unknown token.
        got = pair.answered(data={"token": token}, auth=pair.basic(pair.other)).get_json()
        assert got == {"active": False}
    # Revoking the refresh token ends the grant, the access token with it, at once.
    assert pair.browser.post("/revoke", data={"token": refresh},
                             auth=pair.basic()).status_code == 200
    for token in (access, refresh):
        assert pair.answered(data={"token": token}, auth=pair.basic()).get_json() == {
            "active": False}


def test_a_revoked_access_token_is_inactive_at_once(pair: Pair) -> None:
    token = pair.client_credentials()
    assert pair.browser.post("/revoke", data={"token": token},
                             auth=pair.basic()).status_code == 200
    assert pair.answered(data={"token": token}, auth=pair.basic()).get_json() == {
        "active": False}


@pytest.mark.parametrize("token", ["abc", "a.b.c", "eyJ.eyJ.sig", "x" * 8192])
def test_tokens_that_are_not_ours(pair: Pair, token: str) -> None:
    assert pair.answered(data={"token": token}, auth=pair.basic()).get_json() == {
        "active": False}


def test_client_authentication_failures(pair: Pair) -> None:
    token = pair.client_credentials()
    client_id, _ = pair.basic()
    wrong = pair.answered(data={"token": token}, auth=(client_id, "wrong"))
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
    assert pair.answered(data={"token": token, "client_id": client_id,
                               "client_secret": "wrong"}).status_code == 401
    assert pair.answered(data={"token": token}, auth=("gt-nobody", "x")).status_code == 401
    unknown = pair.answered(data={"token": token, "client_id": "gt-nobody",
                                  "client_secret": "x"})
    assert unknown.status_code == 400 and unknown.get_json()["error"] == "invalid_client"


def test_a_public_client_cannot_introspect(pair: Pair) -> None:
    public, _ = pair.provider.clients.add(build_client(
        name="移动办公", redirect_uris=[REDIRECT], level=2, public=True))
    token = pair.client_credentials()
    resp = pair.answered(data={"token": token}, auth=(public.client_id, "guess"))
    assert resp.status_code == 401


def test_a_private_key_jwt_client_cannot_use_a_secret(pair: Pair) -> None:
    jwks = '{"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}'
    client, _ = pair.provider.clients.add(build_client(
        name="签名应用", redirect_uris=[REDIRECT], level=2, auth_method="private_key_jwt",
        jwks=jwks))
    resp = pair.answered(data={"token": "abc"}, auth=(client.client_id, "guess"))
    assert resp.status_code == 401


def test_failures_on_either_path_share_one_budget(pair: Pair) -> None:
    freeze_throttle(pair.services)  # no window rolls over between the failures
    client_id, _ = pair.basic()
    token = pair.client_credentials()
    # pair.both sends each failure twice: through the fast path and through Flask.
    for i in range(TOKEN_PER_CLIENT.failures // 2):
        assert pair.answered(data={"token": token},
                             auth=(client_id, "wrong")).status_code == 401, i
    resp = pair.answered(data={"token": token}, auth=pair.basic())
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "60"
    assert resp.get_json()["error"] == "slow_down"


def test_an_unreachable_database_is_a_503_as_in_flask(pair: Pair) -> None:
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    pair.provider.throttle = Throttle(sessionmaker(bind=dead))
    try:
        resp = pair.answered(data={"token": "abc"}, auth=pair.basic())
    finally:
        dead.dispose()
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.get_json()["error"] == "temporarily_unavailable"


# -- what the fast path passes on, untouched ------------------------------------------

def test_a_percent_encoded_body_is_passed_on_and_read_by_flask(pair: Pair) -> None:
    token = pair.client_credentials()
    client_id, secret = pair.basic()
    body = "token=" + "".join(f"%{b:02X}" for b in token.encode())
    resp = pair.passed(data=body, content_type="application/x-www-form-urlencoded",
                       auth=(client_id, secret))
    assert resp.get_json()["active"] is True  # the body reached Flask whole


@pytest.mark.parametrize("kw", [
    pytest.param({"data": {"token": "a", "client_assertion": "x.y.z",
                           "client_assertion_type":
                               "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}},
                 id="private-key-jwt"),
    pytest.param({"data": {"token": "a"}}, id="no-client-authentication"),
    pytest.param({"data": {}}, id="no-token"),
    pytest.param({"data": {"token": "a", "token_type_hint": "id_token"}}, id="unsupported-hint"),
    pytest.param({"data": "token=a&token=b"}, id="repeated"),
    pytest.param({"data": "{}", "content_type": "application/json"}, id="json"),
    pytest.param({"data": {"token": "a"}, "query_string": "token=b"}, id="query-string"),
    pytest.param({"data": b"token=\xff"}, id="not-utf-8"),
    pytest.param({"data": "token=" + "a" * 8193}, id="token-too-long"),
    pytest.param({"data": "token=" + "a" * 70000}, id="body-too-large"),
    pytest.param({"data": "token=a\r\nb"}, id="crlf-in-value"),
    pytest.param({"data": {"token": "a"}, "headers": {"Authorization": "Basic !!!"}},
                 id="malformed-basic"),
    pytest.param({"data": {"token": "a"}, "headers": {"Authorization": "Bearer abc"}},
                 id="bearer"),
    pytest.param({"data": {"token": "a"},
                  "headers": {"Authorization": "Basic " + base64.b64encode(
                      b"gt-x:" + b"s" * 5000).decode()}}, id="oversized-basic"),
])
def test_other_requests_are_passed_on(pair: Pair, kw: dict[str, Any]) -> None:
    kw = dict(kw)
    if isinstance(kw.get("data"), str | bytes):
        kw.setdefault("content_type", "application/x-www-form-urlencoded")
    if "headers" not in kw and "client_assertion" not in str(kw.get("data")) \
            and kw.get("data") != {"token": "a"}:
        kw["auth"] = pair.basic()
    resp = pair.passed(**kw)
    assert resp.status_code >= 400 or resp.get_json() == {"active": False}


@pytest.mark.parametrize("length", ["²", "-1", "+5", " 5", "1_0", "0", "99999999999"])
def test_an_odd_content_length_is_passed_on(pair: Pair, length: str) -> None:
    resp = pair.fast.post("/introspect", data={"token": "abc"}, auth=pair.basic(),
                          environ_overrides={"CONTENT_LENGTH": length})
    assert pair.declined == ["POST"]
    assert resp.status_code in (200, 400, 401, 413)


def test_other_methods_and_paths_are_flasks(pair: Pair) -> None:
    assert pair.fast.get("/introspect").status_code == 405
    assert pair.fast.post("/introspect/", data={"token": "a"},
                          auth=pair.basic()).status_code in (308, 404, 405)
    assert pair.declined == ["GET"]  # Flask's 405; "/introspect/" is another path
