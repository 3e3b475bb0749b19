"""PostgreSQL restarted under load: the PKI service answers 503 with Retry-After
while the database is away (never a 500), recovers on its own through the pool's
pre-ping, and no issuance is half done.

The cluster is this test's own (tests/fixtures/postgres.py), stopped with
``pg_ctl -m fast`` (connections are cut, as in a restart) and started again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError

from pki.http import create_app
from tests.fixtures.pki import build_env, make_csr, make_person
from tests.fixtures.postgres import PG_BIN, PostgresCluster
from tests.fixtures.servers import serving


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is not installed: run scripts/setup")
    own = PostgresCluster()
    own.start()
    try:
        yield own
    finally:
        own.stop()


def pg_ctl(cluster: PostgresCluster, *args: str) -> None:
    cluster._run(str(PG_BIN / "pg_ctl"), "-D", str(cluster.data), *args)  # noqa: SLF001


def test_postgres_restart_under_load_503_then_recovers_nothing_half_done(
        cluster: PostgresCluster, tmp_path: Path) -> None:
    env = build_env(tmp_path, cluster.create_database())
    person = make_person()
    first = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    ocsp_req = x509.ocsp.OCSPRequestBuilder().add_certificate(
        first.certificate, env.ca.issuing_certificate, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    returned: list[str] = []
    failures: list[str] = []
    statuses: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def issue() -> None:
        while not stop.is_set():
            try:
                returned.append(env.ca.issue_from_csr(person, "user-auth",
                                                      make_csr()[0]).record.serial)
            except (OperationalError, InterfaceError) as exc:
                failures.append(type(exc).__name__)
                time.sleep(0.05)

    def fetch(url: str) -> None:
        while not stop.is_set():
            # Each request reads the database (the stored CRL, the certificate's status).
            r = requests.get(f"{url}/crl/issuing.crl", timeout=10)
            statuses.append((r.status_code, r.headers.get("Retry-After")))
            r = requests.post(f"{url}/ocsp", data=ocsp_req, timeout=10,
                              headers={"Content-Type": "application/ocsp-request"})
            statuses.append((r.status_code, r.headers.get("Retry-After")))
            time.sleep(0.01)

    with serving(create_app(env.ca)) as url:
        threads = [threading.Thread(target=issue), threading.Thread(target=fetch, args=(url,))]
        for t in threads:
            t.start()
        time.sleep(1.0)
        pg_ctl(cluster, "-m", "fast", "-w", "stop")
        time.sleep(1.5)
        during = len(statuses)
        pg_ctl(cluster, "-l", str(cluster.dir / "log"), "-o",
               f"-p {cluster.port} -k {cluster.dir} -c listen_addresses=127.0.0.1 "
               "-c fsync=off -c max_connections=200", "-w", "start")
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(15)
        # Recovered on its own: the same process answers and issues again.
        assert requests.get(f"{url}/crl/issuing.crl", timeout=10).status_code == 200
    after = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    returned.append(after.record.serial)

    codes = {code for code, _ in statuses}
    assert 500 not in codes and codes <= {200, 503}, codes
    assert 503 in {code for code, _ in statuses[:during]}, "the outage was not seen"
    assert all(retry == "5" for code, retry in statuses if code == 503)
    assert failures, "no issuance met the outage"
    with env.engine.connect() as conn:
        serials = set(conn.execute(text("SELECT serial FROM certificates")).scalars())
        audited = list(conn.execute(text(
            "SELECT target FROM audit_log WHERE action = 'cert.issue'")).scalars())
    assert len(audited) == len(set(audited))
    for serial in returned:
        assert serial in serials and f"cert:{serial}" in audited, serial
    assert {f"cert:{s}" for s in serials} <= set(audited)  # no certificate without its record
    assert env.audit.verify(None).ok
    env.engine.dispose()
