"""Acceptance: the sample department app logs a real directory person in through the
real login form, receives Chinese claims, refreshes, and logs out (RP-initiated);
the IdP session is gone afterwards. The directory is a real slapd (fixture)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from idp.login.tables import sso_sessions
from idp.oidc.clients import build_client
from idp.runtime.app import create_app
from tests.fixtures.idp import make_services
from tests.fixtures.postgres import free_port
from tests.fixtures.servers import serving

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Gov-Trust-2026-pass!"

pytestmark = pytest.mark.slapd


def load_sample_app() -> Any:
    spec = importlib.util.spec_from_file_location("sample_app", ROOT / "scripts" / "sample_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["sample_app"] = module
    spec.loader.exec_module(module)
    return module


def add_demo_person(directory_service: Any) -> Any:
    directory_service.ensure_department("市财政局/预算处")
    return directory_service.add_person(uid="lina", name="李娜", department="市财政局/预算处",
                                        title="处长", password=PASSWORD)


def submit_login_form(session: requests.Session, page: requests.Response, uid: str,
                      password: str) -> requests.Response:
    body = page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', body)
    back = re.search(r'name="return" value="([^"]+)"', body)
    assert csrf and back, body
    action = page.url.split("/login")[0] + "/login"
    import html

    return session.post(action, data={"csrf": csrf.group(1), "return": html.unescape(
        back.group(1)), "uid": uid, "password": password}, timeout=10)


def test_sample_app_login_refresh_logout(directory_service: Any, tmp_path: Path) -> None:
    person = add_demo_person(directory_service)
    idp_port, app_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    services = make_services(tmp_path / "home", issuer, directory_service.gateway)
    app_url = f"http://127.0.0.1:{app_port}"
    client, secret = services.provider.clients.add(build_client(
        name="示例部门应用", redirect_uris=[app_url + "/callback"], level=2, first_party=True,
        post_logout_redirect_uris=[app_url + "/"]))
    assert secret
    sample = load_sample_app().create_sample_app(issuer, client.client_id, secret, app_url)
    with serving(create_app(services), idp_port), serving(sample, app_port):
        browser = requests.Session()
        page = browser.get(app_url + "/login", timeout=10)
        assert page.url.startswith(issuer + "/login") and 'lang="zh-CN"' in page.text
        # a wrong password first: the same message an unknown uid gets
        wrong = submit_login_form(browser, page, "lina", "not-the-password")
        assert "用户名或密码错误" in wrong.text
        done = submit_login_form(browser, wrong, "lina", PASSWORD)
        assert done.url == app_url + "/", done.text
        assert "欢迎，李娜" in done.text
        assert "市财政局/预算处" in done.text and "处长" in done.text
        assert person.entry_uuid in done.text  # sub is the entryUUID, not the uid

        me = browser.get(app_url + "/api/me", timeout=10).json()
        assert me["name"] == "李娜" and me["department"] == "市财政局/预算处"

        refreshed = browser.get(app_url + "/refresh", timeout=10)
        assert "<span id='refreshes'>1</span>" in refreshed.text
        assert browser.get(app_url + "/api/me", timeout=10).json()["sub"] == person.entry_uuid

        out = browser.get(app_url + "/logout", timeout=10)
        assert out.url.startswith(app_url + "/?state=") and "未登录" in out.text
        with services.provider.db() as s:
            live = s.execute(select(func.count()).select_from(sso_sessions).where(
                sso_sessions.c.ended_at.is_(None))).scalar_one()
        assert live == 0
        # the IdP no longer knows the browser: a silent login attempt is refused
        again = browser.get(issuer + "/authorize", params={
            "response_type": "code", "client_id": client.client_id,
            "redirect_uri": app_url + "/callback", "scope": "openid", "prompt": "none",
            "state": "x"}, allow_redirects=False, timeout=10)
        assert "error=login_required" in again.headers["Location"]
    services.close()
