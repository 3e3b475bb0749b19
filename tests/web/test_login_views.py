"""Strong login through the IdP's web flow, in process: a real slapd (fixture), a real CA
(``tests.fixtures.pki.build_env``), the Flask app with its real database; the clock of
the certificate validator and of the one-time codes is the test's, so expiry and
time windows are exact. The client certificate arrives as a trusted proxy's header
(the TLS socket path is covered by ``test_login_e2e``)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient
from sqlalchemy import select

from directory.model import Person
from directory.service import DirectoryService
from idp.login.certificate import CertificateValidator
from idp.login.forwarded import TrustedProxies
from idp.login.otp_store import SqlOtpStore
from idp.login.tables import sso_sessions
from idp.login.totp import TotpService
from idp.oidc.clients import Client, build_client
from idp.runtime.app import create_app
from idp.runtime.services import Services
from pki.audit_store import audit_log
from pki.model import CASettings
from tests.fixtures.idp import csrf_of, follow, make_services
from tests.fixtures.pki import CAEnv, build_env, make_csr

pytestmark = pytest.mark.slapd

ISSUER = "http://127.0.0.1:9443"
REDIRECT = "http://127.0.0.1:5000/cb"
PASSWORD = "Gov-Trust-2026-pass!"
HEADER = "X-SSL-Client-Cert"


@dataclass
class Clock:
    """The real time until a test sets ``now``."""

    fixed: float | None = None

    @property
    def now(self) -> float:
        return time.time() if self.fixed is None else self.fixed

    @now.setter
    def now(self, value: float) -> None:
        self.fixed = value

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    services: Services
    ca: CAEnv
    person: Person
    browser: FlaskClient
    cert_clock: Clock
    otp_clock: Clock
    apps: dict[str, Client]

    def certificate(self, profile: str = "user-auth") -> x509.Certificate:
        csr, _ = make_csr()
        return self.ca.ca.issue_from_csr(self.person, profile, csr, actor="test").certificate

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.services.sessions() as s:
            rows = s.execute(select(audit_log.c.target, audit_log.c.details)
                             .where(audit_log.c.action == action)).all()
        return [{"target": r.target, **json.loads(r.details)} for r in rows]


@pytest.fixture
def env(directory_service: DirectoryService, tmp_path: Path) -> Iterator[Env]:
    directory_service.ensure_department("市财政局/预算处")
    directory_service.ensure_department("市公安局/治安处")
    person = directory_service.add_person(uid="lina", name="李娜", department="市财政局/预算处",
                                          title="处长", password=PASSWORD)
    ca = build_env(tmp_path / "ca", f"sqlite:///{tmp_path / 'ca.db'}", settings=CASettings())
    services = make_services(tmp_path / "home", ISSUER, directory_service.gateway)
    # the CA whose certificates log in is the one whose records the session reads
    services.ca = ca.ca  # type: ignore[misc]
    cert_clock, otp_clock = Clock(), Clock(time.time())
    from datetime import UTC, datetime

    services.certificate_validator = CertificateValidator(  # type: ignore[misc]
        ca.ca, clock=lambda: datetime.fromtimestamp(cert_clock(), UTC))
    services.totp = TotpService(  # type: ignore[misc]
        SqlOtpStore(services.sessions), services.config.secret_bytes("otp-key"),
        clock=otp_clock, max_failures=5)
    provider = services.provider
    provider.trusted_proxies = TrustedProxies.parse(["127.0.0.1"])
    apps = {}
    for name, kw in (("level1", {"level": 1}), ("level3", {"level": 3}),
                     ("shared", {"level": 1, "info_class": "shared",
                                 "allowed_departments": ["市公安局"]})):
        apps[name], _ = provider.clients.add(build_client(
            name=f"应用-{name}", redirect_uris=[REDIRECT], first_party=True, **kw))
    app = create_app(services)
    app.testing = True
    try:
        yield Env(services, ca, person, app.test_client(), cert_clock, otp_clock, apps)
    finally:
        services.close()
        ca.engine.dispose()


def pem_header(cert: x509.Certificate) -> dict[str, str]:
    return {HEADER: quote(cert.public_bytes(serialization.Encoding.PEM).decode())}


def auth_query(app: Client, **extra: str) -> str:
    return "/authorize?" + urlencode({"response_type": "code", "client_id": app.client_id,
                                      "redirect_uri": REDIRECT, "scope": "openid",
                                      "state": "s1", "nonce": "n1", **extra})


def password_login(env: Env, app: Client) -> Any:
    page = follow(env.browser, auth_query(app))
    back = parse_qs(urlsplit(page.request.url).query)["return"][0]
    resp = env.browser.post("/login", data={"uid": "lina", "password": PASSWORD,
                                            "return": back, "csrf": csrf_of(page.text)})
    assert resp.status_code == 302, resp.text
    return follow(env.browser, resp.headers["Location"])


def certificate_login(env: Env, back: str, cert: x509.Certificate | None,
                      environ: dict[str, str] | None = None) -> Any:
    page = env.browser.get("/login/certificate?" + urlencode({"return": back}))
    headers = pem_header(cert) if cert is not None else {}
    return env.browser.post("/login/certificate", headers=headers,
                            environ_base=environ or {},
                            data={"return": back, "csrf": csrf_of(page.text)})


def redirected_code(resp: Any) -> str:
    loc = resp.headers.get("Location", "")
    assert resp.status_code == 302 and loc.startswith(REDIRECT), (resp.status_code, loc)
    return parse_qs(urlsplit(loc).query)["code"][0]


# -- certificates -------------------------------------------------------------------------

def test_expired_certificate_is_refused(env: Env) -> None:
    cert = env.certificate()
    env.cert_clock.now = cert.not_valid_after_utc.timestamp() + 1
    resp = certificate_login(env, auth_query(env.apps["level1"]), cert)
    assert resp.status_code == 403 and "证书已过期" in resp.text
    assert [r["reason"] for r in env.audit("certauth.refused")] == ["expired"]


def test_not_yet_valid_certificate_is_refused(env: Env) -> None:
    cert = env.certificate()
    env.cert_clock.now = cert.not_valid_before_utc.timestamp() - 1
    resp = certificate_login(env, auth_query(env.apps["level1"]), cert)
    assert resp.status_code == 403 and "证书尚未生效" in resp.text


def test_certificate_revoked_a_second_ago_is_refused(env: Env) -> None:
    cert = env.certificate()
    first = certificate_login(env, auth_query(env.apps["level1"]), cert)
    assert first.status_code == 302
    env.ca.ca.revoke(format(cert.serial_number, "x"), "keyCompromise", actor="admin")
    again = certificate_login(env, auth_query(env.apps["level1"]), cert)
    assert again.status_code == 403 and "该证书已被吊销" in again.text
    en = env.browser.post("/login/certificate?lang=en", headers=pem_header(cert), data={
        "return": "/", "csrf": csrf_of(again.text)})
    assert "The certificate has been revoked" in en.text


def test_certificate_of_a_suspended_person_is_refused(
        env: Env, directory_service: DirectoryService) -> None:
    cert = env.certificate()
    directory_service.suspend("lina", actor="test")
    resp = certificate_login(env, auth_query(env.apps["level1"]), cert)
    assert resp.status_code == 403 and "您的账户已被暂停使用" in resp.text
    assert env.audit("certauth.refused")[-1]["reason"] == "person_suspended"


def test_header_from_an_untrusted_address_is_ignored_and_audited(env: Env) -> None:
    cert = env.certificate()
    resp = certificate_login(env, auth_query(env.apps["level1"]), cert,
                             environ={"REMOTE_ADDR": "10.20.30.40"})
    assert resp.status_code == 403 and "来源不可信" in resp.text
    assert env.audit("certauth.untrusted_proxy")[-1]["target"] == "10.20.30.40"
    assert env.audit("idp.login") == []


def test_no_certificate_gets_a_clear_message(env: Env) -> None:
    resp = certificate_login(env, auth_query(env.apps["level1"]), None)
    assert resp.status_code == 400 and "未收到客户端证书" in resp.text


# -- step-up and the assurance decision -------------------------------------------------------

def test_step_up_keeps_the_session_rotates_its_cookie_and_records_each_method_time(
        env: Env) -> None:
    cert = env.certificate()  # held before the session (one issued in it would not count)
    redirected_code(password_login(env, env.apps["level1"]))
    with env.services.sessions() as s:
        before = s.execute(select(sso_sessions)).one()
    page = follow(env.browser, auth_query(env.apps["level3"]))
    assert urlsplit(page.request.url).path == "/login/certificate"
    back = parse_qs(urlsplit(page.request.url).query)["return"][0]
    done = certificate_login(env, back, cert)
    redirected_code(follow(env.browser, done.headers["Location"]))
    with env.services.sessions() as s:
        after = s.execute(select(sso_sessions)).one()  # still one session: the same
    assert after.sid == before.sid and after.created_at == before.created_at
    assert after.id_hash != before.id_hash  # a new cookie value (session fixation)
    assert set(after.amr.split()) == {"pwd", "swk"} and after.acr == "urn:govtrust:loa:3"
    assert set(json.loads(after.method_times)) == {"pwd", "swk"}


def test_cancel_on_the_step_up_page_tells_the_app(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    page = follow(env.browser, auth_query(env.apps["level3"]))
    cancel = re.search(r'id="cancel" href="([^"]+)"|href="([^"]+)" id="cancel"', page.text)
    assert cancel, page.text
    import html

    resp = env.browser.get(html.unescape(cancel.group(1) or cancel.group(2)))
    assert "error=unmet_authentication_requirements" in resp.headers["Location"]


def test_essential_acr_claim_asks_for_the_level(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    claims = json.dumps({"id_token": {"acr": {"essential": True,
                                              "values": ["urn:govtrust:loa:3"]}}})
    resp = follow(env.browser, auth_query(env.apps["level1"], claims=claims))
    assert urlsplit(resp.request.url).path == "/login/certificate"


def test_essential_acr_claim_with_an_unknown_value_is_unmet(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    claims = json.dumps({"id_token": {"acr": {"essential": True, "value": "urn:other:gold"}}})
    resp = env.browser.get(auth_query(env.apps["level1"], claims=claims))
    assert "error=unmet_authentication_requirements" in resp.headers["Location"]


def test_shared_app_refuses_another_department_with_an_explanation(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    resp = env.browser.get(auth_query(env.apps["shared"]))
    assert resp.status_code == 403 and "您所在的部门不在其中" in resp.text
    en = env.browser.get(auth_query(env.apps["shared"], lang="en"))
    assert "yours is not one of them" in en.text
    none = env.browser.get(auth_query(env.apps["shared"], prompt="none"))
    assert "error=access_denied" in none.headers["Location"]


def test_discovery_lists_the_policy_acr_values(env: Env) -> None:
    meta = env.browser.get("/.well-known/openid-configuration").get_json()
    assert meta["acr_values_supported"] == [f"urn:govtrust:loa:{n}" for n in (1, 2, 3, 4)]


# -- one-time codes -----------------------------------------------------------------------------

def enrol(env: Env) -> str:
    start = env.browser.get("/otp/enrol?return=/")
    page = env.browser.post("/otp/enrol", data={"begin": "1", "return": "/",
                                                "csrf": csrf_of(start.text)})
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text)
    assert secret, page.text
    code = pyotp.TOTP(secret.group(1)).at(env.otp_clock.now)
    done = env.browser.post("/otp/enrol", data={"code": code, "return": "/",
                                                "csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "recovery-codes" in done.text, done.text
    return secret.group(1)


def otp(env: Env, back: str, **fields: str) -> Any:
    page = env.browser.get("/login/otp?" + urlencode({"return": back}))
    return env.browser.post("/login/otp", data={"return": back, "csrf": csrf_of(page.text),
                                                **fields})


def test_code_from_the_previous_window_is_accepted_once(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    secret = enrol(env)
    env.otp_clock.now += 60  # two steps later: the previous step's code is in the window
    previous = pyotp.TOTP(secret).at(env.otp_clock.now - 30)
    assert otp(env, "/", code=previous).status_code == 302
    again = otp(env, "/", code=previous)
    assert again.status_code == 401 and "该验证码已使用过" in again.text


def test_wrong_codes_count_toward_lockout(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    secret = enrol(env)
    env.otp_clock.now += 90
    good = pyotp.TOTP(secret).at(env.otp_clock.now)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert "验证码错误" in otp(env, "/", code=wrong).text
    locked = otp(env, "/", code=good)
    assert locked.status_code == 401 and "错误次数过多" in locked.text


def test_otp_without_a_session_asks_for_a_login(env: Env) -> None:
    resp = env.browser.get("/login/otp?return=/")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?")


def test_password_and_otp_reach_level_3_only_with_a_certificate(env: Env) -> None:
    """Level 3 needs a cryptographic factor: a password and a code are not enough."""
    redirected_code(password_login(env, env.apps["level1"]))
    secret = enrol(env)
    env.otp_clock.now += 60
    back = auth_query(env.apps["level3"])
    done = otp(env, back, code=pyotp.TOTP(secret).at(env.otp_clock.now))
    assert done.status_code == 302, done.text
    resp = follow(env.browser, done.headers["Location"])
    assert urlsplit(resp.request.url).path == "/login/certificate"


def test_enrolment_page_shows_a_qr_code(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    start = env.browser.get("/otp/enrol")
    page = env.browser.post("/otp/enrol", data={"begin": "1", "csrf": csrf_of(start.text)})
    assert "<svg" in page.text and re.search(r'<code id="secret">[A-Z2-7]{32}</code>', page.text)


def test_certificate_first_then_the_password_reaches_level_3(env: Env) -> None:
    back = auth_query(env.apps["level3"])
    done = certificate_login(env, back, env.certificate())
    asked = follow(env.browser, done.headers["Location"])
    url = urlsplit(asked.request.url)
    assert url.path == "/login" and parse_qs(url.query)["login_hint"] == ["lina"]
    resp = env.browser.post("/login", data={"uid": "lina", "password": PASSWORD,
                                            "return": back, "csrf": csrf_of(asked.text)})
    redirected_code(follow(env.browser, resp.headers["Location"]))
    with env.services.sessions() as s:
        row = s.execute(select(sso_sessions)).one()  # stepped up, not a second session
    assert set(row.amr.split()) == {"pwd", "swk"}


def test_hardware_key_and_password_reach_level_4(env: Env) -> None:
    provider = env.services.provider
    top, _ = provider.clients.add(build_client(name="应用-level4", redirect_uris=[REDIRECT],
                                               level=4, first_party=True))
    csr, _ = make_csr()
    hw = env.ca.ca.issue_from_csr(env.person, "user-auth", csr, hardware_key=True,
                                  actor="test").certificate
    redirected_code(password_login(env, env.apps["level1"]))
    page = follow(env.browser, auth_query(top))
    assert urlsplit(page.request.url).path == "/login/certificate"
    back = parse_qs(urlsplit(page.request.url).query)["return"][0]
    soft = certificate_login(env, back, env.certificate())  # a software key is not enough
    again = follow(env.browser, soft.headers["Location"])
    assert urlsplit(again.request.url).path == "/login/certificate"
    assert "硬件介质" in again.text
    done = certificate_login(env, back, hw)
    redirected_code(follow(env.browser, done.headers["Location"]))
    with env.services.sessions() as s:
        row = s.execute(select(sso_sessions)).one()
    assert "hwk" in row.amr.split() and row.acr == "urn:govtrust:loa:4"


def test_certificate_then_a_one_time_code_reaches_level_3(env: Env) -> None:
    """The password page offers the code as the other way to the missing factor."""
    # the authenticator was enrolled before the second browser's session began (the
    # sessions' clock is real time; a code enrolled in a session does not count in it)
    env.otp_clock.now = time.time() - 5
    redirected_code(password_login(env, env.apps["level1"]))
    secret = enrol(env)
    env.browser.delete_cookie("gt_sso")  # a fresh browser session, the authenticator kept
    back = auth_query(env.apps["level3"])
    done = certificate_login(env, back, env.certificate())
    asked = follow(env.browser, done.headers["Location"])
    link = re.search(r'id="otp-link" href="([^"]+)"', asked.text)
    assert link, asked.text
    import html

    page = env.browser.get(html.unescape(link.group(1)))
    env.otp_clock.now += 60
    resp = env.browser.post("/login/otp", data={
        "return": back, "csrf": csrf_of(page.text),
        "code": pyotp.TOTP(secret).at(env.otp_clock.now)})
    redirected_code(follow(env.browser, resp.headers["Location"]))
    with env.services.sessions() as s:
        rows = s.execute(select(sso_sessions.c.amr, sso_sessions.c.acr)).all()
    # the first browser's (a password: enrolling is not a login), and this one
    assert {(frozenset(r.amr.split()), r.acr) for r in rows} == {
        (frozenset({"pwd"}), "urn:govtrust:loa:2"),
        (frozenset({"swk", "otp"}), "urn:govtrust:loa:3")}


# -- hostile input (issue 9) --------------------------------------------------------------------

def login_page_answer(env: Env, uid: str, password: str) -> Any:
    page = env.browser.get("/login")
    return env.browser.post("/login", data={"uid": uid, "password": password, "return": "/",
                                            "csrf": csrf_of(page.text)})


def test_locked_account_looks_like_a_wrong_password(env: Env) -> None:
    from directory.model import AuthResult
    from policies.passwords import load_policy

    gateway = env.services.authenticator
    for _ in range(load_policy().max_failures):  # lock it in slapd itself (ppolicy)
        gateway.authenticate("lina", "Not-the-password-9")
    assert gateway.authenticate("lina", PASSWORD).result is AuthResult.LOCKED
    locked = login_page_answer(env, "lina", PASSWORD)
    unknown = login_page_answer(env, "nosuchperson", PASSWORD)
    assert locked.status_code == unknown.status_code == 200
    assert "用户名或密码错误" in locked.text and "锁定" not in locked.text

    def body(resp: Any, uid: str) -> str:
        return resp.text.replace(csrf_of(resp.text), "").replace(uid, "UID")

    assert body(locked, "lina") == body(unknown, "nosuchperson")
    assert [r["result"] for r in env.audit("idp.login") if r["target"] == "lina"][-1] == "locked"


def test_get_otp_enrol_changes_nothing(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    before = len(env.audit("otp.enroll"))
    for _ in range(3):
        page = env.browser.get("/otp/enrol?return=/")
        assert page.status_code == 200 and 'id="enrol-begin"' in page.text
        assert 'id="secret"' not in page.text
    assert len(env.audit("otp.enroll")) == before
    assert not env.services.totp.status(env.person).enrolled


def test_otp_enrol_start_without_csrf_says_the_page_expired(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    resp = env.browser.post("/otp/enrol", data={"begin": "1", "csrf": "forged"})
    assert resp.status_code == 400 and "页面已过期，请重新提交" in resp.text
    assert "请先登录" not in resp.text
    assert not env.services.totp.status(env.person).enrolled


def test_otp_code_without_csrf_says_the_page_expired(env: Env) -> None:
    redirected_code(password_login(env, env.apps["level1"]))
    enrol(env)
    resp = env.browser.post("/login/otp?lang=en", data={"code": "123456", "return": "/",
                                                        "csrf": "forged"})
    assert resp.status_code == 400 and "The page expired" in resp.text
