"""The grant machinery on SQLite and on PostgreSQL alike (the scaled-out database):
code exchange, replay revocation, refresh rotation and reuse detection, and the
compare-and-set that lets exactly one of two racing redemptions win."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from idp.runtime.app import create_app
from tests.fixtures.idp import (
    REDIRECT,
    FakeDirectory,
    Registered,
    authorize,
    code_of,
    make_services,
    pkce_pair,
    token_request,
)

pytestmark = pytest.mark.postgres


def test_grants_on_each_database(database_url: str, tmp_path: Path,
                                 directory: FakeDirectory) -> None:
    from idp.oidc.clients import build_client

    services = make_services(tmp_path / "home", "http://127.0.0.1:9443", directory,
                             database_url=database_url)
    app = create_app(services)
    browser, rp = app.test_client(), app.test_client()
    client, secret = services.provider.clients.add(build_client(
        name="预算管理系统", redirect_uris=[REDIRECT], level=2, first_party=True))
    reg = Registered(client, secret)
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, client, pkce=challenge))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier}

    results: list[int] = []

    def redeem() -> None:
        results.append(token_request(app.test_client(), reg, **form)[0])

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 400, 400, 400]  # one winner; the replays revoke it

    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, client, pkce=challenge))
    status, first = token_request(rp, reg, grant_type="authorization_code", code=code,
                                  redirect_uri=REDIRECT, code_verifier=verifier)
    assert status == 200
    status, second = token_request(rp, reg, grant_type="refresh_token",
                                   refresh_token=str(first["refresh_token"]))
    assert status == 200
    assert token_request(rp, reg, grant_type="refresh_token",
                         refresh_token=str(first["refresh_token"]))[0] == 400
    assert token_request(rp, reg, grant_type="refresh_token",
                         refresh_token=str(second["refresh_token"]))[0] == 400
    services.close()
