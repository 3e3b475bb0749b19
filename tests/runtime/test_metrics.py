"""Prometheus /metrics on the IdP and PKI apps: counters move after a login, an
issuance, a revocation and an OCSP request; only allowed addresses may read it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from idp.runtime.app import create_pki_app
from idp.runtime.metrics import allowed
from idp.runtime.serve import granian_command
from idp.runtime.services import Services
from pki.publish import RecordingPublisher
from tests.fixtures.idp import (
    PASSWORD,
    REDIRECT,
    Registered,
    authorize,
    code_of,
    login,
    pkce_pair,
    token_request,
    tokens_issued,
)
from tests.fixtures.pki import make_csr, make_person
from tests.fixtures.postgres import free_port
from tests.runtime.test_changes import _ocsp_request


def _scrape(client: FlaskClient) -> Callable[[str, dict[str, str]], float]:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.status_code
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = [(s.name, s.labels, s.value)
               for family in text_string_to_metric_families(resp.get_data(as_text=True))
               for s in family.samples]

    def value(name: str, labels: dict[str, str]) -> float:
        return sum(v for n, lab, v in samples
                   if n == name and all(lab.get(k) == w for k, w in labels.items()))
    return value


@pytest.fixture
def pki(services: Services) -> FlaskClient:
    services.certificate_publisher = RecordingPublisher()  # type: ignore[assignment]
    services.ca.initialize(actor="test")
    app = create_pki_app(services)
    app.testing = True
    return app.test_client()


def test_logins_are_counted_by_method_and_outcome(app: Flask, browser: FlaskClient) -> None:
    ok = {"method": "pwd", "outcome": "ok"}
    bad = {"method": "pwd", "outcome": "bad_credentials"}
    before = _scrape(browser)
    assert login(browser)[0] == 302
    assert login(app.test_client(), password=PASSWORD + "x")[0] != 302
    after = _scrape(browser)
    assert after("govtrust_logins_total", ok) == before("govtrust_logins_total", ok) + 1
    assert after("govtrust_logins_total", bad) == before("govtrust_logins_total", bad) + 1


def test_access_tokens_are_counted_by_grant_type(browser: FlaskClient, rp: FlaskClient,
                                                confidential: Registered) -> None:
    grant_types = ("authorization_code", "refresh_token", "client_credentials")
    before = {g: tokens_issued(rp, g) for g in grant_types}
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, body = token_request(rp, confidential, grant_type="authorization_code",
                                 code=code, redirect_uri=REDIRECT, code_verifier=verifier)
    assert status == 200, body
    assert token_request(rp, confidential, grant_type="refresh_token",
                         refresh_token=str(body["refresh_token"]))[0] == 200
    assert token_request(rp, confidential, grant_type="client_credentials")[0] == 200
    assert token_request(rp, confidential, grant_type="client_credentials")[0] == 200
    after = {g: tokens_issued(rp, g) for g in grant_types}
    assert after == {"authorization_code": before["authorization_code"] + 1,
                     "refresh_token": before["refresh_token"] + 1,
                     "client_credentials": before["client_credentials"] + 2}
    # a refused request issues nothing
    wrong = Registered(confidential.client, "not-the-secret")
    assert token_request(rp, wrong, grant_type="client_credentials")[0] == 401
    assert tokens_issued(rp) == sum(after.values())


def test_request_latency_is_recorded_by_route_method_and_status(browser: FlaskClient) -> None:
    labels = {"app": "idp", "route": "/.well-known/openid-configuration", "method": "GET",
              "status": "200"}
    before = _scrape(browser)("govtrust_http_request_duration_seconds_count", labels)
    browser.get("/.well-known/openid-configuration")
    browser.get("/no/such/page/12345")
    after = _scrape(browser)
    assert after("govtrust_http_request_duration_seconds_count", labels) == before + 1
    # An unknown path is one "unmatched" route, never its own label.
    assert after("govtrust_http_request_duration_seconds_count", {"route": "unmatched"}) >= 1
    assert after("govtrust_http_request_duration_seconds_count",
                 {"route": "/no/such/page/12345"}) == 0


def test_introspections_answered_before_flask_are_counted_by_route(
        browser: FlaskClient, confidential: Registered) -> None:
    # idp.web.client_calls answers the first without Flask, passes the second on.
    labels = {"app": "idp", "route": "/introspect", "method": "POST"}
    auth = (confidential.client.client_id, str(confidential.secret))
    before = _scrape(browser)
    assert browser.post("/introspect", data={"token": "abc"}, auth=auth).status_code == 200
    assert browser.post("/introspect", data="token=a%20b", auth=auth,
                        content_type="application/x-www-form-urlencoded").status_code == 200
    after = _scrape(browser)
    counted = "govtrust_http_request_duration_seconds_count"
    assert after(counted, {**labels, "status": "200"}) == before(counted, {
        **labels, "status": "200"}) + 2


def test_grants_answered_before_flask_are_counted_by_route(
        browser: FlaskClient, confidential: Registered) -> None:
    # idp.web.client_calls answers the first without Flask, passes the second on.
    labels = {"app": "idp", "route": "/token", "method": "POST"}
    auth = (confidential.client.client_id, str(confidential.secret))
    before = _scrape(browser)
    assert browser.post("/token", data={"grant_type": "client_credentials"},
                        auth=auth).status_code == 200
    assert browser.post("/token", data="grant_type=client_credentials&scope=openid%20email",
                        auth=auth, content_type="application/x-www-form-urlencoded"
                        ).status_code == 200
    after = _scrape(browser)
    counted = "govtrust_http_request_duration_seconds_count"
    assert after(counted, {**labels, "status": "200"}) == before(counted, {
        **labels, "status": "200"}) + 2
    issued = "govtrust_tokens_issued_total"
    grant = {"grant_type": "client_credentials"}
    assert after(issued, grant) == before(issued, grant) + 2


def test_issuance_revocation_and_ocsp_are_counted(services: Services,
                                                  pki: FlaskClient) -> None:
    issued = {"profile": "user-auth", "hierarchy": "ecdsa"}
    revoked = {"reason": "keyCompromise", "hierarchy": "ecdsa"}
    before = _scrape(pki)
    record = services.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0]).record
    request = _ocsp_request(services.ca.issuing_certificate, int(record.serial, 16))
    headers = {"Content-Type": "application/ocsp-request"}
    pki.post("/ocsp", data=request, headers=headers)
    services.ca.revoke(record.serial, "keyCompromise", actor="test")
    pki.post("/ocsp", data=request, headers=headers)
    pki.post("/ocsp", data=b"not a request", headers=headers)
    after = _scrape(pki)
    for name, labels in (("govtrust_certificates_issued_total", issued),
                         ("govtrust_certificates_revoked_total", revoked),
                         ("govtrust_ocsp_responses_total", {"status": "good"}),
                         ("govtrust_ocsp_responses_total", {"status": "revoked"}),
                         ("govtrust_ocsp_responses_total", {"status": "malformed_request"})):
        assert after(name, labels) == before(name, labels) + 1, (name, labels)


def test_a_rolled_back_issuance_is_not_counted(services: Services, pki: FlaskClient) -> None:
    from pki.errors import PKIError

    labels = {"profile": "user-auth"}
    before = _scrape(pki)("govtrust_certificates_issued_total", labels)
    with pytest.raises(PKIError):  # a CSR that fails its checks records nothing
        services.ca.issue_from_csr(make_person(), "user-auth", b"-----BEGIN garbage")
    assert _scrape(pki)("govtrust_certificates_issued_total", labels) == before


def test_outbox_lag_and_duty_holder_are_exposed(services: Services,
                                                browser: FlaskClient) -> None:
    services.certificate_publisher = RecordingPublisher()  # type: ignore[assignment]
    services.duties.tick()
    value = _scrape(browser)
    assert value("govtrust_outbox_lag_seconds", {}) == 0.0
    for duty in ("outbox", "pki-refresh", "logout-retries", "key-rotation"):
        assert value("govtrust_duty_held", {"duty": duty}) == 1.0


def test_metrics_from_a_non_allowed_address_is_404(app: Flask) -> None:
    client = app.test_client()
    resp = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert resp.status_code == 404
    assert b"govtrust" not in resp.get_data()


def test_forwarded_for_does_not_open_metrics(app: Flask) -> None:
    resp = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                                 headers={"X-Forwarded-For": "127.0.0.1"})
    assert resp.status_code == 404


def test_pki_metrics_from_a_non_allowed_address_is_404(pki: FlaskClient) -> None:
    assert pki.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 404


@pytest.mark.parametrize(("address", "ok"), [
    ("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("10.0.0.1", False),
    ("", False), (None, False), ("not-an-ip", False)])
def test_allowed_addresses(address: str | None, ok: bool) -> None:
    assert allowed(["127.0.0.1", "::1"], address) is ok


def test_a_network_in_metrics_allow_admits_its_members() -> None:
    assert allowed(["10.8.0.0/16"], "10.8.3.4")
    assert not allowed(["10.8.0.0/16"], "10.9.0.1")


def test_bad_metrics_allow_entry_is_refused_at_load(tmp_path: object) -> None:
    from pathlib import Path

    from idp.runtime.config import Config, ConfigError

    with pytest.raises(ConfigError, match="metrics_allow"):
        Config.load(Path(str(tmp_path)), environ={"GOVTRUST_SERVE_METRICS_ALLOW": "10.0.0.0/33"})


def test_pki_workers_add_up_in_multiprocess_mode(services: Services,
                                                 tmp_path: Path) -> None:
    """The PKI app under granian with three workers and PROMETHEUS_MULTIPROC_DIR,
    as ``govtrust serve`` runs it: one scrape counts every worker's answers."""
    import requests

    services.certificate_publisher = RecordingPublisher()  # type: ignore[assignment]
    services.ca.initialize(actor="test")
    record = services.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0]).record
    request = _ocsp_request(services.ca.issuing_certificate, int(record.serial, 16))
    folder = tmp_path / "metrics"
    folder.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        granian_command("idp.runtime.wsgi:pki_app", f"127.0.0.1:{port}", 3, 1),
        env={**os.environ, "GOVTRUST_HOME": str(services.config.home),
             "GOVTRUST_IDP_ISSUER": str(services.config.get("idp", "issuer")),
             "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(url + "/ca/root.pem", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and proc.poll() is None, \
                    proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.2)
        for _ in range(30):  # new connections: spread over the workers
            requests.post(url + "/ocsp", data=request,
                          headers={"Content-Type": "application/ocsp-request"}, timeout=5)
        text = requests.get(url + "/metrics", timeout=5).text
        good = [s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "govtrust_ocsp_responses_total" and s.labels == {"status": "good"}]
        assert good == [30.0]
        assert len(list(folder.glob("*.db"))) >= 2, "answers came from one worker only"
    finally:
        proc.terminate()
        proc.wait(10)
