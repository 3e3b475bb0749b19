"""Duties done once: background work that exactly one node runs at a time.

CRL generation, OCSP responder renewal, outbox delivery, back-channel logout
retries and signing-key rotation must not run on every node of a cluster at
once (two nodes would sign two CRLs with one number, or post one logout twice).
Each duty has a lock; a :class:`Duties` runner that holds a duty's lock runs it
every period, and a runner that does not tries to take the lock every period,
so when the holder dies another runner takes over within one period.

Framework-free: the lock is the small :class:`Locks` port. On PostgreSQL it is
an advisory lock on a dedicated connection (``idp.runtime.pglisten``): the lock
lives as long as the connection's session, so a dead holder frees it. On SQLite
there is one process and :class:`LocalLocks` always grants.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from idp.runtime.logs import Outage

log = logging.getLogger(__name__)


class Locks(Protocol):
    """Named exclusive locks held for as long as the holder lives."""

    def try_acquire(self, name: str) -> bool:
        """Take ``name`` if nobody holds it; True if this runner holds it now."""
        ...

    def still_held(self) -> bool:
        """False when every lock this runner held has been lost (its connection
        broke): the runner must stop acting as holder and try again."""
        ...

    def release_all(self) -> None: ...


class LocalLocks:
    """One process does everything (SQLite): every lock is granted."""

    def try_acquire(self, name: str) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def release_all(self) -> None:
        return None


@dataclass(frozen=True)
class Duty:
    """A named round of work, run every ``period`` seconds by the lock holder."""

    name: str
    run: Callable[[], object]
    period: float = 1.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").isalnum():
            raise ValueError(f"duty name must be letters, digits and '-': {self.name!r}")
        if self.period <= 0:
            raise ValueError(f"duty period must be positive, not {self.period}")


class Duties:
    """Runs the duties whose locks it holds; tries to take the others each tick.

    ``on_change(name, held)`` is told whenever this runner starts or stops holding
    a duty (the metrics gauge listens). ``tick()`` is one round, for a caller
    with its own loop (``govtrust serve``); ``start()`` runs rounds in a daemon
    thread until ``stop()``.
    """

    def __init__(self, duties: Sequence[Duty], locks: Locks, *,
                 on_change: Callable[[str, bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        names = [d.name for d in duties]
        if len(set(names)) != len(names):
            raise ValueError(f"duty names must be unique: {names}")
        self.duties = tuple(duties)
        self._locks = locks
        self._on_change = on_change
        self._clock = clock
        self._outage = Outage(log, "duty locks unavailable", clock)
        self._held: set[str] = set()
        self._next_run: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def held(self) -> frozenset[str]:
        """The duties this runner holds now."""
        return frozenset(self._held)

    def _set(self, name: str, held: bool) -> None:
        if held == (name in self._held):
            return
        (self._held.add if held else self._held.discard)(name)
        log.info("duty %s %s", name, "taken" if held else "lost")
        if self._on_change is not None:
            self._on_change(name, held)

    def tick(self) -> None:
        """One round: check the locks still stand, take free ones, run what is due.
        A failing duty is logged and retried next period; it keeps its lock."""
        try:
            if self._held and not self._locks.still_held():
                for name in list(self._held):
                    self._set(name, False)
            for duty in self.duties:
                if duty.name not in self._held and self._locks.try_acquire(duty.name):
                    self._set(duty.name, True)
                    self._next_run[duty.name] = 0.0
        except Exception as error:  # the database is away: hold nothing, retry next tick
            self._outage.failed(error)
            for name in list(self._held):
                self._set(name, False)
            return
        self._outage.recovered()
        now = self._clock()
        for duty in self.duties:
            if duty.name in self._held and now >= self._next_run.get(duty.name, 0.0):
                self._next_run[duty.name] = now + duty.period
                try:
                    duty.run()
                except Exception:  # keep serving; the next period retries
                    log.exception("duty %s failed", duty.name)

    def start(self, interval: float = 1.0) -> None:
        """Run rounds every ``interval`` seconds in a daemon thread."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="govtrust-duties", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (if any) and give every lock back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for name in list(self._held):
            self._set(name, False)
        self._locks.release_all()
