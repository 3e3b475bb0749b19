"""The throttle on a real (SQLite) database: the failures of one request are counted
against every key at once, a key is blocked after its limit within its window, and
a new window starts from one."""

from __future__ import annotations

from pathlib import Path

from idp.login.throttle import Limit, Throttle
from idp.runtime.db import make_engine, session_factory, upgrade


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _throttle(tmp_path: Path, clock: Clock) -> Throttle:
    engine = make_engine(f"sqlite:///{tmp_path / 'throttle.db'}")
    upgrade(engine)
    return Throttle(session_factory(engine), clock)


def test_one_call_counts_every_key(tmp_path: Path) -> None:
    clock = Clock()
    throttle = _throttle(tmp_path, clock)
    small, large = Limit(2, 60), Limit(3, 60)
    throttle.failed(("addr:1", large), ("client:a", small))
    assert not throttle.blocked(("addr:1", large), ("client:a", small))
    throttle.failed(("addr:1", large), ("client:a", small))
    assert throttle.blocked(("client:a", small))
    assert not throttle.blocked(("addr:1", large))
    assert throttle.blocked(("addr:1", large), ("client:a", small))  # any key blocks


def test_empty_keys_are_ignored(tmp_path: Path) -> None:
    throttle = _throttle(tmp_path, Clock())
    throttle.failed(("", Limit(1, 60)))
    assert not throttle.blocked(("", Limit(1, 60)))
    assert not throttle.blocked()


def test_next_window_starts_again(tmp_path: Path) -> None:
    clock = Clock()
    throttle = _throttle(tmp_path, clock)
    limit = Limit(1, 60)
    throttle.failed(("client:a", limit))
    assert throttle.blocked(("client:a", limit))
    clock.now += 60
    assert not throttle.blocked(("client:a", limit))
    throttle.failed(("client:a", limit))
    assert throttle.blocked(("client:a", limit))
