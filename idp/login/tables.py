"""The login tables (SQLAlchemy Core): SSO sessions, the apps each session reached,
the throttle's failure windows, and the challenges of signature login.

They share one ``MetaData`` with ``idp.oidc.tables`` (the provider's codes and
tokens refer to sessions by ``sid``). Session ids (the cookie values) are
stored only as SHA-256 digests: they are random and 256 bits long, so an unkeyed
digest suffices (RFC 6819 section 5.1.4.1.3).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Column, Engine, Float, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Connection, CursorResult, Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select

metadata = MetaData()


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched (the basis of every compare-and-set here)."""
    return int(cast("CursorResult[Any]", result).rowcount)


class HotRead:
    """A read made on every token, introspection and revocation request (the
    throttle's windows, an access token's revocation status), built once.

    On a SQLite file it runs on a plain ``sqlite3`` connection of the calling thread
    (the way ``pki.store`` reads its status generation): SQLite answers these
    primary-key reads in about 10 µs, and SQLAlchemy's checkout, execution and
    result set-up around them cost 150–250 µs more, most of a read and a fifth of
    an introspection.

    On PostgreSQL (or SQLite in memory) it runs through the engine's pool, pinged
    at checkout, in autocommit: a transaction would add a ``BEGIN`` and a
    ``ROLLBACK`` round trip to the ping and the query. With psycopg the statement
    runs prepared on the driver's connection itself: inside ``one_checkout()`` (an
    introspection: the reads of one request share one checkout, so one ping) on the
    held connection (``_on_psycopg``); outside it on a pooled connection switched
    to autocommit by hand and back before the pool gets it (``_driver_read``). A
    driver error is raised as ``Connection.execute`` raises it, and a lost
    connection is dropped from the pool (a failover is a 503).

    Every read sees what was committed before it began, on any connection, process
    or node: outside a transaction (the connection is in autocommit mode) each
    statement is its own read transaction, and the rows are fetched to the end, so
    the statement is reset and holds no snapshot into the next read. The columns
    are plain strings and integers, which need none of SQLAlchemy's result
    processing.
    """

    def __init__(self, engine: Engine, statement: Select[Any]) -> None:
        self._engine = engine
        self._statement = statement
        compiled = statement.compile(dialect=engine.dialect)
        url = engine.url
        database = url.database if url.get_backend_name() == "sqlite" and not url.query else None
        self._path = database if database and database != ":memory:" else None
        self._sql = compiled.string
        self._positions = tuple(compiled.positiontup or ())
        self._names = tuple(compiled.params)
        self._psycopg = engine.dialect.driver == "psycopg"
        self._row = namedtuple("_Row", statement.selected_columns.keys())  # type: ignore[misc]
        self._local = threading.local()

    def all(self, params: Mapping[str, Any]) -> list[Any]:
        """The rows, each with the statement's column names as attributes."""
        if self._path is None:
            if self._psycopg and getattr(_scope, "held", None) is None:
                return self._driver_read(params)
            with _checkout(self._engine) as conn:
                if self._psycopg:
                    return self._on_psycopg(conn, params)
                return list(conn.execute(self._statement, dict(params)).all())
        cursor = self._connection().execute(self._sql, [params[k] for k in self._positions])
        return [self._row(*r) for r in cursor.fetchall()]

    def _driver_read(self, params: Mapping[str, Any]) -> list[Any]:
        """Outside ``one_checkout()``: the statement, prepared, on a pooled
        connection's psycopg connection switched to autocommit by hand (SQLAlchemy's
        ``AUTOCOMMIT`` switch cost 70 of a read's 190 µs of CPU) and back before the
        pool gets it again."""
        error = self._engine.dialect.loaded_dbapi.Error
        raw = raw_connection(self._engine)  # pinged at checkout
        dbapi: Any = raw.driver_connection
        try:
            try:
                dbapi.autocommit = True
            except error as exc:
                raise self._wrapped(exc, dbapi, raw.invalidate) from exc
            rows = self._prepared(dbapi, params, raw.invalidate)
        finally:
            # Never back to the pool in autocommit: its next user's transaction
            # would not be one. A connection that cannot be switched back is dropped.
            if raw.is_valid:
                try:
                    dbapi.autocommit = False
                except error as exc:
                    raw.invalidate(exc)
            raw.close()
        return [self._row(*r) for r in rows]

    def _on_psycopg(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """The statement, prepared, on the checked-out connection's psycopg connection
        (in autocommit: ``_checkout`` set it): SQLAlchemy's execution context around
        it cost about as much CPU as the query. A driver error is raised as
        SQLAlchemy's (``DBAPIError.instance``: ``OperationalError`` for a cut
        connection, answered 503), and a disconnect invalidates the connection, as
        ``Connection.execute`` would, so the pool does not hand it out again."""
        rows = self._prepared(conn.connection.driver_connection, params, conn.invalidate)
        return [self._row(*r) for r in rows]

    def _prepared(self, dbapi: Any, params: Mapping[str, Any],
                  invalidate: Callable[[BaseException], None]) -> list[Any]:
        """The statement, prepared, on psycopg connection ``dbapi``; its error as
        SQLAlchemy's, the connection invalidated when the error shows it lost."""
        try:
            values = {name: params[name] for name in self._names}
            return list(dbapi.execute(self._sql, values, prepare=True).fetchall())
        except self._engine.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(exc, dbapi, invalidate) from exc

    def _wrapped(self, exc: Exception, dbapi: Any,
                 invalidate: Callable[[BaseException], None]) -> Exception:
        dialect = self._engine.dialect
        lost = dialect.is_disconnect(cast(Any, exc), dbapi, None)
        if lost:
            invalidate(exc)
        return DBAPIError.instance(self._sql, None, exc, dialect.loaded_dbapi.Error,
                                   connection_invalidated=lost, dialect=dialect)

    def _connection(self) -> sqlite3.Connection:
        # One per thread and process: a connection must not cross a fork or be shared
        # by two threads at once.
        held = getattr(self._local, "conn", None)
        if held is not None and held[0] == os.getpid():
            return cast(sqlite3.Connection, held[1])
        conn = sqlite3.connect(self._path or "", timeout=30, isolation_level=None,
                               check_same_thread=False)
        self._local.conn = (os.getpid(), conn)
        return conn


def raw_connection(engine: Engine) -> PoolProxiedConnection:
    """A pooled DBAPI connection, as ``engine.raw_connection()`` gives it, but a
    failure to get one (no server answers, a standby during a switchover: "session
    is read-only") raised as SQLAlchemy's error, as ``engine.connect()`` raises it:
    ``OperationalError``, which the web edge answers 503. ``raw_connection()``
    raises the driver's own error, which no handler knows: a 500 in a failover."""
    dialect = engine.dialect
    try:
        return engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                  connection_invalidated=True, dialect=dialect) from exc


_scope = threading.local()  # .held: {id(engine): Connection} inside one_checkout()


@contextmanager
def one_checkout() -> Iterator[None]:
    """Within the block, this thread's ``HotRead``s through a pool (PostgreSQL)
    share one connection per engine, checked out and pinged at the first of them
    and returned at the end: the throttle read and the revocation read of one
    introspection cost one ping, not two. The pool's ping stays: a failover that
    cuts the connection between two reads of a request is an ``OperationalError``,
    answered 503 like any other (``idp.runtime.db_faults``)."""
    outer = getattr(_scope, "held", None)
    if outer is not None:  # nested: the outer block returns the connections
        yield
        return
    held: dict[int, Connection] = {}
    _scope.held = held
    try:
        yield
    finally:
        _scope.held = None
        for conn in held.values():
            conn.close()


@contextmanager
def _checkout(engine: Engine) -> Iterator[Connection]:
    held: dict[int, Connection] | None = getattr(_scope, "held", None)
    if held is None:
        with engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")
        return
    found = held.get(id(engine))
    if found is None or found.closed or found.invalidated:
        found = held[id(engine)] = engine.connect().execution_options(
            isolation_level="AUTOCOMMIT")
    yield found


sso_sessions = Table(
    "idp_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("sid", String(64), nullable=False, unique=True),
    Column("subject", String(64), nullable=False, index=True),  # entryUUID
    Column("uid", String(256), nullable=False),
    Column("claims", Text, nullable=False),  # JSON snapshot taken at login
    Column("auth_time", Integer, nullable=False),
    Column("acr", String(64), nullable=False),
    Column("amr", String(64), nullable=False),  # space-separated
    Column("expires_at", Integer, nullable=False),
    Column("ended_at", Integer, nullable=True),
    # JSON {"pwd": epoch, "swk": epoch}: when each method was last done (step-up)
    Column("method_times", Text, nullable=True),
    # Where the session started, shown to its owner (console: my sessions).
    Column("user_agent", String(256), nullable=True),
    Column("address", String(64), nullable=True),
    # When the session began (epoch seconds, to the microsecond: an enrolment in the
    # same second must still be after it); kept when the cookie rotates at a step-up,
    # so a factor enrolled after it is known as enrolled in this session.
    Column("created_at", Float, nullable=True),
    # The certificate the session last logged in with (lowercase hex), if any.
    Column("cert_serial", String(64), nullable=True),
)

session_clients = Table(
    "idp_session_clients",
    metadata,
    Column("sid", String(64), primary_key=True),
    Column("client_id", String(64), primary_key=True),
)

throttle_windows = Table(
    "idp_throttle",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("window", Integer, nullable=False),
    Column("count", Integer, nullable=False),
)

# Signature login (``idp.login.signature``): one row per challenge handed out. The
# nonce and the browser's binding cookie are stored as SHA-256 digests (both are
# random, 256 bits); ``used_at`` set by one compare-and-set UPDATE is what makes a
# nonce single-use across every worker and node sharing the database.
login_nonces = Table(
    "idp_login_nonces",
    metadata,
    Column("nonce_hash", String(64), primary_key=True),
    Column("binding_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Index("ix_idp_login_nonces_expires_at", "expires_at"),
)
