"""``HotRead``, the reads on every token request, on a real SQLite file (its own
sqlite3 connection per thread) and a real PostgreSQL (the pool): each read sees
what another connection committed after the read before it on the same thread,
so a revocation or a counted failure is seen at once. Inside ``one_checkout`` the
reads share one pooled connection (one ping) and still each see the latest commit.
Outside it, on PostgreSQL, a read runs on psycopg's cursor in autocommit and gives
its connection back out of autocommit, whatever happened; a hostile key fails as
through SQLAlchemy, and a lost connection is a failover fault."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, delete, event, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import Executable

from idp.login.tables import HotRead, one_checkout, throttle_windows
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


def test_reads_in_one_checkout_share_a_connection_and_see_each_commit(
        migrated_engine: Engine) -> None:
    read, other = HotRead(migrated_engine, _ONE), HotRead(migrated_engine, _SOME)
    checkouts = _counting_checkouts(migrated_engine)
    with one_checkout():
        assert read.all({"key": "k"}) == []
        _write(migrated_engine, insert(throttle_windows).values(key="k", window=1, count=1))
        assert [r.failures for r in read.all({"key": "k"})] == [1]
        _write(migrated_engine, update(throttle_windows).values(count=2))
        assert [r.count for r in other.all({"a": "k", "b": "z"})] == [2]
        with one_checkout():  # nested: still the same connection
            assert read.all({"key": "k"})[0].failures == 2
    pooled = migrated_engine.url.get_backend_name() != "sqlite"
    # SQLite files read on their own sqlite3 connection: only the writes check out.
    assert len(checkouts) == (3 if pooled else 2)


def test_reads_outside_one_checkout_each_check_out(migrated_engine: Engine) -> None:
    read = HotRead(migrated_engine, _ONE)
    checkouts = _counting_checkouts(migrated_engine)
    with one_checkout():
        read.all({"key": "k"})
    read.all({"key": "k"})
    read.all({"key": "k"})
    pooled = migrated_engine.url.get_backend_name() != "sqlite"
    assert len(checkouts) == (3 if pooled else 0)


# The tests below take ``migrated_pg_engine``: the paths they test exist only
# on PostgreSQL (a SQLite file's reads use the thread's own connection, no pool).


def test_a_read_on_the_driver_leaves_its_connection_out_of_autocommit(
        migrated_pg_engine: Engine) -> None:
    """Outside ``one_checkout`` a PostgreSQL read switches the pooled connection to
    autocommit and back: the next transaction on it is one (rolled back, its
    insert is gone)."""
    read = HotRead(migrated_pg_engine, _ONE)
    migrated_pg_engine.pool.dispose()  # one pooled connection from here on
    assert read.all({"key": "k"}) == []
    assert migrated_pg_engine.pool.checkedin() == 1
    with migrated_pg_engine.connect() as conn:
        assert conn.connection.driver_connection.autocommit is False
        conn.execute(insert(throttle_windows).values(key="k", window=1, count=1))
        conn.rollback()
    assert read.all({"key": "k"}) == []


@pytest.mark.parametrize("key", ["nul\x00byte", "\x00", "x" * 400 + "\x00"])
def test_a_key_the_driver_refuses_fails_as_through_sqlalchemy(migrated_pg_engine: Engine,
                                                              key: str) -> None:
    """A hostile key (PostgreSQL text has no NUL): the same error class with and
    without ``one_checkout``, and the connection goes back out of autocommit.
    (SQLite stores a NUL; its reads are not new here.)"""
    read = HotRead(migrated_pg_engine, _ONE)
    errors: list[type[BaseException]] = []
    for shared in (False, True):
        with pytest.raises(DBAPIError) as caught:
            if shared:
                with one_checkout():
                    read.all({"key": key})
            else:
                read.all({"key": key})
        assert not is_failover_fault(caught.value)  # a 500 as before, not a 503
        errors.append(type(caught.value))
    assert errors[0] is errors[1]
    with migrated_pg_engine.connect() as conn:
        assert conn.connection.driver_connection.autocommit is False
    assert read.all({"key": "k"}) == []


def test_a_connection_lost_under_a_driver_read_leaves_the_pool(
        migrated_pg_engine: Engine) -> None:
    """The backend ends during the read (here it ends itself, as in a failover):
    ``OperationalError`` with ``connection_invalidated``, a failover fault (503),
    and the next read gets a new connection."""
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
    with one_checkout():
        read.all({"key": "k"})
        backend = int(pid.all({})[0].pid)
        assert _state_of(migrated_pg_engine, backend) == "idle"


def test_a_connection_cut_between_two_reads_is_sqlalchemys_error(
        migrated_pg_engine: Engine) -> None:
    # A failover cuts the connection: the next read raises SQLAlchemy's
    # OperationalError (answered 503 by the web edge), with the connection
    # invalidated, and the read after it works on a new connection.
    read, pid = HotRead(migrated_pg_engine, _ONE), HotRead(migrated_pg_engine, _PID)
    with pytest.raises(OperationalError) as caught, one_checkout():
        assert read.all({"key": "k"}) == []
        backend = int(pid.all({})[0].pid)
        with migrated_pg_engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        read.all({"key": "k"})
    assert caught.value.connection_invalidated
    assert read.all({"key": "k"}) == []
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
