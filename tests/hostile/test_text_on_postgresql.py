"""Request text PostgreSQL cannot store, at every endpoint that reads or writes by
what a request names. PostgreSQL refuses a NUL in text (``DataError``), where
SQLite stores it: the other hostile tests run on SQLite, so a NUL that reached a
query was a 500 only in production. Each case here runs on a real PostgreSQL and
must get a clean refusal (never a 5xx), issue no token and open no session.

Fixed at each mechanism, not per input: the Basic credentials are held to the
body parameters' grammar (``idp.oidc.server.basic_credentials``), a client id no
registration can have is no client without a query
(``idp.oidc.clients.ClientRepository.get``), a throttle key is stored escaped
whatever it holds (``idp.login.throttle.stored_key``), and the login form refuses
a uid with a control character before the throttle, the directory or the audit
log."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from idp.login.tables import sso_sessions
from idp.login.throttle import KEY_MAX_CHARS, stored_key
from idp.runtime.app import create_app
from idp.runtime.services import Services
from tests.fixtures.idp import (
    ISSUER,
    PASSWORD,
    REDIRECT,
    ZHANG,
    FakeDirectory,
    build_client,
    login,
    make_services,
    tokens_issued,
)
from tests.fixtures.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

NUL = "a\x00b"


@dataclass
class Site:
    services: Services
    app: Flask
    client_id: str
    secret: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster) -> Iterator[Site]:
    services = make_services(tmp_path_factory.mktemp("nul") / "home", ISSUER,
                             FakeDirectory({"zhangwei": (PASSWORD, ZHANG)}),
                             postgres.create_database())
    client, secret = services.provider.clients.add(build_client(
        name="公文系统", redirect_uris=[REDIRECT], level=2, first_party=True))
    assert secret is not None
    app = create_app(services)
    app.testing = True
    try:
        yield Site(services, app, client.client_id, secret)
    finally:
        services.close()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _raw_basic(value: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(value).decode()}


CC = {"grant_type": "client_credentials"}

CASES: dict[str, Callable[[FlaskClient, Site], TestResponse]] = {
    "token_basic_id": lambda c, s: c.post("/token", data=CC, headers=_basic(NUL, "x")),
    "token_basic_id_form_encoded": lambda c, s: c.post("/token", data=CC,
                                                       headers=_basic("a%00b", "x")),
    "token_basic_secret": lambda c, s: c.post("/token", data=CC,
                                              headers=_basic(s.client_id, NUL)),
    "token_basic_secret_form_encoded": lambda c, s: c.post(
        "/token", data=CC, headers=_basic(s.client_id, "%00")),
    "token_basic_not_utf8": lambda c, s: c.post("/token", data=CC,
                                                headers=_raw_basic(b"\xff\xfe:x")),
    "token_basic_encoded_not_utf8": lambda c, s: c.post("/token", data=CC,
                                                        headers=_basic("%ff%fe", "x")),
    "token_form_id": lambda c, s: c.post("/token", data={**CC, "client_id": NUL,
                                                         "client_secret": "x"}),
    "token_refresh": lambda c, s: c.post("/token", data={
        "grant_type": "refresh_token", "refresh_token": NUL},
        headers=_basic(s.client_id, s.secret)),
    "token_code": lambda c, s: c.post("/token", data={
        "grant_type": "authorization_code", "code": NUL, "redirect_uri": REDIRECT},
        headers=_basic(s.client_id, s.secret)),
    "introspect_basic_id": lambda c, s: c.post("/introspect", data={"token": "x"},
                                               headers=_basic("a%00b", "x")),
    "introspect_token": lambda c, s: c.post("/introspect", data={"token": NUL},
                                            headers=_basic(s.client_id, s.secret)),
    "revoke_basic_id": lambda c, s: c.post("/revoke", data={"token": "x"},
                                           headers=_basic(NUL, "x")),
    "revoke_token": lambda c, s: c.post("/revoke", data={"token": NUL},
                                        headers=_basic(s.client_id, s.secret)),
    "authorize_client": lambda c, s: c.get("/authorize", query_string={
        "client_id": NUL, "response_type": "code", "redirect_uri": REDIRECT,
        "scope": "openid"}),
    "logout_hint": lambda c, s: c.get("/logout", query_string={"id_token_hint": NUL}),
    "userinfo_bearer": lambda c, s: c.get("/userinfo",
                                          headers={"Authorization": "Bearer " + NUL}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_text_postgresql_cannot_store_is_refused_cleanly(
        site: Site, case: Callable[[FlaskClient, Site], TestResponse]) -> None:
    metrics = site.app.test_client()
    issued = tokens_issued(metrics)
    resp = case(site.app.test_client(), site)
    assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)[:300]
    assert "access_token" not in resp.get_data(as_text=True)
    assert tokens_issued(metrics) == issued


@pytest.mark.parametrize("uid,password", [(NUL, "x"), ("zhangwei\x01", PASSWORD),
                                          ("zhangwei", "pass\x00word")],
                         ids=["nul_uid", "control_uid", "nul_password"])
def test_login_form_refuses_what_no_entry_can_hold_and_writes_nothing(
        site: Site, uid: str, password: str) -> None:
    def rows() -> tuple[int, ...]:
        from idp.login.tables import throttle_windows
        from pki.audit_store import audit_log

        with site.services.engine.connect() as conn:
            return tuple(int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                         for t in (sso_sessions, throttle_windows, audit_log))

    before = rows()
    status, body, _ = login(site.app.test_client(), uid=uid, password=password)
    assert status == 400
    assert rows() == before


def test_a_throttle_key_is_stored_whatever_it_holds() -> None:
    assert stored_key("token-client:abc") == "token-client:abc"
    assert stored_key("login-uid:张伟") == "login-uid:张伟"
    assert stored_key("token-client:a\x00b") == "token-client:a\\x00b"
    assert stored_key("token-client:\udcff") == "token-client:\\udcff"
    assert stored_key("k" * 10_000) == "k" * KEY_MAX_CHARS
    assert stored_key(NUL) == stored_key(NUL)  # the same text, the same window


@pytest.mark.parametrize("client_id", [NUL, "a\x7fb", "张伟", "a" * 65, ""])
def test_a_client_id_no_registration_can_have_is_no_client(site: Site, client_id: str) -> None:
    assert site.services.provider.clients.get(client_id) is None
    assert site.services.provider.clients.get(site.client_id) is not None
