"""Duties done once: each duty runs on exactly one of several runners (real
PostgreSQL advisory locks), and another takes over within one period when the
holder dies (its process killed, or its connection cut)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine

from idp.runtime.db import make_engine
from idp.runtime.duties import Duties, Duty, LocalLocks
from idp.runtime.pglisten import AdvisoryLocks, lock_key
from tests.fixtures.postgres import PostgresCluster

NAMES = ("outbox", "pki-refresh", "logout-retries", "key-rotation", "token-cleanup")


@pytest.fixture
def pg_engine(postgres: PostgresCluster) -> Iterator[Engine]:
    engine = make_engine(postgres.create_database())
    try:
        yield engine
    finally:
        engine.dispose()


def _runner(engine: Engine, ran: Counter[str], tag: str, period: float = 0.2) -> Duties:
    return Duties([Duty(n, lambda n=n: ran.update([f"{tag}:{n}"]), period) for n in NAMES],
                  AdvisoryLocks(engine))


# -- the core, without a database -----------------------------------------------------

def test_duty_name_with_spaces_is_refused() -> None:
    with pytest.raises(ValueError, match="duty name"):
        Duty("crl refresh", lambda: None)


def test_duty_period_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="period"):
        Duty("outbox", lambda: None, 0)


def test_two_duties_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Duties([Duty("outbox", lambda: None), Duty("outbox", lambda: None)], LocalLocks())


def test_local_locks_run_every_duty_in_the_one_process() -> None:
    ran: list[str] = []
    changes: list[tuple[str, bool]] = []
    duties = Duties([Duty("a", lambda: ran.append("a")), Duty("b", lambda: ran.append("b"))],
                    LocalLocks(), on_change=lambda n, h: changes.append((n, h)))
    duties.tick()
    assert ran == ["a", "b"]
    assert duties.held() == {"a", "b"}
    assert changes == [("a", True), ("b", True)]


def test_a_failing_duty_keeps_its_lock_and_is_retried_next_period() -> None:
    now = [0.0]
    calls: list[float] = []

    def broken() -> None:
        calls.append(now[0])
        raise RuntimeError("LDAP is away")

    duties = Duties([Duty("outbox", broken, 5.0)], LocalLocks(), clock=lambda: now[0])
    duties.tick()
    now[0] = 1.0
    duties.tick()  # not due yet
    now[0] = 5.0
    duties.tick()
    assert calls == [0.0, 5.0]
    assert duties.held() == {"outbox"}


class _AwayThenBack:
    """Locks whose database is away for the first ``away`` rounds."""

    def __init__(self, away: int) -> None:
        self.away = away

    def try_acquire(self, name: str) -> bool:
        if self.away > 0:
            self.away -= 1
            raise ConnectionRefusedError("connection to server at 127.0.0.1 failed\nhint")
        return True

    def still_held(self) -> bool:
        return True

    def release_all(self) -> None:
        pass


def test_a_database_away_for_ten_rounds_is_one_traceback_and_short_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    duties = Duties([Duty("outbox", lambda: None)], _AwayThenBack(away=10),
                    clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="idp.runtime.duties"):
        for second in range(12):
            now[0] = float(second)
            duties.tick()
    lines = [r for r in caplog.records if r.name == "idp.runtime.duties"]
    assert [r.exc_info is not None for r in lines] == [True] + [False] * 10
    assert lines[0].getMessage() == (
        "duty locks unavailable: ConnectionRefusedError: connection to server at "
        "127.0.0.1 failed")
    assert lines[9].getMessage().startswith(
        "duty locks unavailable: still failing (10 times in 9.0 s)")
    assert lines[10].getMessage() == (
        "duty locks unavailable: working again after 10.0 s (10 failures)")
    assert duties.held() == {"outbox"}


def test_lock_keys_are_stable_and_distinct() -> None:
    keys = [lock_key(n) for n in NAMES]
    assert len(set(keys)) == len(NAMES)
    assert lock_key("outbox") == lock_key("outbox")
    assert all(-(2**63) <= k < 2**63 for k in keys)


# -- real PostgreSQL ---------------------------------------------------------------------

def test_each_duty_is_held_by_exactly_one_of_three_runners(pg_engine: Engine) -> None:
    ran: Counter[str] = Counter()
    runners = [_runner(pg_engine, ran, f"r{i}") for i in range(3)]
    try:
        for _ in range(5):
            for r in runners:
                r.tick()
            time.sleep(0.05)
        for name in NAMES:
            holders = [i for i, r in enumerate(runners) if name in r.held()]
            assert len(holders) == 1, (name, holders)
            # Only the holder ran it.
            assert {k.split(":")[0] for k in ran if k.endswith(":" + name)} == {
                f"r{holders[0]}"}
    finally:
        for r in runners:
            r.stop()


def test_runners_in_threads_share_out_duties_without_overlap(pg_engine: Engine) -> None:
    ran: Counter[str] = Counter()
    runners = [_runner(pg_engine, ran, f"t{i}") for i in range(3)]
    for r in runners:
        r.start(interval=0.05)
    try:
        time.sleep(0.5)
        held = [r.held() for r in runners]
        for name in NAMES:
            assert sum(name in h for h in held) == 1, (name, held)
    finally:
        for r in runners:
            r.stop()


HOLDER = """
import sys, time
from idp.runtime.db import make_engine
from idp.runtime.duties import Duties, Duty
from idp.runtime.pglisten import AdvisoryLocks
engine = make_engine(sys.argv[1])
duties = Duties([Duty(n, lambda: None) for n in sys.argv[2:]], AdvisoryLocks(engine))
duties.tick()
print(",".join(sorted(duties.held())), flush=True)
while True:
    time.sleep(0.2)
    duties.tick()
"""


def test_duties_are_taken_over_within_one_period_after_the_holder_is_killed(
        pg_engine: Engine) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, *NAMES],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == ",".join(sorted(NAMES))
        period = 1.0
        ran: Counter[str] = Counter()
        survivor = _runner(pg_engine, ran, "s", period)
        survivor.tick()
        assert survivor.held() == frozenset(), "the holder's locks must keep others out"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        while survivor.held() != set(NAMES) and time.monotonic() - killed < 5:
            time.sleep(period / 10)
            survivor.tick()
        took = time.monotonic() - killed
        assert survivor.held() == set(NAMES)
        assert took < period, f"took over after {took:.2f} s"
        assert all(ran[f"s:{n}"] == 1 for n in NAMES)
        survivor.stop()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_duties_are_taken_over_after_the_holders_connection_is_cut(
        pg_engine: Engine, postgres: PostgresCluster) -> None:
    ran: Counter[str] = Counter()
    first, second = _runner(pg_engine, ran, "a"), _runner(pg_engine, ran, "b")
    try:
        first.tick()
        second.tick()
        assert first.held() == set(NAMES) and second.held() == frozenset()
        # Cut the holder's session from the server side, as a failover would.
        with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres "
                             f"dbname={pg_engine.url.database}", autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks "
                          "WHERE locktype = 'advisory' AND pid <> pg_backend_pid()")
        cut = time.monotonic()
        # pg_terminate_backend only signals: the session ends a moment later.
        while second.held() != set(NAMES) and time.monotonic() - cut < 5:
            time.sleep(0.05)
            second.tick()
        first.tick()  # the old holder notices it lost them
        assert second.held() == set(NAMES)
        assert first.held() == frozenset()
        assert time.monotonic() - cut < 1.0
        first.tick()  # and does not take them back while the other lives
        assert first.held() == frozenset()
    finally:
        first.stop()
        second.stop()


def test_stopping_a_runner_hands_its_duties_over_at_once(pg_engine: Engine) -> None:
    ran: Counter[str] = Counter()
    first, second = _runner(pg_engine, ran, "a"), _runner(pg_engine, ran, "b")
    first.tick()
    first.stop()
    second.tick()
    assert second.held() == set(NAMES)
    second.stop()


# -- wired by the composition root ------------------------------------------------------

def test_services_run_duties_under_advisory_locks_on_postgresql(
        postgres: PostgresCluster, tmp_path: object) -> None:
    from pathlib import Path

    from idp.runtime.config import Config
    from idp.runtime.services import Services

    url = postgres.create_database()
    nodes = [Services(Config.load(Path(str(tmp_path)) / "home",
                                  environ={"GOVTRUST_DATABASE_URL": url})) for _ in range(3)]
    try:
        assert all(isinstance(n.duties._locks, AdvisoryLocks) for n in nodes)
        assert [d.name for d in nodes[0].duties.duties] == list(NAMES)
    finally:
        for n in nodes:
            n.close()


def test_services_run_every_duty_locally_on_sqlite(tmp_path: object) -> None:
    from pathlib import Path

    from idp.runtime.config import Config
    from idp.runtime.services import Services

    services = Services(Config.load(Path(str(tmp_path)) / "home", environ={}))
    try:
        assert isinstance(services.duties._locks, LocalLocks)
        services.apply_change(None)  # builds nothing it does not have
        assert "provider" not in services.__dict__ and "ca" not in services.__dict__
    finally:
        services.close()
