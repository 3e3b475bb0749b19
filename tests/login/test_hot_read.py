"""``HotRead``, the reads on every token request, on a real SQLite file (its own
sqlite3 connection per thread) and a real PostgreSQL (the pool): each read sees
what another connection committed after the read before it on the same thread,
so a revocation or a counted failure is seen at once. Inside ``one_checkout`` the
reads share one pooled connection (one ping) and still each see the latest commit."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, delete, event, func, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable

from idp.login.tables import HotRead, one_checkout, throttle_windows

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


_PID = select(func.pg_backend_pid().label("pid"))


def _postgres_only(engine: Engine) -> None:
    if engine.url.get_backend_name() == "sqlite":
        pytest.skip("reads on a SQLite file use no pooled connection")


def _state_of(engine: Engine, pid: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :pid"),
                                {"pid": pid}).scalar_one())


def test_reads_on_postgresql_leave_no_transaction_open(migrated_engine: Engine) -> None:
    # Each read is its own statement in autocommit: no snapshot held into the next
    # read, no BEGIN or ROLLBACK round trip.
    _postgres_only(migrated_engine)
    read, pid = HotRead(migrated_engine, _ONE), HotRead(migrated_engine, _PID)
    with one_checkout():
        read.all({"key": "k"})
        backend = int(pid.all({})[0].pid)
        assert _state_of(migrated_engine, backend) == "idle"


def test_a_connection_cut_between_two_reads_is_sqlalchemys_error(
        migrated_engine: Engine) -> None:
    # A failover cuts the connection: the next read raises SQLAlchemy's
    # OperationalError (answered 503 by the web edge), with the connection
    # invalidated, and the read after it works on a new connection.
    _postgres_only(migrated_engine)
    read, pid = HotRead(migrated_engine, _ONE), HotRead(migrated_engine, _PID)
    with pytest.raises(OperationalError) as caught, one_checkout():
        assert read.all({"key": "k"}) == []
        backend = int(pid.all({})[0].pid)
        with migrated_engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        read.all({"key": "k"})
    assert caught.value.connection_invalidated
    assert read.all({"key": "k"}) == []
    assert int(pid.all({})[0].pid) != backend
