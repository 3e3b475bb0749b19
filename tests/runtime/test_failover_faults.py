"""Which database errors a failover explains (answered 503) and which it does not."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from idp.runtime.db import make_engine
from idp.runtime.db_faults import describe, is_failover_fault


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
