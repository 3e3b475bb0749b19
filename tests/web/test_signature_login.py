"""Certificate signature login through the IdP's web flow (``/login/signature``), in
process: a real slapd (fixture), a real CA with both hierarchies, the Flask app with
its real database. The client is tongsuopy (SM2) or pyca (ECDSA) signing the
challenge the page shows, as a USB key's software would."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from directory.model import Person
from directory.service import DirectoryService
from idp.login.certificate import CertificateValidator
from idp.login.forwarded import TrustedProxies
from idp.login.signature import challenge
from idp.login.tables import sso_sessions
from idp.oidc.clients import Client, build_client
from idp.runtime.app import create_app
from idp.runtime.services import Services
from pki import sm2
from pki.audit_store import audit_log
from pki.model import CASettings
from tests.fixtures.idp import follow, make_services
from tests.fixtures.pki import CAEnv, build_env, make_csr
from tests.login.test_signature import Client as KeyClient
from tests.login.test_signature import b64, pem_of, sm2_csr

pytestmark = pytest.mark.slapd

ISSUER = "http://127.0.0.1:9443"
REDIRECT = "http://127.0.0.1:5000/cb"
PASSWORD = "Gov-Trust-2026-pass!"


@dataclass
class Env:
    services: Services
    ca: CAEnv
    person: Person
    other: Person
    browser: FlaskClient
    apps: dict[str, Client]

    def sm2_key(self, person: Person | None = None) -> KeyClient:
        key = sm2.generate_private_key()
        cert = self.ca.ca.sm2.issue_from_csr(person or self.person, "user-auth", sm2_csr(key),
                                             actor="test").certificate
        return KeyClient(key, cert)

    def ecdsa_key(self) -> KeyClient:
        csr, key = make_csr()
        cert = self.ca.ca.issue_from_csr(self.person, "user-auth", csr,
                                         actor="test").certificate
        return KeyClient(key, cert)  # type: ignore[arg-type]

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.services.sessions() as s:
            rows = s.execute(select(audit_log.c.target, audit_log.c.details)
                             .where(audit_log.c.action == action)).all()
        return [{"target": r.target, **json.loads(r.details)} for r in rows]

    def session_rows(self) -> list[Any]:
        with self.services.sessions() as s:
            return list(s.execute(select(sso_sessions)).all())


@pytest.fixture
def env(directory_service: DirectoryService, tmp_path: Path) -> Iterator[Env]:
    directory_service.ensure_department("市财政局/预算处")
    person = directory_service.add_person(uid="lina", name="李娜", department="市财政局/预算处",
                                          title="处长", password=PASSWORD)
    other = directory_service.add_person(uid="wangfang", name="王芳",
                                         department="市财政局/预算处", title="科员",
                                         password=PASSWORD)
    ca = build_env(tmp_path / "ca", f"sqlite:///{tmp_path / 'ca.db'}",
                   settings=CASettings(sm2=True))
    services = make_services(tmp_path / "home", ISSUER, directory_service.gateway)
    services.ca = ca.ca  # type: ignore[misc]
    services.certificate_validator = CertificateValidator(  # type: ignore[misc]
        ca.ca, clock=lambda: datetime.now(UTC))
    provider = services.provider
    provider.trusted_proxies = TrustedProxies.parse(["127.0.0.1"])
    apps = {}
    for level in (1, 3):
        apps[f"level{level}"], _ = provider.clients.add(build_client(
            name=f"应用-{level}", redirect_uris=[REDIRECT], first_party=True, level=level))
    app = create_app(services)
    app.testing = True
    try:
        yield Env(services, ca, person, other, app.test_client(), apps)
    finally:
        services.close()
        ca.engine.dispose()


def auth_query(app: Client) -> str:
    return "/authorize?" + urlencode({"response_type": "code", "client_id": app.client_id,
                                      "redirect_uri": REDIRECT, "scope": "openid",
                                      "state": "s1", "nonce": "n1"})


def field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" (?:id="{name}" )?value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def password_login(env: Env, app: Client) -> None:
    page = follow(env.browser, auth_query(app))
    back = parse_qs(urlsplit(page.request.url).query)["return"][0]
    resp = env.browser.post("/login", data={"uid": "lina", "password": PASSWORD,
                                            "return": back, "csrf": field(page.text, "csrf")})
    assert resp.status_code == 302, resp.text
    follow(env.browser, resp.headers["Location"])


def signature_page(env: Env, back: str = "/") -> tuple[str, str, str]:
    """(csrf, nonce, the challenge shown) of a fresh page."""
    page = env.browser.get("/login/signature?" + urlencode({"return": back}))
    assert page.status_code == 200
    shown = re.search(r'id="challenge" value="([^"]+)"', page.text)
    assert shown
    return field(page.text, "csrf"), field(page.text, "nonce"), shown.group(1)


def post(env: Env, back: str, csrf: str, nonce: str, chain: str, signature: str,
         browser: FlaskClient | None = None) -> Any:
    return (browser or env.browser).post("/login/signature", data={
        "return": back, "csrf": csrf, "nonce": nonce, "chain": chain,
        "signature": signature})


def sign_in(env: Env, key: KeyClient, back: str = "/") -> Any:
    csrf, nonce, shown = signature_page(env, back)
    assert shown.encode() == challenge(ISSUER, nonce)
    return post(env, back, csrf, nonce, pem_of(key.cert), b64(key.sign(shown.encode())))


def redirected_code(resp: Any) -> str:
    loc = resp.headers.get("Location", "")
    assert resp.status_code == 302 and loc.startswith(REDIRECT), (resp.status_code, loc)
    return parse_qs(urlsplit(loc).query)["code"][0]


def assert_refused(env: Env, resp: Any, reason: str, words: str, sessions: int = 0) -> None:
    """A refusal: the page says why, the audit log records it, no session appears."""
    assert resp.status_code == 403, resp.text
    assert words in resp.text
    assert [r["reason"] for r in env.audit("certauth.refused")
            if r["source"] == "signature"][-1:] == [reason]
    assert len(env.session_rows()) == sessions


# -- the page ------------------------------------------------------------------------------------

def test_login_page_offers_signature_login(env: Env) -> None:
    page = follow(env.browser, auth_query(env.apps["level1"]))
    assert "证书签名登录" in page.text and 'id="signature-link"' in page.text
    en = env.browser.get("/login?lang=en")
    assert "Sign in with a certificate signature" in en.text


def test_signature_page_shows_the_challenge_and_binds_it_to_the_browser(env: Env) -> None:
    _, nonce, shown = signature_page(env)
    assert shown == f"govtrust-login:v1:{ISSUER}:{nonce}"
    assert env.browser.get_cookie("gt_sigbind") is not None


# -- acceptance ------------------------------------------------------------------------------

def test_sm2_challenge_signature_login_reaches_level_3_with_a_password(env: Env) -> None:
    key = env.sm2_key()  # held before the session (one issued in it would not count)
    time.sleep(0.01)
    password_login(env, env.apps["level1"])
    before = env.session_rows()[0]
    page = follow(env.browser, auth_query(env.apps["level3"]))
    assert urlsplit(page.request.url).path == "/login/certificate"
    assert 'id="signature-link"' in page.text  # the step-up page offers the USB key
    back = parse_qs(urlsplit(page.request.url).query)["return"][0]
    done = sign_in(env, key, back)
    assert done.status_code == 302, done.text
    redirected_code(follow(env.browser, done.headers["Location"]))
    after = env.session_rows()
    assert len(after) == 1 and after[0].sid == before.sid
    assert after[0].id_hash != before.id_hash  # the cookie rotated (session fixation)
    assert set(after[0].amr.split()) == {"pwd", "swk"}
    assert after[0].acr == "urn:govtrust:loa:3"
    assert after[0].cert_serial == format(key.cert.serial_number, "x")
    logins = [r for r in env.audit("idp.login") if r.get("source") == "signature"]
    assert logins and logins[-1]["serial"] == after[0].cert_serial


def test_the_same_certificate_revoked_is_refused(env: Env) -> None:
    key = env.sm2_key()
    assert sign_in(env, key).status_code == 302
    env.browser.delete_cookie("gt_sso")
    sessions = len(env.session_rows())
    env.ca.ca.revoke(format(key.cert.serial_number, "x"), "keyCompromise", actor="admin")
    assert_refused(env, sign_in(env, key), "revoked", "该证书已被吊销", sessions)


def test_ecdsa_challenge_signature_login_works_the_same(env: Env) -> None:
    key = env.ecdsa_key()
    time.sleep(0.01)
    password_login(env, env.apps["level1"])
    back = auth_query(env.apps["level3"])
    done = sign_in(env, key, back)
    redirected_code(follow(env.browser, done.headers["Location"]))
    row = env.session_rows()[0]
    assert set(row.amr.split()) == {"pwd", "swk"} and row.acr == "urn:govtrust:loa:3"


def test_signature_alone_starts_a_swk_session(env: Env) -> None:
    done = sign_in(env, env.sm2_key(), auth_query(env.apps["level1"]))
    redirected_code(follow(env.browser, done.headers["Location"]))
    row = env.session_rows()[0]
    assert row.amr == "swk" and row.uid == "lina"


# -- refusals ----------------------------------------------------------------------------------

def test_reused_nonce_is_refused(env: Env) -> None:
    key = env.sm2_key()
    csrf, nonce, shown = signature_page(env)
    sig = b64(key.sign(shown.encode()))
    assert post(env, "/", csrf, nonce, pem_of(key.cert), sig).status_code == 302
    env.browser.delete_cookie("gt_sso")
    again = post(env, "/", csrf, nonce, pem_of(key.cert), sig)
    assert_refused(env, again, "nonce_used", "该挑战值已使用过", 1)


def test_wrong_nonce_is_refused(env: Env) -> None:
    key = env.sm2_key()
    csrf, _, _ = signature_page(env)
    made_up = "Z" * 43
    resp = post(env, "/", csrf, made_up, pem_of(key.cert),
                b64(key.sign(challenge(ISSUER, made_up))))
    assert_refused(env, resp, "nonce_unknown", "挑战值无效")


def test_nonce_from_another_browser_is_refused(env: Env) -> None:
    key = env.sm2_key()
    _, nonce, shown = signature_page(env)
    thief = env.browser.application.test_client()
    page = thief.get("/login/signature")
    resp = post(env, "/", field(page.text, "csrf"), nonce, pem_of(key.cert),
                b64(key.sign(shown.encode())), browser=thief)
    assert_refused(env, resp, "nonce_unknown", "挑战值无效")


def test_expired_nonce_is_refused(env: Env) -> None:
    key = env.sm2_key()
    csrf, nonce, shown = signature_page(env)
    from idp.login.tables import login_nonces

    with env.services.sessions.begin() as s:  # the page was shown three minutes ago
        s.execute(login_nonces.update().values(expires_at=time.time() - 60))
    resp = post(env, "/", csrf, nonce, pem_of(key.cert), b64(key.sign(shown.encode())))
    assert_refused(env, resp, "nonce_expired", "挑战值已过期")


def test_signature_over_another_nonce_is_refused(env: Env) -> None:
    key = env.sm2_key()
    csrf, nonce, _ = signature_page(env)
    _, other, other_shown = signature_page(env)
    resp = post(env, "/", csrf, nonce, pem_of(key.cert), b64(key.sign(other_shown.encode())))
    assert_refused(env, resp, "bad_signature", "签名验证失败")


def test_certificate_from_an_unknown_ca_is_refused(env: Env) -> None:
    from tests.login.test_signature import foreign_ecdsa_client

    resp = sign_in(env, foreign_ecdsa_client())
    assert_refused(env, resp, "unknown_ca", "不是由本系统信任的认证机构签发的")


def test_held_certificate_is_refused(env: Env) -> None:
    key = env.sm2_key()
    env.ca.ca.hold(format(key.cert.serial_number, "x"), actor="admin")
    assert_refused(env, sign_in(env, key), "on_hold", "该证书已被暂停使用")


def test_another_persons_certificate_on_step_up_is_refused(env: Env) -> None:
    theirs = env.sm2_key(env.other)
    password_login(env, env.apps["level1"])
    before = env.session_rows()
    resp = sign_in(env, theirs, auth_query(env.apps["level3"]))
    assert_refused(env, resp, "owner_mismatch", "该证书不属于当前用户", 1)
    after = env.session_rows()
    assert after[0].id_hash == before[0].id_hash and after[0].amr == "pwd"
    assert after[0].ended_at is None


def test_malformed_chain_is_refused(env: Env) -> None:
    csrf, nonce, _ = signature_page(env)
    resp = post(env, "/", csrf, nonce, "-----BEGIN CERTIFICATE-----\nnot\n", "AAAA")
    assert_refused(env, resp, "malformed", "无法读取所提供的证书")


def test_oversized_chain_is_refused(env: Env) -> None:
    csrf, nonce, _ = signature_page(env)
    resp = post(env, "/", csrf, nonce, "A" * 40_000, "AAAA")
    assert_refused(env, resp, "too_large", "所提供的证书过大")


def test_malformed_signature_is_refused(env: Env) -> None:
    key = env.sm2_key()
    csrf, nonce, _ = signature_page(env)
    resp = post(env, "/", csrf, nonce, pem_of(key.cert), "not base64!")
    assert_refused(env, resp, "malformed_request", "签名登录请求的格式不正确")


def test_signature_without_csrf_is_refused(env: Env) -> None:
    key = env.sm2_key()
    _, nonce, shown = signature_page(env)
    resp = post(env, "/", "forged", nonce, pem_of(key.cert), b64(key.sign(shown.encode())))
    assert resp.status_code == 400 and env.session_rows() == []
    # the nonce was not touched: the real form still works
    csrf, _, _ = signature_page(env)
    ok = post(env, "/", csrf, nonce, pem_of(key.cert), b64(key.sign(shown.encode())))
    assert ok.status_code == 302


def test_refusal_speaks_english_on_request(env: Env) -> None:
    key = env.sm2_key()
    page = env.browser.get("/login/signature?lang=en")
    made_up = "Z" * 43
    resp = env.browser.post("/login/signature?lang=en", data={
        "return": "/", "csrf": field(page.text, "csrf"), "nonce": made_up,
        "chain": pem_of(key.cert), "signature": b64(key.sign(challenge(ISSUER, made_up)))})
    assert resp.status_code == 403 and "The challenge is not valid" in resp.text

