"""One trusted-proxy rule at the web edge (issue 9, section 2): behind a proxy
configured as a CIDR range, the certificate header is believed, the login throttle
counts each real client on its own, and the audit log records the real client."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from idp.login.forwarded import TrustedProxies
from idp.login.tables import throttle_windows
from idp.login.throttle import LOGIN_PER_ADDRESS
from tests.fixtures.idp import csrf_of, freeze_throttle
from tests.web.test_login_views import (  # noqa: F401 - env is a fixture
    PASSWORD,
    Env,
    auth_query,
    certificate_login,
    env,
    pem_header,
)

pytestmark = pytest.mark.slapd

PROXY = "10.8.3.4"  # inside 10.8.0.0/16
ALICE, BOB = "198.51.100.7", "2001:db8::b0b"


@pytest.fixture
def proxied(env: Env) -> Env:  # noqa: F811 - the imported fixture
    env.services.provider.trusted_proxies = TrustedProxies.parse(["10.8.0.0/16",
                                                                  "fd00:8::/32"])
    return env


def via_proxy(client: str, peer: str = PROXY) -> dict[str, Any]:
    # nginx's $proxy_add_x_forwarded_for: what the client sent, then its address.
    return {"environ_base": {"REMOTE_ADDR": peer},
            "headers": {"X-Forwarded-For": f"203.0.113.66, {client}"}}


def post_login(e: Env, uid: str, password: str, client: str,
               peer: str = PROXY) -> Any:
    kw = via_proxy(client, peer)
    page = e.browser.get("/login?return=/", **kw)
    return e.browser.post("/login", data={"uid": uid, "password": password, "return": "/",
                                            "csrf": csrf_of(page.text)}, **kw)


def test_certificate_header_from_a_cidr_proxy_is_believed(proxied: Env) -> None:
    cert = proxied.certificate()
    resp = certificate_login(proxied, auth_query(proxied.apps["level1"]), cert,
                             environ={"REMOTE_ADDR": PROXY})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/authorize?")
    assert proxied.audit("certauth.untrusted_proxy") == []
    assert proxied.audit("idp.login")[-1]["method"] == "swk"


def test_certificate_header_from_an_ipv6_cidr_proxy_is_believed(proxied: Env) -> None:
    resp = certificate_login(proxied, auth_query(proxied.apps["level1"]),
                             proxied.certificate(), environ={"REMOTE_ADDR": "fd00:8::1"})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/authorize?")


def test_certificate_header_from_outside_the_range_is_ignored(proxied: Env) -> None:
    resp = certificate_login(proxied, auth_query(proxied.apps["level1"]),
                             proxied.certificate(), environ={"REMOTE_ADDR": "10.9.0.1"})
    assert resp.status_code == 403
    assert proxied.audit("certauth.untrusted_proxy")[-1]["target"] == "10.9.0.1"


def test_throttle_is_per_real_client_behind_a_cidr_proxy(proxied: Env) -> None:
    freeze_throttle(proxied.services)  # no window rolls over between the 30 failures
    for i in range(LOGIN_PER_ADDRESS.failures):  # a different uid each time: the
        resp = post_login(proxied, f"nobody{i}", "wrong", ALICE)  # per-uid limit stays open
        assert resp.status_code == 200, i
    assert post_login(proxied, "lina", PASSWORD, ALICE).status_code == 429
    # Bob, behind the same proxy, has a bucket of his own and logs in.
    assert post_login(proxied, "lina", PASSWORD, BOB).status_code == 302
    with proxied.services.sessions() as s:
        keys = set(s.scalars(select(throttle_windows.c.key)))
    assert f"login-addr:{ALICE}" in keys
    assert not any(PROXY in k for k in keys)


def test_audit_records_the_real_client_behind_a_cidr_proxy(proxied: Env) -> None:
    assert post_login(proxied, "lina", PASSWORD, ALICE).status_code == 302
    assert proxied.audit("idp.login")[-1]["address"] == ALICE
    assert post_login(proxied, "lina", "wrong", BOB).status_code == 200
    assert proxied.audit("idp.login")[-1]["address"] == BOB


def test_certificate_login_audit_records_the_real_client(proxied: Env) -> None:
    cert = proxied.certificate()
    page = proxied.browser.get("/login/certificate?return=/", **via_proxy(ALICE))
    kw = via_proxy(ALICE)
    resp = proxied.browser.post("/login/certificate", data={"return": "/",
                                                            "csrf": csrf_of(page.text)},
                                environ_base=kw["environ_base"],
                                headers={**kw["headers"], **pem_header(cert)})
    assert resp.status_code == 302
    assert proxied.audit("idp.login")[-1]["address"] == ALICE


def test_forwarded_for_from_an_untrusted_peer_is_not_believed(proxied: Env) -> None:
    assert post_login(proxied, "lina", PASSWORD, ALICE, peer="192.0.2.50").status_code == 302
    assert proxied.audit("idp.login")[-1]["address"] == "192.0.2.50"
