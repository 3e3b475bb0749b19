"""Strong login end to end: ``govtrust demo`` in a fresh home on
free ports, its TLS front (gunicorn, optional client certificate), a real nginx in
front of it forwarding the client certificate in a header, ``curl --cert``,
``oathtool``, the CLI for certificates and apps, and ID tokens checked with PyJWT
against the published JWKS. Nothing is mocked.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures.http import wait_for_http
from tests.fixtures.postgres import free_port

GOVTRUST = str(Path(sys.executable).with_name("govtrust"))
PROXY_ADDRESS = "127.0.0.2"  # nginx connects to the IdP from here; 127.0.0.1 is untrusted


@dataclass
class App:
    client_id: str
    secret: str
    redirect_uri: str


@dataclass
class Server:
    home: Path
    env: dict[str, str]
    issuer: str
    proxy: str  # nginx in front of the IdP
    ca: Path  # trust bundle for the IdP's server certificate
    tmp: Path
    apps: dict[str, App] = field(default_factory=dict)

    def cli(self, *args: str) -> Any:
        done = subprocess.run([GOVTRUST, "--home", str(self.home), "--json", *args],
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"govtrust {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    def account(self, label: str, index: int = 0) -> tuple[str, str]:
        text = (self.home / "demo-accounts.txt").read_text(encoding="utf-8")
        found = re.findall(rf"^{re.escape(label)}[^:]*: (\S+) / (\S+)", text, re.M)
        assert len(found) > index, text
        return found[index]

    def issue(self, uid: str, profile: str = "user-auth") -> tuple[Path, Path, str]:
        """(certificate, key, serial) from the CA through the CLI."""
        stem = self.tmp / f"{uid}-{profile}-{time.monotonic_ns()}"
        cert, key = stem.with_suffix(".pem"), stem.with_suffix(".key")
        rec = self.cli("cert", "issue", "--uid", uid, "--profile", profile, "--pkcs12",
                       str(stem.with_suffix(".p12")), "--key-out", str(key), "--out", str(cert))
        return cert, key, str(rec["serial"])

    def audit(self, action: str) -> list[dict[str, Any]]:
        with sqlite3.connect(self.home / "govtrust.db") as db:
            rows = db.execute("SELECT target, details FROM audit_log WHERE action = ? "
                              "ORDER BY seq", (action,)).fetchall()
        return [{"target": t, **json.loads(d)} for t, d in rows]


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_verify_client optional_no_ca;
        location / {{
            proxy_pass https://127.0.0.1:{idp_port};
            proxy_bind {proxy_address};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("strong")
    home = tmp / "home"
    ldap_port, pki_port, idp_port, app_port, nginx_port, rp_port = (free_port()
                                                                    for _ in range(6))
    issuer = f"https://127.0.0.1:{idp_port}"
    env = dict(os.environ,
               GOVTRUST_DIRECTORY_URIS=f"ldap://127.0.0.1:{ldap_port}",
               GOVTRUST_PKI_LISTEN=f"127.0.0.1:{pki_port}",
               GOVTRUST_PKI_PUBLIC_URL=f"http://127.0.0.1:{pki_port}",
               GOVTRUST_IDP_LISTEN=f"127.0.0.1:{idp_port}",
               GOVTRUST_IDP_ISSUER=issuer, GOVTRUST_IDP_WORKERS="2",
               GOVTRUST_IDP_TRUSTED_PROXIES=PROXY_ADDRESS,
               GOVTRUST_DEMO_SAMPLE_APP_URL=f"http://127.0.0.1:{app_port}",
               GOVTRUST_PKCS12_PASSPHRASE="test-pkcs12-passphrase")
    log = open(tmp / "demo.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([GOVTRUST, "--home", str(home), "demo"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    nginx: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 120
        while not (home / "idp" / "tls" / "ca.pem").exists():
            assert proc.poll() is None, (tmp / "demo.log").read_text()
            assert time.monotonic() < deadline, "demo did not initialize"
            time.sleep(0.3)
        ca = home / "idp" / "tls" / "ca.pem"
        wait_for_http(issuer + "/.well-known/openid-configuration", str(ca))
        tls = home / "idp" / "tls"
        cert = next(p for p in (tls / "server.pem", tls / "cert.pem", tls / "chain.pem")
                    if p.exists())
        key = next(p for p in (tls / "server.key", tls / "key.pem") if p.exists())
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(
            tmp=tmp, port=nginx_port, cert=cert, key=key, idp_port=idp_port,
            proxy_address=PROXY_ADDRESS), encoding="utf-8")
        nginx = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proxy = f"https://127.0.0.1:{nginx_port}"
        wait_for_http(proxy + "/.well-known/openid-configuration", str(ca))
        s = Server(home, env, issuer, proxy, ca, tmp)
        rp = f"http://127.0.0.1:{rp_port}/cb"
        for name, extra in (("level1", ["--level", "1"]), ("level3", ["--level", "3"]),
                            ("restricted", ["--level", "3", "--info-class", "restricted",
                                            "--group", "security-admins"])):
            data = s.cli("client", "add", "--name", f"测试应用-{name}", "--redirect-uri", rp,
                         "--first-party", *extra)
            s.apps[name] = App(data["client_id"], data["client_secret"], rp)
        yield s
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# -- helpers: a browser (requests), curl, the code exchange -----------------------------

def browser(server: Server, cert: tuple[Path, Path] | None = None,
            like: requests.Session | None = None) -> requests.Session:
    """A browser; ``like`` shares its cookies (a new TLS connection, e.g. with a cert)."""
    b = requests.Session()
    b.trust_env = False
    b.verify = str(server.ca)
    if cert is not None:
        b.cert = (str(cert[0]), str(cert[1]))
    if like is not None:
        b.cookies = like.cookies
    return b


def authorize_url(server: Server, app: App, base: str | None = None, **extra: str) -> str:
    params = {"response_type": "code", "client_id": app.client_id,
              "redirect_uri": app.redirect_uri, "scope": "openid profile", "state": "st-1",
              "nonce": "n-1", **extra}
    return (base or server.issuer) + "/authorize?" + urlencode(params)


def follow(b: requests.Session, url: str, base: str) -> requests.Response:
    """GET and follow redirects within the IdP; stop at the app's redirect URI."""
    resp = b.get(url, allow_redirects=False, timeout=20)
    for _ in range(10):
        loc = resp.headers.get("Location")
        if resp.status_code not in (302, 303) or loc is None or not (
                loc.startswith("/") or loc.startswith(base)):
            return resp
        resp = b.get(loc if loc.startswith("http") else base + loc, allow_redirects=False,
                     timeout=20)
    raise AssertionError("redirect loop")


def form(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, page
    return html.unescape(found.group(1))


def post_form(b: requests.Session, base: str, path: str, page: str,
              **fields: str) -> requests.Response:
    data = {"csrf": form(page, "csrf"), "return": form(page, "return"), **fields}
    return b.post(base + path, data=data, allow_redirects=False, timeout=20)


def password_login(server: Server, b: requests.Session, app: App, uid: str, password: str,
                   base: str | None = None) -> requests.Response:
    base = base or server.issuer
    page = follow(b, authorize_url(server, app, base), base)
    assert urlsplit(page.url).path == "/login", (page.status_code, page.url)
    done = post_form(b, base, "/login", page.text, uid=uid, password=password)
    assert done.status_code == 302, done.text
    return follow(b, base + done.headers["Location"], base)


def certificate_step(b: requests.Session, base: str, page_url: str) -> requests.Response:
    """On the certificate page: press the button (the TLS layer or nginx sends the cert)."""
    page = b.get(page_url, timeout=20)
    assert page.status_code == 200, page.text
    return post_form(b, base, "/login/certificate", page.text)


def code_of(resp: requests.Response, app: App) -> str:
    loc = resp.headers.get("Location", "")
    assert resp.status_code == 302 and loc.startswith(app.redirect_uri), (
        resp.status_code, loc, resp.text[:500])
    query = parse_qs(urlsplit(loc).query)
    assert "code" in query, loc
    return query["code"][0]


def id_token(server: Server, app: App, code: str) -> dict[str, Any]:
    """Exchange the code; verify the ID token's signature against the JWKS."""
    resp = requests.post(server.issuer + "/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": app.redirect_uri},
        auth=(app.client_id, app.secret), verify=str(server.ca), timeout=20)
    assert resp.status_code == 200, resp.text
    token = resp.json()["id_token"]
    keys = jwt.PyJWKSet.from_dict(requests.get(server.issuer + "/jwks", verify=str(server.ca),
                                               timeout=20).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(token, key=key, algorithms=["ES256", "RS256"], audience=app.client_id,
                      issuer=server.issuer)


class Curl:
    """curl with a cookie jar, as a person at a terminal would use it."""

    def __init__(self, server: Server, cert: Path | None, key: Path | None,
                 name: str, interface: str | None = None) -> None:
        self.server = server
        self.jar = server.tmp / f"{name}-{time.monotonic_ns()}.jar"
        self.tls = ["--cacert", str(server.ca)]
        if interface is not None:  # the source address of the connection
            self.tls += ["--interface", interface]
        if cert is not None and key is not None:
            self.tls += ["--cert", str(cert), "--key", str(key)]

    def __call__(self, url: str, data: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, str | None, str]:
        cmd = ["curl", "-sS", "-i", "--max-time", "20", *self.tls, "-b", str(self.jar),
               "-c", str(self.jar)]
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}: {v}"]
        if data is not None:
            cmd += ["--data", urlencode(data)]
        out = subprocess.run([*cmd, url], capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr.decode()
        head, _, body = out.stdout.decode("utf-8", "replace").partition("\r\n\r\n")
        status = int(head.split()[1])
        loc = re.search(r"^location: (\S+)", head, re.M | re.I)
        return status, loc.group(1) if loc else None, body


def curl_certificate_login(server: Server, curl: Curl, app: App, base: str,
                           headers: dict[str, str] | None = None) -> tuple[int, str | None, str]:
    """/authorize -> /login -> the certificate page -> its POST; then follow the
    redirect back to /authorize. Returns the last (status, Location, body)."""
    status, loc, _ = curl(authorize_url(server, app, base), headers=headers)
    assert status == 302 and loc is not None and loc.startswith("/login?"), (status, loc)
    back = parse_qs(urlsplit(loc).query)["return"][0]
    status, _, page = curl(base + "/login/certificate?" + urlencode({"return": back}),
                           headers=headers)
    assert status == 200, page
    status, loc, body = curl(base + "/login/certificate",
                             {"csrf": form(page, "csrf"), "return": form(page, "return")},
                             headers=headers)
    if status != 302 or loc is None:
        return status, loc, body
    return curl(base + loc, headers=headers)


def _code_in(location: str | None) -> str:
    assert location is not None
    return parse_qs(urlsplit(location).query)["code"][0]


# -- acceptance: certificate login, then revocation ------------------------------------------

def test_curl_certificate_login_through_tls_front_then_refused_after_revoke(
        server: Server) -> None:
    uid, _ = server.account("civil servant", 0)
    cert, key, serial = server.issue(uid)
    app = server.apps["level1"]
    status, loc, body = curl_certificate_login(server, Curl(server, cert, key, "c1"), app,
                                               server.issuer)
    assert status == 302 and loc and loc.startswith(app.redirect_uri), (status, loc, body)
    claims = id_token(server, app, _code_in(loc))
    assert claims["amr"] == ["swk"] and claims["preferred_username"] == uid

    server.cli("cert", "revoke", serial, "--reason", "keyCompromise")
    status, loc, body = curl_certificate_login(server, Curl(server, cert, key, "c2"), app,
                                               server.issuer)
    assert status == 403 and loc is None
    assert "该证书已被吊销" in body
    refused = server.audit("certauth.refused")
    assert any(r.get("serial") == serial and r["reason"] == "revoked" for r in refused)


def test_curl_certificate_login_through_nginx_then_refused_after_revoke(
        server: Server) -> None:
    uid, _ = server.account("civil servant", 1)
    cert, key, serial = server.issue(uid)
    app = server.apps["level1"]
    status, loc, body = curl_certificate_login(server, Curl(server, cert, key, "n1"), app,
                                               server.proxy)
    assert status == 302 and loc and loc.startswith(app.redirect_uri), (status, loc, body)
    assert id_token(server, app, _code_in(loc))["preferred_username"] == uid
    assert any(r.get("serial") == serial and r.get("source") == "proxy"
               for r in server.audit("idp.login"))

    server.cli("cert", "revoke", serial, "--reason", "keyCompromise")
    status, loc, body = curl_certificate_login(server, Curl(server, cert, key, "n2"), app,
                                               server.proxy)
    assert status == 403 and "该证书已被吊销" in body


# -- acceptance: step-up from a password to a level-3 app ------------------------------------

def test_step_up_from_password_to_level_3_with_only_the_certificate(server: Server) -> None:
    uid, password = server.account("civil servant", 2)
    cert, key, _ = server.issue(uid)
    low, high = server.apps["level1"], server.apps["level3"]
    b = browser(server)
    first = id_token(server, low, code_of(password_login(server, b, low, uid, password), low))
    # acr says what the session reaches (a password: level 2), not only what was needed
    assert first["acr"] == "urn:govtrust:loa:2" and first["amr"] == ["pwd"]

    asked = follow(b, authorize_url(server, high), server.issuer)
    assert urlsplit(asked.url).path == "/login/certificate", asked.url  # only the missing one
    with_cert = browser(server, (cert, key), like=b)  # same cookies, the cert at handshake
    done = certificate_step(with_cert, server.issuer, asked.url)
    assert done.status_code == 302, done.text
    resp = follow(with_cert, server.issuer + done.headers["Location"], server.issuer)
    claims = id_token(server, high, code_of(resp, high))
    assert claims["acr"] == "urn:govtrust:loa:3"
    assert {"pwd", "swk"} <= set(claims["amr"]) and "mfa" in claims["amr"]
    assert claims["sid"] == first["sid"]  # the session was kept, not replaced


def test_prompt_none_below_the_level_gets_unmet_authentication_requirements(
        server: Server) -> None:
    uid, password = server.account("civil servant", 3)
    low, high = server.apps["level1"], server.apps["level3"]
    b = browser(server)
    code_of(password_login(server, b, low, uid, password), low)
    resp = follow(b, authorize_url(server, high, prompt="none"), server.issuer)
    assert "error=unmet_authentication_requirements" in resp.headers["Location"]


def test_acr_values_ask_for_level_3_at_a_level_1_app(server: Server) -> None:
    uid, password = server.account("civil servant", 3)
    low = server.apps["level1"]
    b = browser(server)
    code_of(password_login(server, b, low, uid, password), low)
    resp = follow(b, authorize_url(server, low, acr_values="urn:govtrust:loa:3"),
                  server.issuer)
    assert urlsplit(resp.url).path == "/login/certificate", resp.url


# -- acceptance: a restricted (依法专用类) app --------------------------------------------------

def test_restricted_app_refuses_a_person_outside_its_group(server: Server) -> None:
    uid, password = server.account("civil servant", 4)
    low, restricted = server.apps["level1"], server.apps["restricted"]
    b = browser(server)
    code_of(password_login(server, b, low, uid, password), low)
    page = follow(b, authorize_url(server, restricted), server.issuer)
    assert page.status_code == 403
    assert "依法专用类" in page.text and "请联系该用户组的管理员" in page.text
    assert "error=access_denied" in page.text  # the way back tells the app
    en = follow(b, authorize_url(server, restricted, lang="en"), server.issuer)
    assert en.status_code == 403 and "restricted information" in en.text
    assert any(r["reason"] == "not_in_group" for r in server.audit("idp.access_denied"))


def test_restricted_app_lets_a_member_in(server: Server) -> None:
    uid, password = server.account("administrator")
    cert, key, _ = server.issue(uid)
    restricted = server.apps["restricted"]
    b = browser(server)
    asked = password_login(server, b, restricted, uid, password)
    assert urlsplit(asked.url).path == "/login/certificate", asked.url
    with_cert = browser(server, (cert, key), like=b)
    done = certificate_step(with_cert, server.issuer, asked.url)
    resp = follow(with_cert, server.issuer + done.headers["Location"], server.issuer)
    claims = id_token(server, restricted, code_of(resp, restricted))
    assert claims["acr"] == "urn:govtrust:loa:3" and claims["preferred_username"] == uid


# -- acceptance: one-time codes from oathtool ---------------------------------------------

def oathtool(secret: str, at: float | None = None) -> str:
    cmd = ["oathtool", "--totp", "-b", secret]
    if at is not None:
        cmd += ["-N", f"@{int(at)}"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True,
                          timeout=10).stdout.strip()


def enrol(server: Server, b: requests.Session) -> tuple[str, list[str]]:
    """Enrol on the web page; activate with the previous step's code (so the current
    one is still unused); return the secret and the recovery codes shown once."""
    start = b.get(server.issuer + "/otp/enrol?return=/", timeout=20)
    assert start.status_code == 200 and 'id="enrol-begin"' in start.text, start.text
    page = post_form(b, server.issuer, "/otp/enrol", start.text, begin="1")
    assert page.status_code == 200 and "<svg" in page.text, page.text
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text)
    assert secret, page.text
    done = post_form(b, server.issuer, "/otp/enrol", page.text,
                     code=oathtool(secret.group(1), time.time() - 30))
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>", done.text)
    assert len(codes) == 10, done.text
    return secret.group(1), codes


def otp_step(server: Server, b: requests.Session, back: str, **fields: str
             ) -> requests.Response:
    page = b.get(server.issuer + "/login/otp?" + urlencode({"return": back}), timeout=20)
    assert page.status_code == 200, page.text
    return post_form(b, server.issuer, "/login/otp", page.text, **fields)


def test_oathtool_code_accepted_once_then_refused(server: Server) -> None:
    uid, password = server.account("civil servant", 5)
    cert, key, _ = server.issue(uid)
    high = server.apps["level3"]

    def certificate_login(b: requests.Session) -> str:
        asked = follow(b, authorize_url(server, high), server.issuer)
        assert urlsplit(asked.url).path == "/login", asked.url
        back = parse_qs(urlsplit(asked.url).query)["return"][0]
        done = certificate_step(b, server.issuer, server.issuer + "/login/certificate?"
                                + urlencode({"return": back}))
        assert done.status_code == 302
        return back

    # enrol in one session (level 1-2): a factor enrolled in a session does not count in it
    first = browser(server, (cert, key))
    certificate_login(first)
    secret, _ = enrol(server, first)
    # the next session: the certificate, then the code from the authenticator held since
    b = browser(server, (cert, key))
    back = certificate_login(b)
    code = oathtool(secret)
    ok = otp_step(server, b, back, code=code)
    assert ok.status_code == 302, ok.text
    resp = follow(b, server.issuer + ok.headers["Location"], server.issuer)
    claims = id_token(server, high, code_of(resp, high))
    assert claims["acr"] == "urn:govtrust:loa:3" and {"swk", "otp"} <= set(claims["amr"])

    again = otp_step(server, b, back, code=code)
    assert again.status_code == 401 and "该验证码已使用过" in again.text
    assert any(r["target"] == uid and r["result"] == "replayed" for r in
               server.audit("idp.otp"))


# -- bad input through the web flow ---------------------------------------------------------

@pytest.fixture(scope="module")
def otp_person(server: Server) -> tuple[requests.Session, list[str], str]:
    """A person logged in with a password, enrolled; (browser, recovery codes, uid)."""
    uid, password = server.account("civil servant", 6)
    b = browser(server)
    code_of(password_login(server, b, server.apps["level1"], uid, password),
            server.apps["level1"])
    _, codes = enrol(server, b)
    return b, codes, uid


def test_otp_with_letters_is_refused(server: Server, otp_person: Any) -> None:
    b, _, _ = otp_person
    resp = otp_step(server, b, "/", code="12ab56")
    assert resp.status_code == 401 and "验证码应为6位数字" in resp.text


def test_otp_of_the_wrong_length_is_refused(server: Server, otp_person: Any) -> None:
    b, _, _ = otp_person
    resp = otp_step(server, b, "/", code="1234567")
    assert resp.status_code == 401 and "验证码应为6位数字" in resp.text


def test_recovery_code_used_twice_is_refused(server: Server, otp_person: Any) -> None:
    b, codes, uid = otp_person
    assert otp_step(server, b, "/", recovery=codes[0]).status_code == 302
    again = otp_step(server, b, "/", recovery=codes[0])
    assert again.status_code == 401 and "已使用过" in again.text
    kinds = [(r["kind"], r["result"]) for r in server.audit("idp.otp") if r["target"] == uid]
    assert ("recovery", "ok") in kinds and ("recovery", "replayed") in kinds


def _other_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(server: Server, issuer_name: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
          name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(issuer_key, hashes.SHA256()))
    stem = server.tmp / f"{name}-{time.monotonic_ns()}"
    stem.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    stem.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return stem.with_suffix(".pem"), stem.with_suffix(".key")


def _refused_via_nginx(server: Server, cert: Path, key: Path, reason: str) -> str:
    status, _, body = curl_certificate_login(server, Curl(server, cert, key, reason),
                                             server.apps["level1"], server.proxy)
    assert status == 403, (status, body)
    assert any(r["reason"] == reason for r in server.audit("certauth.refused"))
    return body


def test_certificate_from_an_unknown_ca_is_refused(server: Server) -> None:
    ca, ca_key = _other_ca("某省数字证书认证中心")
    cert, key = _leaf(server, ca.subject, ca_key, "lisi")
    assert "不是由本系统信任的认证机构签发" in _refused_via_nginx(server, cert, key,
                                                                "unknown_ca")


def _refused_from_trusted_proxy(server: Server, cert: Path, reason: str) -> str:
    """nginx itself stops these two at the handshake (it sees the signature failure and
    the wrong purpose): the IdP's own check is shown with the header as a proxy that
    passes them would send it, from the trusted proxy address."""
    header = {"X-SSL-Client-Cert": quote(cert.read_text(encoding="ascii"))}
    status, _, body = curl_certificate_login(
        server, Curl(server, None, None, reason, interface=PROXY_ADDRESS),
        server.apps["level1"], server.issuer, headers=header)
    assert status == 403, (status, body)
    assert any(r["reason"] == reason and r["source"] == "proxy"
               for r in server.audit("certauth.refused"))
    return body


def test_certificate_with_a_forged_chain_is_refused(server: Server) -> None:
    ours = x509.load_pem_x509_certificate((server.home / "pki" / "chain.pem").read_bytes())
    _, forger = _other_ca("forger")
    cert, _ = _leaf(server, ours.subject, forger, "forged")  # our CA's name, not its key
    assert "疑似伪造" in _refused_from_trusted_proxy(server, cert, "forged_chain")


def test_certificate_without_client_auth_is_refused(server: Server) -> None:
    uid, _ = server.account("civil servant", 7)
    cert, _, _ = server.issue(uid, "user-sign")
    assert "不是身份认证证书" in _refused_from_trusted_proxy(server, cert, "no_client_auth")


def test_certificate_on_hold_is_refused(server: Server) -> None:
    uid, _ = server.account("civil servant", 7)
    cert, key, serial = server.issue(uid)
    server.cli("cert", "hold", serial)
    assert "已被暂停使用" in _refused_via_nginx(server, cert, key, "on_hold")


def test_client_certificate_header_from_an_untrusted_address_is_ignored(
        server: Server) -> None:
    uid, _ = server.account("civil servant", 8)
    cert, _, _ = server.issue(uid)
    forged_header = {"X-SSL-Client-Cert": quote(cert.read_text(encoding="ascii"))}
    status, _, body = curl_certificate_login(server, Curl(server, None, None, "hdr"),
                                             server.apps["level1"], server.issuer,
                                             headers=forged_header)
    assert status == 403 and "来源不可信" in body
    assert any(r["target"] == "127.0.0.1" for r in server.audit("certauth.untrusted_proxy"))
