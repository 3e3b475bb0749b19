"""Which database errors a failover explains (answered 503) and which it does not,
and the one 503 both apps give for them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cryptography.x509 import ocsp
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from idp.oidc.clients import build_client
from idp.runtime.app import create_app, create_pki_app
from idp.runtime.db import make_engine
from idp.runtime.db_faults import describe, is_failover_fault
from idp.web.kit import RETRY_AFTER
from pki.http import RETRY_AFTER as PKI_RETRY_AFTER
from pki.http import unavailable_answer as pki_unavailable_answer
from tests.fixtures.idp import (
    ISSUER,
    PASSWORD,
    REDIRECT,
    ZHANG,
    FakeDirectory,
    login,
    make_services,
)
from tests.fixtures.postgres import PostgresCluster


def test_a_database_that_does_not_answer_is_a_failover_fault() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://u:secret-pw@127.0.0.1:{dead}/db"
                         "?connect_timeout=2")
    with pytest.raises(DBAPIError) as caught:
        with engine.connect():
            pass
    assert is_failover_fault(caught.value)
    assert "secret-pw" not in describe(caught.value)
    engine.dispose()


def test_a_constraint_violation_is_not_a_failover_fault(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(DBAPIError) as caught:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
    assert not is_failover_fault(caught.value)
    engine.dispose()


def test_other_exceptions_are_not_failover_faults() -> None:
    assert not is_failover_fault(ValueError("x"))


@pytest.mark.postgres
def test_a_read_only_database_gets_the_same_503_as_a_lost_one(
        postgres: PostgresCluster, tmp_path: Path) -> None:
    """A write that lands on a read-only server (a standby, SQLSTATE 25006: not a
    connection error) is answered as a cut or refused connection is: 503 with the
    app's one Retry-After, ``temporarily_unavailable`` on an API path, the
    unavailable page on a page. It used to be another 503 with its own
    Retry-After and words, and the PKI's app got the IdP's page."""
    url = postgres.create_database()
    services = make_services(tmp_path / "home", ISSUER,
                             FakeDirectory({"zhangwei": (PASSWORD, ZHANG)}), database_url=url)
    try:
        app = create_app(services)
        app.testing = True
        browser = app.test_client()
        client, secret = services.provider.clients.add(build_client(
            name="预算管理系统", redirect_uris=[REDIRECT], level=2, first_party=True))
        assert secret is not None
        granted = browser.post("/token", data={"grant_type": "client_credentials"},
                               auth=(client.client_id, secret))
        assert granted.status_code == 200, granted.get_data(as_text=True)
        token = granted.get_json()["access_token"]
        database = url.rsplit("/", 1)[1]
        with postgres.admin() as conn:
            conn.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        postgres.terminate_all(database)  # every connection comes back read-only
        assert PKI_RETRY_AFTER == RETRY_AFTER  # one wait, whichever app answers

        revoked = browser.post("/revoke", data={"token": token},
                               auth=(client.client_id, secret))  # writes the jti
        assert revoked.status_code == 503, revoked.get_data(as_text=True)
        assert revoked.headers["Retry-After"] == RETRY_AFTER
        assert revoked.get_json()["error"] == "temporarily_unavailable"

        status, body, _ = login(browser)  # writes the session
        assert status == 503
        assert "服务暂时不可用" in body

        pki = create_pki_app(services)
        with pki.test_request_context("/ocsp", method="POST"):
            answer = pki_unavailable_answer()
        assert answer.status_code == 503 and answer.headers["Retry-After"] == RETRY_AFTER
        assert answer.mimetype == "application/ocsp-response"
        assert ocsp.load_der_ocsp_response(answer.get_data()).response_status \
            is ocsp.OCSPResponseStatus.TRY_LATER
    finally:
        services.close()
