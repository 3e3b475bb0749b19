"""Hostile input to the console (self-service and administration) against the
test slapd: requests without a session, forms without a CSRF token, a plain
person at the admin pages, hostile CSR uploads and hostile path values. Each is
refused cleanly (a redirect to the login page, 400, 403 or 404; never a 5xx) and
changes nothing: every row of every table is read before and after (a refused
admin page is itself audited nowhere: it did nothing). Counting rows would not
do: ending a session, rotating an app's secret or revoking a certificate updates
a row and adds none, and ending one's own sessions is not audited."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import MetaData, select

from directory.service import DirectoryService
from idp.runtime.app import create_app
from idp.runtime.services import Services
from tests.fixtures.idp import csrf_of, make_services

pytestmark = pytest.mark.slapd

ISSUER = "http://127.0.0.1:9443"
PASSWORD = "Gov-Trust-2026-pass!"


@dataclass
class Console:
    services: Services
    browser: FlaskClient

    def state(self, *, but: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table but ``but``: whatever a console form would write,
        insert or update (certificates, audit records, sessions, authenticators,
        apps, outbox events, escrowed keys)."""
        tables = MetaData()
        with self.services.engine.connect() as conn:
            tables.reflect(bind=conn)
            return {name: sorted((tuple(row) for row in conn.execute(select(table))),
                                 key=repr)
                    for name, table in tables.tables.items() if name not in but}

    def sign_in(self) -> None:
        page = self.browser.get("/login")
        resp = self.browser.post("/login", data={
            "uid": "lina", "password": PASSWORD, "return": "/console/",
            "csrf": csrf_of(page.get_data(as_text=True))})
        assert resp.status_code == 302, resp.get_data(as_text=True)

    def csrf(self) -> str:
        return csrf_of(self.browser.get("/console/certificates").get_data(as_text=True))


@pytest.fixture
def console(directory_service: DirectoryService, tmp_path: Path) -> Iterator[Console]:
    directory_service.ensure_department("市财政局/预算处")
    directory_service.add_person(uid="lina", name="李娜", department="市财政局/预算处",
                                 title="处长", password=PASSWORD)
    services = make_services(tmp_path / "home", ISSUER, directory_service.gateway)
    services.directory = directory_service  # type: ignore[misc]
    services.ca.initialize(actor="test")
    app = create_app(services)
    app.testing = True
    try:
        yield Console(services, app.test_client())
    finally:
        services.close()


GET_PAGES = ["/console/", "/console/certificates", "/console/authenticator",
             "/console/sessions", "/console/sign-ins", "/console/password", "/console/keys",
             "/console/key-recovery", "/console/admin/", "/console/admin/people",
             "/console/admin/certificates", "/console/admin/apps", "/console/admin/audit"]

POST_FORMS = ["/console/certificates/csr", "/console/certificates/pkcs12",
              "/console/authenticator/enrol", "/console/authenticator/confirm",
              "/console/authenticator/recovery", "/console/sessions/end", "/console/password",
              "/console/keys/issue", "/console/keys/recover", "/console/key-recovery/request",
              "/console/key-recovery/1/approve", "/console/key-recovery/1/collect",
              "/console/admin/people/lina/suspend", "/console/admin/certificates/01/revoke",
              "/console/admin/certificates/issue", "/console/admin/apps",
              "/console/admin/apps/gt-x", "/console/admin/apps/gt-x/rotate"]


@pytest.mark.parametrize("path", GET_PAGES)
def test_console_page_without_a_session_goes_to_the_login_page(console: Console,
                                                               path: str) -> None:
    before = console.state()
    resp = console.browser.get(path)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"], resp.status_code
    assert console.state() == before


@pytest.mark.parametrize("path", POST_FORMS)
def test_console_form_without_a_session_changes_nothing(console: Console, path: str) -> None:
    before = console.state()
    resp = console.browser.post(path, data={"profile": "user-auth", "csrf": "x"})
    assert resp.status_code in (302, 400, 403), resp.status_code
    assert console.state() == before


@pytest.mark.parametrize("path", POST_FORMS)
def test_console_form_without_csrf_is_refused_in_a_session(console: Console,
                                                           path: str) -> None:
    console.sign_in()
    before = console.state()
    resp = console.browser.post(path, data={"profile": "user-auth", "reason": "keyCompromise"})
    assert resp.status_code in (400, 403), resp.status_code
    assert console.state() == before


@pytest.mark.parametrize("path", [p for p in GET_PAGES if "/admin/" in p])
def test_admin_page_refuses_a_person_who_is_not_an_administrator(console: Console,
                                                                 path: str) -> None:
    console.sign_in()
    before = console.state()
    resp = console.browser.get(path)
    assert resp.status_code == 403, resp.status_code
    assert console.state() == before


HOSTILE_CSRS = {
    "empty": b"",
    "garbage": b"not a request",
    "version_4": b"\x30\x0b\x30\x06\x02\x01\x04\x30\x01\x00\x30\x00\x03\x00",
    "deep_nesting": b"\x30\x80" * 3000,
    "oversized": b"A" * (64 * 1024),
    "pem_bad_base64": b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n"
                      b"-----END CERTIFICATE REQUEST-----\n",
}


@pytest.mark.parametrize("csr", HOSTILE_CSRS.values(), ids=HOSTILE_CSRS.keys())
def test_hostile_csr_upload_issues_nothing(console: Console, csr: bytes) -> None:
    console.sign_in()
    token = console.csrf()
    before = console.state()
    resp = console.browser.post("/console/certificates/csr", data={
        "profile": "user-auth", "csrf": token, "csr": csr.decode("latin-1")})
    assert resp.status_code in (400, 403, 413), resp.status_code
    assert console.state() == before


@pytest.mark.parametrize("profile", ["", "ocsp-signing", "tls-server", "../user-auth",
                                     "user-auth\x00", "USER-AUTH"])
def test_hostile_profile_name_issues_nothing(console: Console, profile: str) -> None:
    console.sign_in()
    token = console.csrf()
    before = console.state()
    resp = console.browser.post("/console/certificates/pkcs12", data={
        "profile": profile, "csrf": token, "passphrase": "a long enough passphrase 1"})
    assert resp.status_code in (400, 403), resp.status_code
    assert console.state() == before


HOSTILE_SERIALS = {
    "not_hex": "/console/certificates/zzzz.pem",
    "dot_dot": "/console/certificates/..%2F..%2Fkeys.pem",
    "unknown_format": "/console/certificates/01.exe",
    "very_long": "/console/certificates/" + "a" * 5000 + ".pem",
    "nul": "/console/certificates/01%00.pem",
    "someone_elses": "/console/certificates/0123456789abcdef.pem",
}


@pytest.mark.parametrize("path", HOSTILE_SERIALS.values(), ids=HOSTILE_SERIALS.keys())
def test_hostile_certificate_download_path_is_refused(console: Console, path: str) -> None:
    console.sign_in()
    before = console.state()
    resp = console.browser.get(path)
    assert resp.status_code in (400, 403, 404), resp.status_code
    assert b"PRIVATE KEY" not in resp.data
    assert console.state() == before
