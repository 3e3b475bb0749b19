"""The PostgreSQL edge of duties and change propagation: advisory locks and LISTEN.

Both hold a dedicated psycopg connection outside SQLAlchemy's pool, opened with
the engine's own connection arguments (so a libpq multi-host URL with
``target_session_attrs=read-write`` follows a failover here too) and TCP
keepalives (so a holder on a lost machine is noticed by the server in seconds,
not hours).

- :class:`AdvisoryLocks` implements ``idp.runtime.duties.Locks`` with
  ``pg_try_advisory_lock``: session-level locks, freed by the server when the
  holder's session ends, however it ends.
- :class:`ChangeListener` runs ``LISTEN govtrust_change`` in a daemon thread and
  hands each :class:`idp.runtime.changes.Change` to a callback; after a broken
  connection it reconnects and reports ``None`` (anything may have changed
  while it was away).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from idp.runtime.changes import CHANNEL, Change
from idp.runtime.logs import Outage

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

# Server-side detection of a dead peer: idle 5 s, then 2 probes 2 s apart; and
# unacknowledged data gives up after 10 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 2, "tcp_user_timeout": 10_000}


def connect(engine: Engine) -> psycopg.Connection[Any]:
    """A new autocommit connection with ``engine``'s arguments, outside its pool."""
    import psycopg

    if engine.dialect.name != "postgresql":
        raise ValueError(f"advisory locks and LISTEN need PostgreSQL, not {engine.dialect.name}")
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    params = {**KEEPALIVES, **dict(cparams), "autocommit": True}
    params.setdefault("connect_timeout", 5)
    return psycopg.connect(*cargs, **params)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a duty name (the same on
    every node and every Python: no ``hash()``)."""
    digest = hashlib.sha256(b"govtrust.duty:" + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLocks:
    """Session-level advisory locks on one dedicated connection."""

    def __init__(self, engine: Engine,
                 connector: Callable[[Engine], psycopg.Connection[Any]] = connect) -> None:
        self._engine = engine
        self._connector = connector
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connector(self._engine)
        return self._conn

    def try_acquire(self, name: str) -> bool:
        conn = self._connection()
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),)).fetchone()
        except Exception:
            self._drop()
            raise
        return bool(row and row[0])

    def still_held(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            conn.execute("SELECT 1")
        except Exception:  # the session is gone, and with it every lock
            self._drop()
            return False
        return True

    def release_all(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception:  # closing ends the session, which frees them anyway
                log.debug("advisory unlock failed; closing", exc_info=True)
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken
                log.debug("closing a broken lock connection failed", exc_info=True)
        self._conn = None


class ChangeListener:
    """``LISTEN govtrust_change`` in a daemon thread; ``on_change(None)`` after a
    reconnect, since notifications sent while away are lost."""

    def __init__(self, engine: Engine, on_change: Callable[[Change | None], None], *,
                 connector: Callable[[Engine], psycopg.Connection[Any]] = connect,
                 poll: float = 0.5) -> None:
        self._engine = engine
        self._on_change = on_change
        self._connector = connector
        self._poll = poll
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="govtrust-changes",
                                            daemon=True)
            self._thread.start()

    def wait_listening(self, timeout: float = 10.0) -> bool:
        """True once the LISTEN stands (tests and readiness wait on it)."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        first = True
        outage = Outage(log, "change listener lost its connection; reconnecting")
        while not self._stop.is_set():
            try:
                with self._connector(self._engine) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        self._deliver(None)
                    first = False
                    self._listening.set()
                    outage.recovered()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=self._poll):
                            change = Change.parse(note.payload)
                            if change is not None:
                                self._deliver(change)
            except Exception as error:  # the database is away: retry, then forget everything
                self._listening.clear()
                first = False
                outage.failed(error)
                self._stop.wait(1.0)

    def _deliver(self, change: Change | None) -> None:
        try:
            self._on_change(change)
        except Exception:  # a failing cache must not stop the listener
            log.exception("applying change %s failed", change)
