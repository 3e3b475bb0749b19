"""A pooled PostgreSQL connection is pinged on checkout only after sitting idle
(``idp.runtime.db.ping_when_idle``): against a real server whose backends are
terminated under the pool, as a restart or a failover does."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from idp.runtime import db
from tests.fixtures.postgres import PostgresCluster


def pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(postgres: PostgresCluster, backend: int) -> None:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (backend,))


@pytest.fixture
def engine(postgres: PostgresCluster) -> Engine:
    return db.make_engine(postgres.create_database(), pool_size=1, max_overflow=0)


def test_an_idle_connection_that_died_is_replaced_before_use(
        engine: Engine, postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    first = pid(engine)
    terminate(postgres, first)
    time.sleep(0.2)
    # Idle for longer than the threshold (shortened here: no timed test).
    monkeypatch.setattr(time, "monotonic", lambda: 10**9)
    assert pid(engine) != first  # pinged, found dead, replaced: no error reached the caller
    engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(
        engine: Engine, postgres: PostgresCluster) -> None:
    first = pid(engine)
    terminate(postgres, first)
    time.sleep(0.2)
    # Not pinged: the statement meets the dead connection and fails as a disconnect,
    # as it would had the server gone just after a ping ...
    with pytest.raises(OperationalError) as caught:
        pid(engine)
    assert caught.value.connection_invalidated
    # ... and the pool is renewed: the next use works.
    assert pid(engine) != first
    engine.dispose()


def test_sqlite_engines_are_not_pinged(tmp_path: object) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/x.db")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert not engine.pool._pre_ping  # noqa: SLF001
    engine.dispose()
