"""Core statements run on the database driver's own cursor, for the token endpoint's
writes.

A refresh grant rotates its token in one write transaction of a few small
statements. Through ``Connection.execute`` each costs SQLAlchemy's work around it
(connection and transaction objects, cache look-up, parameter processing, result
set-up): on SQLite several times SQLite's own, all of it while SQLite's single write
lock is held, which the other worker processes wait on; on PostgreSQL about 100 µs
of the node's CPU per statement (a rotation took 527 µs of CPU through it, 229 µs
here with one statement fewer: ``scripts/bench/rotation.py``). Here each statement
is still SQLAlchemy Core, compiled once for the engine's dialect (SQLite with named
parameters), and run on a pooled connection's own cursor, so it writes exactly the
rows ``Connection.execute`` would. Only the columns of ``idp.oidc.tables`` that need no
bind or result processing (integers and strings) may go through it; a statement
with any other column type is refused when it is built.

The same pattern as issuance's ``pki.store`` on SQLite (whose statements carry dates
and so keep their bind processors).
"""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Engine, Integer, String
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from idp.login.tables import raw_connection

_NAMED = pysqlite.dialect(paramstyle="named")


def driver_dialect(engine: Engine) -> Dialect:
    """What ``DriverStatement``s for ``engine`` are compiled for: SQLite's driver
    with named parameters (its own ``qmark`` would need them in order), any other
    the engine's own (psycopg: ``%(name)s``)."""
    return _NAMED if engine.dialect.name == "sqlite" else engine.dialect


class DriverStatement:
    """A Core statement compiled once for a driver, its literals bound already."""

    def __init__(self, statement: ClauseElement, dialect: Dialect,
                 columns: list[str] | None = None) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect,
                                                       column_keys=columns))
        for bind in compiled.binds.values():
            if not isinstance(bind.type, Integer | String):
                raise TypeError(f"{bind.key}: {bind.type!r} needs a bind processor")
        self.sql = compiled.string
        self.literals = {name: bind.value for name, bind in compiled.binds.items()
                         if not bind.required and bind.callable is None}
        self._row: Any = None  # the result's named tuple, made at the first result

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.literals, **values}

    def row(self, cursor: Any, values: tuple[Any, ...] | None) -> Any:
        """``values`` as a row with attribute access, like ``Result.first()``."""
        if values is None:
            return None
        if self._row is None:
            self._row = namedtuple("Row", [d[0] for d in cursor.description])  # type: ignore[misc]
        return self._row(*values)


class DriverTransaction:
    """One transaction on a pooled connection's cursor: ``first`` and ``run`` take
    ``DriverStatement``s; leaving without ``commit`` rolls back. A driver error is
    raised as ``Connection.execute`` would raise it (``DBAPIError`` subclasses), and
    a connection the error shows is lost is invalidated, not put back in the pool.
    The driver begins the transaction at the first statement (pysqlite's and
    psycopg's implicit ``BEGIN``), so on SQLite a transaction that starts with an
    UPDATE takes the write lock first, as through SQLAlchemy. The pool pings a
    PostgreSQL connection at checkout, as for ``Connection.execute``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._raw: Any = None
        self._cursor: Any = None
        self._ended = False

    def __enter__(self) -> DriverTransaction:
        self._raw = raw_connection(self._engine)  # from the pool, with its pragmas
        self._cursor = self._raw.cursor()
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        try:
            if self._raw.is_valid:  # else closed with its connection
                self._cursor.close()
                if not self._ended:  # an early return or an error
                    self.rollback()
        finally:
            self._raw.close()

    def _wrap(self, exc: Exception) -> Exception:
        # As Connection.execute would raise it (OperationalError: locked, disk full,
        # the server gone...); a lost connection is dropped from the pool as it would.
        dialect = self._engine.dialect
        lost = dialect.is_disconnect(cast(Any, exc), self._raw.driver_connection,
                                     self._cursor)
        if lost:
            self._raw.invalidate(exc)
            self._ended = True
        return DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                   connection_invalidated=lost, dialect=dialect)

    def first(self, statement: DriverStatement, values: Mapping[str, Any]) -> Any:
        error = self._engine.dialect.loaded_dbapi.Error
        try:
            # Every row, so the statement is done (an UPDATE ... RETURNING stepped
            # once would still be running at the commit).
            self._cursor.execute(statement.sql, statement.parameters(values))
            rows = self._cursor.fetchall()
        except error as exc:
            raise self._wrap(exc) from exc
        return statement.row(self._cursor, rows[0] if rows else None)

    def run(self, statement: DriverStatement, values: Mapping[str, Any]) -> int:
        error = self._engine.dialect.loaded_dbapi.Error
        try:
            self._cursor.execute(statement.sql, statement.parameters(values))
            return int(self._cursor.rowcount)
        except error as exc:
            raise self._wrap(exc) from exc

    def commit(self) -> None:
        error = self._engine.dialect.loaded_dbapi.Error
        self._ended = True
        try:
            self._raw.commit()
        except error as exc:
            raise self._wrap(exc) from exc

    def rollback(self) -> None:
        self._ended = True
        # A rollback that fails too leaves the pool to discard the connection.
        with contextlib.suppress(self._engine.dialect.loaded_dbapi.Error):
            self._raw.rollback()


class CoreTransaction:
    """The same interface on a SQLAlchemy ``Connection`` (any dialect), taking the
    Core statements themselves: SQLite in memory (tests and tools), where no lock
    is waited for and no round trip saved."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None

    def __enter__(self) -> CoreTransaction:
        self._conn = self._engine.connect()
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self._conn.close()  # rolls back what was not committed

    def first(self, statement: Any, values: Mapping[str, Any]) -> Any:
        return self._conn.execute(statement, dict(values)).first()

    def run(self, statement: Any, values: Mapping[str, Any]) -> int:
        return int(self._conn.execute(statement, dict(values)).rowcount)

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        self._conn.rollback()
