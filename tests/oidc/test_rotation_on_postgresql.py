"""The refresh-token rotation on PostgreSQL in one autocommitted statement
(``TokenService.rotate_refresh`` without a requested scope), on a real server whose
backends are ended with ``pg_terminate_backend`` at the worst moments.

What each case must keep: a good token is rotated exactly once and its successor
recorded with it; a token that is unknown, expired, revoked, another client's or
of an ended grant changes nothing; a used one presented again revokes its family;
of racing uses one wins; and a retry after a cut connection answers the rotation
that committed, never a reuse that would end a person's whole family.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, insert, select, update

from idp.oidc.keys import KeyStore
from idp.oidc.tables import grants, tokens
from idp.oidc.tokens import (
    OFFLINE_REFRESH_TTL,
    REFRESH_TTL,
    RefreshRefusal,
    Rotation,
    TokenService,
    digest,
)
from idp.runtime.db import session_factory
from pki.held_connection import HeldConnection, Statement
from tests.fixtures.idp import seed_public_app_grant
from tests.fixtures.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

FAMILY = "f" * 32
Injection = Callable[[Any, Statement, Mapping[str, Any]], None]


@dataclass
class Wire:
    """What went to the server: each statement sent on a held connection (its
    backend and SQL; the hot reads' too), and the pool's checkouts (each pinged,
    each a transaction's); ``inject`` runs once before the next write is sent."""

    sent: list[tuple[int, str]] = field(default_factory=list)
    checkouts: int = 0
    inject: Injection | None = None


@dataclass(frozen=True)
class Sent:
    """What one rotation sent (``Wire``'s counts during it)."""

    statements: list[tuple[int, str]]
    checkouts: int


@dataclass
class World:
    engine: Engine
    service: TokenService
    wire: Wire
    postgres: PostgresCluster

    def refresh_token(self, *, scope: str = "openid profile", client_id: str = "app",
                      expires_in: int = 3600, revoked: bool = False) -> str:
        value = secrets.token_urlsafe(32)
        now = self.service.now()
        with self.engine.begin() as conn:
            conn.execute(insert(tokens).values(
                token_id=digest(value), kind="refresh", family=FAMILY, client_id=client_id,
                scope=scope, issued_at=now, expires_at=now + expires_in,
                revoked_at=now if revoked else None))
        return value

    def rows(self) -> list[tuple[Any, ...]]:
        """Every token and grant row, to show that nothing changed."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(tokens).order_by(tokens.c.token_id))] \
                + [tuple(r) for r in conn.execute(select(grants))]

    def token(self, value: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(tokens).where(tokens.c.token_id == digest(value))).one()

    def grant_revoked(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(grants.c.revoked_at)).scalar_one() is not None

    def rotate(self, value: str, client_id: str = "app", scope: str | None = None
               ) -> tuple[Rotation | RefreshRefusal, Sent]:
        """``rotate_refresh``, and what it sent to the server."""
        wire = self.wire
        sent, checkouts = len(wire.sent), wire.checkouts
        result = self.service.rotate_refresh(value, client_id, scope)
        return result, Sent(wire.sent[sent:], wire.checkouts - checkouts)

    def warm(self) -> None:
        """One rotation, so a held connection exists."""
        assert isinstance(self.rotate(self.refresh_token())[0], Rotation)


@pytest.fixture
def world(migrated_pg_engine: Engine, postgres: PostgresCluster,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    engine = migrated_pg_engine
    seed_public_app_grant(engine, FAMILY, scope="openid profile", claims='{"name": "张伟"}',
                          acr="1", amr="pwd")
    wire = Wire()
    run = HeldConnection._run

    def recorded(cursor: Any, statement: Statement, values: Mapping[str, Any]
                 ) -> tuple[Any, ...] | None:
        inject, wire.inject = wire.inject, None
        if inject is not None:
            inject(cursor.connection, statement, values)
        wire.sent.append((int(cursor.connection.info.backend_pid), statement.sql))
        return run(cursor, statement, values)

    monkeypatch.setattr(HeldConnection, "_run", staticmethod(recorded))
    read = HeldConnection._all

    def recorded_read(cursor: Any, statement: Statement, values: Mapping[str, Any]
                      ) -> list[tuple[Any, ...]]:
        wire.sent.append((int(cursor.connection.info.backend_pid), statement.sql))
        return read(cursor, statement, values)

    monkeypatch.setattr(HeldConnection, "_all", staticmethod(recorded_read))

    def checked_out(*_args: Any) -> None:
        wire.checkouts += 1

    event.listen(engine, "checkout", checked_out)
    sessions = session_factory(engine)
    service = TokenService(sessions, KeyStore(sessions, b"not a secret"), "https://idp.test")
    yield World(engine, service, wire, postgres)


def rotated(world: World, old: str, result: Rotation | RefreshRefusal,
            scope: str = "openid profile") -> Rotation:
    """``result`` is the rotation of ``old``: old marked rotated, the successor
    recorded once with the grant's scope, the family live."""
    assert isinstance(result, Rotation)
    assert (result.context.subject, result.context.claims, result.context.amr,
            result.scope) == ("zhang", {"name": "张伟"}, ("pwd",), scope)
    before, after = world.token(old), world.token(result.refresh_token)
    assert before.rotated_at == result.record.now and before.revoked_at is None
    assert (after.kind, after.family, after.client_id, after.scope, after.issued_at) == (
        "refresh", FAMILY, "app", before.scope, before.rotated_at)
    assert after.rotated_at is None and after.revoked_at is None
    assert not world.grant_revoked()
    return result


def test_one_statement_and_no_checkout(world: World) -> None:
    """The whole rotation is one statement on a held connection: no ping, no BEGIN,
    no COMMIT, no second statement (each would need a pool checkout or a send)."""
    world.warm()
    old = world.refresh_token()
    result, sent = world.rotate(old)
    rotated(world, old, result)
    assert len(sent.statements) == 1 and "WITH rotated AS" in sent.statements[0][1]
    assert sent.checkouts == 0


@pytest.mark.parametrize("scope, ttl", [("openid profile", REFRESH_TTL),
                                        ("openid offline_access profile", OFFLINE_REFRESH_TTL),
                                        ("openid  offline_access", OFFLINE_REFRESH_TTL),
                                        ("openid offline_accessible", REFRESH_TTL)])
def test_the_successor_lives_as_long_as_its_scope_says(world: World, scope: str,
                                                       ttl: int) -> None:
    old = world.refresh_token(scope=scope)
    result = world.rotate(old)[0]
    assert isinstance(result, Rotation) and result.scope == scope
    successor = world.token(result.refresh_token)
    assert (successor.scope, successor.expires_at - successor.issued_at) == (scope, ttl)


@pytest.mark.parametrize("case", ["unknown", "expired", "revoked", "another client's",
                                  "ended grant"])
def test_a_token_that_cannot_be_used_changes_nothing(world: World, case: str) -> None:
    world.warm()
    client_id = "other" if case == "another client's" else "app"
    value = {"unknown": lambda: secrets.token_urlsafe(32),
             "expired": lambda: world.refresh_token(expires_in=-1),
             "revoked": lambda: world.refresh_token(revoked=True),
             }.get(case, world.refresh_token)()
    if case == "ended grant":
        with world.engine.begin() as conn:
            conn.execute(update(grants).values(revoked_at=5))
    before = world.rows()
    result, sent = world.rotate(value, client_id)
    assert result is RefreshRefusal.UNKNOWN and world.rows() == before
    # the statement matched nothing; a read said why, on a held connection too
    assert [sql.split()[0] for _, sql in sent.statements] == ["WITH", "SELECT"]
    assert sent.checkouts == 0


def test_a_used_token_again_revokes_the_family(world: World) -> None:
    old = world.refresh_token()
    successor = rotated(world, old, world.service.rotate_refresh(old, "app", None))
    assert world.service.rotate_refresh(old, "app", None) is RefreshRefusal.REUSED
    assert world.grant_revoked()
    assert world.token(successor.refresh_token).revoked_at is not None
    assert world.service.rotate_refresh(successor.refresh_token, "app",
                                        None) is RefreshRefusal.UNKNOWN


def test_of_racing_uses_exactly_one_wins(world: World) -> None:
    old = world.refresh_token()
    results: list[Rotation | RefreshRefusal] = []
    start = threading.Barrier(6)

    def use() -> None:
        start.wait()
        results.append(world.service.rotate_refresh(old, "app", None))

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if isinstance(r, Rotation)]
    assert len(wins) == 1 and results.count(RefreshRefusal.REUSED) == 5
    assert world.grant_revoked()  # a loser saw the reuse
    with world.engine.connect() as conn:
        assert len(conn.execute(select(tokens)).all()) == 2  # old and one successor


def test_threads_at_once_do_not_share_a_connection(world: World) -> None:
    """Two rotations in flight at once each run on a held connection of their own
    (``pki.held_connection.HeldConnections``): neither waits for the other's round
    trip. The first statement waits, on the server side, until the second has been
    sent on another backend."""
    both = threading.Barrier(2)

    def meet(_conn: Any, _s: Statement, _v: Mapping[str, Any]) -> None:
        both.wait(timeout=60)  # a guard against a hang, not a timing

    world.wire.inject = meet
    results: list[Rotation | RefreshRefusal] = []
    tokens_ = [world.refresh_token(), world.refresh_token()]

    def use(value: str) -> None:
        results.append(world.service.rotate_refresh(value, "app", None))

    first = threading.Thread(target=use, args=(tokens_[0],))
    first.start()
    while world.wire.inject is not None:  # until the first has taken the injection
        time.sleep(0.01)
    world.wire.inject = meet
    use(tokens_[1])
    first.join()
    assert all(isinstance(r, Rotation) for r in results) and len(results) == 2
    assert len({pid for pid, _ in world.wire.sent}) == 2


def test_a_backend_ended_before_the_statement_is_replaced(world: World) -> None:
    world.warm()
    world.wire.inject = lambda conn, _s, _v: world.postgres.terminate(conn.info.backend_pid)
    old = world.refresh_token()
    result, sent = world.rotate(old)
    rotated(world, old, result)
    (cut, _), (fresh, _) = sent.statements  # retried once, on a fresh connection
    assert cut != fresh


def test_every_backend_ended_is_survived(world: World) -> None:
    """As a failover leaves it: the held connection and the pool's all dead."""
    world.warm()
    database = world.engine.url.database
    assert database is not None
    world.wire.inject = lambda _c, _s, _v: world.postgres.terminate_all(database)
    old = world.refresh_token()
    rotated(world, old, world.service.rotate_refresh(old, "app", None))


def committed_then_cut(world: World, then: Callable[[], None] = lambda: None) -> Injection:
    """The statement commits, then the backend ends before its answer comes back
    (the same statement with the same values, committed on another connection)."""

    def inject(conn: Any, statement: Statement, values: Mapping[str, Any]) -> None:
        with psycopg.connect(conn.info.dsn, autocommit=True) as other:
            assert other.execute(statement.sql, statement.parameters(values)).fetchone()
        then()
        world.postgres.terminate(conn.info.backend_pid)

    return inject


def test_a_commit_whose_answer_was_lost_is_the_rotation_not_a_reuse(world: World) -> None:
    """The retry's compare-and-set matches nothing (the token is rotated); ``landed``
    finds the successor this rotation drew, so the answer is that rotation, and the
    family stays live."""
    world.warm()
    world.wire.inject = committed_then_cut(world)
    old = world.refresh_token()
    answer, sent = world.rotate(old)
    result = rotated(world, old, answer)
    # cut; the compare-and-set again, matching nothing; the successor read back
    assert [sql.split()[0] for _, sql in sent.statements] == ["WITH", "WITH", "SELECT"]
    with world.engine.connect() as conn:  # warm's two, and this old and new: no more
        assert len(conn.execute(select(tokens)).all()) == 4
    rotated(world, result.refresh_token,
            world.service.rotate_refresh(result.refresh_token, "app", None))


def test_a_lost_answer_of_a_grant_ended_meanwhile_is_refused(world: World) -> None:
    """The rotation committed, then the grant ended (a logout) before the retry:
    the successor is revoked with it, so the answer is a refusal, not a token."""
    world.warm()

    def logout() -> None:
        world.service.revoke_family(FAMILY)

    world.wire.inject = committed_then_cut(world, logout)
    old = world.refresh_token()
    result, sent = world.rotate(old)
    assert result is RefreshRefusal.UNKNOWN and len(sent.statements) == 3
    assert world.token(old).rotated_at is not None  # committed before the logout


def test_a_narrower_scope_takes_the_transaction(world: World) -> None:
    """A requested scope is checked after the compare-and-set, in a transaction that
    a wider one rolls back: nothing goes through the held connections."""
    wider = world.refresh_token()
    before = world.rows()
    result, sent = world.rotate(wider, scope="openid email")
    assert result is RefreshRefusal.SCOPE and world.rows() == before
    assert (sent.statements, sent.checkouts) == ([], 1)
    old = world.refresh_token()
    result, sent = world.rotate(old, scope="openid")
    rotated(world, old, result, "openid")
    assert (sent.statements, sent.checkouts) == ([], 1)  # one transaction
