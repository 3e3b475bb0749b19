"""Every endpoint where a client authenticates shares one failure budget.

A client secret guessed at ``/introspect`` or ``/revoke`` (200 against 401 tells
a right guess from a wrong one as well as ``/token`` does) is counted like one
guessed at ``/token``; a client (or address) that has run out is refused at all
three, even with the right secret, and nothing is looked up for it. The
throttle's clock stands still mid-window, so the window cannot roll over between
the failures of a test.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from idp.login.throttle import TOKEN_PER_CLIENT
from idp.runtime.services import Services
from tests.fixtures.idp import Registered, freeze_throttle, token_request

ENDPOINTS = ("/token", "/introspect", "/revoke")


@pytest.fixture(autouse=True)
def frozen_throttle(services: Services) -> None:
    freeze_throttle(services)


def call(rp: FlaskClient, endpoint: str, reg: Registered, token: str = "x") -> int:
    data = ({"grant_type": "client_credentials"} if endpoint == "/token"
            else {"token": token})
    return rp.post(endpoint, data=data, auth=(reg.client.client_id, reg.secret)).status_code


@pytest.mark.parametrize("guessed_at", ENDPOINTS)
def test_guesses_at_any_endpoint_close_all_three(rp: FlaskClient,
                                                 confidential: Registered,
                                                 guessed_at: str) -> None:
    status, body = token_request(rp, confidential, grant_type="client_credentials")
    assert status == 200
    token = str(body["access_token"])
    wrong = Registered(confidential.client, "not-the-secret")
    for i in range(TOKEN_PER_CLIENT.failures):
        assert call(rp, guessed_at, wrong) == 401, i
    # The right secret, now: refused everywhere, and the token is neither
    # introspected nor revoked.
    for endpoint in ENDPOINTS:
        resp = rp.post(endpoint, data=({"grant_type": "client_credentials"}
                                       if endpoint == "/token" else {"token": token}),
                       auth=(confidential.client.client_id, confidential.secret))
        assert resp.status_code == 429, endpoint
        assert resp.get_json()["error"] == "slow_down"
        assert resp.headers["Retry-After"] == "60"


def test_guesses_spread_over_the_endpoints_share_one_budget(
        rp: FlaskClient, confidential: Registered) -> None:
    wrong = Registered(confidential.client, "not-the-secret")
    for i in range(TOKEN_PER_CLIENT.failures):
        assert call(rp, ENDPOINTS[i % 3], wrong) == 401, i
    assert call(rp, "/introspect", confidential) == 429


def test_a_client_in_good_standing_is_not_slowed_by_its_successes(
        rp: FlaskClient, confidential: Registered) -> None:
    status, body = token_request(rp, confidential, grant_type="client_credentials")
    token = str(body["access_token"])
    for _ in range(TOKEN_PER_CLIENT.failures + 5):
        assert call(rp, "/introspect", confidential, token) == 200
    assert call(rp, "/revoke", confidential, token) == 200
    resp = rp.post("/introspect", data={"token": token},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 200 and resp.get_json() == {"active": False}
