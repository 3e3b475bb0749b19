"""Hostile input at the OIDC endpoints: authorization, token, introspection,
revocation, registration and logout. Every case gets a clean protocol error (an
error page or an RFC error code, never a 5xx), issues nothing, and logs no
traceback. "Issues nothing" counts what issuing would write: codes and sessions
are rows, but an access token is self-contained and writes none, so a token
request is judged by ``Ledger``: no token in the body, the issuance counter of
``/metrics`` unmoved, and no refresh token stored, used, rotated or revoked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from idp.errors import InvalidClientMetadata
from idp.login.tables import sso_sessions
from idp.oidc.clients import validate_redirect_uri
from idp.oidc.provider import Provider
from idp.oidc.tables import auth_codes, grants, oauth_clients, revoked_access, tokens
from idp.runtime.services import Services
from tests.fixtures.idp import (
    REDIRECT,
    Registered,
    authorize,
    code_of,
    freeze_throttle,
    login,
    pkce_pair,
    token_request,
    tokens_issued,
)


def count(provider: Provider, table: object) -> int:
    with provider.db() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@dataclass
class Ledger:
    """What issuing tokens writes or moves, read when the test starts and again after
    a refused request. An access token is self-contained and writes no row, so
    counting ``oauth_tokens`` proves only that no refresh token was stored: the
    issuance counter (``govtrust_tokens_issued_total``, read from ``/metrics``) shows
    whether an access token was signed. With it: refresh tokens stored, used codes,
    refresh tokens rotated or revoked, grants ended, access tokens revoked."""

    rp: FlaskClient
    provider: Provider
    start: tuple[float, ...] = ()

    def now(self) -> tuple[float, ...]:
        def n(table: Any, *where: Any) -> int:
            with self.provider.db() as s:
                return int(s.execute(select(func.count()).select_from(table).where(*where))
                           .scalar_one())
        return (tokens_issued(self.rp), n(tokens),
                n(tokens, tokens.c.rotated_at.is_not(None) | tokens.c.revoked_at.is_not(None)),
                n(auth_codes, auth_codes.c.used_at.is_not(None)),
                n(grants, grants.c.revoked_at.is_not(None)), n(revoked_access))

    def mark(self) -> None:
        """Start counting from here (after the tokens a test issues on purpose)."""
        self.start = self.now()

    def unchanged(self, body: Mapping[str, Any] | None) -> None:
        """No token in the response, and nothing issued, used up or revoked since."""
        assert not {"access_token", "id_token", "refresh_token"} & set(body or {}), body
        assert self.now() == self.start


@pytest.fixture
def ledger(rp: FlaskClient, provider: Provider) -> Ledger:
    ledger = Ledger(rp, provider)
    ledger.mark()
    return ledger


def code_exchange(rp: FlaskClient, reg: Registered, code: str, verifier: str | None = None,
                  redirect_uri: str = REDIRECT) -> tuple[int, dict[str, object]]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier
    return token_request(rp, reg, **form)


# -- the authorization endpoint --------------------------------------------------------

def test_unknown_client_at_authorize_gets_error_page_and_no_redirect(
        browser: FlaskClient, provider: Provider) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": "gt-nobody", "redirect_uri": REDIRECT,
        "scope": "openid", "state": "s"})
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert count(provider, auth_codes) == 0


NEAR_MISSES = {
    "extra_path": "http://127.0.0.1:5000/callback/extra",
    "at_in_authority": "http://127.0.0.1:5000@evil.example/callback",
    "case_change": "http://127.0.0.1:5000/Callback",
    "dot_dot_semicolon": "http://127.0.0.1:5000/callback/..;/evil",
    "added_query": "http://127.0.0.1:5000/callback?next=evil",
    "different_port": "http://127.0.0.1:5001/callback",
    "fragment": "http://127.0.0.1:5000/callback#frag",
    "scheme_case": "HTTP://127.0.0.1:5000/callback",
    "trailing_slash": "http://127.0.0.1:5000/callback/",
}


@pytest.mark.parametrize("uri", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_near_miss_redirect_uri_is_refused_without_redirect(
        browser: FlaskClient, confidential: Registered, provider: Provider, uri: str) -> None:
    login(browser)  # even with a live session nothing is issued
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": uri, "scope": "openid", "state": "s"})
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert count(provider, auth_codes) == 0


def test_missing_redirect_uri_is_refused(browser: FlaskClient, confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id, "scope": "openid"})
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_public_client_without_pkce_is_refused(browser: FlaskClient, public: Registered,
                                              provider: Provider) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": public.client.client_id,
        "redirect_uri": public.client.redirect_uris[0], "scope": "openid", "state": "s"})
    assert resp.status_code == 302
    assert "error=invalid_request" in resp.headers["Location"]
    assert count(provider, auth_codes) == 0


def test_plain_pkce_method_is_refused(browser: FlaskClient, confidential: Registered,
                                      provider: Provider) -> None:
    verifier, _ = pkce_pair()
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid", "code_challenge": verifier,
        "code_challenge_method": "plain"})
    assert resp.status_code == 302 and "error=invalid_request" in resp.headers["Location"]
    assert count(provider, auth_codes) == 0


def test_unknown_scope_is_refused(browser: FlaskClient, confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid admin"})
    assert resp.status_code == 302 and "error=invalid_scope" in resp.headers["Location"]


def test_unsupported_response_type_is_refused(browser: FlaskClient,
                                              confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "token", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid"})
    # RFC 6749 section 4.1.2.1: the redirect URI is registered, so the error goes there
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(REDIRECT + "?error=unsupported_response_type")


def test_oversized_authorize_parameter_is_refused(browser: FlaskClient,
                                                  confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client.client_id,
        "redirect_uri": REDIRECT, "scope": "openid", "state": "x" * 5000})
    assert resp.status_code == 400 and "Location" not in resp.headers


# -- registration ------------------------------------------------------------------------

@pytest.mark.parametrize("uri", [
    "https://*.example.gov.cn/cb", "javascript:alert(1)", "data:text/html,hi",
    "http://apps.example.gov.cn/cb", "https://apps.example.gov.cn/cb#x",
    "https://user@apps.example.gov.cn/cb", "/relative/cb", "",
], ids=["wildcard", "javascript", "data", "http_not_loopback", "fragment", "userinfo",
        "relative", "empty"])
def test_bad_redirect_uri_cannot_be_registered(uri: str) -> None:
    with pytest.raises(InvalidClientMetadata):
        validate_redirect_uri(uri)


@pytest.mark.parametrize("uri", ["https://apps.example.gov.cn/cb", "http://127.0.0.1:5000/cb",
                                 "http://[::1]:8080/cb", "http://localhost/cb"])
def test_good_redirect_uri_can_be_registered(uri: str) -> None:
    assert validate_redirect_uri(uri) == uri


# -- the token endpoint --------------------------------------------------------------------

def test_unknown_client_at_token_endpoint(rp: FlaskClient, ledger: Ledger) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials"},
                   auth=("gt-nobody", "whatever"))
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"
    ledger.unchanged(resp.get_json())


def test_wrong_secret_is_refused_and_the_code_stays_usable(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        ledger: Ledger) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    wrong = Registered(confidential.client, "not-the-secret")
    status, body = code_exchange(rp, wrong, code, verifier)
    assert status == 401 and body["error"] == "invalid_client"
    ledger.unchanged(body)
    status, body = code_exchange(rp, confidential, code, verifier)
    assert status == 200, body


def test_missing_pkce_verifier_is_refused(browser: FlaskClient, rp: FlaskClient,
                                          confidential: Registered, ledger: Ledger) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, body = code_exchange(rp, confidential, code)
    assert status == 400 and body["error"] == "invalid_request"
    ledger.unchanged(body)
    assert code_exchange(rp, confidential, code, verifier)[0] == 200


def test_wrong_pkce_verifier_is_refused(browser: FlaskClient, rp: FlaskClient,
                                        confidential: Registered, ledger: Ledger) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    other, _ = pkce_pair()
    status, body = code_exchange(rp, confidential, code, other)
    assert status == 400 and body["error"] == "invalid_grant"
    ledger.unchanged(body)
    assert code_exchange(rp, confidential, code, verifier)[0] == 200


def test_public_client_missing_verifier_is_refused(browser: FlaskClient, rp: FlaskClient,
                                                   public: Registered,
                                                   ledger: Ledger) -> None:
    _, challenge = pkce_pair()
    code = code_of(authorize(browser, public.client, pkce=challenge))
    status, body = code_exchange(rp, public, code, redirect_uri=public.client.redirect_uris[0])
    assert status == 400 and body["error"] == "invalid_request"
    ledger.unchanged(body)


def test_verifier_without_prior_challenge_is_refused(browser: FlaskClient, rp: FlaskClient,
                                                     confidential: Registered,
                                                     ledger: Ledger) -> None:
    code = code_of(authorize(browser, confidential.client))
    verifier, _ = pkce_pair()
    status, body = code_exchange(rp, confidential, code, verifier)
    assert status == 400 and body["error"] == "invalid_request"
    ledger.unchanged(body)


def test_replayed_code_is_refused_and_revokes_what_it_issued(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, first = code_exchange(rp, confidential, code, verifier)
    assert status == 200
    issued = tokens_issued(rp)
    status, body = code_exchange(rp, confidential, code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    assert "access_token" not in body and tokens_issued(rp) == issued
    # what the first exchange issued no longer works
    intro = rp.post("/introspect", data={"token": first["access_token"]},
                    auth=(confidential.client.client_id, confidential.secret))
    assert intro.get_json() == {"active": False}
    status, body = token_request(rp, confidential, grant_type="refresh_token",
                                 refresh_token=str(first["refresh_token"]))
    assert status == 400 and body["error"] == "invalid_grant"


def test_expired_code_is_refused(browser: FlaskClient, rp: FlaskClient,
                                 confidential: Registered, provider: Provider,
                                 ledger: Ledger) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    with provider.db.begin() as s:  # 61 s later
        s.execute(update(auth_codes).values(expires_at=auth_codes.c.expires_at - 61))
    status, body = code_exchange(rp, confidential, code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    ledger.unchanged(body)


def test_code_of_another_client_is_refused(browser: FlaskClient, rp: FlaskClient,
                                           confidential: Registered, provider: Provider,
                                           ledger: Ledger) -> None:
    from idp.oidc.clients import build_client

    other, secret = provider.clients.add(build_client(
        name="其他应用", redirect_uris=[REDIRECT], level=2, first_party=True))
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, body = code_exchange(rp, Registered(other, secret), code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    ledger.unchanged(body)
    assert code_exchange(rp, confidential, code, verifier)[0] == 200


def test_code_with_different_redirect_uri_is_refused(browser: FlaskClient, rp: FlaskClient,
                                                     confidential: Registered,
                                                     ledger: Ledger) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    status, body = code_exchange(rp, confidential, code, verifier,
                                 redirect_uri=REDIRECT + "/x")
    assert status == 400 and body["error"] == "invalid_grant"
    ledger.unchanged(body)


def test_rotated_refresh_token_reuse_revokes_the_family(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    _, first = code_exchange(rp, confidential, code, verifier)
    status, second = token_request(rp, confidential, grant_type="refresh_token",
                                   refresh_token=str(first["refresh_token"]))
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    status, body = token_request(rp, confidential, grant_type="refresh_token",
                                 refresh_token=str(first["refresh_token"]))
    assert status == 400 and body["error"] == "invalid_grant"
    # the whole family is gone: the newest refresh token and access token too
    status, body = token_request(rp, confidential, grant_type="refresh_token",
                                 refresh_token=str(second["refresh_token"]))
    assert status == 400 and body["error"] == "invalid_grant"
    intro = rp.post("/introspect", data={"token": second["access_token"]},
                    auth=(confidential.client.client_id, confidential.secret))
    assert intro.get_json() == {"active": False}


def test_refresh_token_of_another_client_is_refused(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider, ledger: Ledger) -> None:
    from idp.oidc.clients import build_client

    other, secret = provider.clients.add(build_client(
        name="其他应用", redirect_uris=[REDIRECT], level=2, first_party=True))
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    _, first = code_exchange(rp, confidential, code, verifier)
    ledger.mark()
    status, body = token_request(rp, Registered(other, secret), grant_type="refresh_token",
                                 refresh_token=str(first["refresh_token"]))
    assert status == 400 and body["error"] == "invalid_grant"
    ledger.unchanged(body)  # not rotated, not revoked, nothing issued
    assert token_request(rp, confidential, grant_type="refresh_token",
                         refresh_token=str(first["refresh_token"]))[0] == 200


def test_unsupported_grant_type(rp: FlaskClient, confidential: Registered,
                                ledger: Ledger) -> None:
    status, body = token_request(rp, confidential, grant_type="password", username="zhangwei",
                                 password="x")
    assert status == 400 and body["error"] == "unsupported_grant_type"
    ledger.unchanged(body)


def test_public_client_cannot_use_client_credentials(rp: FlaskClient, public: Registered,
                                                     ledger: Ledger) -> None:
    status, body = token_request(rp, public, grant_type="client_credentials")
    assert status in (400, 401) and body["error"] in ("invalid_client", "unauthorized_client")
    ledger.unchanged(body)


def test_malformed_json_body_at_token_endpoint(rp: FlaskClient, confidential: Registered,
                                               ledger: Ledger) -> None:
    resp = rp.post("/token", data='{"grant_type": "client_credentials",',
                   content_type="application/json",
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_well_formed_json_body_is_refused_too(rp: FlaskClient, confidential: Registered,
                                              ledger: Ledger) -> None:
    resp = rp.post("/token", data=json.dumps({"grant_type": "client_credentials"}),
                   content_type="application/json",
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_malformed_form_body_at_token_endpoint(rp: FlaskClient, confidential: Registered,
                                               ledger: Ledger) -> None:
    resp = rp.post("/token", data=b"grant_type=client_credentials&scope=\xff\xfe%zz",
                   content_type="application/x-www-form-urlencoded",
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_parameters_in_query_string_are_refused(rp: FlaskClient, confidential: Registered,
                                                ledger: Ledger) -> None:
    resp = rp.post("/token?client_secret=" + str(confidential.secret),
                   data={"grant_type": "client_credentials",
                         "client_id": confidential.client.client_id})
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_oversized_parameter_at_token_endpoint(rp: FlaskClient, confidential: Registered,
                                               ledger: Ledger) -> None:
    status, body = token_request(rp, confidential, grant_type="client_credentials",
                                 scope="openid " * 1000)
    assert status == 400 and body["error"] == "invalid_request"
    ledger.unchanged(body)


def test_oversized_body_at_token_endpoint(rp: FlaskClient, confidential: Registered,
                                          ledger: Ledger) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials", "pad": "x" * 70_000},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 413 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_failures_are_throttled_per_client(rp: FlaskClient, confidential: Registered,
                                           provider: Provider, services: Services,
                                           ledger: Ledger) -> None:

    from idp.login.throttle import TOKEN_PER_CLIENT

    freeze_throttle(services)  # no window rolls over between the failures
    wrong = Registered(confidential.client, "nope")
    for _ in range(TOKEN_PER_CLIENT.failures):
        assert token_request(rp, wrong, grant_type="client_credentials")[0] == 401
    status, body = token_request(rp, confidential, grant_type="client_credentials")
    assert status == 429 and body["error"] == "slow_down"
    ledger.unchanged(body)


# -- introspection -------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, object], claims: dict[str, object], key: bytes | None) -> str:
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)


def _real_claims(rp: FlaskClient, reg: Registered) -> tuple[str, dict[str, object]]:
    _, body = token_request(rp, reg, grant_type="client_credentials")
    token = str(body["access_token"])
    payload = token.split(".")[1]
    return token, json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_alg_none_token_is_inactive_at_introspection(rp: FlaskClient,
                                                     confidential: Registered,
                                                     provider: Provider) -> None:
    token, claims = _real_claims(rp, confidential)
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    forged = _forge({"alg": "none", "typ": "at+jwt", "kid": kid}, claims, None)
    resp = rp.post("/introspect", data={"token": forged},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 200 and resp.get_json() == {"active": False}


def test_hs256_token_signed_with_public_key_is_inactive(rp: FlaskClient,
                                                        confidential: Registered,
                                                        provider: Provider) -> None:
    token, claims = _real_claims(rp, confidential)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    jwk_json = json.dumps([k for k in provider.keys.jwks()["keys"]
                           if k["kid"] == header["kid"]][0]).encode()
    forged = _forge({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}, claims, jwk_json)
    resp = rp.post("/introspect", data={"token": forged},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.get_json() == {"active": False}
    # and the genuine token is active, so the refusal is the forgery's
    resp = rp.post("/introspect", data={"token": token},
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.get_json()["active"] is True


def test_introspection_needs_client_authentication(rp: FlaskClient,
                                                   confidential: Registered) -> None:
    token, _ = _real_claims(rp, confidential)
    resp = rp.post("/introspect", data={"token": token})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"


def test_introspection_with_json_body_is_refused(rp: FlaskClient,
                                                 confidential: Registered) -> None:
    resp = rp.post("/introspect", data="{not json", content_type="application/json",
                   auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"


def test_revocation_of_unknown_token_is_ok_and_changes_nothing(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        ledger: Ledger) -> None:
    # Revoking writes a revoked jti (an access token) or ends a grant and its refresh
    # tokens (a refresh token): a person's grant, so either would show.
    body = _exchange(browser, rp, confidential)
    ledger.mark()
    auth = (confidential.client.client_id, str(confidential.secret))
    for hint in (None, "access_token", "refresh_token"):
        form = {"token": "no-such-token", **({"token_type_hint": hint} if hint else {})}
        assert rp.post("/revoke", data=form, auth=auth).status_code == 200
    ledger.unchanged(None)
    for token in (body["access_token"], body["refresh_token"]):
        assert rp.post("/introspect", data={"token": token}, auth=auth).get_json()["active"]


def test_revocation_with_wrong_secret_is_refused(rp: FlaskClient, confidential: Registered,
                                                 ledger: Ledger) -> None:
    token, _ = _real_claims(rp, confidential)
    ledger.mark()
    resp = rp.post("/revoke", data={"token": token},
                   auth=(confidential.client.client_id, "wrong"))
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    ledger.unchanged(resp.get_json())
    intro = rp.post("/introspect", data={"token": token},
                    auth=(confidential.client.client_id, confidential.secret))
    assert intro.get_json()["active"] is True



@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The serve log shows no traceback for any hostile case (testing mode would
    also raise an unhandled exception straight into the test)."""
    caplog.set_level(logging.WARNING)
    yield
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def query(client: Registered, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": client.client.client_id,
            "redirect_uri": REDIRECT, "scope": "openid", "state": "s", "nonce": "n",
            **extra}


def error_of(location: str) -> str:
    assert location.startswith(REDIRECT + "?"), location
    return parse_qs(urlsplit(location).query)["error"][0]


# -- 5. /authorize: values authlib would copy into an error ----------------------------

BAD_REDIRECTS = {
    "backslash": REDIRECT + "\\..\\evil",
    "crlf": REDIRECT + "\r\nSet-Cookie: x=y",
    "idn": "http://例子.测试/callback",
    "full_width": "http://127.0.0.1:5000/ｃａｌｌｂａｃｋ",
}


@pytest.mark.parametrize("uri", BAD_REDIRECTS.values(), ids=BAD_REDIRECTS.keys())
def test_malformed_redirect_uri_gets_an_error_page_not_a_500(
        browser: FlaskClient, confidential: Registered, provider: Provider, uri: str) -> None:
    resp = browser.get("/authorize", query_string=query(confidential, redirect_uri=uri))
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert count(provider, auth_codes) == 0


def test_non_ascii_response_type_goes_back_as_invalid_request(
        browser: FlaskClient, confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string=query(confidential, response_type="cödé"))
    assert resp.status_code == 302 and error_of(resp.headers["Location"]) == "invalid_request"


def test_crlf_in_state_is_refused_without_echoing_it(browser: FlaskClient,
                                                     confidential: Registered) -> None:
    resp = browser.get("/authorize", query_string=query(confidential, state="a\r\nb"))
    loc = resp.headers["Location"]
    assert error_of(loc) == "invalid_request" and "state=" not in loc


def test_non_ascii_grant_type_at_token_is_invalid_request(rp: FlaskClient,
                                                         confidential: Registered,
                                                         ledger: Ledger) -> None:
    status, body = token_request(rp, confidential, grant_type="授权码")
    assert status == 400 and body["error"] == "invalid_request"
    ledger.unchanged(body)


# -- 5. Authorization: Basic that does not decode ----------------------------------------

BAD_BASIC = {
    "not_utf8": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "not_base64": "Basic !!!not-base64!!!",
    "no_colon": "Basic " + base64.b64encode(b"gt-client-without-colon").decode(),
}


@pytest.mark.parametrize("endpoint", ["/token", "/introspect", "/revoke"])
@pytest.mark.parametrize("header", BAD_BASIC.values(), ids=BAD_BASIC.keys())
def test_malformed_basic_credentials_are_invalid_client(rp: FlaskClient, ledger: Ledger,
                                                        endpoint: str, header: str) -> None:
    resp = rp.post(endpoint, data={"grant_type": "client_credentials", "token": "t"},
                   headers={"Authorization": header})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    ledger.unchanged(resp.get_json())


# -- 6. what a signed-in person can be led into ------------------------------------------

def test_superscript_max_age_is_invalid_request(browser: FlaskClient,
                                               confidential: Registered) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(confidential, max_age="²"))
    assert resp.status_code == 302 and error_of(resp.headers["Location"]) == "invalid_request"


def test_full_width_max_age_is_invalid_request(browser: FlaskClient,
                                              confidential: Registered) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(confidential, max_age="３"))
    assert error_of(resp.headers["Location"]) == "invalid_request"


BAD_CLAIMS = {
    "id_token_string": '{"id_token": "acr"}',
    "id_token_null": '{"id_token": null}',
    "acr_values_number": '{"id_token": {"acr": {"essential": true, "values": 4}}}',
    "essential_string": '{"id_token": {"acr": {"essential": "yes", "values": ["x"]}}}',
    "array_not_object": "[" * 1000 + "]" * 1000,
    "deep_objects": '{"a":' * 600 + "1" + "}" * 600,
    "not_json": "{id_token",
}


@pytest.mark.parametrize("claims", BAD_CLAIMS.values(), ids=BAD_CLAIMS.keys())
def test_malformed_claims_parameter_is_invalid_request(
        browser: FlaskClient, confidential: Registered, provider: Provider,
        claims: str) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(confidential, claims=claims))
    if resp.status_code == 400:  # longer than a parameter may be: refused before parsing
        assert "Location" not in resp.headers
    else:
        assert error_of(resp.headers["Location"]) == "invalid_request"
    assert count(provider, auth_codes) == 0


def test_well_formed_claims_request_still_works(browser: FlaskClient,
                                                confidential: Registered) -> None:
    claims = json.dumps({"id_token": {"acr": None, "name": {"essential": True}},
                         "userinfo": {"email": None}})
    loc = authorize(browser, confidential.client, extra={"claims": claims})
    assert code_of(loc)


# -- 8. OIDC conformance -------------------------------------------------------------------

def test_request_object_is_refused_with_request_not_supported(
        browser: FlaskClient, confidential: Registered, provider: Provider) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(confidential, request="eyJ.eyJ.sig"))
    assert error_of(resp.headers["Location"]) == "request_not_supported"
    assert count(provider, auth_codes) == 0


def test_request_uri_is_refused_with_request_uri_not_supported(
        browser: FlaskClient, confidential: Registered, provider: Provider) -> None:
    login(browser)
    resp = browser.get("/authorize", query_string=query(
        confidential, request_uri="https://evil.example/req.jwt"))
    assert error_of(resp.headers["Location"]) == "request_uri_not_supported"
    assert count(provider, auth_codes) == 0


def test_discovery_says_request_objects_are_not_supported(browser: FlaskClient) -> None:
    meta = browser.get("/.well-known/openid-configuration").get_json()
    assert meta["request_parameter_supported"] is False
    assert meta["request_uri_parameter_supported"] is False


def test_duplicate_nonce_at_authorize_is_refused(browser: FlaskClient,
                                                 confidential: Registered,
                                                 provider: Provider) -> None:
    login(browser)
    params = list(query(confidential).items()) + [("nonce", "second")]
    resp = browser.get("/authorize", query_string=params)
    assert error_of(resp.headers["Location"]) == "invalid_request"
    assert count(provider, auth_codes) == 0


def test_duplicate_max_age_at_authorize_is_refused(browser: FlaskClient,
                                                   confidential: Registered) -> None:
    login(browser)
    params = list(query(confidential).items()) + [("max_age", "0"), ("max_age", "9999")]
    resp = browser.get("/authorize", query_string=params)
    assert error_of(resp.headers["Location"]) == "invalid_request"


def _code(browser: FlaskClient, reg: Registered) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    return code_of(authorize(browser, reg.client, pkce=challenge)), verifier


def test_duplicate_code_at_token_is_refused(browser: FlaskClient, rp: FlaskClient,
                                            confidential: Registered,
                                            ledger: Ledger) -> None:
    code, verifier = _code(browser, confidential)
    body = (f"grant_type=authorization_code&code={code}&code=other&redirect_uri={REDIRECT}"
            f"&code_verifier={verifier}")
    resp = rp.post("/token", data=body, content_type="application/x-www-form-urlencoded",
                   auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_basic_and_client_secret_post_together_are_refused(
        rp: FlaskClient, confidential: Registered, ledger: Ledger) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials",
                                   "client_id": confidential.client.client_id,
                                   "client_secret": "wrong-body-secret"},
                   auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_basic_with_another_body_client_id_is_refused(
        rp: FlaskClient, confidential: Registered, public: Registered,
        ledger: Ledger) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials",
                                   "client_id": public.client.client_id},
                   auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_client_assertion_and_basic_together_are_refused(
        rp: FlaskClient, confidential: Registered, ledger: Ledger) -> None:
    resp = rp.post("/token", data={
        "grant_type": "client_credentials", "client_assertion": "eyJ.eyJ.sig",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
        auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    ledger.unchanged(resp.get_json())


def test_basic_with_the_same_body_client_id_still_works(rp: FlaskClient,
                                                        confidential: Registered) -> None:
    resp = rp.post("/token", data={"grant_type": "client_credentials",
                                   "client_id": confidential.client.client_id},
                   auth=(confidential.client.client_id, str(confidential.secret)))
    assert resp.status_code == 200, resp.get_json()


def _exchange(browser: FlaskClient, rp: FlaskClient, reg: Registered) -> dict[str, object]:
    code, verifier = _code(browser, reg)
    status, body = token_request(rp, reg, grant_type="authorization_code", code=code,
                                 redirect_uri=REDIRECT, code_verifier=verifier)
    assert status == 200, body
    return body


def _live_sessions(provider: Provider) -> int:
    with provider.db() as s:
        return int(s.execute(select(func.count()).select_from(sso_sessions).where(
            sso_sessions.c.ended_at.is_(None))).scalar_one())


def test_access_token_as_id_token_hint_is_refused(browser: FlaskClient, rp: FlaskClient,
                                                  confidential: Registered,
                                                  provider: Provider) -> None:
    body = _exchange(browser, rp, confidential)
    resp = browser.get("/logout", query_string={"id_token_hint": body["access_token"]})
    assert resp.status_code == 400
    assert _live_sessions(provider) == 1
    # the genuine ID token still ends the session without asking
    done = browser.get("/logout", query_string={"id_token_hint": body["id_token"]})
    assert done.status_code == 200 and _live_sessions(provider) == 0


def test_userinfo_refuses_a_client_credentials_token(rp: FlaskClient,
                                                     confidential: Registered) -> None:
    status, body = token_request(rp, confidential, grant_type="client_credentials",
                                 scope="openid")
    assert status == 200, body
    resp = rp.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_token"


def test_another_app_introspecting_a_token_hears_inactive(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    from idp.oidc.clients import build_client

    other, secret = provider.clients.add(build_client(
        name="其他应用", redirect_uris=[REDIRECT], level=2, first_party=True))
    body = _exchange(browser, rp, confidential)
    for token in (body["access_token"], body["refresh_token"]):
        resp = rp.post("/introspect", data={"token": token}, auth=(other.client_id, secret))
        assert resp.status_code == 200 and resp.get_json() == {"active": False}
        own = rp.post("/introspect", data={"token": token},
                      auth=(confidential.client.client_id, str(confidential.secret)))
        assert own.get_json()["active"] is True


# -- moved from the login section of tests/web/test_bad_input.py ------------------

def test_unregistered_post_logout_redirect_uri_is_refused(
        browser: FlaskClient, rp: FlaskClient, confidential: Registered,
        provider: Provider) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(authorize(browser, confidential.client, pkce=challenge))
    _, body = code_exchange(rp, confidential, code, verifier)
    resp = browser.get("/logout", query_string={
        "id_token_hint": body["id_token"],
        "post_logout_redirect_uri": "http://127.0.0.1:5000/bye/../evil"})
    assert resp.status_code == 400 and "Location" not in resp.headers
    with provider.db() as s:
        assert s.execute(select(func.count()).select_from(sso_sessions).where(
            sso_sessions.c.ended_at.is_(None))).scalar_one() == 1


def test_removed_client_cannot_get_tokens(rp: FlaskClient, confidential: Registered,
                                          provider: Provider, ledger: Ledger) -> None:
    provider.clients.remove(confidential.client.client_id)
    with provider.db() as s:
        assert s.execute(select(oauth_clients)).first() is None
    status, body = token_request(rp, confidential, grant_type="client_credentials")
    assert status == 401 and body["error"] == "invalid_client"
    ledger.unchanged(body)
