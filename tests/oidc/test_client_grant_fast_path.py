"""The client-credentials ``POST /token`` answered before Flask
(``idp.web.client_calls``, ``idp.oidc.client_grant``) answers as the Flask view
does: each request is sent through the fast path and through the Flask app alone.
A refusal must be the same to the byte; a token the same in everything but what
makes each token new (``jti``, ``iat``, ``exp``). A request in the canonical form
must be answered by the fast path itself; any other goes to Flask with its body
intact. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from werkzeug.test import TestResponse

from idp.login.throttle import TOKEN_PER_CLIENT, Throttle
from idp.oidc.clients import build_client
from tests.fixtures.client_calls import Pair
from tests.fixtures.idp import REDIRECT, freeze_throttle

pytestmark = pytest.mark.postgres
CC = {"grant_type": "client_credentials"}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def grants(pair: Pair) -> Pair:
    pair.path = "/token"
    return pair


def tokens_issued(_: Any, grant_type: str | None = None) -> float:
    """``govtrust_tokens_issued_total`` in this process's registry (the app here is
    built without ``/metrics``; ``Services`` counts every token it signs)."""
    from prometheus_client import REGISTRY

    return sum(sample.value for family in REGISTRY.collect() for sample in family.samples
               if sample.name == "govtrust_tokens_issued_total"
               and grant_type in (None, sample.labels.get("grant_type")))


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def same_grant(fast: TestResponse, flask: TestResponse) -> dict[str, Any]:
    """Both answers are 200 token responses that differ only in the token's own
    jti/iat/exp; the fast one's body."""
    assert fast.status_code == flask.status_code == 200, (fast.get_data(), flask.get_data())
    skip = {"Content-Length"}
    assert sorted(h for h in fast.headers.items() if h[0] not in skip) == \
        sorted(h for h in flask.headers.items() if h[0] not in skip)
    a, b = fast.get_json(), flask.get_json()
    assert a.keys() == b.keys() and {k: a[k] for k in a if k != "access_token"} == \
        {k: b[k] for k in b if k != "access_token"}
    ca, cb = claims(a["access_token"]), claims(b["access_token"])
    assert ca["jti"] != cb["jti"] and abs(ca["iat"] - cb["iat"]) <= 2
    new = {"jti", "iat", "exp"}
    assert {k: v for k, v in ca.items() if k not in new} == \
        {k: v for k, v in cb.items() if k not in new}
    assert ca["exp"] - ca["iat"] == cb["exp"] - cb["iat"]
    # The tokens' own headers (typ at+jwt, alg, kid) are the same too.
    assert a["access_token"].split(".")[0] == b["access_token"].split(".")[0]
    return dict(a)


def granted(grants: Pair, **kw: Any) -> dict[str, Any]:
    fast, flask = grants.both_answers(**kw)
    assert not grants.passed_on, "the fast path passed a canonical request on"
    return same_grant(fast, flask)


@pytest.mark.parametrize("scope", [None, "openid", "profile email department"])
def test_a_grant_by_basic_and_by_post(grants: Pair, scope: str | None) -> None:
    form = dict(CC, **({"scope": scope} if scope else {}))
    body = granted(grants, data=form, auth=grants.basic())
    assert body["token_type"] == "Bearer" and body["scope"] == (scope or "")
    client_id, secret = grants.basic()
    body = granted(grants, data=dict(form, client_id=client_id, client_secret=secret))
    # The token is ours: introspection by its own client finds it active.
    grants.path = "/introspect"
    got = grants.answered(data={"token": body["access_token"]}, auth=grants.basic()).get_json()
    assert got["active"] is True and got["sub"] == client_id and got["scope"] == (scope or "")


def test_each_grant_is_counted_as_issued(grants: Pair) -> None:
    before = tokens_issued(grants.browser, "client_credentials")
    granted(grants, data=CC, auth=grants.basic())
    assert tokens_issued(grants.browser, "client_credentials") == before + 2


@pytest.mark.parametrize("scope", ["unknown", "openid unknown", "OPENID"])
def test_an_unsupported_scope_is_refused_alike(grants: Pair, scope: str) -> None:
    before = tokens_issued(grants.browser)
    resp = grants.answered(data=dict(CC, scope=scope), auth=grants.basic())
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_scope"
    assert tokens_issued(grants.browser) == before


def test_client_authentication_failures(grants: Pair) -> None:
    before = tokens_issued(grants.browser)
    client_id, _ = grants.basic()
    wrong = grants.answered(data=CC, auth=(client_id, "wrong"))
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
    assert grants.answered(data=dict(CC, client_id=client_id,
                                     client_secret="wrong")).status_code == 401
    assert grants.answered(data=CC, auth=("gt-nobody", "x")).status_code == 401
    unknown = grants.answered(data=dict(CC, client_id="gt-nobody", client_secret="x"))
    assert unknown.status_code == 400 and unknown.get_json()["error"] == "invalid_client"
    assert tokens_issued(grants.browser) == before


def test_a_public_client_gets_no_grant(grants: Pair) -> None:
    public, _ = grants.provider.clients.add(build_client(
        name="移动办公", redirect_uris=[REDIRECT], level=2, public=True))
    assert grants.answered(data=CC, auth=(public.client_id, "guess")).status_code == 401
    resp = grants.answered(data=dict(CC, client_id=public.client_id, client_secret="guess"))
    assert resp.status_code == 401


def test_a_private_key_jwt_client_cannot_use_a_secret(grants: Pair) -> None:
    jwks = '{"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}'
    client, _ = grants.provider.clients.add(build_client(
        name="签名应用", redirect_uris=[REDIRECT], level=2, auth_method="private_key_jwt",
        jwks=jwks))
    assert grants.answered(data=CC, auth=(client.client_id, "guess")).status_code == 401


def test_failures_at_either_endpoint_share_one_budget(grants: Pair) -> None:
    freeze_throttle(grants.services)  # no window rolls over between the failures
    client_id, _ = grants.basic()
    # Each failure is sent twice (fast path and Flask); half of them at /introspect.
    for i in range(TOKEN_PER_CLIENT.failures // 2):
        grants.path = "/introspect" if i % 2 else "/token"
        assert grants.answered(data={"token": "abc"} if i % 2 else CC,
                               auth=(client_id, "wrong")).status_code == 401, i
    grants.path = "/token"
    before = tokens_issued(grants.browser)
    resp = grants.answered(data=CC, auth=grants.basic())  # the right secret, too late
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "60"
    assert resp.get_json()["error"] == "slow_down"
    assert tokens_issued(grants.browser) == before


def test_an_unreachable_database_is_a_503_as_in_flask(grants: Pair) -> None:
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    grants.provider.throttle = Throttle(sessionmaker(bind=dead))
    try:
        resp = grants.answered(data=CC, auth=grants.basic())
    finally:
        dead.dispose()
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"


# -- what the fast path passes on, untouched ------------------------------------------

def test_a_percent_encoded_scope_is_passed_on_and_read_by_flask(grants: Pair) -> None:
    resp = grants.fast.post("/token", data="grant_type=client_credentials&scope=openid%20email",
                            content_type=FORM, auth=grants.basic())
    assert grants.declined == ["POST"]
    assert resp.status_code == 200 and resp.get_json()["scope"] == "openid email"


@pytest.mark.parametrize("kw", [
    pytest.param({"data": {"grant_type": "authorization_code", "code": "x"}}, id="code"),
    pytest.param({"data": {"grant_type": "refresh_token"}}, id="refresh-without-token"),
    pytest.param({"data": {"grant_type": "password", "username": "a", "password": "b"}},
                 id="password-grant"),
    pytest.param({"data": {"grant_type": "client_credentials", "client_assertion": "x.y.z",
                           "client_assertion_type":
                               "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}},
                 id="private-key-jwt"),
    pytest.param({"data": CC, "noauth": True}, id="no-client-authentication"),
    pytest.param({"data": {}}, id="no-grant-type"),
    pytest.param({"data": "grant_type=client_credentials&grant_type=client_credentials"},
                 id="repeated"),
    pytest.param({"data": "grant_type=client_credentials&scope=openid++email"},
                 id="empty-scope-word"),
    pytest.param({"data": "grant_type=client_credentials&scope=+openid"}, id="leading-plus"),
    pytest.param({"data": "grant_type=client_credentials&scope="}, id="empty-scope"),
    pytest.param({"data": "grant_type=client_credentials&resource=https://x"},
                 id="unknown-field"),
    pytest.param({"data": "{}", "content_type": "application/json"}, id="json"),
    pytest.param({"data": CC, "query_string": "scope=openid"}, id="query-string"),
    pytest.param({"data": b"grant_type=client_credentials&scope=\xff"}, id="not-utf-8"),
    pytest.param({"data": "grant_type=client_credentials&scope=" + "a" * 2049},
                 id="scope-too-long"),
    pytest.param({"data": "grant_type=client_credentials&scope=" + "a" * 70000},
                 id="body-too-large"),
    pytest.param({"data": "grant_type=client_credentials\r\nscope=openid"}, id="crlf"),
    pytest.param({"data": "grant_type=client_credentials&scope=openid\x00"}, id="nul"),
    pytest.param({"data": CC, "headers": {"Authorization": "Basic !!!"}},
                 id="malformed-basic"),
    pytest.param({"data": CC, "headers": {"Authorization": "Bearer abc"}}, id="bearer"),
    pytest.param({"data": CC, "headers": {"Authorization": "Basic " + base64.b64encode(
        b"gt-x:" + b"s" * 5000).decode()}}, id="oversized-basic"),
])
def test_other_requests_are_passed_on(grants: Pair, kw: dict[str, Any]) -> None:
    kw = dict(kw)
    if isinstance(kw.get("data"), str | bytes):
        kw.setdefault("content_type", FORM)
    if not kw.pop("noauth", False) and "headers" not in kw \
            and "client_assertion" not in str(kw.get("data")):
        kw["auth"] = grants.basic()
    fast, flask = grants.both_answers(**kw)
    assert grants.passed_on, "the fast path answered a request it should pass on"
    if fast.status_code == 200:  # e.g. "openid  email": authlib takes the empty word
        same_grant(fast, flask)
    else:
        assert (fast.status_code, fast.get_data()) == (flask.status_code, flask.get_data())


def test_basic_beside_a_body_client_id_is_passed_on(grants: Pair) -> None:
    client_id, _ = grants.basic()
    fast, flask = grants.both_answers(data=dict(CC, client_id=client_id), auth=grants.basic())
    assert grants.passed_on
    same_grant(fast, flask)  # the same client: the general path allows it
    resp = grants.passed(data=dict(CC, client_id=grants.basic(grants.other)[0]),
                         auth=grants.basic())
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("length", ["²", "-1", "+5", " 5", "1_0", "0", "99999999999"])
def test_an_odd_content_length_is_passed_on(grants: Pair, length: str) -> None:
    resp = grants.fast.post("/token", data=CC, auth=grants.basic(),
                            environ_overrides={"CONTENT_LENGTH": length})
    assert grants.declined == ["POST"]
    assert resp.status_code in (200, 400, 401, 413)


def test_other_methods_and_paths_are_flasks(grants: Pair) -> None:
    assert grants.fast.get("/token").status_code == 405
    assert grants.fast.post("/token/", data=CC, auth=grants.basic()).status_code in (
        308, 404, 405)
    assert grants.declined == ["GET"]
