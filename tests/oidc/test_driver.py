"""``idp.oidc.driver``: Core statements on SQLite's cursor write what
``Connection.execute`` writes, roll back what is not committed, and fail as
SQLAlchemy would. On a real SQLite file with the product's pragmas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from idp.oidc.driver import CoreTransaction, DriverStatement, DriverTransaction
from idp.oidc.tables import grants, oauth_clients, tokens
from idp.oidc.tokens import _INSERT_REFRESH, _REFRESH_COLUMNS, _ROTATE
from idp.runtime.db import make_engine, upgrade

ROW = {"token_id": "t1", "kind": "refresh", "family": "f" * 32, "client_id": "app",
       "scope": "openid", "issued_at": 100, "expires_at": 200}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'govtrust.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(grants).values(
            family="f" * 32, client_id="app", subject="zhang", scope="openid", claims="{}",
            created_at=1))
    yield engine
    engine.dispose()


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(tokens).order_by(tokens.c.token_id))]


def test_a_column_that_needs_a_bind_processor_is_refused() -> None:
    with pytest.raises(TypeError, match="created_at"):
        DriverStatement(insert(oauth_clients), ["client_id", "created_at"])


def test_driver_and_core_write_the_same_rows(engine: Engine, tmp_path: Path) -> None:
    with DriverTransaction(engine) as txn:
        assert txn.run(DriverStatement(_INSERT_REFRESH, _REFRESH_COLUMNS), ROW) == 1
        row = txn.first(DriverStatement(_ROTATE), {"b_token_id": "t1", "b_client_id": "app",
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
    rotate = DriverStatement(_ROTATE)
    values = {"b_token_id": "t1", "b_client_id": "app", "b_now": 150}
    with DriverTransaction(engine) as txn:
        txn.run(DriverStatement(_INSERT_REFRESH, _REFRESH_COLUMNS), ROW)
        txn.commit()
    for expected in (True, False):
        with DriverTransaction(engine) as txn:
            assert (txn.first(rotate, values) is not None) is expected
            txn.commit()


def test_leaving_without_commit_rolls_back(engine: Engine) -> None:
    with DriverTransaction(engine) as txn:
        txn.run(DriverStatement(_INSERT_REFRESH, _REFRESH_COLUMNS), ROW)
    assert _rows(engine) == []
    with pytest.raises(RuntimeError), DriverTransaction(engine) as txn:
        txn.run(DriverStatement(_INSERT_REFRESH, _REFRESH_COLUMNS), ROW)
        raise RuntimeError
    assert _rows(engine) == []


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(engine: Engine) -> None:
    statement = DriverStatement(_INSERT_REFRESH, _REFRESH_COLUMNS)
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
