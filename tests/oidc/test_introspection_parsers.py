"""The parsers of the introspection fast path (``idp.oidc.introspection``): what
they take, and one named case per thing they decline (None: the request goes to
the general path, which answers it as before). Pure functions, no server."""

from __future__ import annotations

import base64

import pytest

from idp.oidc.canonical import MAX_AUTHORIZATION, MAX_VALUE, parse_basic
from idp.oidc.canonical import parse_form as parse_any_form
from idp.oidc.clients import AuthMethod
from idp.oidc.introspection import MAX_BODY, MAX_FIELDS, IntrospectionRequest, parse_request
from idp.oidc.tokens import MAX_TOKEN
from idp.web.kit import LONG_PARAMS, MAX_PARAM


def parse_form(body: bytes) -> dict[str, str] | None:
    return parse_any_form(body, MAX_FIELDS)


TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~"  # unreserved characters only


def basic(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return "Basic " + base64.b64encode(raw).decode()


# -- the form body --------------------------------------------------------------------

def test_form_with_every_field() -> None:
    body = (b"token=" + TOKEN.encode() + b"&token_type_hint=access_token"
            b"&client_id=gt-1&client_secret=s3cr3t")
    assert parse_form(body) == {"token": TOKEN, "token_type_hint": "access_token",
                                "client_id": "gt-1", "client_secret": "s3cr3t"}


@pytest.mark.parametrize("body", [
    pytest.param(b"", id="empty"),
    pytest.param(b"token", id="no-equals"),
    pytest.param(b"token=", id="empty-value"),
    pytest.param(b"token=a&", id="trailing-ampersand"),
    pytest.param(b"&token=a", id="leading-ampersand"),
    pytest.param(b"token=a&&client_id=b", id="empty-pair"),
    pytest.param(b"token=a&token=b", id="repeated"),
    pytest.param(b"token=a&scope=openid", id="unknown-field"),
    pytest.param(b"token=a&client_assertion=x", id="private-key-jwt"),
    pytest.param(b"Token=a", id="field-name-case"),
    pytest.param(b"token=a%2Eb", id="percent-encoded"),
    pytest.param(b"token=a+b", id="plus-for-space"),
    pytest.param(b"token=a b", id="raw-space"),
    pytest.param(b"token=a=b", id="second-equals"),
    pytest.param(b"token=a;b", id="semicolon"),
    pytest.param(b"token=a\r\nX-Injected: 1", id="crlf"),
    pytest.param(b"token=a\x00b", id="nul"),
    pytest.param("token=张伟".encode(), id="utf-8"),
    pytest.param(b"token=\xff\xfe", id="not-utf-8"),
    pytest.param(b"token=" + b"a" * (MAX_TOKEN + 1), id="token-too-long"),
    pytest.param(b"token=a&client_secret=" + b"s" * (MAX_VALUE + 1), id="secret-too-long"),
    pytest.param(b"token=a&client_id=" + b"c" * (MAX_VALUE + 1), id="client-id-too-long"),
    pytest.param(b"token=a&" + b"x" * MAX_BODY, id="body-too-long"),
])
def test_form_declined(body: bytes) -> None:
    assert parse_form(body) is None


def test_form_at_its_limits() -> None:
    body = (b"token=" + b"t" * MAX_TOKEN + b"&client_id=" + b"c" * MAX_VALUE
            + b"&client_secret=" + b"s" * MAX_VALUE + b"&token_type_hint=refresh_token")
    assert len(body) <= MAX_BODY
    assert parse_form(body) is not None


def test_limits_are_within_the_general_paths() -> None:
    # A value the general path refuses as too long must never be answered here.
    for name, limit in MAX_FIELDS.items():
        assert limit <= LONG_PARAMS.get(name, MAX_PARAM), name


# -- the Authorization header ---------------------------------------------------------

def test_basic_credentials() -> None:
    assert parse_basic(basic("gt-1:s3cr3t_-.~")) == ("gt-1", "s3cr3t_-.~")
    assert parse_basic("basic " + base64.b64encode(b"gt-1:s").decode()) == ("gt-1", "s")
    assert parse_basic(basic("ab:cd")) == ("ab", "cd")  # "==" padding
    assert parse_basic(basic("ab:cde")) == ("ab", "cde")  # "=" padding


@pytest.mark.parametrize("header", [
    pytest.param("", id="empty"),
    pytest.param("Basic", id="scheme-only"),
    pytest.param("Basic ", id="no-credentials"),
    pytest.param("Bearer " + TOKEN, id="bearer"),
    pytest.param("Digest username=x", id="digest"),
    pytest.param("Basic  " + base64.b64encode(b"a:b").decode(), id="two-spaces"),
    pytest.param(" Basic " + base64.b64encode(b"a:b").decode(), id="leading-space"),
    pytest.param(basic("a:b") + " ", id="trailing-space"),
    pytest.param("Basic " + base64.b64encode(b"ab:c").decode().rstrip("="), id="unpadded"),
    pytest.param("Basic " + base64.urlsafe_b64encode(b"\xfb\xff:\xfe").decode(),
                 id="urlsafe-alphabet"),
    pytest.param("Basic YT pi", id="inner-space"),
    pytest.param("Basic !!!!", id="not-base64"),
    pytest.param("Basic YQ==YQ==", id="padding-inside"),
    pytest.param(basic("no-colon"), id="no-colon"),
    pytest.param(basic(":secret"), id="empty-client-id"),
    pytest.param(basic("client:"), id="empty-secret"),
    pytest.param(basic("a:b:c"), id="colon-in-secret"),
    pytest.param(basic("gt%2D1:secret"), id="percent-encoded-id"),
    pytest.param(basic("gt-1:se%63ret"), id="percent-encoded-secret"),
    pytest.param(basic("gt 1:secret"), id="space-in-id"),
    pytest.param(basic("gt-1:sec+ret"), id="plus-in-secret"),
    pytest.param(basic("gt-1:sec\r\nret"), id="crlf"),
    pytest.param(basic(b"gt-1:\xff\xfe"), id="not-utf-8"),
    pytest.param(basic("张伟:secret"), id="utf-8"),
    pytest.param(basic("a:" + "s" * (MAX_VALUE + 1)), id="secret-too-long"),
    pytest.param("Basic " + "A" * MAX_AUTHORIZATION, id="header-too-long"),
])
def test_basic_declined(header: str) -> None:
    assert parse_basic(header) is None


# -- the request ----------------------------------------------------------------------

def test_request_with_basic() -> None:
    got = parse_request(basic("gt-1:s"), b"token=" + TOKEN.encode()
                        + b"&token_type_hint=refresh_token")
    assert got == IntrospectionRequest("gt-1", "s", AuthMethod.BASIC, TOKEN, "refresh_token")


def test_request_with_post() -> None:
    got = parse_request(None, b"client_id=gt-1&token=" + TOKEN.encode() + b"&client_secret=s")
    assert got == IntrospectionRequest("gt-1", "s", AuthMethod.POST, TOKEN, None)


def test_request_repr_holds_no_secret_and_no_token() -> None:
    got = parse_request(None, b"client_id=gt-1&token=" + TOKEN.encode() + b"&client_secret=s3")
    assert got is not None
    assert "s3" not in repr(got) and TOKEN not in repr(got) and "gt-1" in repr(got)


@pytest.mark.parametrize(("authorization", "body"), [
    pytest.param(basic("gt-1:s"), b"token_type_hint=access_token", id="no-token"),
    pytest.param(None, b"client_id=gt-1&client_secret=s", id="no-token-post"),
    pytest.param(None, b"token=a", id="no-client-authentication"),
    pytest.param(None, b"token=a&client_id=gt-1", id="client-id-without-secret"),
    pytest.param(None, b"token=a&client_secret=s", id="secret-without-client-id"),
    pytest.param(basic("gt-1:s"), b"token=a&client_secret=s", id="two-methods"),
    pytest.param(basic("gt-1:s"), b"token=a&client_id=gt-1", id="basic-and-body-client-id"),
    pytest.param(basic("gt-1:s"), b"token=a&client_id=gt-2", id="basic-and-other-client-id"),
    pytest.param("Bearer x", b"token=a&client_id=gt-1&client_secret=s",
                 id="other-scheme-beside-post"),
    pytest.param("", b"token=a&client_id=gt-1&client_secret=s", id="empty-header-beside-post"),
    pytest.param(basic("gt-1:s"), b"token=a%20", id="malformed-body"),
    pytest.param(basic("gt-1:s"), b"token=a&token_type_hint=id_token", id="unsupported-hint"),
    pytest.param(basic("gt-1:s"), b"token=a&token_type_hint=ACCESS_TOKEN", id="hint-case"),
])
def test_request_declined(authorization: str | None, body: bytes) -> None:
    assert parse_request(authorization, body) is None
