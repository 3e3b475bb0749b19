"""Changes seen everywhere at once: two nodes (two ``Services`` with their own
apps, caches and engines) on one real PostgreSQL. A change made on one is seen
on the other within a second, through the NOTIFY triggers of migration 0010 and
each process's listener, not through cache expiry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from idp.oidc.clients import build_client
from idp.runtime.app import create_app, create_pki_app
from idp.runtime.changes import Change, Topic
from idp.runtime.services import Services
from pki.publish import RecordingPublisher
from tests.fixtures.idp import ISSUER, REDIRECT, FakeDirectory, make_services
from tests.fixtures.pki import make_csr, make_person
from tests.fixtures.postgres import PostgresCluster


@pytest.fixture
def nodes(tmp_path: Path, postgres: PostgresCluster,
          directory: FakeDirectory) -> Iterator[tuple[Services, Services]]:
    """Two nodes of one deployment: one home's configuration and secrets (as
    copied to every node), one database, separate processes' worth of state."""
    url = postgres.create_database()
    home = tmp_path / "home"
    a = make_services(home, ISSUER, directory, url)
    b = make_services(home, ISSUER, directory, url)
    for node in (a, b):
        node.certificate_publisher = RecordingPublisher()  # type: ignore[assignment]
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _within(seconds: float, check: Callable[[], bool]) -> float:
    """Poll ``check`` until true; return how long it took (fail after ``seconds``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not seen within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - start


# -- the payload -----------------------------------------------------------------------

def test_payload_round_trips() -> None:
    change = Change(Topic.CLIENT, "abc-123")
    assert Change.parse(change.payload()) == change


@pytest.mark.parametrize("payload", ["", "client", "nosuchtopic:x", "client:a b",
                                     "CLIENT:x", "client:" + "x" * 201, "client:\n"])
def test_malformed_payload_is_ignored(payload: str) -> None:
    assert Change.parse(payload) is None


def test_sqlite_starts_no_listener(services: Services) -> None:
    assert services.start_change_listener() is None


# -- two nodes -----------------------------------------------------------------------------

def test_rotated_secret_is_refused_on_the_other_node_within_a_second(
        nodes: tuple[Services, Services]) -> None:
    a, b = nodes
    client, old = a.provider.clients.add(build_client(
        name="预算管理系统", redirect_uris=[REDIRECT], level=2, first_party=True))
    app_b = create_app(b)
    listener = b.start_change_listener()
    assert listener is not None and listener.wait_listening()
    rp = app_b.test_client()

    def token(secret: str | None) -> int:
        return rp.post("/token", data={"grant_type": "client_credentials"},
                       auth=(client.client_id, secret or "")).status_code

    assert token(old) == 200  # node B has the client cached now
    new = a.provider.clients.rotate_secret(client.client_id)
    took = _within(1.0, lambda: token(old) == 401)
    assert token(new) == 200
    print(f"secret rotation seen on the other node after {took * 1000:.0f} ms")


def test_removed_client_is_refused_on_the_other_node_within_a_second(
        nodes: tuple[Services, Services]) -> None:
    a, b = nodes
    client, secret = a.provider.clients.add(build_client(
        name="移动办公", redirect_uris=[REDIRECT], level=2, first_party=True))
    rp = create_app(b).test_client()
    assert b.start_change_listener().wait_listening()  # type: ignore[union-attr]
    form = {"grant_type": "client_credentials"}
    assert rp.post("/token", data=form, auth=(client.client_id, secret)).status_code == 200
    a.provider.clients.remove(client.client_id)
    _within(1.0, lambda: rp.post("/token", data=form,
                                 auth=(client.client_id, secret)).status_code == 401)


def test_key_rotation_is_published_by_the_other_node_within_a_second(
        nodes: tuple[Services, Services]) -> None:
    a, b = nodes
    rp = create_app(b).test_client()
    assert b.start_change_listener().wait_listening()  # type: ignore[union-attr]
    before = {k["kid"] for k in rp.get("/jwks").get_json()["keys"]}
    made = {k.kid for k in a.provider.keys.rotate()}
    _within(1.0, lambda: made <= {k["kid"] for k in rp.get("/jwks").get_json()["keys"]})
    assert made - before


def _ocsp_request(issuer: x509.Certificate, serial: int) -> bytes:
    name_hash = hashes.Hash(hashes.SHA1())
    name_hash.update(issuer.subject.public_bytes(serialization.Encoding.DER))
    key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    return (ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash.finalize(), key_hash, serial, hashes.SHA1())
            .build().public_bytes(serialization.Encoding.DER))


def test_revoked_certificate_is_reported_by_ocsp_on_the_other_node_within_a_second(
        nodes: tuple[Services, Services]) -> None:
    a, b = nodes
    a.ca.initialize(actor="test")
    issued = a.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0])
    pki_b = create_pki_app(b).test_client()
    request = _ocsp_request(b.ca.issuing_certificate, int(issued.record.serial, 16))

    def status() -> ocsp.OCSPCertStatus:
        resp = pki_b.post("/ocsp", data=request,
                          headers={"Content-Type": "application/ocsp-request"})
        return ocsp.load_der_ocsp_response(resp.get_data()).certificate_status

    assert status() is ocsp.OCSPCertStatus.GOOD  # and pre-signed, kept by node B
    a.ca.revoke(issued.record.serial, "keyCompromise", actor="test")
    _within(1.0, lambda: status() is ocsp.OCSPCertStatus.REVOKED)


def test_listener_reports_changes_committed_elsewhere_and_not_rollbacks(
        nodes: tuple[Services, Services]) -> None:
    from sqlalchemy import text

    from idp.runtime.pglisten import ChangeListener

    a, b = nodes
    seen: list[Change | None] = []
    listener = ChangeListener(b.engine, seen.append)
    listener.start()
    try:
        assert listener.wait_listening()
        client, _ = a.provider.clients.add(build_client(
            name="甲", redirect_uris=[REDIRECT], level=2))
        with a.engine.connect() as conn:  # a change rolled back announces nothing
            conn.execute(text("UPDATE oauth_clients SET name = 'x' WHERE client_id = :c"),
                         {"c": client.client_id})
            conn.rollback()
        a.provider.clients.remove(client.client_id)
        _within(1.0, lambda: len(seen) >= 2)
        time.sleep(0.2)
        assert seen == [Change(Topic.CLIENT, client.client_id)] * 2
    finally:
        listener.stop()
