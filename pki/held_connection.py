"""One autocommitted PostgreSQL statement at a time, on a connection held for it
and never pinged, with a retry that cannot write twice.

Issuance records a certificate and its audit record with one statement on
PostgreSQL (``pki.audit_store.insert_with_append``: a compare-and-set of the audit
head that both inserts select from). Through the engine that took two round
trips, because the engine pings every connection it hands out
(``idp.runtime.db``), and the ping waits on the server as long as the statement.
Here the statement runs on a connection this object keeps for itself, prepared
(psycopg ``prepare=True``: parsed and planned once per connection).

A kept connection may have died meanwhile: a failover, a restarted server, a
backend ended with ``pg_terminate_backend``. psycopg then finds it broken. Whether
the statement reached the server first cannot be told from the client: a backend
ended while the connection sat idle answers the next statement with the same
``AdminShutdown`` as a backend ended just after committing it. So the retry is
made safe instead of guessed. The statement must be a compare-and-set that can
match only once (the audit head it moves from never comes back). After a broken
connection it runs once more on a fresh connection from the engine (pinged); if
that matches nothing, ``landed`` -- a read in a later statement, so it sees
whatever an earlier run committed -- says whether the first run had committed
before its answer was lost. A row comes back only if this run wrote it or
``landed`` found it written: never a success that is not recorded, never a second
write. Anything else is raised as ``Connection.execute`` would raise it
(``DBAPIError`` subclasses; a lost connection is an ``OperationalError`` with
``connection_invalidated``), and the web edge answers it with 503.

``HeldConnection`` is one connection behind a lock: issuance is serialized anyway
(``pki.group_commit``). ``HeldConnections`` serves statements that come from
several threads at once and do not wait for each other (a worker's refresh
grants): each takes a ``HeldConnection`` no other thread is using, with the same
retry. Behind one lock, a thread waits out the others' round trips and commits
(the WAL flush, with it): four threads of one process rotated refresh tokens
2,100 times a second on one connection each against 800-1,200 on one shared
(PostgreSQL's WAL on disk; 4,100 against 2,400 on tmpfs). Through the whole
production stack on two shared cores, where the worker's CPU is the bound, the
two could not be told apart (0.46-0.56 of bare at 16 clients against 0.53-0.55).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

R = TypeVar("R")


class Statement:
    """A Core statement compiled once for the engine's dialect, its parameters
    processed by the types' bind processors: the rows are those
    ``Connection.execute`` would write."""

    def __init__(self, statement: ClauseElement, engine: Engine) -> None:
        dialect = engine.dialect
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = compiled.string
        # Per name in the SQL: a literal the statement holds (``id = 1``) or the
        # caller's value, and the type's bind processor.
        self._binds: list[tuple[str, str, bool, Any, Any]] = []
        for bind, name in compiled.bind_names.items():
            literal = not bind.required and bind.callable is None and bind.value is not None
            self._binds.append((name, bind.key, literal, bind.value,
                                bind.type.dialect_impl(dialect).bind_processor(dialect)))

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, key, literal, value, process in self._binds:
            if not literal:
                value = values[key]  # a KeyError names the value the caller forgot
            out[name] = value if process is None else process(value)
        return out


class HeldConnection:
    """A psycopg connection of ``engine``'s, kept out of its pool for statements
    that commit on their own (autocommit). One statement at a time; safe to share
    between threads, and a process that forks gets a connection of its own."""

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.driver != "psycopg":
            raise TypeError(f"{engine.dialect.name}+{engine.dialect.driver}: psycopg only")
        self._engine = engine
        self._lock = threading.Lock()
        # (process, the pool's proxy, the psycopg connection it proxied, a cursor
        # of it kept for the statements)
        self._held: tuple[int, PoolProxiedConnection, Any, Any] | None = None
        # A parent's connections, kept referenced and never closed in a child: a
        # close (or a collected one) would end the parent's session.
        self._inherited: list[tuple[int, PoolProxiedConnection, Any, Any]] = []
        # Closed with the engine's pool (the connection came from it).
        event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def first(self, statement: Statement, values: Mapping[str, Any], *,
              landed: Statement) -> tuple[Any, ...] | None:
        """The first row of ``statement``, run with ``values``, or None.

        ``statement`` must write at most once for given ``values`` however often it
        runs (a compare-and-set), and return a row when it writes; ``landed``, run
        with the same values, returns a row when that write is committed. On a
        broken connection both are tried on a fresh one, as the module says.
        """
        def again(cursor: Any) -> tuple[Any, ...] | None:
            row = self._run(cursor, statement, values)
            return row if row is not None else self._run(cursor, landed, values)

        return self._retried(lambda cursor: self._run(cursor, statement, values), again)

    def rows(self, statement: Statement, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of ``statement``, a read. It writes nothing, so on a broken
        connection it simply runs again, once, on a fresh one: no ``landed``."""
        def read(cursor: Any) -> list[tuple[Any, ...]]:
            return self._all(cursor, statement, values)

        return self._retried(read, read)

    def _retried(self, attempt: Callable[[Any], R], again: Callable[[Any], R]) -> R:
        """``attempt`` on the held connection's cursor; if that connection turns out
        broken, ``again`` once on a fresh one (from the pool: pinged, so alive).
        Errors as ``Connection.execute`` raises them."""
        dbapi_error = self._engine.dialect.loaded_dbapi.Error
        with self._lock:
            try:
                return attempt(self._connection())
            except dbapi_error as exc:
                if not self._drop_if_broken(exc):
                    raise self._wrap(exc, broken=False) from exc
                cut = exc
            try:
                return again(self._connection())
            except dbapi_error as exc:
                raise self._wrap(exc, broken=self._drop_if_broken(exc)) from cut

    @staticmethod
    def _run(cursor: Any, statement: Statement, values: Mapping[str, Any]
             ) -> tuple[Any, ...] | None:
        cursor.execute(statement.sql, statement.parameters(values), prepare=True)
        return cast("tuple[Any, ...] | None", cursor.fetchone())

    @staticmethod
    def _all(cursor: Any, statement: Statement, values: Mapping[str, Any]
             ) -> list[tuple[Any, ...]]:
        cursor.execute(statement.sql, statement.parameters(values), prepare=True)
        return cast("list[tuple[Any, ...]]", cursor.fetchall())

    def _connection(self) -> Any:
        """The held connection's cursor; a new connection's if none is held."""
        held = self._held
        if held is not None:
            if held[0] == os.getpid():
                return held[3]
            self._inherited.append(held)
            self._held = None
        # A checkout pings it (the engine's pool_pre_ping), and if the ping finds
        # it dead the pool reconnects through the URL's hosts: alive now.
        fairy = self._engine.raw_connection()
        try:
            driver = fairy.driver_connection
            assert driver is not None
            driver.autocommit = True
        except BaseException:
            fairy.invalidate()
            raise
        fairy.detach()  # ours from now on: closing it closes it
        cursor = driver.cursor()
        self._held = (os.getpid(), fairy, driver, cursor)
        return cursor

    def _drop_if_broken(self, exc: Exception) -> bool:
        """Forget the held connection if ``exc`` left it unusable; whether it did."""
        held = self._held
        if held is None:
            return True  # raised while setting a new one up: nothing was sent
        if not self._engine.dialect.is_disconnect(exc, held[2], None):  # type: ignore[arg-type]
            return False
        self._held = None
        try:
            held[1].close()
        except Exception:  # noqa: BLE001 - a dead socket may fail to close cleanly
            pass
        return True

    def _wrap(self, exc: Exception, *, broken: bool) -> Exception:
        dialect = self._engine.dialect
        return DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                   connection_invalidated=broken, dialect=dialect)

    @property
    def backend_pid(self) -> int | None:
        """The server process of the held connection (None: none held)."""
        held = self._held
        return None if held is None else int(held[2].info.backend_pid)

    def close(self) -> None:
        """Close the held connection (the next statement takes a new one)."""
        with self._lock:
            held, self._held = self._held, None
            if held is not None and held[0] == os.getpid():
                held[1].close()


class HeldConnections:
    """``HeldConnection``s of ``engine``'s for statements run by several threads at
    once: each statement takes one that is free (a new one if none is) and puts it
    back, so no thread waits for another's round trip. As many are held as
    statements ever ran at once: a worker's threads at most. Every user of one
    database in a process shares one set (:meth:`of`), so the count stays that."""

    # By the engine's id, weakly: a set lives as long as a user holds it, and an
    # engine's id taken again by another engine is told apart by the engine itself.
    _shared: weakref.WeakValueDictionary[int, HeldConnections] = weakref.WeakValueDictionary()
    _shared_lock = threading.Lock()

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.driver != "psycopg":
            raise TypeError(f"{engine.dialect.name}+{engine.dialect.driver}: psycopg only")
        self._engine = engine
        self._lock = threading.Lock()
        self._free: list[HeldConnection] = []

    @classmethod
    def of(cls, engine: Engine) -> HeldConnections:
        """The set every user of ``engine`` in this process shares (the refresh
        rotation, the hot reads)."""
        with cls._shared_lock:
            found = cls._shared.get(id(engine))
            if found is None or found._engine is not engine:
                found = cls._shared[id(engine)] = cls(engine)
            return found

    def first(self, statement: Statement, values: Mapping[str, Any], *,
              landed: Statement) -> tuple[Any, ...] | None:
        """``HeldConnection.first`` on a connection no other thread is using."""
        with self._borrowed() as held:
            return held.first(statement, values, landed=landed)

    def rows(self, statement: Statement, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """``HeldConnection.rows`` (a read) on a connection no other thread is using."""
        with self._borrowed() as held:
            return held.rows(statement, values)

    @contextmanager
    def _borrowed(self) -> Iterator[HeldConnection]:
        with self._lock:
            held = self._free.pop() if self._free else None
        if held is None:
            held = HeldConnection(self._engine)
        try:
            yield held
        finally:
            with self._lock:
                self._free.append(held)
