"""The IdP under gunicorn with several worker processes sharing one database, as
``govtrust serve`` runs it: logins, code exchange, refresh rotation and replay
detection hold whichever worker answers each request (no in-process state)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from idp.oidc.clients import build_client
from tests.e2e.test_sample_app import PASSWORD, add_demo_person
from tests.fixtures.idp import make_services
from tests.fixtures.postgres import free_port

pytestmark = pytest.mark.slapd

REDIRECT = "http://127.0.0.1:9/cb"


@pytest.fixture
def gunicorn_idp(directory_service: Any, tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    add_demo_person(directory_service)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = directory_service.settings
    env = {"GOVTRUST_IDP_ISSUER": issuer, "GOVTRUST_DIRECTORY_MANAGED": "false",
           "GOVTRUST_DIRECTORY_URIS": ",".join(settings.uris),
           "GOVTRUST_DIRECTORY_BASE_DN": settings.base_dn,
           "GOVTRUST_DIRECTORY_BIND_DN": settings.bind_dn,
           "GOVTRUST_SECRET_LDAP_ADMIN_PASSWORD": settings.bind_password}
    home = tmp_path / "home"
    services = make_services(home, issuer, directory_service.gateway)
    client, secret = services.provider.clients.add(build_client(
        name="多进程测试", redirect_uris=[REDIRECT], level=2, first_party=True))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "idp.runtime.wsgi:idp_app()",
         "--bind", f"127.0.0.1:{port}",
         "--workers", "3", "--worker-class", "sync"],
        env={**os.environ, **env, "GOVTRUST_HOME": str(home)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(issuer + "/jwks", timeout=1).raise_for_status()
            break
        except requests.RequestException:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "") from None
            time.sleep(0.2)
    try:
        yield issuer, client, secret
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        services.close()


def login_code(issuer: str, client: Any, uid: str, password: str) -> tuple[str, str]:
    """authorize -> login form -> POST -> authorize -> code, by hand (no redirects)."""
    import html
    import re

    from tests.fixtures.idp import pkce_pair

    browser = requests.Session()
    verifier, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": client.client_id,
              "redirect_uri": REDIRECT, "scope": "openid profile", "state": "s",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    r = browser.get(issuer + "/authorize", params=params, allow_redirects=False, timeout=10)
    r = browser.get(issuer + r.headers["Location"], timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
    back = re.search(r'name="return" value="([^"]+)"', r.text)
    assert csrf and back
    r = browser.post(issuer + "/login", data={"csrf": csrf.group(1), "uid": uid,
                                              "password": password,
                                              "return": html.unescape(back.group(1))},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    r = browser.get(issuer + r.headers["Location"], allow_redirects=False, timeout=10)
    assert r.headers["Location"].startswith(REDIRECT + "?code=")
    return r.headers["Location"].split("code=")[1].split("&")[0], verifier


def test_flows_hold_across_worker_processes(gunicorn_idp: tuple[str, Any, Any]) -> None:
    issuer, client, secret = gunicorn_idp
    auth = (client.client_id, secret)
    for _ in range(5):
        code, verifier = login_code(issuer, client, "lina", PASSWORD)
        exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                    "code_verifier": verifier}
        first = requests.post(issuer + "/token", data=exchange, auth=auth, timeout=10)
        assert first.status_code == 200, first.text
        tokens = first.json()
        rotated = requests.post(issuer + "/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=auth, timeout=10)
        assert rotated.status_code == 200
        reuse = requests.post(issuer + "/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=auth, timeout=10)
        assert reuse.json()["error"] == "invalid_grant"
        newest = requests.post(issuer + "/token", data={
            "grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]},
            auth=auth, timeout=10)
        assert newest.status_code == 400  # the family died on whichever worker saw reuse
        replay = requests.post(issuer + "/token", data=exchange, auth=auth, timeout=10)
        assert replay.json()["error"] == "invalid_grant"
    wrong = requests.post(issuer + "/login", data={"uid": "lina", "password": "x"}, timeout=10)
    assert wrong.status_code == 400  # no CSRF token, on any worker
