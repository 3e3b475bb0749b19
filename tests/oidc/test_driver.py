"""``idp.oidc.driver``: Core statements on the driver's cursor write what
``Connection.execute`` writes, roll back what is not committed, and fail as
SQLAlchemy would, on a real SQLite file with the product's pragmas and on a real
PostgreSQL (a connection the server dropped is not put back in the pool)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from idp.oidc.driver import CoreTransaction, DriverStatement, DriverTransaction, driver_dialect
from idp.oidc.tables import grants, oauth_clients, tokens
from idp.oidc.tokens import _INSERT_REFRESH, _REFRESH_COLUMNS, _ROTATE, _ROTATE_WITH_GRANT
from idp.runtime.db import make_engine, upgrade
from idp.runtime.db_faults import is_failover_fault
from tests.fixtures.idp import seed_public_app_grant

pytestmark = pytest.mark.postgres

ROW = {"token_id": "t1", "kind": "refresh", "family": "f" * 32, "client_id": "app",
       "scope": "openid", "issued_at": 100, "expires_at": 200}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    yield from _seeded(database_url)


@pytest.fixture
def pg_engine(postgresql_url: str) -> Iterator[Engine]:
    """``engine`` on PostgreSQL only, for the paths that exist only there."""
    yield from _seeded(postgresql_url)


def _seeded(url: str) -> Iterator[Engine]:
    """A migrated database with one public client and one grant of its."""
    engine = make_engine(url)
    upgrade(engine)
    seed_public_app_grant(engine, "f" * 32)
    yield engine
    engine.dispose()


def _insert(engine: Engine) -> DriverStatement:
    return DriverStatement(_INSERT_REFRESH, driver_dialect(engine), _REFRESH_COLUMNS)


def _rotate(engine: Engine) -> DriverStatement:
    return DriverStatement(_ROTATE, driver_dialect(engine))


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(tokens).order_by(tokens.c.token_id))]


def test_a_column_that_needs_a_bind_processor_is_refused(engine: Engine) -> None:
    with pytest.raises(TypeError, match="created_at"):
        DriverStatement(insert(oauth_clients), driver_dialect(engine),
                        ["client_id", "created_at"])


def test_driver_and_core_write_the_same_rows(engine: Engine) -> None:
    with DriverTransaction(engine) as txn:
        assert txn.run(_insert(engine), ROW) == 1
        row = txn.first(_rotate(engine), {"b_token_id": "t1", "b_client_id": "app",
                                          "b_now": 150})
        txn.commit()
    assert (row.family, row.scope, row.issued_at, row.expires_at) == ("f" * 32, "openid",
                                                                       100, 200)
    driver_rows = _rows(engine)
    with engine.begin() as conn:
        conn.execute(tokens.delete())
    with CoreTransaction(engine) as core:
        core.run(_INSERT_REFRESH, ROW)
        core.first(_ROTATE, {"b_token_id": "t1", "b_client_id": "app", "b_now": 150})
        core.commit()
    assert driver_rows == _rows(engine) and driver_rows[0][-2] == 150  # rotated_at


def test_the_compare_and_set_matches_once(engine: Engine) -> None:
    rotate = _rotate(engine)
    values = {"b_token_id": "t1", "b_client_id": "app", "b_now": 150}
    with DriverTransaction(engine) as txn:
        txn.run(_insert(engine), ROW)
        txn.commit()
    for expected in (True, False):
        with DriverTransaction(engine) as txn:
            assert (txn.first(rotate, values) is not None) is expected
            txn.commit()


def test_leaving_without_commit_rolls_back(engine: Engine) -> None:
    with DriverTransaction(engine) as txn:
        txn.run(_insert(engine), ROW)
    assert _rows(engine) == []
    with pytest.raises(RuntimeError), DriverTransaction(engine) as txn:
        txn.run(_insert(engine), ROW)
        raise RuntimeError
    assert _rows(engine) == []


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(engine: Engine) -> None:
    statement = _insert(engine)
    with DriverTransaction(engine) as txn:
        txn.run(statement, ROW)
        txn.commit()
    with pytest.raises(IntegrityError), DriverTransaction(engine) as txn:
        txn.run(statement, ROW)  # the same token_id again
    with pytest.raises(IntegrityError), DriverTransaction(engine) as txn:
        txn.run(statement, {**ROW, "token_id": "t2", "scope": None})  # NOT NULL
        txn.commit()
    with DriverTransaction(engine) as txn:  # the pooled connection is fine afterwards
        txn.run(statement, {**ROW, "token_id": "t3"})
        txn.commit()
    assert [r[0] for r in _rows(engine)] == ["t1", "t3"]


def test_postgresql_rotation_returns_the_grant_while_it_stands(pg_engine: Engine) -> None:
    """The compare-and-set that reads the grant (PostgreSQL's ``UPDATE ... FROM``):
    the token's and the grant's columns in one row; an ended grant matches nothing
    and leaves the token unrotated."""
    rotate = DriverStatement(_ROTATE_WITH_GRANT, driver_dialect(pg_engine))
    values = {"b_token_id": "t1", "b_client_id": "app", "b_now": 150}
    with DriverTransaction(pg_engine) as txn:
        txn.run(_insert(pg_engine), ROW)
        txn.commit()
    with pg_engine.begin() as conn:
        conn.execute(grants.update().values(revoked_at=140))
    with DriverTransaction(pg_engine) as txn:
        assert txn.first(rotate, values) is None
        txn.commit()
    assert _rows(pg_engine)[0][-2] is None  # rotated_at
    with pg_engine.begin() as conn:
        conn.execute(grants.update().values(revoked_at=None))
    with DriverTransaction(pg_engine) as txn:
        row = txn.first(rotate, values)
        txn.commit()
    assert (row.family, row.scope, row.issued_at, row.expires_at, row.revoked_at,
            row.subject, row.claims) == ("f" * 32, "openid", 100, 200, None, "zhang", "{}")
    assert _rows(pg_engine)[0][-2] == 150


def test_a_connection_the_server_dropped_leaves_the_pool(pg_engine: Engine) -> None:
    """A PostgreSQL backend ended under a transaction (a failover, a restart): the
    error is SQLAlchemy's ``OperationalError``, answered 503 like any other, and the
    next transaction gets a working connection."""
    with DriverTransaction(pg_engine) as txn:
        txn.run(_insert(pg_engine), ROW)
        txn.commit()
    with pytest.raises(OperationalError) as caught, DriverTransaction(pg_engine) as txn:
        pid = txn.first(DriverStatement(select(text("pg_backend_pid()")),
                                        driver_dialect(pg_engine)), {})[0]
        with pg_engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        txn.first(_rotate(pg_engine), {"b_token_id": "t1", "b_client_id": "app", "b_now": 150})
    assert caught.value.connection_invalidated and is_failover_fault(caught.value)
    with DriverTransaction(pg_engine) as txn:
        assert txn.first(_rotate(pg_engine), {"b_token_id": "t1", "b_client_id": "app",
                                           "b_now": 150}) is not None
        txn.commit()
