"""RP-initiated logout and back-channel logout (OIDC Back-Channel Logout 1.0): a real
HTTP endpoint receives a logout token that verifies; failures are retried; the
lifecycle subscriber ends a suspended person's sessions and tokens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from directory.events import LifecycleEvent, LifecycleKind
from idp.login.tables import sso_sessions
from idp.oidc.clients import build_client
from idp.oidc.lifecycle import SessionTerminator
from idp.oidc.logout import LOGOUT_EVENT
from idp.oidc.provider import Provider
from tests.fixtures.idp import ISSUER, ZHANG, Registered
from tests.oidc.test_protocol import full_login


class Receiver:
    """A department app's back-channel logout endpoint, on a real socket."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.fail_next = 0
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.tokens.extend(parse_qs(body)["logout_token"])
                receiver.got.set()
                self.send_response(200)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backchannel-logout"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def with_backchannel(provider: Provider, receiver: Receiver) -> Registered:
    client, secret = provider.clients.add(build_client(
        name="人事系统", redirect_uris=["http://127.0.0.1:5200/cb"], level=2, first_party=True,
        backchannel_logout_uri=receiver.url,
        post_logout_redirect_uris=["http://127.0.0.1:5200/"]))
    return Registered(client, secret)


def verify_logout_token(rp: FlaskClient, token: str, audience: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "logout+jwt"
    jwks = rp.get("/jwks").get_json()
    key = jwt.PyJWK.from_dict([k for k in jwks["keys"] if k["kid"] == header["kid"]][0])
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=audience, issuer=ISSUER)
    assert LOGOUT_EVENT in claims["events"] and "nonce" not in claims
    return claims


def live_sessions(provider: Provider) -> int:
    with provider.db() as s:
        return int(s.execute(select(func.count()).select_from(sso_sessions).where(
            sso_sessions.c.ended_at.is_(None))).scalar_one())


def test_rp_initiated_logout_delivers_backchannel_logout(
        browser: FlaskClient, rp: FlaskClient, with_backchannel: Registered,
        receiver: Receiver, provider: Provider) -> None:
    body = full_login(browser, rp, with_backchannel)
    header = jwt.get_unverified_header(body["id_token"])
    jwks = rp.get("/jwks").get_json()
    key = jwt.PyJWK.from_dict([k for k in jwks["keys"] if k["kid"] == header["kid"]][0])
    sid = jwt.decode(body["id_token"], key.key, algorithms=[header["alg"]],
                     audience=with_backchannel.client.client_id, issuer=ISSUER)["sid"]
    resp = browser.get("/logout", query_string={
        "id_token_hint": body["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:5200/",
        "state": "bye"})
    assert resp.status_code == 302 and resp.headers["Location"] == "http://127.0.0.1:5200/?state=bye"
    assert receiver.got.wait(10)
    claims = verify_logout_token(rp, receiver.tokens[0], with_backchannel.client.client_id)
    assert claims["sid"] == sid and claims["sub"] == ZHANG.entry_uuid
    assert live_sessions(provider) == 0
    # the session's refresh token died with it
    status = rp.post("/token", data={"grant_type": "refresh_token",
                                     "refresh_token": body["refresh_token"]},
                     auth=(with_backchannel.client.client_id, with_backchannel.secret))
    assert status.status_code == 400


def test_failed_delivery_is_retried(browser: FlaskClient, rp: FlaskClient,
                                    with_backchannel: Registered, receiver: Receiver,
                                    provider: Provider) -> None:
    full_login(browser, rp, with_backchannel)
    receiver.fail_next = 1
    sid = provider.sessions.active_for_subject(ZHANG.entry_uuid)[0]
    assert provider.logout.end_session(sid) == 1
    assert provider.logout.deliver_pending() == 0 and provider.logout.pending() == 1
    from sqlalchemy import update

    from idp.oidc.tables import backchannel_deliveries

    with provider.db.begin() as s:  # the backoff has passed
        s.execute(update(backchannel_deliveries).values(next_attempt=0))
    assert provider.logout.deliver_pending() == 1 and provider.logout.pending() == 0
    verify_logout_token(rp, receiver.tokens[0], with_backchannel.client.client_id)


def test_logout_without_hint_asks_for_confirmation(browser: FlaskClient, rp: FlaskClient,
                                                   with_backchannel: Registered,
                                                   provider: Provider) -> None:
    full_login(browser, rp, with_backchannel)
    page = browser.get("/logout")
    assert page.status_code == 200 and live_sessions(provider) == 1
    html = page.get_data(as_text=True)
    from tests.fixtures.idp import csrf_of

    assert browser.post("/logout", data={}).status_code == 400  # no CSRF token
    assert live_sessions(provider) == 1
    done = browser.post("/logout", data={"csrf": csrf_of(html)})
    assert done.status_code == 200 and live_sessions(provider) == 0


def test_suspension_ends_sessions_revokes_tokens_and_notifies_apps(
        browser: FlaskClient, rp: FlaskClient, with_backchannel: Registered,
        receiver: Receiver, provider: Provider, services: Any) -> None:
    body = full_login(browser, rp, with_backchannel)
    terminator: SessionTerminator = services.session_terminator
    event = LifecycleEvent(LifecycleKind.SUSPENDED, "zhangwei", ZHANG.entry_uuid,
                           datetime.now(UTC), "admin")
    terminator.handle(event)
    terminator.handle(event)  # at-least-once delivery: a second time changes nothing
    assert live_sessions(provider) == 0
    assert len(receiver.tokens) == 1
    verify_logout_token(rp, receiver.tokens[0], with_backchannel.client.client_id)
    auth = (with_backchannel.client.client_id, with_backchannel.secret)
    assert rp.post("/introspect", data={"token": body["refresh_token"]},
                   auth=auth).get_json() == {"active": False}
    assert rp.post("/introspect", data={"token": body["access_token"]},
                   auth=auth).get_json() == {"active": False}
    # the browser's cookie no longer logs anyone in
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": with_backchannel.client.client_id,
        "redirect_uri": "http://127.0.0.1:5200/cb", "scope": "openid", "prompt": "none"})
    assert "error=login_required" in resp.headers["Location"]


def test_moved_event_is_ignored(provider: Provider, services: Any, browser: FlaskClient,
                                rp: FlaskClient, with_backchannel: Registered) -> None:
    full_login(browser, rp, with_backchannel)
    services.session_terminator.handle(LifecycleEvent(
        LifecycleKind.MOVED, "zhangwei", ZHANG.entry_uuid, datetime.now(UTC), "admin",
        "市财政局/综合处"))
    assert live_sessions(provider) == 1


def test_another_person_logging_in_ends_the_first_session(
        browser: FlaskClient, rp: FlaskClient, with_backchannel: Registered,
        receiver: Receiver, provider: Provider, directory: Any) -> None:
    from dataclasses import replace

    full_login(browser, rp, with_backchannel)
    other = replace(ZHANG, uid="lisi", entry_uuid="0b8e7a52-1c4d-4c0e-8f51-5d1f7f0b9a11",
                    display_name="李四")
    directory.people["lisi"] = ("Li-si-pass-1", other)
    from tests.fixtures.idp import login

    status, _, _ = login(browser, uid="lisi", password="Li-si-pass-1")
    assert status == 302
    assert receiver.got.wait(10)
    assert verify_logout_token(rp, receiver.tokens[0],
                               with_backchannel.client.client_id)["sub"] == ZHANG.entry_uuid
    assert live_sessions(provider) == 1


def test_backchannel_logout_after_a_step_up_names_the_same_sid(
        browser: FlaskClient, rp: FlaskClient, with_backchannel: Registered,
        receiver: Receiver, provider: Provider) -> None:
    """The step-up rotates the cookie, not the sid the app holds in its ID token."""
    from idp.login.sessions import COOKIE_NAME
    from tests.fixtures.idp import login

    body = full_login(browser, rp, with_backchannel)
    old = browser.get_cookie(COOKIE_NAME)
    assert old is not None
    sid = provider.sessions.get(old.value).sid  # type: ignore[union-attr]
    status, _, _ = login(browser)  # the same person again: a password step-up
    assert status == 302
    new = browser.get_cookie(COOKIE_NAME)
    assert new is not None and new.value != old.value
    assert provider.sessions.get(old.value) is None
    resp = browser.get("/logout", query_string={
        "id_token_hint": body["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:5200/"})
    assert resp.status_code == 302
    assert receiver.got.wait(10)
    claims = verify_logout_token(rp, receiver.tokens[0], with_backchannel.client.client_id)
    assert claims["sid"] == sid
    assert live_sessions(provider) == 0
