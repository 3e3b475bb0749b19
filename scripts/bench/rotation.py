#!/usr/bin/env python3
"""A refresh token's rotation and the token endpoint's throttle read, in one process.

``TokenService.rotate_refresh`` (the compare-and-set, the grant and the successor's
insert, in one transaction) and ``Throttle.blocked`` for the two keys of ``/token``,
called ``--calls`` times in a row on a SQLite file in /dev/shm and on a throwaway
PostgreSQL 15 (``tests.fixtures.postgres``, the product's durable settings): CPU
(``time.process_time``) and wall time per call of this process, without a load
client, a web layer or TLS. What the server's own CPU and the other round trips
add shows in ``idp.py``'s figures; this isolates the database path, which on a
shared machine ``idp.py``'s ratios cannot.

    scripts/bench/rotation.py [--calls 2000] [--db sqlite,postgresql]

Run it in a checkout of the base and of the change, alternated, to compare.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, insert  # noqa: E402

from idp.login.throttle import TOKEN_PER_ADDRESS, TOKEN_PER_CLIENT, Throttle  # noqa: E402
from idp.oidc.tables import grants, oauth_clients, tokens  # noqa: E402
from idp.oidc.tokens import REFRESH, Rotation, TokenService, digest  # noqa: E402
from idp.runtime.db import make_engine, session_factory, upgrade  # noqa: E402

FAMILY = "f" * 32


@contextmanager
def database(kind: str, base: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{base / 'govtrust.db'}"
        return
    from tests.fixtures.postgres import PostgresCluster

    # Its own folder (made for the postgres user) beside, not inside, ours (0700).
    cluster = PostgresCluster(base=base.parent, settings=())
    cluster.start()
    try:
        yield cluster.create_database()
    finally:
        cluster.stop()


def seed(engine: Engine) -> None:
    """One client, one grant and its first refresh token (``r0``)."""
    with engine.begin() as conn:
        conn.execute(insert(oauth_clients).values(
            client_id="app", name="bench", secret_hash=None, public=True,
            auth_method="none", redirect_uris="[]", post_logout_uris="[]", level=2,
            info_class="general", allowed_departments="[]", first_party=True,
            id_token_alg="ES256", created_at=datetime.now(UTC)))
        conn.execute(insert(grants).values(
            family=FAMILY, client_id="app", subject="zhang", scope="openid", claims="{}",
            created_at=1))
        conn.execute(insert(tokens).values(
            token_id=digest("r0"), kind=REFRESH, family=FAMILY, client_id="app",
            scope="openid", issued_at=1, expires_at=2**31 - 1))


def per_call(calls: int, call: Callable[[], None]) -> tuple[float, float]:
    """(CPU µs, wall µs) per call, after 50 calls of warming up."""
    for _ in range(50):
        call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call()
    return ((time.process_time() - cpu) * 1e6 / calls,
            (time.perf_counter() - wall) * 1e6 / calls)


def measure(kind: str, calls: int) -> None:
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp, database(kind, Path(tmp)) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            seed(engine)
            # No key store: the rotation signs nothing (the access token is signed
            # after it, by the grant).
            service = TokenService(session_factory(engine), keys=None,  # type: ignore[arg-type]
                                   issuer="https://bench.invalid")
            live = ["r0"]

            def rotate() -> None:
                result = service.rotate_refresh(live[0], "app", None)
                assert isinstance(result, Rotation), result
                live[0] = result.refresh_token

            throttle = Throttle(session_factory(engine))
            checks = (("token-addr:127.0.0.1", TOKEN_PER_ADDRESS),
                      ("token-client:app", TOKEN_PER_CLIENT))
            throttle.failed(*checks)  # a row to find, as after one failure

            def read() -> None:
                assert not throttle.blocked(*checks)

            for name, call in (("rotation", rotate), ("throttle_read", read)):
                cpu, wall = per_call(calls, call)
                print(f"{kind}_{name}_cpu: {cpu:.0f} us per call")
                print(f"{kind}_{name}_wall: {wall:.0f} us per call")
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind in args.db.split(","):
        measure(kind, args.calls)


if __name__ == "__main__":
    main()
