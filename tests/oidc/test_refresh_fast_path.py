"""The refresh ``POST /token`` of a confidential app answered before Flask
(``idp.web.client_calls``, ``idp.oidc.refresh_grant``) answers as the Flask view
does, with the same rotation: a refusal is the same to the byte through both; a
new pair of tokens has the same form as Flask's for another login of the same
person. Reuse revokes the family on either path. A request not in the canonical
form (a public app's, a percent-encoded value, ...) goes to Flask with its body
intact. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from werkzeug.test import TestResponse

from idp.login.throttle import Throttle
from idp.oidc.clients import build_client
from tests.fixtures.client_calls import Pair
from tests.fixtures.idp import REDIRECT, authorize, code_of, pkce_pair, token_request

pytestmark = pytest.mark.postgres
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def refreshes(pair: Pair) -> Pair:
    pair.path = "/token"
    return pair


def signed_in(pair: Pair, scope: str = "openid profile email offline_access") -> str:
    """A refresh token of a person's new grant to ``pair.app``."""
    verifier, challenge = pkce_pair()
    code = code_of(authorize(pair.browser, pair.app.client, pkce=challenge, scope=scope))
    status, body = token_request(pair.browser, pair.app, grant_type="authorization_code",
                                 code=code, redirect_uri=REDIRECT, code_verifier=verifier)
    assert status == 200, body
    return str(body["refresh_token"])


def answered_here(p: Pair, **kw: Any) -> TestResponse:
    """POST /token through the fast path only, which must answer it itself."""
    before = len(p.declined)
    resp = p.fast.post("/token", **kw)
    assert len(p.declined) == before, "the fast path passed a canonical request on"
    return resp


def refresh(token: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": token, **extra}


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(
        token.split(".")[1] + "=" * 4))
    return decoded


def same_form(fast: TestResponse, flask: TestResponse) -> dict[str, Any]:
    """Two 200 answers for two grants of one person: the same headers, fields and
    claims, but for what is each token's own; the fast one's body."""
    assert fast.status_code == flask.status_code == 200, (fast.get_data(), flask.get_data())
    skip = {"Content-Length"}
    assert sorted(h for h in fast.headers.items() if h[0] not in skip) == \
        sorted(h for h in flask.headers.items() if h[0] not in skip)
    a, b = fast.get_json(), flask.get_json()
    own = {"access_token", "refresh_token"}
    assert a.keys() == b.keys() and {k: a[k] for k in a if k not in own} == \
        {k: b[k] for k in b if k not in own}
    assert len(a["refresh_token"]) == len(b["refresh_token"])
    ca, cb = claims(a["access_token"]), claims(b["access_token"])
    per_grant = {"jti", "iat", "exp", "sid", "auth_time"}
    assert ca.keys() == cb.keys()
    assert {k: v for k, v in ca.items() if k not in per_grant} == \
        {k: v for k, v in cb.items() if k not in per_grant}
    assert a["access_token"].split(".")[0] == b["access_token"].split(".")[0]
    return dict(a)


def test_a_refresh_by_basic_and_by_post(refreshes: Pair) -> None:
    p = refreshes
    mine, theirs = signed_in(p), signed_in(p)
    fast = answered_here(p, data=refresh(mine), auth=p.basic())
    body = same_form(fast, p.flask.post("/token", data=refresh(theirs), auth=p.basic()))
    assert body["scope"] == "openid profile email offline_access"
    # The successor works once more, by client_secret_post this time ...
    client_id, secret = p.basic()
    again = answered_here(p, data=refresh(body["refresh_token"], client_id=client_id,
                                          client_secret=secret))
    assert again.status_code == 200
    # ... and the token it replaced is used up.
    assert p.fast.post("/token", data=refresh(mine), auth=p.basic()).status_code == 400


def test_a_narrower_scope_applies_to_the_access_token(refreshes: Pair) -> None:
    p = refreshes
    mine, theirs = signed_in(p), signed_in(p)
    fast = answered_here(p, data=refresh(mine, scope="openid email"), auth=p.basic())
    body = same_form(fast, p.flask.post("/token", data=refresh(theirs, scope="openid email"),
                                        auth=p.basic()))
    assert body["scope"] == "openid email"
    # The successor keeps the grant's whole scope (RFC 6749 section 6).
    wide = p.fast.post("/token", data=refresh(body["refresh_token"]), auth=p.basic())
    assert wide.get_json()["scope"] == "openid profile email offline_access"


def test_a_wider_scope_is_refused_alike_and_changes_nothing(refreshes: Pair) -> None:
    p = refreshes
    token = signed_in(p, scope="openid profile")
    resp = p.answered(data=refresh(token, scope="openid groups"), auth=p.basic())
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_scope"
    assert p.fast.post("/token", data=refresh(token), auth=p.basic()).status_code == 200


def test_reuse_is_refused_alike_and_revokes_the_family(refreshes: Pair) -> None:
    p = refreshes
    first = signed_in(p)
    second = p.fast.post("/token", data=refresh(first), auth=p.basic()).get_json()
    resp = p.answered(data=refresh(first), auth=p.basic())
    assert resp.status_code == 400 and resp.get_json() == {
        "error": "invalid_grant", "error_description": "The refresh token was already used."}
    # The successor went with the family, and the access token beside it.
    resp = p.answered(data=refresh(second["refresh_token"]), auth=p.basic())
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"
    p.path = "/introspect"
    assert p.answered(data={"token": second["access_token"]}, auth=p.basic()).get_json() == {
        "active": False}


def test_another_apps_refresh_token_is_refused_and_kept(refreshes: Pair) -> None:
    p = refreshes
    token = signed_in(p)
    resp = p.answered(data=refresh(token), auth=p.basic(p.other))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"
    assert p.fast.post("/token", data=refresh(token), auth=p.basic()).status_code == 200


@pytest.mark.parametrize("token", ["abc", "x" * 512, "a.b.c"])
def test_tokens_that_are_not_ours(refreshes: Pair, token: str) -> None:
    resp = refreshes.answered(data=refresh(token), auth=refreshes.basic())
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"


def test_client_authentication_failures(refreshes: Pair) -> None:
    p = refreshes
    token = signed_in(p)
    client_id, _ = p.basic()
    wrong = p.answered(data=refresh(token), auth=(client_id, "wrong"))
    assert wrong.status_code == 401 and "none" in wrong.get_json()["error_description"]
    assert p.answered(data=refresh(token, client_id=client_id,
                                   client_secret="wrong")).status_code == 401
    assert p.answered(data=refresh(token), auth=("gt-nobody", "x")).status_code == 401
    assert p.answered(data=refresh(token, client_id="gt-nobody",
                                   client_secret="x")).status_code == 400
    # None of it used the token up.
    assert p.fast.post("/token", data=refresh(token), auth=p.basic()).status_code == 200


def test_an_unreachable_database_is_a_503_as_in_flask(refreshes: Pair) -> None:
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    refreshes.provider.throttle = Throttle(sessionmaker(bind=dead))
    try:
        resp = refreshes.answered(data=refresh("abc"), auth=refreshes.basic())
    finally:
        dead.dispose()
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"


# -- what the fast path passes on, untouched ------------------------------------------

def test_a_percent_encoded_token_is_passed_on_and_read_by_flask(refreshes: Pair) -> None:
    p = refreshes
    token = signed_in(p)
    body = "grant_type=refresh_token&refresh_token=" + "".join(
        f"%{b:02X}" for b in token.encode())
    before = len(p.declined)
    resp = p.fast.post("/token", data=body, content_type=FORM, auth=p.basic())
    assert len(p.declined) == before + 1 and resp.status_code == 200


@pytest.mark.parametrize("body", [
    pytest.param("grant_type=refresh_token", id="no-refresh-token"),
    pytest.param("grant_type=refresh_token&refresh_token=", id="empty-token"),
    pytest.param("grant_type=refresh_token&refresh_token=a&refresh_token=b", id="repeated"),
    pytest.param("grant_type=refresh_token&refresh_token=a&code=b", id="unknown-field"),
    pytest.param("grant_type=refresh_token&refresh_token=a\x00", id="nul"),
    pytest.param("grant_type=refresh_token&refresh_token=" + "a" * 513, id="token-too-long"),
])
def test_other_requests_are_passed_on(refreshes: Pair, body: str) -> None:
    resp = refreshes.passed(data=body, content_type=FORM, auth=refreshes.basic())
    assert resp.status_code == 400


def test_a_public_apps_refresh_is_passed_on(refreshes: Pair) -> None:
    p = refreshes
    resp = p.passed(data=refresh("abc", client_id=p.basic()[0]))  # no secret: "none"
    assert resp.status_code in (400, 401)


def test_a_public_app_with_a_made_up_secret_is_refused_alike(refreshes: Pair) -> None:
    """A public app has no secret: ``Basic`` or a body secret is refused on both
    paths (authlib's ``none`` method takes only a body client_id with no secret)."""
    p = refreshes
    public, _ = p.provider.clients.add(build_client(
        name="移动办公", redirect_uris=[REDIRECT], level=2, public=True))
    assert p.answered(data=refresh("abc"), auth=(public.client_id, "guess")).status_code == 401
    assert p.answered(data=refresh("abc", client_id=public.client_id,
                                   client_secret="guess")).status_code == 401
