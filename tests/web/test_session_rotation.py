"""Session fixation and the stolen-password chain (issue 9, section 2 and hostile
input 1 and 2), through the IdP's web flow in process: a real slapd, a real CA, the
Flask app with its real database (the ``env`` fixture of ``test_login_views``).

- Every step-up (password, certificate, one-time code) and every enrolment
  activation gives the session a new cookie value; the old one finds nothing; the
  sid, the apps reached and when the session began are kept.
- A factor enrolled in a session does not count in it; the console issues a
  certificate only as ``policies.assurance.decide_issuance`` says.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from directory.service import DirectoryService
from idp.login.sessions import COOKIE_NAME
from idp.login.tables import session_clients, sso_sessions
from tests.fixtures.idp import csrf_of, follow
from tests.fixtures.pki import make_csr
from tests.web.test_login_views import (
    PASSWORD,
    Env,
    auth_query,
    certificate_login,
    enrol,
    otp,
    password_login,
    redirected_code,
)
from tests.web.test_login_views import env as login_env  # noqa: F401 - the fixture

pytestmark = pytest.mark.slapd


@pytest.fixture
def web(login_env: Env) -> Env:  # noqa: F811 - pytest passes the fixture
    """``test_login_views``'s world (``env`` names another fixture here)."""
    return login_env


def cookie(env: Env) -> str:
    found = env.browser.get_cookie(COOKIE_NAME)
    assert found is not None
    return found.value


def session_row(env: Env) -> Any:
    """The newest session (an earlier browser session may still be live)."""
    with env.services.sessions() as s:
        return s.execute(select(sso_sessions).order_by(sso_sessions.c.created_at.desc())
                         .limit(1)).one()


def assert_rotated(env: Env, old: str, before: Any) -> None:
    """A new cookie, the old one dead, the same session (sid, start, apps)."""
    new = cookie(env)
    assert new != old
    sessions = env.services.provider.sessions
    assert sessions.get(old) is None
    found = sessions.get(new)
    assert found is not None and found.sid == before.sid
    after = session_row(env)
    assert after.created_at == before.created_at and after.id_hash != before.id_hash


@pytest.fixture
def console(web: Env, directory_service: DirectoryService) -> Env:
    """The console reads people from the test slapd (as ``govtrust serve`` does)."""
    env = web
    env.services.directory = directory_service  # type: ignore[misc]
    return env


def console_form(env: Env, path: str, data: dict[str, str]) -> Any:
    page = env.browser.get("/console/certificates")
    assert page.status_code == 200, page.text
    return env.browser.post(path, data={**data, "csrf": csrf_of(page.text)})


def csr_request(env: Env, profile: str = "user-auth") -> Any:
    csr, _ = make_csr()
    return console_form(env, "/console/certificates/csr",
                        {"profile": profile, "csr": csr.decode()})


def p12_request(env: Env, profile: str = "user-auth") -> Any:
    return console_form(env, "/console/certificates/pkcs12",
                        {"profile": profile, "passphrase": "p12-passphrase-1"})


def enrol_now(env: Env) -> str:
    """Enrol an authenticator inside the current session (its clock after the start)."""
    env.otp_clock.now = time.time() + 1
    return enrol(env)


def enrol_earlier(env: Env) -> str:
    """Enrol an authenticator in an earlier session, then drop that browser session."""
    env.otp_clock.now = time.time() - 60
    redirected_code(password_login(env, env.apps["level1"]))
    secret = enrol(env)
    env.browser.delete_cookie(COOKIE_NAME)
    env.otp_clock.now = time.time()
    return secret


def next_code(env: Env, secret: str) -> str:
    env.otp_clock.now += 30  # the enrolment's step is spent
    return pyotp.TOTP(secret).at(env.otp_clock.now)


def issued(env: Env) -> list[Any]:
    return env.ca.ca.find(uid="lina")


# -- rotation -------------------------------------------------------------------------
def test_login_sets_a_cookie_and_a_password_step_up_rotates_it(web: Env) -> None:
    env = web
    redirected_code(password_login(env, env.apps["level1"]))
    old, before = cookie(env), session_row(env)
    # the same person logs in again on this browser: a step-up of the same session
    page = env.browser.get("/login?return=/")
    resp = env.browser.post("/login", data={"uid": "lina", "password": PASSWORD,
                                            "return": "/", "csrf": csrf_of(page.text)})
    assert resp.status_code == 302
    assert_rotated(env, old, before)


def test_certificate_step_up_rotates_the_cookie(web: Env) -> None:
    env = web
    cert = env.certificate()
    redirected_code(password_login(env, env.apps["level1"]))
    old, before = cookie(env), session_row(env)
    assert certificate_login(env, "/", cert).status_code == 302
    assert_rotated(env, old, before)
    assert session_row(env).cert_serial == format(cert.serial_number, "x")


def test_one_time_code_step_up_rotates_the_cookie(web: Env) -> None:
    env = web
    secret = enrol_earlier(env)
    redirected_code(password_login(env, env.apps["level1"]))
    old, before = cookie(env), session_row(env)
    assert otp(env, "/", code=next_code(env, secret)).status_code == 302
    assert_rotated(env, old, before)
    assert set(session_row(env).amr.split()) == {"pwd", "otp"}


def test_enrolment_activation_rotates_the_cookie_and_adds_no_method(web: Env) -> None:
    env = web
    redirected_code(password_login(env, env.apps["level1"]))
    old, before = cookie(env), session_row(env)
    enrol_now(env)
    assert_rotated(env, old, before)
    assert session_row(env).amr.split() == ["pwd"]  # enrolling is not a login


def test_the_old_cookie_no_longer_opens_anything(web: Env) -> None:
    env = web
    cert = env.certificate()
    redirected_code(password_login(env, env.apps["level1"]))
    captured = cookie(env)
    certificate_login(env, "/", cert)
    thief = env.browser.application.test_client()
    thief.set_cookie(COOKIE_NAME, captured)
    resp = thief.get(auth_query(env.apps["level3"], prompt="none"))
    assert "error=login_required" in resp.headers["Location"]
    assert thief.get("/console/").headers["Location"].startswith("/login?")


def test_apps_reached_survive_a_step_up(web: Env) -> None:
    env = web
    cert = env.certificate()
    redirected_code(password_login(env, env.apps["level1"]))
    sid = session_row(env).sid
    page = follow(env.browser, auth_query(env.apps["level3"]))
    back = parse_qs(urlsplit(page.request.url).query)["return"][0]
    done = certificate_login(env, back, cert)
    redirected_code(follow(env.browser, done.headers["Location"]))
    with env.services.sessions() as s:
        reached = {r.client_id for r in s.execute(
            select(session_clients).where(session_clients.c.sid == sid)).all()}
    assert reached == {env.apps["level1"].client_id, env.apps["level3"].client_id}
    # single sign-on goes on with the new cookie, without a login
    redirected_code(env.browser.get(auth_query(env.apps["level1"], prompt="none")))


# -- a factor enrolled in a session does not count in it -------------------------------
def test_code_of_an_authenticator_enrolled_in_the_session_does_not_step_up(web: Env) -> None:
    env = web
    cert = env.certificate()
    env.browser.delete_cookie(COOKIE_NAME)
    # certificate first (level 2); a code from an authenticator enrolled now is not
    # the second factor level 3 needs
    back = auth_query(env.apps["level3"])
    done = certificate_login(env, back, cert)
    assert urlsplit(follow(env.browser, done.headers["Location"]).request.url).path == "/login"
    secret = enrol_now(env)
    assert otp(env, back, code=next_code(env, secret)).status_code == 302
    again = follow(env.browser, back)
    assert urlsplit(again.request.url).path == "/login", again.request.url


def test_certificate_issued_in_the_session_does_not_reach_level_3(web: Env) -> None:
    env = web
    redirected_code(password_login(env, env.apps["level1"]))
    time.sleep(1.1)  # the CA records whole seconds: issue it in a later second
    fresh = env.certificate()  # issued after the session began
    back = auth_query(env.apps["level3"])
    certificate_login(env, back, fresh)
    asked = follow(env.browser, back)
    assert urlsplit(asked.request.url).path == "/login/certificate"


# -- console self-service issuance (policies.assurance.decide_issuance) ---------------
def test_new_authenticator_then_csr_needs_an_administrator(console: Env) -> None:
    env = console
    redirected_code(password_login(env, env.apps["level1"]))
    secret = enrol_now(env)
    assert otp(env, "/console/certificates", code=next_code(env, secret)).status_code == 302
    resp = csr_request(env)
    assert resp.status_code == 403 and "安全管理员" in resp.text
    assert issued(env) == []


def test_earlier_authenticator_used_now_issues_and_audits_it(console: Env) -> None:
    env = console
    secret = enrol_earlier(env)
    redirected_code(password_login(env, env.apps["level1"]))
    assert otp(env, "/console/certificates", code=next_code(env, secret)).status_code == 302
    resp = csr_request(env)
    assert resp.status_code == 200 and 'id="serial"' in resp.text, resp.text
    [rec] = issued(env)
    audit = env.audit("console.certificate.self_service")
    assert audit == [{"target": rec.serial, "profile": "user-auth",
                      "established_by": "otp"}]


def test_earlier_authenticator_not_used_offers_the_code(console: Env) -> None:
    env = console
    enrol_earlier(env)
    redirected_code(password_login(env, env.apps["level1"]))
    resp = p12_request(env)
    assert resp.status_code == 403
    assert "/login/otp?" + urlencode({"return": "/console/certificates"}) in html.unescape(
        resp.text)
    assert issued(env) == []


def test_renewal_with_a_valid_certificate_issues(console: Env) -> None:
    env = console
    cert = env.certificate()
    env.browser.delete_cookie(COOKIE_NAME)
    assert certificate_login(env, "/console/certificates", cert).status_code == 302
    resp = p12_request(env)
    assert resp.status_code == 200 and resp.mimetype == "application/x-pkcs12"
    assert env.audit("console.certificate.self_service")[-1]["established_by"] == "swk"


def test_signing_certificate_without_an_established_factor_is_refused(console: Env) -> None:
    env = console
    redirected_code(password_login(env, env.apps["level1"]))
    resp = p12_request(env, "user-sign")
    assert resp.status_code == 403 and "此类证书的自助申请" in resp.text
    assert issued(env) == []


def test_bad_profile_is_refused_before_any_decision(console: Env) -> None:
    env = console
    redirected_code(password_login(env, env.apps["level1"]))
    assert p12_request(env, "tls-server").status_code == 400
    assert issued(env) == []


# -- the chain, end to end ------------------------------------------------------------
@pytest.fixture
def admin(console: Env, directory_service: DirectoryService) -> Env:
    directory_service.add_group("security-admins", description="security administrators")
    directory_service.add_member("security-admins", "lina")
    return console


def test_stolen_password_chain_fails_at_the_certificate_step(admin: Env) -> None:
    """Hostile input 1: password only -> first authenticator -> its code -> a user-auth
    PKCS#12 from the console -> certificate login -> administration. Now refused when
    the certificate is asked for, and administration stays closed."""
    env = admin
    # 1. the stolen password
    redirected_code(password_login(env, env.apps["level1"]))
    assert env.browser.get("/console/admin/").status_code == 403
    # 2. a first authenticator, enrolled with the password alone (still allowed) ...
    secret = enrol_now(env)
    # ... and its code: done, but not counted in this session
    assert otp(env, "/console/", code=next_code(env, secret)).status_code == 302
    profile = env.browser.get("/console/")
    assert re.search(r'id="level">2（pwd）', profile.text), profile.text
    # 3. the certificate: an administrator must issue it
    resp = p12_request(env)
    assert resp.status_code == 403 and resp.mimetype == "text/html"
    assert "安全管理员" in resp.text and "管理控制台" in resp.text
    assert issued(env) == []
    # 4. so no certificate login, and administration stays closed
    assert env.browser.get("/console/admin/").status_code == 403


def test_admin_password_session_is_offered_the_certificate_step_up(admin: Env) -> None:
    env = admin
    cert = env.certificate()  # her own certificate, held before this session
    redirected_code(password_login(env, env.apps["level1"]))
    refused = env.browser.get("/console/admin/people?by=name&q=李")
    assert refused.status_code == 403
    link = re.search(r'<a href="([^"]+)" id="step-up-certificate">', refused.text)
    assert link, refused.text
    target = html.unescape(link.group(1))
    back = "/console/admin/people?by=name&q=%E6%9D%8E"  # ASCII, as safe_return wants
    assert target == "/login/certificate?" + urlencode({"return": back})
    assert 'id="step-up-otp"' not in refused.text  # a code alone is not level 3
    done = certificate_login(env, back, cert)
    assert done.headers["Location"] == back
    assert env.browser.get(back).status_code == 200


def test_admin_with_a_certificate_only_is_offered_a_code_or_the_password(
        admin: Env) -> None:
    env = admin
    enrol_earlier(env)
    cert = env.certificate()
    assert certificate_login(env, "/console/admin/", cert).status_code == 302
    refused = env.browser.get("/console/admin/")
    assert refused.status_code == 403
    assert 'id="step-up-otp"' in refused.text and 'id="step-up-password"' in refused.text
    assert 'id="step-up-certificate"' not in refused.text


def test_pkcs12_of_an_earlier_session_still_logs_in(console: Env) -> None:
    """The rule bites issuance, not certificates: one obtained with an established
    factor logs in later, at level 3 with the password."""
    env = console
    secret = enrol_earlier(env)
    redirected_code(password_login(env, env.apps["level1"]))
    otp(env, "/console/certificates", code=next_code(env, secret))
    resp = p12_request(env)
    assert resp.status_code == 200
    _, cert, _ = pkcs12.load_key_and_certificates(resp.data, b"p12-passphrase-1")
    assert cert is not None
    env.browser.delete_cookie(COOKIE_NAME)
    back = auth_query(env.apps["level3"])
    done = certificate_login(env, back, cert)
    asked = follow(env.browser, done.headers["Location"])
    page = env.browser.post("/login", data={"uid": "lina", "password": PASSWORD,
                                            "return": back, "csrf": csrf_of(asked.text)})
    redirected_code(follow(env.browser, page.headers["Location"]))
