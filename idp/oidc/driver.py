"""Core statements run on the SQLite driver's cursor, for the token endpoint's writes.

A refresh grant rotates its token in one write transaction of three small
statements. Through ``Connection.execute`` each costs SQLAlchemy's work around it
(connection and transaction objects, cache look-up, parameter processing, result
set-up): several times SQLite's own, and all of it done while SQLite's single
write lock is held, which the other worker processes wait on. Here each statement
is still SQLAlchemy Core, compiled once for SQLite (with named parameters), and run
on a pooled connection's own cursor, so it writes exactly the rows
``Connection.execute`` would. Only the columns of ``idp.oidc.tables`` that need no
bind or result processing (integers and strings) may go through it; a statement
with any other column type is refused when it is built.

The same pattern as issuance's ``pki.store`` (whose statements carry dates and so
keep their bind processors); PostgreSQL keeps ``Connection.execute``.
"""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Engine, Integer, String
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_NAMED = pysqlite.dialect(paramstyle="named")


class DriverStatement:
    """A Core statement compiled once for SQLite, its literals bound already."""

    def __init__(self, statement: ClauseElement, columns: list[str] | None = None) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=_NAMED,
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
    """One transaction on a pooled SQLite connection's cursor: ``first`` and ``run``
    take ``DriverStatement``s; leaving without ``commit`` rolls back. A driver error
    is raised as ``Connection.execute`` would raise it (``DBAPIError`` subclasses).
    The driver begins the transaction at the first write statement (pysqlite's
    implicit ``BEGIN``), so a transaction that starts with an UPDATE takes SQLite's
    write lock first, as through SQLAlchemy."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._raw: Any = None
        self._cursor: Any = None

    def __enter__(self) -> DriverTransaction:
        self._raw = self._engine.raw_connection()  # from the pool, with its pragmas
        self._cursor = self._raw.cursor()
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        try:
            self._cursor.close()
            if self._raw.driver_connection.in_transaction:  # an early return or an error
                self.rollback()
        finally:
            self._raw.close()

    def _wrap(self, exc: Exception) -> Exception:
        # As Connection.execute would raise it (OperationalError: locked, disk full...).
        dialect = self._engine.dialect
        return DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                   dialect=dialect)

    def first(self, statement: DriverStatement, values: Mapping[str, Any]) -> Any:
        error = self._engine.dialect.loaded_dbapi.Error
        try:
            # Every row, so the statement is done (an UPDATE ... RETURNING stepped
            # once would still be running at the commit).
            rows = self._cursor.execute(statement.sql, statement.parameters(values)).fetchall()
        except error as exc:
            raise self._wrap(exc) from exc
        return statement.row(self._cursor, rows[0] if rows else None)

    def run(self, statement: DriverStatement, values: Mapping[str, Any]) -> int:
        error = self._engine.dialect.loaded_dbapi.Error
        try:
            return int(self._cursor.execute(statement.sql,
                                            statement.parameters(values)).rowcount)
        except error as exc:
            raise self._wrap(exc) from exc

    def commit(self) -> None:
        error = self._engine.dialect.loaded_dbapi.Error
        try:
            self._raw.commit()
        except error as exc:
            raise self._wrap(exc) from exc

    def rollback(self) -> None:
        # A rollback that fails too leaves the pool to discard the connection.
        with contextlib.suppress(self._engine.dialect.loaded_dbapi.Error):
            self._raw.rollback()


class CoreTransaction:
    """The same interface on a SQLAlchemy ``Connection`` (any dialect), taking the
    Core statements themselves: PostgreSQL's path, and SQLite's in memory."""

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
