"""Hostile input at the login pages: the password form, the one-time code form,
the certificate login and its forwarded header, and the ``return`` value. Each
case is refused cleanly (the form again with a message, 400 or 429, never a 5xx),
creates no SSO session, and leaves an audit record where a security event
happened (a failed login, an ignored certificate header)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.login.tables import sso_sessions
from idp.oidc.provider import Provider
from idp.runtime.services import Services
from pki.audit_store import audit_log
from tests.fixtures.idp import (
    PASSWORD,
    csrf_of,
    freeze_throttle,
    login,
)


def count(provider: Provider, table: object) -> int:
    with provider.db() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def sessions(provider: Provider) -> list[tuple[Any, ...]]:
    """Every SSO session row, whole."""
    with provider.db() as s:
        return sorted((tuple(r) for r in s.execute(select(sso_sessions))), key=repr)


def audits(provider: Provider, action: str) -> list[dict[str, Any]]:
    with provider.db() as s:
        rows = s.execute(select(audit_log.c.target, audit_log.c.details)
                         .where(audit_log.c.action == action)).all()
    return [{"target": r.target, **json.loads(r.details)} for r in rows]


def post_login(browser: FlaskClient, **form: str) -> Any:
    page = browser.get("/login")
    data = {"uid": "zhangwei", "password": PASSWORD,
            "csrf": csrf_of(page.get_data(as_text=True)), "return": "/"}
    data.update(form)
    return browser.post("/login", data=data)


# -- the password form: hostile user names and passwords --------------------------------

HOSTILE_UIDS = {
    "empty": "",
    "blank": "   ",
    "ldap_wildcard": "*",
    "ldap_filter_injection": "zhangwei)(|(uid=*",
    "ldap_dn_injection": "zhangwei,ou=people,dc=beijing",
    "nul": "zhangwei\x00admin",
    "crlf": "zhangwei\r\nX-Injected: 1",
    "very_long": "a" * 5000,
    "full_width": "ｚｈａｎｇｗｅｉ",
    "right_to_left_override": "\u202ezhangwei",
    "sql_quote": "zhangwei' OR '1'='1",
    "html": "<script>alert(1)</script>",
}


@pytest.mark.parametrize("uid", HOSTILE_UIDS.values(), ids=HOSTILE_UIDS.keys())
def test_hostile_uid_is_refused_without_a_session(browser: FlaskClient, provider: Provider,
                                                  uid: str) -> None:
    resp = post_login(browser, uid=uid, password="wrong-password")
    assert resp.status_code in (200, 400), resp.status_code
    assert "Location" not in resp.headers
    assert "<script>alert(1)</script>" not in resp.get_data(as_text=True)
    assert count(provider, sso_sessions) == 0


HOSTILE_PASSWORDS = {
    "empty": "",
    "nul": "x\x00y",
    "oversized": "p" * 5000,
    "right_password_with_nul": PASSWORD + "\x00",
    "right_password_with_space": PASSWORD + " ",
    "ldap_wildcard": "*",
}


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS.values(), ids=HOSTILE_PASSWORDS.keys())
def test_hostile_password_is_refused_without_a_session(browser: FlaskClient,
                                                       provider: Provider,
                                                       password: str) -> None:
    resp = post_login(browser, password=password)
    assert resp.status_code in (200, 400), resp.status_code
    assert "Location" not in resp.headers
    assert count(provider, sso_sessions) == 0


def test_failed_login_is_audited_with_its_result(browser: FlaskClient,
                                                 provider: Provider) -> None:
    post_login(browser, password="wrong-password")
    assert [r["result"] for r in audits(provider, "idp.login")] == ["bad_credentials"]


FORGED_CSRF = {
    "missing": None,
    "empty": "",
    "other_session": "eyJzZWVkIjoiYWJjIn0.forged",
    "very_long": "x" * 10000,
    "nul": "abc\x00def",
}


@pytest.mark.parametrize("token", FORGED_CSRF.values(), ids=FORGED_CSRF.keys())
def test_login_with_a_forged_csrf_token_is_refused(browser: FlaskClient, provider: Provider,
                                                   token: str | None) -> None:
    browser.get("/login")
    form = {"uid": "zhangwei", "password": PASSWORD}
    if token is not None:
        form["csrf"] = token
    resp = browser.post("/login", data=form)
    assert resp.status_code == 400
    assert count(provider, sso_sessions) == 0
    assert audits(provider, "idp.login") == []  # refused before the password is tried


def test_login_as_json_body_is_refused(browser: FlaskClient, provider: Provider) -> None:
    browser.get("/login")
    resp = browser.post("/login", json={"uid": "zhangwei", "password": PASSWORD})
    assert 400 <= resp.status_code < 500
    assert count(provider, sso_sessions) == 0


# -- the return value: never another site -------------------------------------------------

HOSTILE_RETURNS = {
    "other_host": "https://evil.example/",
    "scheme_relative": "//evil.example/authorize?x=1",
    "backslash_host": "/\\evil.example",
    "javascript": "javascript:alert(1)",
    "data_url": "data:text/html,<script>alert(1)</script>",
    "crlf_header": "/authorize?x=1\r\nSet-Cookie: a=b",
    "encoded_crlf": "/authorize?x=1%0d%0aSet-Cookie:%20a=b",
    "tab": "/console/\tx",
    "non_ascii": "/console/例子",
    "other_path": "/logout",
    "authorize_with_host": "/authorize?x@evil.example",
    "triple_slash": "///evil.example",
}


@pytest.mark.parametrize("value", HOSTILE_RETURNS.values(), ids=HOSTILE_RETURNS.keys())
def test_hostile_return_goes_home_after_login(browser: FlaskClient, value: str) -> None:
    resp = post_login(browser, **{"return": value})
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location == "/" or (location.startswith(("/authorize?", "/console/"))
                               and not location.startswith("//")), location
    assert "\r" not in location and "\n" not in location


@pytest.mark.parametrize("value", HOSTILE_RETURNS.values(), ids=HOSTILE_RETURNS.keys())
def test_hostile_return_on_the_login_page_is_not_echoed_raw(browser: FlaskClient,
                                                            value: str) -> None:
    resp = browser.get("/login", query_string={"return": value})
    assert resp.status_code == 200
    assert "<script>alert(1)</script>" not in resp.get_data(as_text=True)


# -- hostile query parameters of the login page ----------------------------------------

HOSTILE_QUERIES = {
    "lang_unknown": {"lang": "xx-evil"},
    "lang_html": {"lang": "<b>"},
    "login_hint_long": {"login_hint": "a" * 10000},
    "login_hint_html": {"login_hint": "\"><script>alert(1)</script>"},
    "login_hint_nul": {"login_hint": "zhang\x00wei"},
    "return_long": {"return": "/console/" + "a" * 10000},
}


@pytest.mark.parametrize("query", HOSTILE_QUERIES.values(), ids=HOSTILE_QUERIES.keys())
def test_hostile_login_page_query_gets_a_page_not_a_500(browser: FlaskClient,
                                                        query: dict[str, str]) -> None:
    resp = browser.get("/login", query_string=query)
    assert 200 <= resp.status_code < 500
    assert "<script>alert(1)</script>" not in resp.get_data(as_text=True)


# -- the one-time code form ----------------------------------------------------------------

HOSTILE_CODES = {
    "empty": "",
    "letters": "abcdef",
    "too_long": "1" * 100,
    "full_width": "１２３４５６",
    "superscript": "¹²³⁴⁵⁶",
    "negative": "-12345",
    "nul": "123\x00456",
}


@pytest.mark.parametrize("code", HOSTILE_CODES.values(), ids=HOSTILE_CODES.keys())
def test_hostile_one_time_code_without_a_session_changes_nothing(
        browser: FlaskClient, provider: Provider, code: str) -> None:
    page = browser.get("/login")
    resp = browser.post("/login/otp", data={"code": code,
                                            "csrf": csrf_of(page.get_data(as_text=True))})
    assert 200 <= resp.status_code < 500
    assert count(provider, sso_sessions) == 0


@pytest.mark.parametrize("code", HOSTILE_CODES.values(), ids=HOSTILE_CODES.keys())
def test_hostile_one_time_code_in_a_session_is_refused(browser: FlaskClient,
                                                       provider: Provider, code: str) -> None:
    login(browser)
    before = sessions(provider)
    page = browser.get("/login/otp")
    token = csrf_of(page.get_data(as_text=True)) if page.status_code == 200 else ""
    resp = browser.post("/login/otp", data={"code": code, "csrf": token})
    assert 200 <= resp.status_code < 500
    # A step-up adds no session: it updates the one there is (amr, acr, the time of
    # the method, a new cookie digest). The rows are compared whole, not counted.
    assert sessions(provider) == before


# -- the certificate login -----------------------------------------------------------------

FORGED_HEADERS = {
    "garbage": "not a certificate",
    "pem_garbage": "-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----",
    "huge": "A" * 20000,
    "nul": "%00%00",
}


@pytest.mark.parametrize("value", FORGED_HEADERS.values(), ids=FORGED_HEADERS.keys())
def test_certificate_header_from_an_untrusted_peer_is_ignored_and_audited(
        browser: FlaskClient, provider: Provider, value: str) -> None:
    page = browser.get("/login/certificate", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    form = {"csrf": csrf_of(page.get_data(as_text=True))} if page.status_code == 200 else {}
    resp = browser.post("/login/certificate", data=form,
                        headers={"X-SSL-Client-Cert": value},
                        environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert 200 <= resp.status_code < 500
    assert count(provider, sso_sessions) == 0
    assert audits(provider, "certauth.untrusted_proxy")[-1]["target"] == "203.0.113.7"
    assert [r for r in audits(provider, "idp.login") if r.get("result") == "ok"] == []


# -- moved from tests/web/test_bad_input.py ---------------------------------------

def test_unknown_uid_and_wrong_password_look_the_same(browser: FlaskClient,
                                                      provider: Provider) -> None:
    s1, wrong_pw, _ = login(browser, password="wrong-password")
    s2, unknown, _ = login(browser, uid="nosuchperson", password="wrong-password")
    assert s1 == s2 == 200

    def strip(html: str) -> str:
        return html.replace("nosuchperson", "zhangwei")

    assert csrf_of(wrong_pw) and strip(unknown).count("用户名或密码错误") == 1
    assert wrong_pw.replace(csrf_of(wrong_pw), "") == strip(unknown).replace(
        csrf_of(unknown), "")
    assert count(provider, sso_sessions) == 0


def test_login_without_csrf_token_is_refused(browser: FlaskClient, provider: Provider) -> None:
    browser.get("/login")
    resp = browser.post("/login", data={"uid": "zhangwei", "password": "x", "csrf": "forged"})
    assert resp.status_code == 400
    assert count(provider, sso_sessions) == 0


def test_login_failures_are_throttled_per_uid(browser: FlaskClient, directory: object,
                                              services: Services) -> None:
    from idp.login.throttle import LOGIN_PER_UID

    freeze_throttle(services)
    for _ in range(LOGIN_PER_UID.failures):
        login(browser, password="wrong-password")
    status, html, _ = login(browser)  # even the right password now waits
    assert status == 429 and "尝试次数过多" in html


def test_crlf_in_login_return_goes_home_without_a_500(browser: FlaskClient,
                                                      provider: Provider) -> None:
    page = browser.get("/login")
    resp = browser.post("/login", data={"uid": "zhangwei", "password": PASSWORD,
                                        "csrf": csrf_of(page.get_data(as_text=True)),
                                        "return": "/authorize?x=1\r\nSet-Cookie: a=b"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"


@pytest.mark.parametrize("value", ["/console/\\evil", "/console/\x00", "/console/例子",
                                   "/authorize?a=1 b"],
                         ids=["backslash", "nul", "non_ascii", "space"])
def test_safe_return_refuses_unsafe_characters(app: object, value: str) -> None:
    from idp.web.kit import safe_return

    assert safe_return(value) == "/"


def test_login_csrf_failure_says_the_page_expired(browser: FlaskClient) -> None:
    browser.get("/login")
    resp = browser.post("/login", data={"uid": "zhangwei", "password": "x", "csrf": "forged"})
    assert "页面已过期，请重新提交" in resp.get_data(as_text=True)
