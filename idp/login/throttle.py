"""Throttling of the login and token endpoints, per client and per address.

A fixed window counter in the shared database, so the limit holds across every
worker process and node (an in-process counter would multiply it by the number
of workers). Only failures are counted — a wrong password, a failed client
authentication, a bad grant — so honest traffic costs one read, and a guessing
attack is stopped after ``limit`` failures per window (RFC 6749 section 10.10,
RFC 9700 section 4.15).

Why the read stays on every request, even one with the right secret: a blocked key
must get nothing even when a guess is right, or the difference between "blocked"
and "token" would tell the guesser which guess was right. Skipping the read for
callers that authenticate would be exactly that oracle; an in-process memory of
"not blocked" would be one too, for as long as it lasted, on every other worker and
node. So the read is made cheap instead: one statement built once, run on SQLite's
own connection of the thread (``idp.login.tables.HotRead``: building the
statement and an ORM session per request cost several times the query, and
SQLAlchemy's execution around it still ten times), and the failures of one
request (address and client) are counted in one write transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from idp.login.tables import HotRead, rowcount, throttle_windows

KEY_MAX_CHARS = 300


def stored_key(key: str) -> str:
    """``key`` as the database can hold it, whatever a request put in it: at most
    ``KEY_MAX_CHARS``, NUL (which PostgreSQL text refuses) and lone surrogates (which
    UTF-8 cannot encode) written as escapes. The same text always gives the same key."""
    key = key[:KEY_MAX_CHARS]
    if "\x00" in key or not key.isprintable():
        key = (key.encode("utf-8", "backslashreplace").decode("utf-8")
               .replace("\x00", "\\x00"))
    return key


@dataclass(frozen=True)
class Limit:
    failures: int
    window_seconds: int


LOGIN_PER_ADDRESS = Limit(30, 60)
LOGIN_PER_UID = Limit(10, 60)
TOKEN_PER_CLIENT = Limit(60, 60)
TOKEN_PER_ADDRESS = Limit(120, 60)


# The Retry-After of a client refused ``slow_down``: by then a window of its
# failures is full, and the longest of client_checks' windows has passed for sure.
CLIENT_RETRY_AFTER = str(max(TOKEN_PER_ADDRESS.window_seconds, TOKEN_PER_CLIENT.window_seconds))


def client_checks(address: str, client_id: str) -> tuple[tuple[str, Limit], ...]:
    """The keys every endpoint where a client authenticates (``/token``,
    ``/introspect``, ``/revoke``) counts its failures under: one budget per address
    and one per client id as sent (at most 64 characters of it; none if it is empty)."""
    client_id = client_id[:64]
    return (("token-addr:" + address, TOKEN_PER_ADDRESS),
            ("token-client:" + client_id if client_id else "", TOKEN_PER_CLIENT))


def _windows(keys: int) -> Select[Any]:
    """The read of ``keys`` keys' windows (one bound value per key: cheaper to run
    than an expanding IN)."""
    return select(throttle_windows.c.key, throttle_windows.c.window,
                  throttle_windows.c.count.label("failures")).where(
        throttle_windows.c.key.in_([bindparam(f"k{i}") for i in range(keys)]))


class Throttle:
    def __init__(self, sessions: sessionmaker[Session],
                 clock: Callable[[], float] = time.time) -> None:
        self._engine: Engine = sessions.kw["bind"]
        self._clock = clock
        # Built once per number of keys (the token endpoints read two, logins two).
        self._reads: dict[int, HotRead] = {}

    def _read(self, keys: int) -> HotRead:
        read = self._reads.get(keys)
        if read is None:
            read = self._reads.setdefault(keys, HotRead(self._engine, _windows(keys)))
        return read

    def _window(self, limit: Limit) -> int:
        return int(self._clock()) // limit.window_seconds

    def blocked(self, *checks: tuple[str, Limit]) -> bool:
        """Whether any (key, limit) has run out of failures in its window (one query)."""
        limits = {stored_key(key): limit for key, limit in checks if key}
        if not limits:
            return False
        rows = self._read(len(limits)).all({f"k{i}": key for i, key in enumerate(limits)})
        return any(row.window == self._window(limits[row.key])
                   and row.failures >= limits[row.key].failures for row in rows)

    def failed(self, *checks: tuple[str, Limit]) -> None:
        """Count one failure against each (key, limit), in one write transaction."""
        counts = [(stored_key(key), self._window(limit)) for key, limit in checks if key]
        for _ in range(3):
            try:
                with self._engine.begin() as conn:
                    for key, window in counts:
                        self._count(conn, key, window)
                return
            except IntegrityError:  # another worker inserted a row: count again
                continue

    @staticmethod
    def _count(conn: Any, key: str, window: int) -> None:
        same = rowcount(conn.execute(update(throttle_windows).where(
            throttle_windows.c.key == key, throttle_windows.c.window == window)
            .values(count=throttle_windows.c.count + 1)))
        if same:
            return
        moved = rowcount(conn.execute(update(throttle_windows).where(
            throttle_windows.c.key == key).values(window=window, count=1)))
        if not moved:
            conn.execute(insert(throttle_windows).values(key=key, window=window, count=1))
