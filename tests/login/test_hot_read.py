"""``HotRead``, the reads on every token request, on a real SQLite file (its own
sqlite3 connection per thread) and a real PostgreSQL (held connections, never
pinged): each read sees what another connection committed after the read before
it on the same thread, so a revocation or a counted failure is seen at once. On
PostgreSQL the reads take nothing from the pool once a thread has its held
connection, leave no transaction open, fail on a hostile key as through
SQLAlchemy; a connection cut between two reads is read again on a fresh one, and a
connection that cannot be had is a failover fault."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, delete, event, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import Executable

from idp.login.tables import HotRead, throttle_windows
from idp.runtime.db_faults import is_failover_fault
from tests.fixtures.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

_ONE = select(throttle_windows.c.key, throttle_windows.c.count.label("failures")).where(
    throttle_windows.c.key == bindparam("key"))
_SOME = select(throttle_windows.c.key, throttle_windows.c.count).where(
    throttle_windows.c.key.in_([bindparam("a"), bindparam("b")])).order_by(
    throttle_windows.c.key)


def _write(engine: Engine, statement: Executable) -> None:
    with engine.begin() as conn:
        conn.execute(statement)


def test_a_read_sees_each_later_commit(migrated_engine: Engine) -> None:
    read = HotRead(migrated_engine, _ONE)
    assert read.all({"key": "k"}) == []
    _write(migrated_engine, insert(throttle_windows).values(key="k", window=1, count=1))
    assert [(r.key, r.failures) for r in read.all({"key": "k"})] == [("k", 1)]
    _write(migrated_engine, update(throttle_windows).values(count=2))
    assert read.all({"key": "k"})[0].failures == 2
    _write(migrated_engine, delete(throttle_windows))
    assert read.all({"key": "k"}) == []


def test_several_rows_and_parameters_in_place(migrated_engine: Engine) -> None:
    _write(migrated_engine, insert(throttle_windows).values(
        [{"key": k, "window": 1, "count": n} for k, n in (("a", 1), ("b", 2), ("c", 3))]))
    read = HotRead(migrated_engine, _SOME)
    assert [(r.key, r.count) for r in read.all({"a": "c", "b": "a"})] == [("a", 1), ("c", 3)]


def test_each_thread_reads_what_is_committed(migrated_engine: Engine) -> None:
    read = HotRead(migrated_engine, _ONE)
    assert read.all({"key": "t"}) == []  # this thread's connection, read once
    seen: list[int] = []

    def other() -> None:
        seen.extend(r.failures for r in read.all({"key": "t"}))

    _write(migrated_engine, insert(throttle_windows).values(key="t", window=1, count=7))
    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert seen == [7]
    assert read.all({"key": "t"})[0].failures == 7


def _counting_checkouts(engine: Engine) -> list[int]:
    checkouts: list[int] = []

    def count(*_: Any) -> None:
        checkouts.append(1)

    event.listen(engine, "checkout", count)
    return checkouts


def test_reads_take_nothing_from_the_pool_and_see_each_commit(
        migrated_engine: Engine) -> None:
    """Once this thread holds its connection (PostgreSQL) or has its sqlite3 one
    (a SQLite file), reads of any statement check nothing out of the pool; only
    the writes do, and each read sees the write before it."""
    read, other = HotRead(migrated_engine, _ONE), HotRead(migrated_engine, _SOME)
    assert read.all({"key": "k"}) == []  # the held connection is taken here
    checkouts = _counting_checkouts(migrated_engine)
    assert read.all({"key": "k"}) == []
    _write(migrated_engine, insert(throttle_windows).values(key="k", window=1, count=1))
    assert [r.failures for r in read.all({"key": "k"})] == [1]
    _write(migrated_engine, update(throttle_windows).values(count=2))
    assert [r.count for r in other.all({"a": "k", "b": "z"})] == [2]
    assert read.all({"key": "k"})[0].failures == 2
    assert len(checkouts) == 2  # the two writes


# The tests below take ``migrated_pg_engine``: the paths they test exist only
# on PostgreSQL (a SQLite file's reads use the thread's own connection, no pool).


def test_reads_at_once_on_two_threads_use_two_connections(
        migrated_pg_engine: Engine) -> None:
    """A worker's threads read at the same moment on connections of their own (no
    thread waits out another's round trip), and the connections are the process's
    shared set: another statement's reads reuse them. The first read waits on the
    server (an advisory lock this test holds) while the second is made."""
    blocked = HotRead(migrated_pg_engine, select(
        func.pg_backend_pid().label("pid"),
        func.pg_advisory_xact_lock_shared(4242).label("locked")))
    pids: list[int] = []
    with migrated_pg_engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(4242)"))
        first = threading.Thread(target=lambda: pids.append(int(blocked.all({})[0].pid)))
        first.start()
        waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                       "AND NOT granted")
        while not holder.execute(waiting).scalar_one():  # the first read is on the server
            threading.Event().wait(0.01)
        second = int(HotRead(migrated_pg_engine, _PID).all({})[0].pid)
        holder.execute(text("SELECT pg_advisory_unlock(4242)"))
        holder.commit()
        first.join(60)
    assert len(pids) == 1 and pids[0] != second
    assert int(HotRead(migrated_pg_engine, _PID).all({})[0].pid) in (pids[0], second)


@pytest.mark.parametrize("key", ["nul\x00byte", "\x00", "x" * 400 + "\x00"])
def test_a_key_the_driver_refuses_fails_as_through_sqlalchemy(migrated_pg_engine: Engine,
                                                              key: str) -> None:
    """A hostile key (PostgreSQL text has no NUL): the error class SQLAlchemy's
    execute raises, not a failover fault, and the held connection reads on.
    (SQLite stores a NUL; its reads are not new here.)"""
    read = HotRead(migrated_pg_engine, _ONE)
    with pytest.raises(DBAPIError) as through_sqlalchemy, migrated_pg_engine.connect() as conn:
        conn.execute(_ONE, {"key": key})
    with pytest.raises(DBAPIError) as caught:
        read.all({"key": key})
    assert not is_failover_fault(caught.value)  # a 500 as before, not a 503
    assert type(caught.value) is type(through_sqlalchemy.value)
    assert read.all({"key": "k"}) == []


def test_a_read_that_ends_its_backend_every_time_is_a_failover_fault(
        migrated_pg_engine: Engine) -> None:
    """The backend ends during the read (here it ends itself, as in a failover),
    and again on the fresh connection it is read again on: ``OperationalError``
    with ``connection_invalidated``, a failover fault (503); the next read gets a
    new connection."""
    suicide = HotRead(migrated_pg_engine, select(
        func.pg_terminate_backend(func.pg_backend_pid()).label("ended")))
    with pytest.raises(OperationalError) as caught:
        suicide.all({})
    assert caught.value.connection_invalidated and is_failover_fault(caught.value)
    assert HotRead(migrated_pg_engine, _ONE).all({"key": "k"}) == []


_PID = select(func.pg_backend_pid().label("pid"))


def _state_of(engine: Engine, pid: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :pid"),
                                {"pid": pid}).scalar_one())


def test_reads_on_postgresql_leave_no_transaction_open(migrated_pg_engine: Engine) -> None:
    # Each read is its own statement in autocommit: no snapshot held into the next
    # read, no BEGIN or ROLLBACK round trip.
    read, pid = HotRead(migrated_pg_engine, _ONE), HotRead(migrated_pg_engine, _PID)
    read.all({"key": "k"})
    backend = int(pid.all({})[0].pid)
    assert _state_of(migrated_pg_engine, backend) == "idle"


def test_a_connection_cut_between_two_reads_is_read_again_on_a_fresh_one(
        migrated_pg_engine: Engine) -> None:
    # A failover cuts the held connection while it sits idle: the next read finds
    # it broken and runs again, once, on a fresh (pinged) connection from the pool,
    # which sees what was committed meanwhile. A read writes nothing: running it
    # again cannot do anything twice.
    read, pid = HotRead(migrated_pg_engine, _ONE), HotRead(migrated_pg_engine, _PID)
    assert read.all({"key": "k"}) == []
    backend = int(pid.all({})[0].pid)
    with migrated_pg_engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        conn.commit()
    _write(migrated_pg_engine, insert(throttle_windows).values(key="k", window=1, count=3))
    assert [r.failures for r in read.all({"key": "k"})] == [3]
    assert int(pid.all({})[0].pid) != backend


def test_no_server_to_check_out_from_is_a_failover_fault_not_the_drivers_error(
        postgres: PostgresCluster) -> None:
    """A switchover's moment with no primary (every host refuses, or answers
    "session is read-only"): getting a connection fails. Each path that checks out
    a DBAPI connection itself (the hot reads, the refresh rotation's driver
    transaction) raises SQLAlchemy's ``OperationalError``, which the edge answers
    503, never the driver's own error, a 500 (seen in tests/cluster/test_failover.py)."""
    from idp.oidc.driver import DriverTransaction
    from idp.runtime.db import make_engine
    from tests.fixtures.postgres import free_port

    url = postgres.create_database()
    engine = make_engine(url.replace(f":{postgres.port}/", f":{free_port()}/"))
    try:
        read = HotRead(engine, _ONE)
        for attempt in (lambda: read.all({"key": "k"}),
                        lambda: DriverTransaction(engine).__enter__()):
            with pytest.raises(OperationalError) as caught:
                attempt()
            assert is_failover_fault(caught.value)
    finally:
        engine.dispose()
