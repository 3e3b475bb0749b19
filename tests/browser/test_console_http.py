"""The console's guards, over plain HTTP (Flask's test client, same real directory
and CA as the browser tests): sign-in redirects back, CSRF on every POST, nobody
reaches another person's certificate or session, refusals explain themselves,
and the security headers stay strict."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from directory.model import Person
from idp.login.sessions import COOKIE_NAME
from idp.runtime.app import create_app
from policies.assurance import acr_for
from tests.browser.conftest import World
from tests.browser.test_console import csr_pem

pytestmark = pytest.mark.slapd


def signed_in(world: World, person: Person, level: int = 1) -> FlaskClient:
    client = create_app(world.services).test_client()
    cookie, _ = world.services.provider.sessions.create(
        person, amr=("pwd", "swk") if level >= 3 else ("pwd",), acr=acr_for(level))
    client.set_cookie(COOKIE_NAME, cookie, domain="localhost")
    return client


def csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_signed_out_goes_to_login_and_returns(world: World) -> None:
    client = create_app(world.services).test_client()
    resp = client.get("/console/sessions?x=1")
    assert resp.status_code == 302
    back = parse_qs(urlsplit(resp.headers["Location"]).query)["return"][0]
    assert back == "/console/sessions?x=1"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'value="/console/sessions?x=1"' in page  # the login form keeps it


def test_every_post_needs_the_csrf_token(world: World) -> None:
    client = signed_in(world, world.person)
    for path in ("/console/sessions/end", "/console/authenticator/enrol",
                 "/console/certificates/pkcs12"):
        resp = client.post(path, data={"sid": "others", "profile": "user-auth",
                                       "passphrase": "long-enough-1"})
        assert resp.status_code == 400, path
    admin = signed_in(world, world.admin, level=3)
    resp = admin.post("/console/admin/people/lina/suspend", data={"csrf": "forged"})
    assert resp.status_code == 400
    assert world.services.directory.show("lina").status.value == "active"


def test_someone_elses_certificate_is_not_found(world: World) -> None:
    rec = world.services.ca.issue_from_csr(world.admin, "user-auth", csr_pem().encode(),
                                           actor="test").record
    client = signed_in(world, world.person)
    assert client.get(f"/console/certificates/{rec.serial}.pem").status_code == 404
    assert client.get("/console/certificates/zz.pem").status_code == 404
    mine = world.services.ca.issue_from_csr(world.person, "user-auth", csr_pem().encode(),
                                            actor="test").record
    resp = client.get(f"/console/certificates/{mine.serial}.der")
    assert resp.status_code == 200 and resp.data == mine.der


def test_ending_a_session_touches_only_ones_own(world: World) -> None:
    _, other = world.services.provider.sessions.create(world.admin)
    client = signed_in(world, world.person)
    token = csrf(client, "/console/sessions")
    assert client.post("/console/sessions/end", data={"csrf": token, "sid": other.sid}
                       ).status_code == 303
    assert world.services.provider.sessions.by_sid(other.sid) is not None


def test_admin_pages_need_the_group_and_level_3(world: World) -> None:
    person = signed_in(world, world.person, level=3)
    resp = person.get("/console/admin/")
    assert resp.status_code == 403 and "security-admins" in resp.get_data(as_text=True)
    admin_low = signed_in(world, world.admin, level=2)
    resp = admin_low.get("/console/admin/certificates")
    assert resp.status_code == 403 and "当前会话等级：2" in resp.get_data(as_text=True)
    admin = signed_in(world, world.admin, level=3)
    assert admin.get("/console/admin/certificates").status_code == 200


def test_revoking_needs_the_confirmation(world: World) -> None:
    rec = world.services.ca.issue_from_csr(world.person, "user-auth", csr_pem().encode(),
                                           actor="test").record
    admin = signed_in(world, world.admin, level=3)
    path = f"/console/admin/certificates/{rec.serial}"
    token = csrf(admin, path)
    assert admin.post(path + "/revoke", data={"csrf": token, "reason": "keyCompromise"}
                      ).status_code == 400
    assert world.services.ca.get(rec.serial).status.value == "valid"
    assert admin.post(path + "/revoke", data={"csrf": token, "reason": "keyCompromise",
                                              "confirm": "yes"}).status_code == 303
    assert world.services.ca.get(rec.serial).status.value == "revoked"


def test_headers_stay_strict(world: World) -> None:
    client = signed_in(world, world.person)
    resp = client.get("/console/")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["Cache-Control"] == "no-store"
    css = client.get("/static/console.css")
    assert css.status_code == 200 and b"font-family" in css.data and b"url(" not in css.data


def test_renew_preselects_the_profile(world: World) -> None:
    world.services.ca.issue_from_csr(world.person, "user-sign", csr_pem().encode(), actor="test")
    client = signed_in(world, world.person)
    page = client.get("/console/certificates").get_data(as_text=True)
    assert 'href="/console/certificates?profile=user-sign#request"' in page
    page = client.get("/console/certificates?profile=user-sign").get_data(as_text=True)
    assert page.count("<option selected>user-sign</option>") == 2


def last_audit(world: World, action: str) -> tuple[str, str]:
    from idp.console.queries import AuditFilter, audit_records

    rec = audit_records(world.services.sessions, AuditFilter(action=action), limit=1)[0]
    return rec.actor, rec.target


def test_admin_issues_holds_releases_and_resets_otp(world: World) -> None:
    admin = signed_in(world, world.admin, level=3)
    token = csrf(admin, "/console/admin/certificates/issue")
    resp = admin.post("/console/admin/certificates/issue", data={
        "csrf": token, "mode": "pkcs12", "uid": "lina", "profile": "user-auth",
        "passphrase": "p12-passphrase-2"})
    assert resp.status_code == 200 and resp.mimetype == "application/x-pkcs12"
    assert last_audit(world, "cert.issue")[0] == "wangfang"
    resp = admin.post("/console/admin/certificates/issue", data={
        "csrf": token, "mode": "csr", "uid": "lina", "profile": "user-sign", "csr": csr_pem()})
    serial = re.search(r'id="serial">([0-9a-f]+)<', resp.get_data(as_text=True))
    assert resp.status_code == 200 and serial
    path = f"/console/admin/certificates/{serial.group(1)}"
    assert admin.post(path + "/hold", data={"csrf": token}).status_code == 303
    assert world.services.ca.get(serial.group(1)).status.value == "hold"
    assert admin.post(path + "/release", data={"csrf": token}).status_code == 303
    assert world.services.ca.get(serial.group(1)).status.value == "valid"
    assert last_audit(world, "cert.release") == ("wangfang", f"cert:{serial.group(1)}")
    # a weak passphrase and a broken CSR are refused with the CA's reason
    weak = admin.post("/console/admin/certificates/issue", data={
        "csrf": token, "mode": "pkcs12", "uid": "lina", "profile": "user-auth",
        "passphrase": "short"})
    assert weak.status_code == 400 and "8" in weak.get_data(as_text=True)
    broken = admin.post("/console/admin/certificates/issue", data={
        "csrf": token, "mode": "csr", "uid": "lina", "profile": "user-auth",
        "csr": "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n"})
    assert broken.status_code == 400

    world.services.totp.begin_enrolment(world.person)
    token = csrf(admin, "/console/admin/people/lina")
    assert admin.post("/console/admin/people/lina/reset-otp", data={"csrf": token}
                      ).status_code == 400  # not confirmed
    assert world.services.totp.status(world.person).enrolled
    assert admin.post("/console/admin/people/lina/reset-otp",
                      data={"csrf": token, "confirm": "yes"}).status_code == 303
    assert not world.services.totp.status(world.person).enrolled
    assert last_audit(world, "otp.")[0] == "wangfang"


def test_admin_ends_a_persons_session_and_searches_safely(world: World) -> None:
    _, theirs = world.services.provider.sessions.create(world.person)
    admin = signed_in(world, world.admin, level=3)
    token = csrf(admin, "/console/admin/people/lina")
    assert admin.post("/console/admin/people/lina/end-session",
                      data={"csrf": token, "sid": theirs.sid}).status_code == 303
    assert world.services.provider.sessions.by_sid(theirs.sid) is None
    assert last_audit(world, "idp.session.end") == ("wangfang", "lina")
    for q in ("*", "*)(uid=*", "李娜\\29"):
        page = admin.get("/console/admin/people", query_string={"by": "name", "q": q})
        assert page.status_code == 200
        assert "/console/admin/people/wangfang" not in page.get_data(as_text=True), q
    page = admin.get("/console/admin/people", query_string={"by": "department", "q": "市财政局"})
    assert "/console/admin/people/lina" in page.get_data(as_text=True)


def test_replacing_an_active_authenticator_needs_a_second_factor(world: World) -> None:
    import pyotp

    totp = world.services.totp
    secret = totp.begin_enrolment(world.person).secret
    assert totp.activate(world.person, pyotp.TOTP(secret).now()).ok
    # A password-only session (a stolen password) may not swap the second factor...
    thief = signed_in(world, world.person)
    for path, form in (("/console/authenticator/enrol", {"again": "yes", "confirm": "yes"}),
                       ("/console/authenticator/recovery", {"confirm": "yes"})):
        resp = thief.post(path, data={"csrf": csrf(thief, "/console/authenticator"), **form})
        assert resp.status_code == 403, path
        assert "/login/otp?return=%2Fconsole%2Fauthenticator" in resp.get_data(as_text=True)
    status = totp.status(world.person)
    assert status.active and status.recovery_codes_left == 0  # nothing was replaced
    # ...a session that has shown the one-time code may.
    owner = create_app(world.services).test_client()
    cookie, _ = world.services.provider.sessions.create(world.person, amr=("pwd", "otp"),
                                                        acr=acr_for(2))
    owner.set_cookie(COOKIE_NAME, cookie, domain="localhost")
    resp = owner.post("/console/authenticator/recovery",
                      data={"csrf": csrf(owner, "/console/authenticator"), "confirm": "yes"})
    assert resp.status_code == 200 and totp.status(world.person).recovery_codes_left == 10
    resp = owner.post("/console/authenticator/enrol", data={
        "csrf": csrf(owner, "/console/authenticator"), "again": "yes", "confirm": "yes"})
    assert resp.status_code == 200 and not totp.status(world.person).active  # re-enrolling
