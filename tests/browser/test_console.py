"""Acceptance for the web console, in a real browser.

A civil servant logs in with a password through the IdP's login form, enrols a
TOTP authenticator (the code computed with pyotp), requests a certificate with a
CSR and downloads it; a security administrator searches for her, revokes that
certificate with a reason and a ticked confirmation, and her certificates page
then says revoked (and the certificate no longer logs in). The language switch
gives the English page. Every page is screenshotted, passes the structure check,
and loads nothing from another origin (see ``conftest``).

The administrator reaches level 3 through the login flow: a password, then her
certificate on the certificate page, forwarded as the TLS-terminating nginx
forwards it (a header from a trusted proxy address: Chromium here speaks plain
HTTP to the in-process server). The page-level tests in the second test start
a level-3 session in the session store instead (``admin_session``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from directory.model import Person
from idp.login.certsettings import DEFAULT_HEADER
from idp.login.refusals import CertificateRefused
from idp.login.sessions import COOKIE_NAME
from policies.assurance import acr_for
from tests.browser.conftest import PASSWORD, Visit, World

pytestmark = pytest.mark.slapd


def csr_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def password_login(v: Visit, uid: str, path: str, shot: str | None = None) -> None:
    v.go(path)
    assert "/login" in v.page.url, v.page.url
    if shot:
        v.check(shot)
    v.page.fill("#uid", uid)
    v.page.fill("#password", PASSWORD)
    v.page.click("button[type=submit]")
    v.page.wait_for_load_state()


def admin_session(v: Visit, world: World, level: int = 3) -> None:
    """A level-3 session started in the session store (pwd + swk), its cookie given
    to the browser: for tests about the pages, not about the login flow."""
    cookie, _ = world.services.provider.sessions.create(
        world.admin, amr=("pwd", "swk"), acr=acr_for(level))
    v.context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": world.base}])


def certificate_login(v: Visit, pem: bytes, return_to: str, shot: str | None = None) -> None:
    """The login flow's certificate page, the certificate forwarded the way the
    TLS-terminating nginx does (URL-encoded PEM in a header, from a proxy address
    the IdP trusts; see the ``world`` fixture)."""
    v.context.set_extra_http_headers({DEFAULT_HEADER: quote(pem.decode())})
    v.go("/login/certificate?" + urlencode({"return": return_to}), shot)
    v.page.click("#certificate-login")
    v.page.wait_for_load_state()
    v.context.set_extra_http_headers({})


def issue_pem(world: World, person: Person) -> bytes:
    cert = world.services.ca.issue_from_csr(person, "user-auth", csr_pem().encode(),
                                            actor="test").certificate
    return cert.public_bytes(serialization.Encoding.PEM)


def test_person_enrols_downloads_and_admin_revokes(world: World, visits: Any) -> None:
    me = visits()
    # a wrong password first (the dashboard's failed sign-ins count it)
    me.go("/login")
    me.page.fill("#uid", "lina")
    me.page.fill("#password", "not-the-password")
    me.page.click("button[type=submit]")
    me.page.wait_for_selector("#message")
    # not signed in: the console sends the person to the IdP login, and back
    password_login(me, "lina", "/console/certificates", shot="01-login")
    assert me.page.url == world.base + "/console/certificates", me.page.url
    me.go("/console/", "02-profile")
    assert me.page.inner_text("#display-name") == "李娜"
    assert me.page.inner_text("#department") == "市财政局/预算处"
    assert me.page.locator("html").get_attribute("lang") == "zh-CN"

    # enrol an authenticator: QR + secret, confirm with a code, recovery codes once
    me.go("/console/authenticator", "03-authenticator")
    me.page.click("#enrol")
    me.page.wait_for_selector("#otp-secret")
    assert me.page.locator(".qr svg").count() == 1
    me.check("04-enrol")
    secret = me.page.inner_text("#otp-secret").strip()
    me.page.fill("#code", pyotp.TOTP(secret).now())
    me.page.click("#confirm-code")
    me.page.wait_for_selector("#recovery-codes")
    me.check("05-recovery-codes")
    assert me.page.locator("#recovery-codes li").count() == 10
    assert world.services.totp.status(world.person).active

    recovery = me.page.locator("#recovery-codes li").first.inner_text().strip()
    # an authenticator enrolled in a session does not count in it: a new session
    # (a new login) uses it
    me.context.close()
    me = visits()
    password_login(me, "lina", "/console/")

    # the one-time code through the login flow's code page: the password session
    # gains "otp" (the next step's code: the enrolment's step is spent)
    me.go("/login/otp?" + urlencode({"return": "/console/"}), "05b-login-otp")
    me.page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
    me.page.click("button[type=submit]")
    me.page.wait_for_load_state()
    assert me.page.url == world.base + "/console/", me.page.url
    assert "otp" in me.page.inner_text("#level")

    # on a phone: password, then a recovery code standing in for the code
    again = visits(viewport={"width": 390, "height": 844})
    password_login(again, "lina", "/console/")
    again.go("/login/otp?" + urlencode({"return": "/console/"}))
    again.page.fill("#recovery", recovery)
    again.page.click("button[type=submit]")
    again.page.wait_for_load_state()
    assert again.page.url == world.base + "/console/", again.page.url
    assert "otp" in again.page.inner_text("#level")
    again.check("05c-profile-phone")
    again.context.close()

    # a certificate is itself a login factor: a password-only session is sent to
    # confirm with its one-time code before it may get one
    plain = visits()
    password_login(plain, "lina", "/console/")
    plain.go("/console/certificates")
    plain.page.select_option("#csr-profile", "user-auth")
    plain.page.fill("#csr-text", csr_pem())
    plain.page.click("form[action='/console/certificates/csr'] button[type=submit]")
    plain.page.wait_for_load_state()
    # an authenticator enrolled before this session: use it (decide_issuance)
    assert "/login/otp?return=%2Fconsole%2Fcertificates" in plain.page.content()
    plain.check("06a-certificate-needs-second-factor")
    plain.context.close()
    assert world.services.ca.find(uid="lina") == []

    # request a certificate with a CSR, then download it as PEM
    me.go("/console/certificates", "06-certificates-empty")
    me.page.select_option("#csr-profile", "user-auth")
    me.page.fill("#csr-text", csr_pem())
    me.page.click("form[action='/console/certificates/csr'] button[type=submit]")
    me.page.wait_for_selector("#serial")
    me.check("07-certificate-issued")
    serial = me.page.inner_text("#serial").strip()
    with me.page.expect_download() as info:
        me.page.click("#download-pem")
    pem = Path(info.value.path()).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    assert format(cert.serial_number, "x") == serial
    assert "李娜" in cert.subject.rfc4514_string()
    world.services.certificate_validator.validate(pem)  # logs in while valid

    # a PKCS#12 generated on the server comes down as a file
    me.go("/console/certificates")
    me.page.select_option("#p12-profile", "user-sign")
    me.page.fill("#p12-pass", "p12-passphrase-1")
    with me.page.expect_download() as p12:
        me.page.click("#p12-submit")
    assert p12.value.suggested_filename.endswith(".p12")
    me.go("/console/certificates", "08-certificates")
    assert me.page.locator("#my-certs tbody tr").count() == 2
    me.go("/console/sessions", "09-sessions")
    me.go("/console/sign-ins", "10-sign-ins")
    assert "成功" in me.page.inner_text("#sign-ins")

    # the administrator: a password session is refused with the reason
    boss = visits()
    boss_pem = issue_pem(world, world.admin)  # held before the session: it counts
    password_login(boss, "wangfang", "/console/admin/")
    assert boss.page.url.endswith("/console/admin/")
    boss.check("11-admin-refused-level")
    assert "三级及以上" in boss.page.inner_text("#message")
    # ... stepped up with her certificate in the login flow (pwd + swk: level 3), she
    # gets in
    certificate_login(boss, boss_pem, "/console/admin/", "11b-certificate-login")
    assert boss.page.url == world.base + "/console/admin/", boss.page.url
    boss.go("/console/")
    assert boss.page.inner_text("#level").startswith("3"), boss.page.inner_text("#level")
    boss.go("/console/admin/", "12-dashboard")
    assert boss.page.inner_text("#failed-total").startswith("过去 24 小时登录失败共 1 次")
    assert boss.page.inner_text("#count-people") == "2"
    assert boss.page.locator("svg.chart").count() == 1
    boss.go("/console/admin/people?by=name&q=李", "13-people")
    boss.page.click("a[href='/console/admin/people/lina']")
    boss.page.wait_for_selector("#person-certs")
    boss.check("14-person")
    assert boss.page.inner_text("#person-otp") == "已绑定动态口令。"
    boss.go("/console/admin/certificates?status=valid&department=市财政局", "15-certificates")
    assert boss.page.locator(f"#certs tr[data-serial='{serial}']").count() == 1
    boss.go(f"/console/admin/certificates/{serial}", "16-certificate")
    boss.page.select_option("#revoke-reason", "keyCompromise")
    boss.page.check("#confirm-revoke")
    boss.page.click("#revoke")
    boss.page.wait_for_load_state()
    assert "已吊销" in boss.page.inner_text("#cert-status")
    assert world.services.ca.get(serial).status.value == "revoked"
    boss.go("/console/admin/audit?action=cert.revoke", "17-audit")
    assert "wangfang" in boss.page.inner_text("#audit")  # the administrator is the actor
    assert boss.page.locator("#chain.ok").count() == 1
    boss.go("/console/admin/apps", "18-apps")

    # the person sees it revoked, and the certificate no longer logs in
    me.go("/console/certificates")
    row = me.page.locator(f"#my-certs tr[data-serial='{serial}'] .cert-status")
    assert row.inner_text() == "已吊销"
    with pytest.raises(CertificateRefused):
        world.services.certificate_validator.validate(pem)
    thief = visits()
    certificate_login(thief, pem, "/console/", "18b-certificate-login-revoked")
    assert thief.page.url.startswith(world.base + "/login/certificate")
    thief.check("18c-certificate-login-refused")
    assert "已被吊销" in thief.page.inner_text("#message")
    assert all(c["name"] != COOKIE_NAME for c in thief.context.cookies())  # no session

    # the language switch gives the English page
    me.page.click("#lang-switch")
    me.page.wait_for_load_state()
    assert me.page.locator("html").get_attribute("lang") == "en"
    assert me.page.inner_text("h1") == "My certificates"
    assert row.inner_text() == "Revoked"
    me.check("19-certificates-en")


def test_admin_actions_need_confirmation_and_are_audited(world: World, visits: Any) -> None:
    boss = visits(locale="en-GB", extra_http_headers={"Accept-Language": "en-GB,en;q=0.9"})
    admin_session(boss, world)
    # Accept-Language alone picks English
    boss.go("/console/admin/people/lina", "20-person-en")
    assert boss.page.locator("html").get_attribute("lang") == "en"
    # leaving without the box ticked is refused (the browser would stop it first:
    # remove the required attribute to send it anyway)
    boss.page.evaluate("document.getElementById('confirm-leave').removeAttribute('required')")
    boss.page.click("form[action='/console/admin/people/lina/leave'] button")
    boss.page.wait_for_load_state()
    assert "Tick the confirmation box" in boss.page.inner_text("#message")
    assert world.services.directory.show("lina").status.value == "active"
    boss.go("/console/admin/people/lina")
    boss.page.fill("#suspend-reason", "on leave")
    boss.page.click("form[action='/console/admin/people/lina/suspend'] button")
    boss.page.wait_for_load_state()
    assert boss.page.inner_text("#person-status") == "Suspended"
    boss.page.click("form[action='/console/admin/people/lina/restore'] button")
    boss.page.wait_for_load_state()
    assert boss.page.inner_text("#person-status") == "Active"
    # register a department app, edit it, rotate its secret
    boss.go("/console/admin/apps")
    boss.page.fill("#a-name", "预算管理系统")
    boss.page.fill("#a-redirect", "https://budget.example.gov.cn/callback")
    boss.page.select_option("#a-level", "3")
    boss.page.click("form[action='/console/admin/apps'] button[type=submit]")
    boss.page.wait_for_selector("#client-secret")
    boss.check("21-app-secret")
    client_id = boss.page.inner_text("#client-id").strip()
    boss.go(f"/console/admin/apps/{client_id}", "22-app-edit")
    boss.page.select_option("#a-class", "shared")
    boss.page.fill("#a-departments", "市财政局")
    boss.page.click(f"form[action='/console/admin/apps/{client_id}'] button[type=submit]")
    boss.page.wait_for_load_state()
    edited = world.services.provider.clients.list()[0]
    assert edited.info_class.value == "shared" and edited.allowed_departments == ("市财政局",)
    boss.go(f"/console/admin/apps/{client_id}")
    boss.page.check("#confirm-rotate")
    boss.page.click(f"form[action='/console/admin/apps/{client_id}/rotate'] button")
    boss.page.wait_for_selector("#client-secret")
    boss.go("/console/admin/audit?actor=wangfang", "23-audit-en")
    text = boss.page.inner_text("#audit")
    for action in ("directory.suspend", "directory.restore", "client.register", "client.edit",
                   "client.rotate_secret"):
        assert action in text, action
    assert not re.search(r"directory\.leave", text)

    # marking as left (confirmed) revokes her certificates and ends her sessions
    svc = world.services
    serial = svc.ca.issue_from_csr(world.person, "user-auth", csr_pem().encode(),
                                   actor="test").record.serial
    svc.provider.sessions.create(world.person)
    boss.go("/console/admin/people/lina")
    boss.page.fill("#leave-reason", "retired")
    boss.page.check("#confirm-leave")
    boss.page.click("form[action='/console/admin/people/lina/leave'] button")
    boss.page.wait_for_load_state()
    assert boss.page.inner_text("#person-status") == "Left"
    assert svc.ca.get(serial).status.value == "revoked"
    assert svc.provider.sessions.active_for_subject(world.person.entry_uuid) == []
    boss.go("/console/admin/audit?person=lina&action=directory.leave")
    assert "wangfang" in boss.page.inner_text("#audit")


def test_a_person_outside_security_admins_is_refused(world: World, visits: Any) -> None:
    me = visits()
    password_login(me, "lina", "/console/admin/people")
    assert me.page.url.endswith("/console/admin/people")
    me.check("24-admin-refused-group")
    assert "security-admins" in me.page.inner_text("#message")


def test_admin_follows_the_offered_step_up_to_the_page_she_asked_for(
        world: World, visits: Any) -> None:
    """Section 3: the level-3 refusal offers the step-up the policy accepts, right
    there, and brings her back to the page she asked for."""
    pem = issue_pem(world, world.admin)  # her certificate, from an earlier day
    boss = visits()
    asked = "/console/admin/people?by=name&q=李"
    password_login(boss, "wangfang", asked)
    assert boss.page.url.endswith("/console/admin/people?by=name&q=%E6%9D%8E"), boss.page.url
    boss.check("25-admin-step-up-offered")
    assert "三级及以上" in boss.page.inner_text("#message")
    assert boss.page.locator("#step-up-otp").count() == 0  # a code alone is not level 3
    # the browser presents her certificate (forwarded as the TLS front does)
    boss.context.set_extra_http_headers({DEFAULT_HEADER: quote(pem.decode())})
    boss.page.click("#step-up-certificate")
    boss.page.wait_for_selector("#certificate-login")
    boss.check("26-admin-step-up-certificate")
    boss.page.click("#certificate-login")
    boss.page.wait_for_load_state()
    boss.context.set_extra_http_headers({})
    assert boss.page.url == world.base + "/console/admin/people?by=name&q=%E6%9D%8E", \
        boss.page.url
    boss.check("27-admin-after-step-up")
    assert boss.page.locator("a[href='/console/admin/people/lina']").count() == 1
