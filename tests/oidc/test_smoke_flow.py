from __future__ import annotations

from flask.testing import FlaskClient

from tests.fixtures.idp import REDIRECT, Registered, authorize, code_of, pkce_pair, token_request


def test_code_flow_with_pkce_issues_tokens(browser: FlaskClient, rp: FlaskClient,
                                           confidential: Registered) -> None:
    verifier, challenge = pkce_pair()
    loc = authorize(browser, confidential.client, pkce=challenge)
    assert loc.startswith(REDIRECT)
    status, body = token_request(rp, confidential, grant_type="authorization_code",
                                 code=code_of(loc), redirect_uri=REDIRECT,
                                 code_verifier=verifier)
    assert status == 200, body
    assert {"access_token", "id_token", "refresh_token"} <= set(body)
