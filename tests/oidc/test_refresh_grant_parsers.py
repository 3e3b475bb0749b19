"""The parser of the refresh fast path (``idp.oidc.refresh_grant``): what it takes,
and one named case per thing it declines (None: the request goes to the general
path, which answers it as before). Pure functions, no server."""

from __future__ import annotations

import base64

import pytest

from idp.oidc.clients import AuthMethod
from idp.oidc.refresh_grant import MAX_BODY, MAX_FIELDS, MAX_REFRESH, RefreshRequest, parse_request
from idp.web.kit import LONG_PARAMS, MAX_PARAM

RT = b"grant_type=refresh_token&refresh_token=Zm9v-YmFy_~.1"


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_refresh_by_basic() -> None:
    assert parse_request(basic("gt-1:s3"), RT) == RefreshRequest(
        "gt-1", "s3", AuthMethod.BASIC, "Zm9v-YmFy_~.1", None)


def test_refresh_by_post_with_a_narrower_scope() -> None:
    got = parse_request(None, RT + b"&scope=openid+email&client_id=gt-1&client_secret=s3")
    assert got == RefreshRequest("gt-1", "s3", AuthMethod.POST, "Zm9v-YmFy_~.1",
                                 "openid email")


def test_repr_holds_no_secret_and_no_token() -> None:
    got = parse_request(None, RT + b"&client_id=gt-1&client_secret=hush-3")
    assert got is not None and "hush-3" not in repr(got) and "Zm9v" not in repr(got)


def test_at_its_limits() -> None:
    body = b"grant_type=refresh_token&refresh_token=" + b"r" * MAX_REFRESH \
        + b"&client_id=" + b"c" * 2048 + b"&client_secret=" + b"s" * 2048
    assert len(body) <= MAX_BODY and parse_request(None, body) is not None


def test_limits_are_within_the_general_paths() -> None:
    for name, limit in MAX_FIELDS.items():
        assert limit <= LONG_PARAMS.get(name, MAX_PARAM), name


@pytest.mark.parametrize(("authorization", "body"), [
    pytest.param(basic("gt-1:s"), b"grant_type=refresh_token", id="no-refresh-token"),
    pytest.param(basic("gt-1:s"), b"refresh_token=abc", id="no-grant-type"),
    pytest.param(basic("gt-1:s"), b"grant_type=client_credentials&refresh_token=a",
                 id="other-grant"),
    pytest.param(basic("gt-1:s"), RT + b"&refresh_token=b", id="repeated-token"),
    pytest.param(basic("gt-1:s"), b"grant_type=refresh_token&refresh_token=", id="empty"),
    pytest.param(basic("gt-1:s"), b"grant_type=refresh_token&refresh_token="
                 + b"r" * (MAX_REFRESH + 1), id="token-too-long"),
    pytest.param(basic("gt-1:s"), b"grant_type=refresh_token&refresh_token=a%2Bb",
                 id="percent-encoded"),
    pytest.param(basic("gt-1:s"), b"grant_type=refresh_token&refresh_token=a+b",
                 id="plus-in-token"),
    pytest.param(basic("gt-1:s"), RT + b"&scope=openid++email", id="empty-scope-word"),
    pytest.param(basic("gt-1:s"), RT + b"&code=x", id="unknown-field"),
    pytest.param(basic("gt-1:s"), RT + b"\x00", id="nul"),
    pytest.param(basic("gt-1:s"), RT + b"&client_id=gt-1", id="basic-and-body-client-id"),
    pytest.param(None, RT + b"&client_id=gt-1", id="public-app-none"),
    pytest.param(None, RT, id="no-client-authentication"),
    pytest.param("Basic !!!", RT, id="malformed-basic"),
])
def test_declined(authorization: str | None, body: bytes) -> None:
    assert parse_request(authorization, body) is None
