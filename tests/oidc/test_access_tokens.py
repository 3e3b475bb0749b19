"""Self-contained access tokens (RFC 9068) and how each revocation still ends them at
once: the revoked-jti table (RFC 7009), the grant family (logout, refresh-token reuse,
a suspended person), the client (removed). Also the one-transaction refresh rotation
and the clean-up of revoked jtis. Runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select

from idp.oidc.clients import build_client
from idp.oidc.tables import grants, revoked_access, tokens
from idp.oidc.tokens import OFFLINE_REFRESH_TTL, digest, family_of_jti
from idp.runtime.app import create_app
from idp.runtime.services import Services
from tests.fixtures.idp import (
    REDIRECT,
    FakeDirectory,
    Registered,
    authorize,
    code_of,
    make_services,
    pkce_pair,
    token_request,
    tokens_issued,
)

pytestmark = pytest.mark.postgres


@dataclass
class World:
    services: Services
    browser: FlaskClient
    rp: FlaskClient
    app: Registered

    def login(self, scope: str = "openid profile email") -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        code = code_of(authorize(self.browser, self.app.client, pkce=challenge, scope=scope))
        status, body = token_request(self.rp, self.app, grant_type="authorization_code",
                                     code=code, redirect_uri=REDIRECT, code_verifier=verifier)
        assert status == 200, body
        return body

    def active(self, token: str) -> bool:
        body = self.rp.post("/introspect", data={"token": token},
                            auth=(self.app.client.client_id, self.app.secret)).get_json()
        return bool(body["active"])

    def userinfo(self, token: str) -> int:
        return self.rp.get("/userinfo",
                           headers={"Authorization": f"Bearer {token}"}).status_code

    def count(self, table: Any) -> int:
        with self.services.provider.db() as s:
            return int(s.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def world(database_url: str, tmp_path: Path, directory: FakeDirectory) -> Iterator[World]:
    services = make_services(tmp_path / "home", "http://127.0.0.1:9443", directory,
                             database_url=database_url)
    app = create_app(services)
    client, secret = services.provider.clients.add(build_client(
        name="预算管理系统", redirect_uris=[REDIRECT], level=2, first_party=True))
    try:
        yield World(services, app.test_client(), app.test_client(), Registered(client, secret))
    finally:
        services.close()


def _claims(token: str) -> dict[str, Any]:
    import base64
    import json

    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_client_credentials_write_nothing_and_are_active(world: World) -> None:
    status, body = token_request(world.rp, world.app, grant_type="client_credentials")
    assert status == 200
    assert world.count(tokens) == 0 and world.count(grants) == 0
    assert family_of_jti(_claims(str(body["access_token"]))["jti"]) == ""
    assert world.active(str(body["access_token"]))


def test_person_token_names_its_family_in_the_jti(world: World) -> None:
    body = world.login()
    family = family_of_jti(_claims(body["access_token"])["jti"])
    with world.services.provider.db() as s:
        assert s.execute(select(grants.c.family)).scalar_one() == family
        kinds = s.execute(select(tokens.c.kind)).scalars().all()
    assert kinds == ["refresh"]  # the access token is not stored


def test_revoked_access_token_is_recorded_until_it_expires(world: World) -> None:
    body = world.login()
    access = body["access_token"]
    auth = (world.app.client.client_id, world.app.secret)
    assert world.rp.post("/revoke", data={"token": access}, auth=auth).status_code == 200
    assert world.rp.post("/revoke", data={"token": access}, auth=auth).status_code == 200
    with world.services.provider.db() as s:
        row = s.execute(select(revoked_access)).one()
    claims = _claims(access)
    assert (row.jti, row.expires_at) == (claims["jti"], claims["exp"])
    assert not world.active(access) and world.userinfo(access) == 401
    # the grant itself lives on: its refresh token still works
    assert token_request(world.rp, world.app, grant_type="refresh_token",
                         refresh_token=body["refresh_token"])[0] == 200


def test_revoked_client_credentials_token(world: World) -> None:
    _, body = token_request(world.rp, world.app, grant_type="client_credentials")
    token = str(body["access_token"])
    auth = (world.app.client.client_id, world.app.secret)
    assert world.rp.post("/revoke", data={"token": token}, auth=auth).status_code == 200
    assert not world.active(token)
    _, other = token_request(world.rp, world.app, grant_type="client_credentials")
    assert world.active(str(other["access_token"]))  # only that one token


def test_purge_forgets_expired_revocations_only(world: World) -> None:
    now = int(time.time())
    with world.services.provider.db.begin() as s:
        s.execute(insert(revoked_access), [{"jti": "old", "expires_at": now - 1},
                                           {"jti": "live", "expires_at": now + 600}])
    assert world.services.provider.tokens.purge_expired() == 1
    with world.services.provider.db() as s:
        assert s.execute(select(revoked_access.c.jti)).scalars().all() == ["live"]
    assert "token-cleanup" in {d.name for d in world.services.duties.duties}


def test_logout_ends_access_tokens_at_once(world: World) -> None:
    body = world.login()
    assert world.userinfo(body["access_token"]) == 200
    provider = world.services.provider
    with provider.db() as s:
        sid = s.execute(select(grants.c.sid)).scalar_one()
    provider.logout.end_session(sid)
    assert not world.active(body["access_token"])
    assert world.userinfo(body["access_token"]) == 401


def test_suspended_person_loses_access_tokens_at_once(world: World) -> None:
    body = world.login()
    world.services.provider.tokens.revoke_subject(_claims(body["access_token"])["sub"])
    assert not world.active(body["access_token"])
    assert world.userinfo(body["access_token"]) == 401


def test_refresh_reuse_ends_the_newest_access_token(world: World) -> None:
    first = world.login()
    status, second = token_request(world.rp, world.app, grant_type="refresh_token",
                                   refresh_token=first["refresh_token"])
    assert status == 200 and world.active(str(second["access_token"]))
    status, body = token_request(world.rp, world.app, grant_type="refresh_token",
                                 refresh_token=first["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    assert not world.active(str(second["access_token"]))
    assert world.userinfo(str(second["access_token"])) == 401


def test_removed_client_tokens_are_inactive_at_once(world: World) -> None:
    body = world.login()
    _, cc = token_request(world.rp, world.app, grant_type="client_credentials")
    tokens_service = world.services.provider.tokens
    assert tokens_service.verify_access(str(cc["access_token"])) is not None
    world.services.provider.clients.remove(world.app.client.client_id)
    assert tokens_service.verify_access(str(cc["access_token"])) is None
    assert world.userinfo(body["access_token"]) == 401


def test_rotated_secret_leaves_tokens_active(world: World) -> None:
    """As before the tokens became self-contained: the secret authenticates the app
    at the token endpoint, it does not vouch for tokens already issued."""
    body = world.login()
    world.services.provider.clients.rotate_secret(world.app.client.client_id)
    assert world.userinfo(body["access_token"]) == 200


def test_jti_without_a_family_is_inactive(world: World) -> None:
    """A token we signed whose jti names no family (as before migration 0013)."""
    keys = world.services.provider.keys
    now = int(time.time())
    client_id = world.app.client.client_id
    for jti in ("abcdef", "cc", "zz.x", "0123456789abcdef0123456789abcdeg.x"):
        token = keys.sign({"iss": "http://127.0.0.1:9443", "sub": client_id,
                           "client_id": client_id, "aud": client_id, "iat": now,
                           "exp": now + 600, "jti": jti, "scope": ""}, typ="at+jwt")
        assert not world.active(token), jti


def test_family_of_another_client_does_not_make_a_token_active(world: World) -> None:
    body = world.login()
    provider = world.services.provider
    other, secret = provider.clients.add(build_client(
        name="其他应用", redirect_uris=[REDIRECT], level=2, first_party=True))
    claims = _claims(body["access_token"])
    forged = provider.keys.sign({**claims, "client_id": other.client_id,
                                 "aud": other.client_id}, typ="at+jwt")
    assert provider.tokens.verify_access(forged) is None
    assert provider.tokens.verify_access(body["access_token"]) is not None


def test_refresh_with_narrower_scope_keeps_the_grant_scope(world: World) -> None:
    first = world.login("openid profile email")
    status, second = token_request(world.rp, world.app, grant_type="refresh_token",
                                   refresh_token=first["refresh_token"], scope="openid")
    assert status == 200 and second["scope"] == "openid"
    assert _claims(str(second["access_token"]))["scope"] == "openid"
    status, third = token_request(world.rp, world.app, grant_type="refresh_token",
                                  refresh_token=str(second["refresh_token"]))
    assert status == 200 and third["scope"] == "openid profile email"  # RFC 6749 section 6


def test_refresh_with_wider_scope_changes_nothing(world: World) -> None:
    first = world.login("openid profile")
    status, body = token_request(world.rp, world.app, grant_type="refresh_token",
                                 refresh_token=first["refresh_token"], scope="openid email")
    assert status == 400 and body["error"] == "invalid_scope"
    assert token_request(world.rp, world.app, grant_type="refresh_token",
                         refresh_token=first["refresh_token"])[0] == 200


def test_racing_refreshes_one_wins_and_the_family_ends(world: World) -> None:
    first = world.login()
    results: list[int] = []

    def use() -> None:
        client = world.rp.application.test_client()
        results.append(token_request(client, world.app, grant_type="refresh_token",
                                     refresh_token=first["refresh_token"])[0])

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 400, 400, 400]
    with world.services.provider.db() as s:  # a loser saw the reuse: all revoked
        assert s.execute(select(grants.c.revoked_at)).scalar_one() is not None


@pytest.mark.parametrize("jti, family", [
    ("cc.abc", ""), ("0123456789abcdef0123456789abcdef.x", "0123456789abcdef0123456789abcdef"),
    ("abc", None), ("cc.", None), ("cc", None), ("0123456789ABCDEF0123456789ABCDEF.x", None),
    ("0123.x", None), (7, None), ("cc." + "x" * 200, None)])
def test_family_of_jti(jti: object, family: str | None) -> None:
    assert family_of_jti(jti) == family


def test_rotation_records_the_successor_in_its_transaction(world: World) -> None:
    """On SQLite the rotation runs on the driver's cursor (idp.oidc.driver), on
    PostgreSQL through SQLAlchemy: the rows are the same either way."""
    service = world.services.provider.tokens
    on_sqlite = service._engine.dialect.name == "sqlite"
    assert (service._rotation is not None) == on_sqlite
    first = world.login("openid profile offline_access")
    status, second = token_request(world.rp, world.app, grant_type="refresh_token",
                                   refresh_token=first["refresh_token"])
    assert status == 200
    with world.services.provider.db() as s:
        old = s.execute(select(tokens).where(
            tokens.c.token_id == digest(first["refresh_token"]))).one()
        new = s.execute(select(tokens).where(
            tokens.c.token_id == digest(str(second["refresh_token"])))).one()
    assert old.rotated_at is not None and old.revoked_at is None
    assert (new.kind, new.family, new.client_id, new.scope) == (
        "refresh", old.family, old.client_id, "openid profile offline_access")
    assert new.rotated_at is None and new.revoked_at is None
    assert new.expires_at - new.issued_at == OFFLINE_REFRESH_TTL
    assert new.issued_at == old.rotated_at


def test_refresh_of_an_ended_grant_rotates_nothing(world: World) -> None:
    """The grant revoked (logout, a suspended person): the compare-and-set is rolled
    back with the refusal, so the token is neither rotated nor succeeded."""
    first = world.login()
    service = world.services.provider.tokens
    with world.services.provider.db() as s:
        family = s.execute(select(tokens.c.family)).scalar_one()
    service.revoke_family(family)
    with world.services.provider.db() as s:  # revoked with the family, not rotated
        s.execute(tokens.update().values(revoked_at=None))
        s.commit()
    issued = tokens_issued(world.rp)
    status, body = token_request(world.rp, world.app, grant_type="refresh_token",
                                 refresh_token=first["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    # no successor stored, and no access token signed (which would write no row)
    assert world.count(tokens) == 1
    assert "access_token" not in body and tokens_issued(world.rp) == issued
    with world.services.provider.db() as s:
        assert s.execute(select(tokens.c.rotated_at)).scalar_one() is None
