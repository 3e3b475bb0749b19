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
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Column, Engine, Float, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select

from pki.held_connection import HeldConnections, Statement

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

    On PostgreSQL with psycopg it runs prepared, in autocommit, on a connection
    held out of the pool and never pinged (``pki.held_connection.HeldConnections``,
    shared by every hot read and the refresh rotation of the database in this
    process, one per thread reading at once): one round trip, where a checkout
    took a ping first (and, in a transaction, a ``BEGIN`` and a ``ROLLBACK``). A
    read writes nothing, so a held connection found broken (a failover, a
    restarted server) is simply read again once on a fresh connection from the
    pool, which pings it; if that fails too, the error is SQLAlchemy's
    ``OperationalError`` (a 503). Any other driver error is raised as
    ``Connection.execute`` raises it. Elsewhere (SQLite in memory) it runs through
    the engine in autocommit.

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
        self._held: tuple[HeldConnections, Statement] | None = None
        if engine.dialect.driver == "psycopg":
            self._held = (HeldConnections.of(engine), Statement(statement, engine))
        self._row = namedtuple("_Row", statement.selected_columns.keys())  # type: ignore[misc]
        self._local = threading.local()

    def all(self, params: Mapping[str, Any]) -> list[Any]:
        """The rows, each with the statement's column names as attributes."""
        if self._path is not None:
            cursor = self._connection().execute(self._sql,
                                                [params[k] for k in self._positions])
            return [self._row(*r) for r in cursor.fetchall()]
        if self._held is not None:
            held, statement = self._held
            return [self._row(*r) for r in held.rows(statement, params)]
        with self._engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            return list(conn.execute(self._statement, dict(params)).all())

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
