"""Browser tests of the password flows (headless Chromium over the served IdP, a
real slapd and CA; see conftest): a civil servant changes her password in the
console and logs in with the new one; a person whose password an administrator
reset is made to change it at her next login and then reaches the app; a person
who forgot her password resets it with her certificate (and a one-time code:
the reset needs level 3)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pyotp
import pytest
from cryptography.hazmat.primitives import serialization

from directory.model import AuthResult
from idp.login.certsettings import DEFAULT_HEADER
from idp.oidc.clients import build_client
from tests.browser.conftest import PASSWORD, Visit, World
from tests.fixtures.pki import make_csr

pytestmark = pytest.mark.slapd

NEW = "Gov-Trust-2031-new!"


def fill_login(v: Visit, uid: str, password: str) -> None:
    v.page.fill("#uid", uid)
    v.page.fill("#password", password)
    v.page.click("button[type=submit]")
    v.page.wait_for_load_state()


def test_civil_servant_changes_her_password_in_the_console(world: World, visits: Any) -> None:
    me = visits()
    me.go("/console/password")
    fill_login(me, "lina", PASSWORD)
    assert me.page.url == world.base + "/console/password", me.page.url
    me.check("pw-01-console-change")
    me.page.fill("#old", PASSWORD)
    me.page.fill("#new", "weak")
    me.page.fill("#repeat", "weak")
    me.page.click("#change")
    assert "不符合密码策略" in me.page.inner_text("#message")
    me.check("pw-02-console-weak")
    me.page.fill("#old", PASSWORD)
    me.page.fill("#new", NEW)
    me.page.fill("#repeat", NEW)
    me.page.click("#change")
    assert "密码已修改" in me.page.inner_text("#message")
    me.check("pw-03-console-changed")
    # a fresh browser: the old password no longer works, the new one does
    again = visits()
    again.go("/console/")
    fill_login(again, "lina", PASSWORD)
    assert "用户名或密码错误" in again.page.inner_text("#message")
    fill_login(again, "lina", NEW)
    assert again.page.url == world.base + "/console/", again.page.url


def test_admin_reset_forces_a_change_at_login_then_the_app(world: World, visits: Any) -> None:
    redirect = world.base + "/app/callback"
    client, _ = world.services.provider.clients.add(build_client(
        name="预算管理系统", redirect_uris=[redirect], level=2, first_party=True))
    world.services.directory.set_password("lina", "Temp-Trust-2026-pw!", actor="wangfang")
    me = visits()
    params = {"response_type": "code", "client_id": client.client_id,
              "redirect_uri": redirect, "scope": "openid profile", "state": "s-1",
              "nonce": "n-1"}
    me.go("/authorize?" + urlencode(params))
    assert "/login" in me.page.url
    fill_login(me, "lina", "Temp-Trust-2026-pw!")
    assert me.page.url == world.base + "/login/password", me.page.url
    assert "管理员已重置您的密码" in me.page.inner_text("#why")
    me.check("pw-04-forced-change")
    me.page.fill("#old", "Temp-Trust-2026-pw!")
    me.page.fill("#new", NEW)
    me.page.fill("#repeat", NEW + "x")
    me.page.click("#change")
    assert "不一致" in me.page.inner_text("#message")
    me.page.fill("#old", "Temp-Trust-2026-pw!")
    me.page.fill("#new", NEW)
    me.page.fill("#repeat", NEW)
    with me.page.expect_response(lambda r: r.url.startswith(redirect)):
        me.page.click("#change")
    query = parse_qs(urlsplit(me.page.url).query)
    assert me.page.url.startswith(redirect) and query["state"] == ["s-1"] and query["code"]
    assert world.services.directory.authenticate("lina", NEW).result is AuthResult.OK


def test_forgotten_password_reset_with_certificate(world: World, visits: Any) -> None:
    # she enrolled an authenticator earlier and holds a certificate
    totp = world.services.totp
    secret = totp.begin_enrolment(world.person).secret
    assert totp.activate(world.person, pyotp.TOTP(secret).now()).ok
    csr = make_csr()[0]
    pem = world.services.ca.issue_from_csr(world.person, "user-auth", csr, actor="test")\
        .certificate.public_bytes(serialization.Encoding.PEM)
    me = visits()
    me.go("/login", "pw-05-login-forgot-link")
    me.page.click("#forgot-link")
    assert "/login/certificate" in me.page.url
    me.context.set_extra_http_headers({DEFAULT_HEADER: quote(pem.decode())})
    me.page.click("#certificate-login")
    me.page.wait_for_load_state()
    me.context.set_extra_http_headers({})
    assert me.page.url == world.base + "/console/password/reset", me.page.url
    me.check("pw-06-reset-needs-level-3")
    me.page.click("#reset-otp")
    me.page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
    me.page.click("button[type=submit]")
    me.page.wait_for_load_state()
    assert me.page.url == world.base + "/console/password/reset", me.page.url
    assert me.page.locator("#old").count() == 0  # the old password is not asked
    me.check("pw-07-reset-form")
    me.page.fill("#new", NEW)
    me.page.fill("#repeat", NEW)
    me.page.click("#reset")
    assert "密码已重置" in me.page.inner_text("#message")
    me.check("pw-08-reset-done")
    fresh = visits()
    fresh.go("/console/")
    fill_login(fresh, "lina", NEW)
    assert fresh.page.url == world.base + "/console/", fresh.page.url
