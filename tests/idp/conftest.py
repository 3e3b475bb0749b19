"""Fixtures for the IdP tests: a fresh home and database per test, the Flask app,
registered department apps, and helpers that walk the login and code flows."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from directory.model import AuthOutcome, AuthResult, Person, PersonStatus
from idp.clients import Client, build_client
from idp.config import Config
from idp.provider import Provider
from idp.services import Services
from idp.web import create_app

ISSUER = "http://127.0.0.1:9443"
REDIRECT = "http://127.0.0.1:5000/callback"
PASSWORD = "Corr3ct-horse-battery"

ZHANG = Person(uid="zhangwei", dn="uid=zhangwei,ou=people,dc=beijing,dc=gov,dc=cn",
               entry_uuid="6f1c1d8e-5b8a-4d4e-9b4a-0f6c1e2d3a4b", display_name="张伟",
               department=("市财政局", "预算处"), title="科长", email="zhangwei@beijing.gov.cn",
               groups=("财务审核组",))


@dataclass
class FakeDirectory:
    """A stand-in for the directory's ``authenticate`` in pure unit tests only."""

    people: dict[str, tuple[str, Person]] = field(default_factory=dict)
    calls: int = 0

    def authenticate(self, uid: str, password: str) -> AuthOutcome:
        self.calls += 1
        found = self.people.get(uid)
        if found is None or found[0] != password:
            return AuthOutcome(AuthResult.BAD_CREDENTIALS)
        person = found[1]
        if person.status is PersonStatus.SUSPENDED:
            return AuthOutcome(AuthResult.SUSPENDED, person)
        return AuthOutcome(AuthResult.OK, person)


def make_services(home: Path, issuer: str, authenticator: object,
                  database_url: str | None = None) -> Services:
    env = {"GOVTRUST_IDP_ISSUER": issuer}
    if database_url:
        env["GOVTRUST_DATABASE_URL"] = database_url
    config = Config.load(home, environ=env)
    config.ensure_secrets()
    services = Services(config)
    prepare_database(services)
    services.authenticator = authenticator  # type: ignore[assignment]
    services.provider.keys.ensure()
    return services


def prepare_database(services: Services) -> None:
    """Bring the test database to the product's schema with its own migrations."""
    from idp.db import upgrade

    upgrade(services.engine)


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory({"zhangwei": (PASSWORD, ZHANG)})


@pytest.fixture
def services(tmp_path: Path, directory: FakeDirectory) -> Iterator[Services]:
    services = make_services(tmp_path / "home", ISSUER, directory)
    yield services
    services.close()


@pytest.fixture
def provider(services: Services) -> Provider:
    return services.provider


@pytest.fixture
def app(services: Services) -> Flask:
    app = create_app(services)
    app.testing = True
    return app


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def rp(app: Flask) -> FlaskClient:
    """A second client for back-channel calls (no browser cookies)."""
    return app.test_client()


@dataclass(frozen=True)
class Registered:
    client: Client
    secret: str | None


@pytest.fixture
def confidential(provider: Provider) -> Registered:
    client, secret = provider.clients.add(build_client(
        name="预算管理系统", redirect_uris=[REDIRECT], level=2, first_party=True,
        post_logout_redirect_uris=["http://127.0.0.1:5000/bye"]))
    return Registered(client, secret)


@pytest.fixture
def public(provider: Provider) -> Registered:
    client, secret = provider.clients.add(build_client(
        name="移动办公", redirect_uris=["http://127.0.0.1:7000/cb"], level=2, public=True,
        first_party=True))
    return Registered(client, secret)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def login(browser: FlaskClient, return_to: str | None = None, uid: str = "zhangwei",
          password: str = PASSWORD) -> tuple[int, str, str | None]:
    """Post the real login form; return (status, body, Location)."""
    page = browser.get("/login" + (f"?return={return_to}" if return_to else ""))
    token = csrf_of(page.get_data(as_text=True))
    resp = browser.post("/login", data={"uid": uid, "password": password, "csrf": token,
                                        "return": return_to or "/"})
    return resp.status_code, resp.get_data(as_text=True), resp.headers.get("Location")


def authorize(browser: FlaskClient, client: Client, *, scope: str = "openid profile email "
              "department groups", redirect_uri: str | None = None, pkce: str | None = None,
              nonce: str = "n-0S6_WzA2Mj", state: str = "af0ifjsldkj",
              extra: dict[str, str] | None = None) -> str:
    """Run /authorize (logging in if needed); return the final Location."""
    params = {"response_type": "code", "client_id": client.client_id,
              "redirect_uri": redirect_uri or client.redirect_uris[0], "scope": scope,
              "state": state, "nonce": nonce, **(extra or {})}
    if pkce:
        params.update(code_challenge=pkce, code_challenge_method="S256")
    resp = browser.get("/authorize", query_string=params)
    loc = resp.headers.get("Location", "")
    if resp.status_code == 302 and loc.startswith("/login"):
        back = parse_qs(urlsplit(loc).query)["return"][0]
        status, _, loc2 = login(browser, back)
        assert status == 302, status
        assert loc2 is not None
        resp = browser.get(loc2)
        loc = resp.headers.get("Location", "")
    assert resp.status_code == 302, (resp.status_code, resp.get_data(as_text=True))
    return loc


def code_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


def token_request(rp: FlaskClient, reg: Registered, **form: str) -> tuple[int, dict[str, object]]:
    auth = None
    if reg.secret:
        auth = (reg.client.client_id, reg.secret)
    else:
        form.setdefault("client_id", reg.client.client_id)
    resp = rp.post("/token", data=form, auth=auth)
    return resp.status_code, resp.get_json()
