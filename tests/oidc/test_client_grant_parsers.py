"""The parser of the client-credentials fast path (``idp.oidc.client_grant``) and
the scope words ``idp.oidc.canonical.parse_form`` reads: what they take, and one
named case per thing they decline (None: the request goes to the general path,
which answers it as before). Pure functions, no server."""

from __future__ import annotations

import base64

import pytest

from idp.oidc.canonical import MAX_VALUE
from idp.oidc.client_grant import MAX_BODY, MAX_FIELDS, GrantRequest, parse_request
from idp.oidc.clients import AuthMethod
from idp.web.kit import MAX_PARAM

CC = b"grant_type=client_credentials"


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_grant_by_basic_without_scope() -> None:
    assert parse_request(basic("gt-1:s3"), CC) == GrantRequest(
        "gt-1", "s3", AuthMethod.BASIC, None)


def test_grant_by_post_with_scope_words() -> None:
    body = CC + b"&scope=openid+profile+email&client_id=gt-1&client_secret=s3"
    assert parse_request(None, body) == GrantRequest(
        "gt-1", "s3", AuthMethod.POST, "openid profile email")


def test_fields_in_any_order() -> None:
    body = b"client_secret=s3&scope=openid&client_id=gt-1&" + CC
    assert parse_request(None, body) == GrantRequest("gt-1", "s3", AuthMethod.POST, "openid")


def test_repr_holds_no_secret() -> None:
    got = parse_request(None, CC + b"&client_id=gt-1&client_secret=hush-3")
    assert got is not None and "hush-3" not in repr(got) and "gt-1" in repr(got)


def test_at_its_limits() -> None:
    scope = b"+".join([b"a" * 9] * (MAX_VALUE // 10)) + b"+a"
    assert len(scope) <= MAX_VALUE
    body = CC + b"&scope=" + scope + b"&client_id=" + b"c" * MAX_VALUE \
        + b"&client_secret=" + b"s" * MAX_VALUE
    assert len(body) <= MAX_BODY
    got = parse_request(None, body)
    assert got is not None and got.scope == scope.decode().replace("+", " ")


def test_limits_are_within_the_general_paths() -> None:
    # Nothing the general path would refuse as too long is answered here.
    assert max(MAX_FIELDS.values()) <= MAX_PARAM


@pytest.mark.parametrize(("authorization", "body"), [
    pytest.param(basic("gt-1:s"), b"", id="empty"),
    pytest.param(basic("gt-1:s"), b"scope=openid", id="no-grant-type"),
    pytest.param(basic("gt-1:s"), b"grant_type=authorization_code", id="other-grant"),
    pytest.param(basic("gt-1:s"), b"grant_type=client_credentialsX", id="grant-too-long"),
    pytest.param(basic("gt-1:s"), b"grant_type=Client_Credentials", id="grant-case"),
    pytest.param(basic("gt-1:s"), CC + b"&" + CC, id="repeated-grant"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=a&scope=b", id="repeated-scope"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=", id="empty-scope"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=+openid", id="leading-plus"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=openid+", id="trailing-plus"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=openid++email", id="empty-word"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=openid%20email", id="percent-space"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=openid email", id="raw-space"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=" + b"a" * (MAX_VALUE + 1), id="scope-long"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=\xe5\xbc\xa0", id="utf-8"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=a\x00", id="nul"),
    pytest.param(basic("gt-1:s"), CC + b"\r\nscope=a", id="crlf"),
    pytest.param(basic("gt-1:s"), CC + b"&resource=x", id="unknown-field"),
    pytest.param(basic("gt-1:s"), CC + b"&client_assertion=x", id="private-key-jwt"),
    pytest.param(basic("gt-1:s"), CC + b"&", id="trailing-ampersand"),
    pytest.param(basic("gt-1:s"), CC + b"&client_id=gt-1", id="basic-and-body-client-id"),
    pytest.param(basic("gt-1:s"), CC + b"&client_secret=s", id="two-methods"),
    pytest.param(basic("gt-1:s"), CC + b"&scope=" + b"a" * 70000, id="body-too-large"),
    pytest.param(None, CC, id="no-client-authentication"),
    pytest.param(None, CC + b"&client_id=gt-1", id="client-id-without-secret"),
    pytest.param(None, CC + b"&client_secret=s", id="secret-without-client-id"),
    pytest.param("Basic !!!", CC, id="malformed-basic"),
    pytest.param("Bearer x", CC + b"&client_id=gt-1&client_secret=s", id="other-scheme"),
    pytest.param(basic("gt-1:" + "s" * (MAX_VALUE + 1)), CC, id="oversized-secret"),
    pytest.param(basic("gt 1:s"), CC, id="space-in-client-id"),
])
def test_declined(authorization: str | None, body: bytes) -> None:
    assert parse_request(authorization, body) is None
