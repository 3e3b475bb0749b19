"""``/healthz`` and ``/readyz``: the readiness rules (idp.runtime.health) with real
probes that pass, fail and hang, then both apps on a real home whose database,
directory or CA keys are made unusable one at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError

from directory.errors import DirectoryUnavailable
from directory.slapd import ManagedSlapd
from idp.runtime.config import Config
from idp.runtime.health import Check, Readiness, describe, pki_readiness
from idp.runtime.services import Services
from tests.fixtures.served import DemoHome


def _ok() -> None:
    pass


def _fails() -> None:
    raise DirectoryUnavailable(("ldap://127.0.0.1:1",), "SERVER_DOWN")


# -- the rules --------------------------------------------------------------------------

def test_every_check_ok_is_ready() -> None:
    report = Readiness([Check("database", _ok), Check("directory", _ok)]).report()
    assert report.ready and report.as_dict() == {
        "ready": True, "checks": {"database": "ok", "directory": "ok"}}


def test_a_failing_check_is_named_with_its_reason() -> None:
    report = Readiness([Check("database", _ok), Check("directory", _fails)]).report()
    assert not report.ready
    assert report.checks["database"] == "ok"
    assert report.checks["directory"] == (
        "unreachable: DirectoryUnavailable: no directory server answered "
        "(ldap://127.0.0.1:1): SERVER_DOWN")


def test_a_hanging_check_times_out_and_is_not_started_twice() -> None:
    release = threading.Event()
    started: list[float] = []

    def hangs() -> None:
        started.append(time.monotonic())
        release.wait(10)

    readiness = Readiness([Check("directory", hangs), Check("database", _ok)],
                          timeout=0.3, cache_seconds=0)
    try:
        t = time.monotonic()
        first = readiness.report()
        assert time.monotonic() - t < 1.0
        assert first.checks == {"directory": "timeout: no answer within 0.3 s",
                                "database": "ok"}
        second = readiness.report()
        assert second.checks["directory"].startswith("timeout")
        assert len(started) == 1  # the hung probe was waited on again, not restarted
    finally:
        release.set()
    time.sleep(0.05)
    assert readiness.report().ready  # it ended: the next round starts it afresh
    assert len(started) == 2


def test_a_report_is_reused_within_the_cache_time() -> None:
    calls: list[int] = []
    now = [100.0]
    readiness = Readiness([Check("database", lambda: calls.append(1))],
                          cache_seconds=1.0, clock=lambda: now[0])
    for _ in range(50):  # a probe storm within one second: one round
        readiness.report()
    now[0] += 1.5
    readiness.report()
    assert len(calls) == 2


def test_concurrent_callers_share_one_round() -> None:
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.2)

    readiness = Readiness([Check("database", slow)], cache_seconds=1.0)
    threads = [threading.Thread(target=readiness.report) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_an_untyped_error_shows_only_its_class() -> None:
    exc = OperationalError("SELECT 1", {}, Exception("could not connect to db.internal:5432"))
    assert describe(exc) == "OperationalError"


def test_duplicate_or_no_checks_are_refused() -> None:
    with pytest.raises(ValueError):
        Readiness([])
    with pytest.raises(ValueError):
        Readiness([Check("database", _ok), Check("database", _ok)])


# -- both apps on a real home ---------------------------------------------------------------

def _services(home: DemoHome, **env: str) -> Services:
    services = Services(Config.load(home.home, environ={**home.env, **env}))
    services.may_start_slapd = False  # as in a served worker
    return services


@pytest.fixture
def directory(demo_home: DemoHome) -> Iterator[ManagedSlapd]:
    """The home's slapd, run by the test (stopped after: serve tests start their own)."""
    server = ManagedSlapd(Config.load(demo_home.home, environ=demo_home.env)
                          .directory_settings())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _idp(services: Services) -> FlaskClient:
    from idp.runtime.app import create_app

    return create_app(services).test_client()


def _get(client: FlaskClient, path: str) -> tuple[int, Any]:
    resp = client.get(path)
    assert resp.headers["Cache-Control"] == "no-store"
    return resp.status_code, resp.get_json()


def test_idp_is_ready_when_everything_answers(demo_home: DemoHome,
                                              directory: ManagedSlapd) -> None:
    services = _services(demo_home)
    try:
        status, body = _get(_idp(services), "/readyz")
        assert (status, body) == (200, {"ready": True, "checks": {
            "database": "ok", "directory": "ok", "ca.issuing": "ok", "ca.ocsp": "ok",
            "ca.root-crl": "ok", "idp.token": "ok"}})
    finally:
        services.close()


def test_idp_without_its_directory_is_alive_but_not_ready(demo_home: DemoHome) -> None:
    services = _services(demo_home)  # nothing listens on the home's directory URI
    try:
        client = _idp(services)
        assert _get(client, "/healthz") == (200, {"alive": True})
        status, body = _get(client, "/readyz")
        assert status == 503 and body["ready"] is False
        assert body["checks"]["directory"].startswith("unreachable: DirectoryUnavailable")
        assert body["checks"]["database"] == "ok"
    finally:
        services.close()


def test_wrong_ca_passphrase_names_each_unusable_key(demo_home: DemoHome) -> None:
    services = _services(demo_home, GOVTRUST_SECRET_CA_PASSPHRASE="not-the-passphrase")
    try:
        status, body = _get(_idp(services), "/readyz")
        assert status == 503
        for name in ("ca.issuing", "ca.ocsp"):
            assert body["checks"][name].startswith("unusable: KeyStoreError"), body
            assert "wrong passphrase or damaged file" in body["checks"][name]
        assert body["checks"]["idp.token"] == "ok"
    finally:
        services.close()


def test_unreachable_database_is_named(demo_home: DemoHome, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'govtrust.db'}"
    services = _services(demo_home, GOVTRUST_DATABASE_URL=url)
    try:
        status, body = _get(_idp(services), "/readyz")
        assert status == 503
        assert body["checks"]["database"] == "unreachable: OperationalError"
        assert "missing" not in str(body)  # no path or host from a driver's message
    finally:
        services.close()


def test_pki_is_ready_without_a_directory(demo_home: DemoHome) -> None:
    from pki.http import create_app

    services = _services(demo_home)
    try:
        client = create_app(services.ca, pki_readiness(services).report).test_client()
        assert _get(client, "/healthz") == (200, {"alive": True})
        status, body = _get(client, "/readyz")
        assert (status, body) == (200, {"ready": True, "checks": {
            "database": "ok", "ca.issuing": "ok", "ca.ocsp": "ok", "ca.root-crl": "ok"}})
    finally:
        services.close()


def test_pki_with_unusable_keys_is_not_ready(demo_home: DemoHome) -> None:
    from pki.http import create_app

    services = _services(demo_home, GOVTRUST_SECRET_CA_PASSPHRASE="not-the-passphrase")
    try:
        client = create_app(services.ca, pki_readiness(services).report).test_client()
        status, body = _get(client, "/readyz")
        assert status == 503 and body["checks"]["ca.issuing"].startswith("unusable")
    finally:
        services.close()


def test_sm2_keys_are_checked_when_the_sm2_hierarchy_is_on(demo_home: DemoHome) -> None:
    # This home was made without SM2: turned on afterwards, its keys do not exist.
    services = _services(demo_home, GOVTRUST_PKI_SM2="true")
    try:
        status, body = _get(_idp(services), "/readyz")
        assert status == 503
        assert body["checks"]["ca.issuing"] == "ok"
        for name in ("ca.sm2-issuing", "ca.sm2-ocsp"):
            assert body["checks"][name].startswith("unusable: "), body
    finally:
        services.close()
