"""Password change, forced change at login and certificate reset, through the web
app in process over a real slapd (its ppolicy decides) and the real database:
one test per way a change can go wrong, and the ways it goes right."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import ldap
import pytest
from flask.testing import FlaskClient
from ldap.controls import RequestControl
from sqlalchemy import select

from directory.model import AuthResult
from directory.service import DirectoryService
from directory.slapd import ManagedSlapd
from idp.login.passwords import PENDING_SECONDS, issue_pending
from idp.login.sessions import COOKIE_NAME
from idp.runtime.app import create_app
from idp.runtime.config import Config
from idp.runtime.services import Services
from idp.web.password_views import PENDING_COOKIE
from pki.audit_store import audit_log
from policies.assurance import acr_for
from tests.fixtures.idp import csrf_of, prepare_database

pytestmark = pytest.mark.slapd

ISSUER = "http://127.0.0.1:9443"
PASSWORD = "Gov-Trust-2026-pass!"
NEW = "Gov-Trust-2030-new!"
RELAX = RequestControl("1.3.6.1.4.1.4203.666.5.12", True)


@dataclass
class World:
    services: Services
    directory: DirectoryService
    client: FlaskClient
    slapd: ManagedSlapd


@pytest.fixture
def world(directory_service: DirectoryService, slapd: ManagedSlapd,
          tmp_path: Path) -> Iterator[World]:
    config = Config.load(tmp_path / "home", environ={"GOVTRUST_IDP_ISSUER": ISSUER})
    config.ensure_secrets()
    services = Services(config)
    prepare_database(services)
    services.directory_gateway = directory_service.gateway
    services.directory = DirectoryService(slapd.settings, directory_service.gateway,
                                          services.audit, services.outbox)
    services.authenticator = services.directory
    services.provider.keys.ensure()
    d = services.directory
    d.ensure_department("市财政局/预算处")
    d.add_person(uid="lina", name="李娜", department="市财政局/预算处", password=PASSWORD)
    app = create_app(services)
    app.testing = True
    yield World(services, d, app.test_client(), slapd)
    services.close()


def login(c: FlaskClient, password: str = PASSWORD, return_to: str = "/console/"
          ) -> tuple[int, str | None]:
    token = csrf_of(c.get("/login").get_data(as_text=True))
    resp = c.post("/login", data={"uid": "lina", "password": password, "csrf": token,
                                  "return": return_to})
    return resp.status_code, resp.headers.get("Location")


def post_change(c: FlaskClient, path: str, **form: str) -> tuple[int, str]:
    form.setdefault("csrf", csrf_of(c.get(path).get_data(as_text=True)))
    resp = c.post(path, data=form)
    return resp.status_code, resp.get_data(as_text=True)


def actions(w: World) -> list[tuple[str, dict[str, str]]]:
    with w.services.sessions() as s:
        rows = s.execute(select(audit_log.c.action, audit_log.c.details)).all()
    return [(r.action, json.loads(r.details) if isinstance(r.details, str) else r.details)
            for r in rows]


def expire(w: World) -> None:
    conn = ldap.initialize(w.slapd.uri)
    conn.simple_bind_s(w.slapd.settings.bind_dn, w.slapd.settings.bind_password)
    conn.modify_ext_s(w.directory.gateway.person_dn("lina"),
                      [(ldap.MOD_REPLACE, "pwdChangedTime", [b"20000101000000Z"])],
                      serverctrls=[RELAX])
    conn.unbind_s()


# -- the console's change page -------------------------------------------------------

def test_console_change_works_and_ends_other_sessions(world: World) -> None:
    other = world.client.application.test_client()
    assert login(other)[0] == 302
    assert login(world.client)[0] == 302
    status, body = post_change(world.client, "/console/password", old=PASSWORD, new=NEW,
                               repeat=NEW)
    assert status == 200 and "密码已修改" in body
    assert world.directory.authenticate("lina", NEW).ok
    assert world.client.get("/console/").status_code == 200  # this session kept
    assert other.get("/console/").status_code == 302  # the other one ended
    assert any(a == "idp.password.change" and d.get("sessions_ended") == "1"
               for a, d in actions(world))


def test_console_change_wrong_old_password(world: World) -> None:
    login(world.client)
    status, body = post_change(world.client, "/console/password", old="Wrong-Trust-2026!",
                               new=NEW, repeat=NEW)
    assert status == 400 and "当前密码不正确" in body
    assert world.directory.authenticate("lina", PASSWORD).ok


def test_console_change_weak_password(world: World) -> None:
    login(world.client)
    status, body = post_change(world.client, "/console/password?lang=en", old=PASSWORD,
                               new="short", repeat="short")
    assert status == 400 and "breaks the password policy" in body and "too short" in body


def test_console_change_mismatch(world: World) -> None:
    login(world.client)
    status, body = post_change(world.client, "/console/password", old=PASSWORD, new=NEW,
                               repeat=NEW + "x")
    assert status == 400 and "两次输入的新密码不一致" in body
    assert world.directory.authenticate("lina", PASSWORD).ok


def test_console_change_in_history(world: World) -> None:
    login(world.client)
    status, body = post_change(world.client, "/console/password", old=PASSWORD,
                               new=PASSWORD, repeat=PASSWORD)
    assert status == 400 and "最近使用过的密码" in body


def test_console_change_without_csrf(world: World) -> None:
    login(world.client)
    resp = world.client.post("/console/password",
                             data={"old": PASSWORD, "new": NEW, "repeat": NEW})
    assert resp.status_code == 400
    assert world.directory.authenticate("lina", PASSWORD).ok


def test_console_change_wrong_old_password_is_throttled(world: World) -> None:
    login(world.client)
    codes = [post_change(world.client, "/console/password", old=f"Wrong-Trust-{i}-x!",
                         new=NEW, repeat=NEW)[0] for i in range(11)]
    assert codes[:10] == [400] * 10 and codes[10] == 429
    # even the right password is held back while throttled
    assert post_change(world.client, "/console/password", old=PASSWORD, new=NEW,
                       repeat=NEW)[0] == 429


# -- the forced change at login ------------------------------------------------------

def test_reset_by_admin_forces_a_change_then_the_login_continues(world: World) -> None:
    world.directory.set_password("lina", "Temp-Trust-2026-pw!", actor="wangfang")
    status, location = login(world.client, "Temp-Trust-2026-pw!")
    assert (status, location) == (303, "/login/password")
    assert world.client.get("/console/").status_code == 302  # no session yet
    page = world.client.get("/login/password").get_data(as_text=True)
    assert "管理员已重置您的密码" in page
    resp = world.client.post("/login/password", data={
        "csrf": csrf_of(page), "old": "Temp-Trust-2026-pw!", "new": NEW, "repeat": NEW})
    assert resp.status_code == 303 and resp.headers["Location"] == "/console/"
    assert world.client.get("/console/").status_code == 200
    assert world.directory.authenticate("lina", NEW).result is AuthResult.OK


def test_expired_password_forces_a_change(world: World) -> None:
    expire(world)
    status, location = login(world.client)
    assert (status, location) == (303, "/login/password")
    page = world.client.get("/login/password?lang=en").get_data(as_text=True)
    assert "has expired" in page
    resp = world.client.post("/login/password", data={
        "csrf": csrf_of(page), "old": PASSWORD, "new": NEW, "repeat": NEW})
    assert resp.status_code == 303
    assert world.directory.authenticate("lina", NEW).ok


def test_forced_change_wrong_old_password(world: World) -> None:
    expire(world)
    login(world.client)
    status, body = post_change(world.client, "/login/password", old="Wrong-Trust-2026!",
                               new=NEW, repeat=NEW)
    assert status == 400 and "当前密码不正确" in body
    assert world.client.get("/console/").status_code == 302


def test_forced_change_without_csrf(world: World) -> None:
    expire(world)
    login(world.client)
    resp = world.client.post("/login/password", data={"old": PASSWORD, "new": NEW,
                                                      "repeat": NEW})
    assert resp.status_code == 400
    assert world.directory.authenticate("lina", PASSWORD).result is AuthResult.PASSWORD_EXPIRED


def test_forced_change_expired_token(world: World) -> None:
    p = world.services.provider
    state = world.directory.password_state("lina")
    assert state is not None
    old = issue_pending(p.cookie_key, "lina", "/", state, "reset",
                        time.time() - PENDING_SECONDS - 1)
    world.client.set_cookie(PENDING_COOKIE, old)
    assert world.client.get("/login/password").status_code == 400


def test_forced_change_forged_token(world: World) -> None:
    state = world.directory.password_state("lina") or ""
    forged = issue_pending(b"not the cookie key", "lina", "/", state, "reset", time.time())
    world.client.set_cookie(PENDING_COOKIE, forged)
    assert world.client.get("/login/password").status_code == 400


def test_forced_change_reused_token(world: World) -> None:
    world.directory.set_password("lina", "Temp-Trust-2026-pw!", actor="wangfang")
    login(world.client, "Temp-Trust-2026-pw!")
    token = world.client.get_cookie(PENDING_COOKIE)
    assert token is not None
    status, _ = post_change(world.client, "/login/password", old="Temp-Trust-2026-pw!",
                            new=NEW, repeat=NEW)
    assert status == 303
    replay = world.client.application.test_client()
    replay.set_cookie(PENDING_COOKIE, token.value)
    page = replay.get("/login/password")  # reads, but the post is refused
    resp = replay.post("/login/password", data={
        "csrf": csrf_of(page.get_data(as_text=True)), "old": NEW,
        "new": "Gov-Trust-2031-new!", "repeat": "Gov-Trust-2031-new!"})
    assert resp.status_code == 400 and COOKIE_NAME not in resp.headers.get("Set-Cookie", "")
    assert world.directory.authenticate("lina", NEW).ok


def test_forced_change_in_history(world: World) -> None:
    expire(world)
    login(world.client)
    status, body = post_change(world.client, "/login/password", old=PASSWORD,
                               new=PASSWORD, repeat=PASSWORD)
    assert status == 400 and "最近使用过的密码" in body


# -- reset with a certificate ------------------------------------------------------

def level3_session(w: World, methods: tuple[str, ...] = ("otp", "swk")) -> None:
    person = w.directory.show("lina")
    cookie, _ = w.services.provider.sessions.create(person, amr=methods, acr=acr_for(3))
    w.client.set_cookie(COOKIE_NAME, cookie)


def test_reset_needs_a_certificate_in_this_login(world: World) -> None:
    login(world.client)  # a password session: level 1
    page = world.client.get("/console/password/reset").get_data(as_text=True)
    assert 'id="reset-cert"' in page and 'name="new"' not in page
    token = csrf_of(world.client.get("/console/password").get_data(as_text=True))
    resp = world.client.post("/console/password/reset", data={
        "csrf": token, "new": NEW, "repeat": NEW})
    assert resp.status_code == 403
    assert world.directory.authenticate("lina", PASSWORD).ok


def test_reset_with_certificate_sets_the_password_and_ends_other_sessions(
        world: World) -> None:
    other = world.client.application.test_client()
    login(other)
    level3_session(world)
    status, body = post_change(world.client, "/console/password/reset", new=NEW, repeat=NEW)
    assert status == 200 and "密码已重置" in body
    assert world.directory.authenticate("lina", NEW).result is AuthResult.OK
    assert other.get("/console/").status_code == 302
    assert ("directory.password.reset", {"proof": "swk"}) in actions(world)


def test_reset_with_certificate_weak_and_history(world: World) -> None:
    level3_session(world)
    assert post_change(world.client, "/console/password/reset", new="weak",
                       repeat="weak")[0] == 400
    status, body = post_change(world.client, "/console/password/reset", new=PASSWORD,
                               repeat=PASSWORD)
    assert status == 400 and "最近使用过的密码" in body


def test_login_page_links_the_certificate_reset(world: World) -> None:
    page = world.client.get("/login").get_data(as_text=True)
    assert "忘记密码？使用数字证书重置" in page
    assert "/login/certificate?" + urlencode({"return": "/console/password/reset"}) in page
