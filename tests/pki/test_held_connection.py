"""Issuance on PostgreSQL over a held, unpinged connection (``pki.held_connection``),
with its server process ended by ``pg_terminate_backend`` at the worst moments.

Each failure is injected on the real server, between taking the connection and
running the statement: the backend ended while the connection sat idle; ended
after the same statement had committed (its answer lost); ended while another
node moved the audit head; ended with no fresh connection to be had. Every case
ends in exactly one of: the certificate returned and recorded once, with its one
audit record and an intact chain; or a clear error with nothing recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from directory.model import Person
from pki.authority import CertificateAuthority
from pki.held_connection import HeldConnection, Statement
from pki.model import AuditEntry
from pki.store import SqlCertificateStore
from tests.fixtures.pki import CAEnv, build_env, make_csr
from tests.fixtures.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

Injection = Callable[[Any, Statement, Mapping[str, Any]], None]


class Injected(HeldConnection):
    """A held connection that runs ``inject`` once, just before the first
    statement is sent on the connection it was handed (the one held, or the
    fresh one after a failure), with that connection."""

    def __init__(self, store: SqlCertificateStore, inject: Injection) -> None:
        super().__init__(store._engine)  # noqa: SLF001
        self.inject: Injection | None = inject
        self.sent: list[int] = []  # the backend of each statement sent

    def _run(self, cursor: Any, statement: Statement,  # type: ignore[override]
             values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        inject, self.inject = self.inject, None
        if inject is not None:
            inject(cursor.connection, statement, values)
        self.sent.append(int(cursor.connection.info.backend_pid))
        return HeldConnection._run(cursor, statement, values)


def store_of(ca: CertificateAuthority) -> SqlCertificateStore:
    store = ca.store
    assert isinstance(store, SqlCertificateStore)
    return store


def inject(ca: CertificateAuthority, injection: Injection) -> Injected:
    store = store_of(ca)
    assert store._held is not None  # noqa: SLF001
    held = Injected(store, injection)
    store._held = store._held._replace(held=held)  # noqa: SLF001
    return held


@pytest.fixture
def env(postgres: PostgresCluster, tmp_path: Path) -> Iterator[CAEnv]:
    e = build_env(tmp_path, postgres.create_database())
    try:
        yield e
    finally:
        e.engine.dispose()


def issued_once(env: CAEnv, serial: str) -> None:
    """``serial`` has one row and one issuance record, and the chain holds."""
    with env.engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM certificates WHERE serial = :s"),
                            {"s": serial}).scalar_one()
        audits = conn.execute(text("SELECT count(*) FROM audit_log WHERE target = :t"),
                              {"t": f"cert:{serial}"}).scalar_one()
    assert (rows, audits) == (1, 1)
    report = env.audit.verify()
    assert report.ok, report
    assert store_of(env.ca)._tip.head == env.audit.head()  # noqa: SLF001


def second_authority(env: CAEnv) -> CertificateAuthority:
    """Another node's authority over the same database and keys."""
    from idp.runtime.db import make_engine, session_factory
    from pki.audit_store import AuditLog
    from pki.keys import FileKeyStore
    from pki.model import CASettings
    from pki.publish import RecordingPublisher

    sessions = session_factory(make_engine(env.engine.url.render_as_string(False)))
    return CertificateAuthority(SqlCertificateStore(sessions),
                                FileKeyStore(env.folder / "keys", b"test passphrase, not a secret"),
                                CASettings(), publisher=RecordingPublisher(),
                                audit=AuditLog(sessions))


def warm(env: CAEnv, person: Person) -> None:
    """Two issuances: the second goes the hot path and leaves the connection held."""
    for _ in range(2):
        env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    assert store_of(env.ca)._tip.head == env.audit.head()  # noqa: SLF001


def test_the_connection_is_held_and_reused(env: CAEnv, person: Person) -> None:
    warm(env, person)
    path = store_of(env.ca)._held  # noqa: SLF001
    assert path is not None
    held = path.held
    pid = held.backend_pid
    assert pid is not None
    issued = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    assert held.backend_pid == pid
    issued_once(env, issued.record.serial)
    env.engine.dispose()  # closes it with the pool
    assert held.backend_pid is None


def test_a_backend_ended_while_idle_is_replaced_and_issues_once(
        env: CAEnv, person: Person, postgres: PostgresCluster) -> None:
    warm(env, person)
    held = inject(env.ca, lambda conn, _s, _v: postgres.terminate(conn.info.backend_pid))
    before = env.counts()
    issued = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    assert len(held.sent) == 2 and held.sent[0] != held.sent[1]  # retried on a fresh one
    issued_once(env, issued.record.serial)
    assert env.counts() == (before[0] + 1, before[1] + 1)


def test_every_backend_ended_is_survived_through_the_pinged_pool(
        env: CAEnv, person: Person, postgres: PostgresCluster) -> None:
    """As a failover leaves it: the held connection and the pool's idle ones all dead."""
    warm(env, person)
    database = env.engine.url.database
    assert database is not None
    inject(env.ca, lambda _c, _s, _v: postgres.terminate_all(database))
    issued = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    issued_once(env, issued.record.serial)
    again = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    issued_once(env, again.record.serial)


def test_a_commit_whose_answer_was_lost_is_found_and_not_written_again(
        env: CAEnv, person: Person, postgres: PostgresCluster) -> None:
    """The statement committed, then the backend ended before its answer came back
    (simulated: the same statement, same values, committed on another connection).
    The retry's compare-and-set matches nothing; the record is read back."""
    warm(env, person)

    def committed_then_cut(conn: Any, statement: Statement, values: Mapping[str, Any]) -> None:
        with psycopg.connect(conn.info.dsn, autocommit=True) as other:
            assert other.execute(statement.sql, statement.parameters(values)).fetchone()
        postgres.terminate(conn.info.backend_pid)

    held = inject(env.ca, committed_then_cut)
    before = env.counts()
    issued = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    assert len(held.sent) == 3  # cut, compare-and-set that matched nothing, read back
    issued_once(env, issued.record.serial)
    assert env.counts() == (before[0] + 1, before[1] + 1)


def test_a_head_moved_by_another_node_during_the_cut_is_read_and_chained_onto(
        env: CAEnv, person: Person, postgres: PostgresCluster, tmp_path: Path) -> None:
    warm(env, person)
    other = second_authority(env)
    try:
        elsewhere: list[str] = []

        def moved_then_cut(conn: Any, _s: Statement, _v: Mapping[str, Any]) -> None:
            elsewhere.append(other.issue_from_csr(person, "user-auth",
                                                  make_csr()[0]).record.serial)
            postgres.terminate(conn.info.backend_pid)

        held = inject(env.ca, moved_then_cut)
        issued = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
        # cut, no match, not there; then the head read and the compare-and-set on it
        assert len(held.sent) == 5
        issued_once(env, issued.record.serial)
        issued_once(env, elsewhere[0])
    finally:
        store_of(other)._engine.dispose()  # noqa: SLF001


def test_no_fresh_connection_to_be_had_is_a_clear_error_with_nothing_recorded(
        env: CAEnv, person: Person, postgres: PostgresCluster) -> None:
    warm(env, person)
    database = env.engine.url.database
    assert database is not None

    def cut_and_closed(_conn: Any, _s: Statement, _v: Mapping[str, Any]) -> None:
        with postgres.admin() as conn:
            conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        postgres.terminate_all(database)

    before, head = env.counts(), env.audit.head()
    held = inject(env.ca, cut_and_closed)
    try:
        with pytest.raises(OperationalError):
            env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
        assert len(held.sent) == 1
    finally:
        with postgres.admin() as conn:
            conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert env.counts() == before and env.audit.head() == head
    assert store_of(env.ca)._tip.head == head  # noqa: SLF001
    issued = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    issued_once(env, issued.record.serial)
    assert env.counts() == (before[0] + 1, before[1] + 1)


def test_an_error_that_is_not_a_cut_is_raised_without_a_retry(
        env: CAEnv, person: Person) -> None:
    """A taken serial: the statement fails on a live connection, which stays held."""
    warm(env, person)
    first = env.ca.issue_from_csr(person, "user-auth", make_csr()[0]).record
    held = inject(env.ca, lambda _c, _s, _v: None)
    before, head = env.counts(), env.audit.head()
    with pytest.raises(IntegrityError):
        env.ca.store.add_certificate(dataclasses.replace(first, der=b"another"), AuditEntry(
            "test", "cert.issue", f"cert:{first.serial}", {}))
    assert env.counts() == before and env.audit.head() == head
    assert len(held.sent) == 1 and held.backend_pid == held.sent[0]  # no retry, still held
    issued = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    assert held.sent[-1] == held.sent[0]
    issued_once(env, issued.record.serial)
