"""The CA's records on SQLite and PostgreSQL: issuance, transitions, CRLs, audit."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from directory.model import Person
from pki.authority import CertificateAuthority
from pki.errors import AlreadyRevoked, InvalidTransition
from pki.model import CertStatus, RevocationReason
from tests.fixtures.pki import CAEnv, build_env, make_csr


@pytest.mark.postgres
def test_lifecycle_of_records_and_crls(database_url: str, tmp_path: Path,
                                       person: Person) -> None:
    env = build_env(tmp_path, database_url)
    try:
        ca = env.ca
        serials = [ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial
                   for _ in range(4)]
        ca.revoke(serials[0], "keyCompromise",
                  invalidity_date=ca.now().replace(year=ca.now().year - 1))
        ca.hold(serials[1])
        ca.hold(serials[2])
        ca.release(serials[2])
        with pytest.raises(AlreadyRevoked):
            ca.revoke(serials[0])
        with pytest.raises(InvalidTransition):
            ca.hold(serials[1])
        full = x509.load_der_x509_crl(ca.crl())
        listed = {format(r.serial_number, "x"): r for r in full}
        assert set(listed) == {serials[0], serials[1]}
        entry = listed[serials[0]]
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
            x509.ReasonFlags.key_compromise
        assert entry.extensions.get_extension_for_class(x509.InvalidityDate)
        assert listed[serials[1]].extensions.get_extension_for_class(
            x509.CRLReason).value.reason is x509.ReasonFlags.certificate_hold
        assert full.is_signature_valid(ca.issuing_certificate.public_key())  # type: ignore[arg-type]
        delta = x509.load_der_x509_crl(ca.crl(delta=True))
        base = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value
        assert base.crl_number == full.extensions.get_extension_for_class(
            x509.CRLNumber).value.crl_number
        assert [r for r in ca.find(status=CertStatus.HOLD)][0].serial == serials[1]
        assert len(ca.find(uid=person.uid)) == 4
        assert len(ca.find(uid=person.uid,
                           expiring_within=ca.now() - ca.now() + (400 * ca.settings.crl_refresh)
                           )) == 4
        assert env.audit.verify().ok
        assert ca.store.status(int(serials[0], 16)).reason is \
            RevocationReason.KEY_COMPROMISE  # type: ignore[union-attr]
    finally:
        env.engine.dispose()


def test_release_shows_as_remove_from_crl_in_the_delta(tmp_path: Path, person: Person) -> None:
    from pki.model import CASettings

    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'd.db'}",
                    settings=CASettings(full_crl_on_revoke_max=10**9))
    ca = env.ca
    serial = ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial
    ca.hold(serial)
    base_number = ca.store.latest_crl("issuing", delta=False).number  # type: ignore[union-attr]
    ca.release(serial, refresh=False)
    ca.generate_crl(delta=True)
    delta = x509.load_der_x509_crl(ca.crl(delta=True))
    assert delta.extensions.get_extension_for_class(
        x509.DeltaCRLIndicator).value.crl_number == base_number
    entry = delta.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
        x509.ReasonFlags.remove_from_crl
    env.engine.dispose()


def test_crl_numbers_increase_across_full_and_delta(tmp_path: Path) -> None:
    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'n.db'}")
    numbers = [env.ca.generate_crl(delta=d).number for d in (False, True, False, True)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4  # RFC 5280 §5.2.3
    env.engine.dispose()


def test_refresh_if_due_renews_the_ocsp_responder(tmp_path: Path) -> None:
    from datetime import timedelta

    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    assert env.ca.refresh_if_due() == []
    first = env.ca.ocsp_credentials()[0]
    later = env.ca.now() + timedelta(days=21)  # past 2/3 of 30 days
    env.ca._clock = lambda: later  # noqa: SLF001 - a test clock
    env.ca._ocsp = None  # noqa: SLF001
    done = env.ca.refresh_if_due()
    assert "ocsp-responder" in done and "crl" in done and "delta-crl" in done
    assert env.ca.ocsp_credentials()[0].serial_number != first.serial_number
    env.engine.dispose()


@pytest.mark.postgres
def test_racing_revocations_record_exactly_one(database_url: str, tmp_path: Path,
                                               person: Person) -> None:
    import threading

    env = build_env(tmp_path, database_url)
    try:
        serial = env.ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial
        before = env.counts()
        outcomes: list[str] = []
        barrier = threading.Barrier(4)

        def revoke() -> None:
            barrier.wait()
            try:
                env.ca.revoke(serial, RevocationReason.KEY_COMPROMISE, refresh=False)
                outcomes.append("revoked")
            except AlreadyRevoked:
                outcomes.append("already")

        threads = [threading.Thread(target=revoke) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["already"] * 3 + ["revoked"]
        assert env.counts() == (before[0], before[1] + 1)
        assert env.audit.verify().ok
    finally:
        env.engine.dispose()


# -- the issuance hot path: the remembered audit head, one statement on PostgreSQL ----

def _second_authority(env: CAEnv, folder: Path) -> CertificateAuthority:
    """Another node's authority over the same database and keys: its own store,
    so its own remembered audit head."""
    from idp.runtime.db import make_engine, session_factory
    from pki.audit_store import AuditLog
    from pki.authority import CertificateAuthority
    from pki.keys import FileKeyStore
    from pki.model import CASettings
    from pki.publish import RecordingPublisher
    from pki.store import SqlCertificateStore

    engine = make_engine(env.engine.url.render_as_string(hide_password=False))
    sessions = session_factory(engine)
    return CertificateAuthority(SqlCertificateStore(sessions),
                                FileKeyStore(folder / "keys", b"test passphrase, not a secret"),
                                CASettings(), publisher=RecordingPublisher(),
                                audit=AuditLog(sessions))


def _issue_records(env: CAEnv) -> tuple[set[str], list[str]]:
    from sqlalchemy import text

    with env.engine.connect() as conn:
        serials = set(conn.execute(text("SELECT serial FROM certificates")).scalars())
        audited = list(conn.execute(text(
            "SELECT target FROM audit_log WHERE action = 'cert.issue'")).scalars())
    return serials, audited


def _recorded_once(env: CAEnv, issued: list[str]) -> None:
    """Every certificate returned is stored; every stored one has exactly one issue
    record; the chain verifies."""
    serials, audited = _issue_records(env)
    assert set(issued) <= serials
    assert len(audited) == len(set(audited))
    assert {f"cert:{s}" for s in serials} <= set(audited)
    report = env.audit.verify()
    assert report.ok, report


@pytest.mark.postgres
def test_two_nodes_interleaving_issuance_keep_one_chain(database_url: str, tmp_path: Path,
                                                        person: Person) -> None:
    """Each node's remembered head goes stale whenever the other appends: every
    issuance must then chain onto the stored head, never onto its stale one."""
    env = build_env(tmp_path, database_url)
    other = _second_authority(env, tmp_path)
    try:
        issued = []
        for i in range(6):
            ca = env.ca if i % 3 else other
            issued.append(ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial)
            if i == 3:  # another kind of writer moves the head too
                env.ca.revoke(issued[0], "superseded", refresh=False)
        _recorded_once(env, issued)
    finally:
        other.store._engine.dispose()  # type: ignore[attr-defined]  # noqa: SLF001
        env.engine.dispose()


@pytest.mark.postgres
def test_issuers_in_two_processes_chain_on_the_head_the_other_moved(
        database_url: str, tmp_path: Path, person: Person) -> None:
    """Two processes (or nodes) each remember the head they wrote last, so every
    issuance after the other's finds it moved. Each must chain onto the stored
    head on its hot path (SQLite reads it under the write lock it holds,
    PostgreSQL reads it and compares-and-sets again): no transaction through
    SQLAlchemy, one chain, every certificate with its one record."""
    from sqlalchemy import event

    from pki.audit_store import ChainTip

    env = build_env(tmp_path, database_url)
    other = _second_authority(env, tmp_path)
    # Its own remembered head, as in another process (here both would share one).
    other.store._tip = ChainTip()  # type: ignore[attr-defined]  # noqa: SLF001
    engines = [env.engine, other.store._engine]  # type: ignore[attr-defined]  # noqa: SLF001
    try:
        for ca in (env.ca, other):  # each learns the head once, the general way
            ca.issue_from_csr(person, "user-auth", make_csr()[0])
        begun: list[object] = []
        for engine in engines:
            event.listen(engine, "begin", begun.append)
        issued = [(env.ca if i % 2 else other).issue_from_csr(
            person, "user-auth", make_csr()[0]).record.serial for i in range(8)]
        assert begun == []  # every one on the hot path
        _recorded_once(env, issued)
        last = env.ca.store  # the issuer of i = 7 remembers the head it wrote
        assert last._tip.head == env.audit.head()  # type: ignore[attr-defined]  # noqa: SLF001
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.postgres
def test_concurrent_issuers_on_two_nodes_fork_nothing(database_url: str, tmp_path: Path,
                                                      person: Person) -> None:
    import threading

    env = build_env(tmp_path, database_url)
    other = _second_authority(env, tmp_path)
    returned: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def issue(ca: CertificateAuthority) -> None:
        barrier.wait()
        try:
            for _ in range(8):
                returned.append(ca.issue_from_csr(person, "user-auth",
                                                  make_csr()[0]).record.serial)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=issue, args=(ca,))
                   for ca in (env.ca, env.ca, other, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(returned) == 32
        _recorded_once(env, returned)
    finally:
        other.store._engine.dispose()  # type: ignore[attr-defined]  # noqa: SLF001
        env.engine.dispose()


@pytest.mark.postgres
def test_a_certificate_that_cannot_be_recorded_leaves_no_audit_record(
        database_url: str, tmp_path: Path, person: Person) -> None:
    """A taken serial fails the insert: nothing of it is stored, the audit head
    does not move, and the next issuance chains on as before."""
    from dataclasses import replace

    from sqlalchemy.exc import IntegrityError

    from pki.model import AuditEntry

    env = build_env(tmp_path, database_url)
    try:
        first = env.ca.issue_from_csr(person, "user-auth", make_csr()[0]).record
        before, head = env.counts(), env.audit.head()
        again = replace(first, der=b"another")
        for _ in range(2):  # with the head remembered, and after a fallback
            with pytest.raises(IntegrityError):
                env.ca.store.add_certificate(again, AuditEntry("test", "cert.issue",
                                                               f"cert:{first.serial}", {}))
            assert env.counts() == before and env.audit.head() == head
        env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
        assert env.audit.verify().ok
    finally:
        env.engine.dispose()


@pytest.mark.postgres
def test_the_hot_path_stores_rows_as_the_general_path_does(database_url: str, tmp_path: Path,
                                                           person: Person) -> None:
    """The first issuance after init goes the general way (the CRLs moved the head
    since the OCSP responder's certificate), the next ones the hot path: their rows
    must read and sort alike (SQLite keeps dates as text in SQLAlchemy's format)."""
    import re

    from sqlalchemy import text

    env = build_env(tmp_path, database_url)
    try:
        records = [env.ca.issue_from_csr(person, "user-auth", make_csr()[0]).record
                   for _ in range(3)]
        assert env.ca.store._tip.head == env.audit.head()  # type: ignore[attr-defined]  # noqa: SLF001
        shapes = set()
        with env.engine.connect() as conn:
            for rec in records:
                row = conn.execute(text(
                    "SELECT CAST(not_before AS TEXT), CAST(not_after AS TEXT), "
                    "CAST(issued_at AS TEXT), CAST(status_changed_at AS TEXT), "
                    "CAST(hardware_key AS TEXT), status, hierarchy, revoked_at, reason "
                    "FROM certificates WHERE serial = :s"), {"s": rec.serial}).one()
                at = conn.execute(text("SELECT CAST(at AS TEXT) FROM audit_log WHERE "
                                       "target = :t"), {"t": f"cert:{rec.serial}"}).scalar_one()
                shapes.add(re.sub(r"\d", "9", repr((tuple(row), at))))
                assert env.ca.store.get(rec.serial) == rec.__class__(
                    **{**rec.__dict__, "status_changed_at": rec.issued_at})
        assert len(shapes) == 1, shapes
        assert env.audit.verify().ok
    finally:
        env.engine.dispose()
