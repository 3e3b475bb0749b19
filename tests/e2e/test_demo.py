"""The demo as a user runs it: ``govtrust demo`` in a fresh home, on free ports,
then the directory, the CA and the IdP used through their real interfaces
(ldapsearch, openssl, HTTPS with our own CA, the CLI), and a clean Ctrl-C."""

from __future__ import annotations

import base64
import html
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ldap.filter
import pytest
import requests

from tests.fixtures.http import wait_for_http
from tests.fixtures.postgres import free_port

GOVTRUST = str(Path(sys.executable).with_name("govtrust"))


@dataclass
class Demo:
    home: Path
    env: dict[str, str]
    ldap_uri: str
    pki_url: str
    issuer: str
    app_url: str
    proc: subprocess.Popen[bytes]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([GOVTRUST, "--home", str(self.home), *args], env=self.env,
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"govtrust {' '.join(args)}: {done.stderr}")
        return done

    def account(self, label: str) -> tuple[str, str]:
        text = (self.home / "demo-accounts.txt").read_text(encoding="utf-8")
        found = re.search(rf"^{re.escape(label)}: (\S+) / (\S+)", text, re.M)
        assert found, text
        return found.group(1), found.group(2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    home = tmp_path_factory.mktemp("demo") / "home"
    ldap_port, pki_port, idp_port, app_port = (free_port() for _ in range(4))
    env = dict(os.environ,
               GOVTRUST_DIRECTORY_URIS=f"ldap://127.0.0.1:{ldap_port}",
               GOVTRUST_PKI_LISTEN=f"127.0.0.1:{pki_port}",
               GOVTRUST_PKI_PUBLIC_URL=f"http://127.0.0.1:{pki_port}",
               GOVTRUST_IDP_LISTEN=f"127.0.0.1:{idp_port}",
               GOVTRUST_IDP_ISSUER=f"https://127.0.0.1:{idp_port}",
               GOVTRUST_IDP_WORKERS="2",
               GOVTRUST_DEMO_SAMPLE_APP_URL=f"http://127.0.0.1:{app_port}")
    log = open(home.parent / "demo.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([GOVTRUST, "--home", str(home), "demo"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    d = Demo(home, env, f"ldap://127.0.0.1:{ldap_port}", f"http://127.0.0.1:{pki_port}",
             f"https://127.0.0.1:{idp_port}", f"http://127.0.0.1:{app_port}", proc)
    try:
        deadline = time.monotonic() + 120
        while not (home / "idp" / "tls" / "ca.pem").exists():
            assert proc.poll() is None, (home.parent / "demo.log").read_text()
            assert time.monotonic() < deadline, "demo did not initialize"
            time.sleep(0.3)
        wait_for_http(d.issuer + "/.well-known/openid-configuration", str(home / "idp/tls/ca.pem"))
        wait_for_http(d.app_url + "/", False)
        yield d
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_demo_printed_accounts_and_kept_secrets_private(demo: Demo) -> None:
    accounts = demo.home / "demo-accounts.txt"
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    toml = (demo.home / "govtrust.toml").read_text(encoding="utf-8")
    for secret in (demo.home / "secrets").iterdir():
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert secret.read_text(encoding="utf-8").strip() not in toml
    out = (demo.home.parent / "demo.log").read_text(encoding="utf-8")
    assert "service account" in out and demo.issuer in out


def test_service_account_reads_a_person_with_ldapsearch(demo: Demo) -> None:
    text = (demo.home / "demo-accounts.txt").read_text(encoding="utf-8")
    found = re.search(r"^service account \(read-only\): (\S+) / (\S+)", text, re.M)
    assert found, text
    dn, password = found.groups()
    uid, _ = demo.account("civil servant")
    base = "dc=beijing,dc=gov,dc=cn"
    out = subprocess.run(["ldapsearch", "-LLL", "-x", "-o", "ldif-wrap=no", "-H", demo.ldap_uri,
                          "-D", dn, "-w", password, "-b", base,
                          ldap.filter.filter_format("(uid=%s)", [uid])],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    encoded = re.search(r"^displayName:: (\S+)", out, re.M)
    assert encoded, out
    name = base64.b64decode(encoded.group(1)).decode("utf-8")
    assert re.fullmatch(r"[\u4e00-\u9fff]{2,4}", name), name
    assert "userPassword" not in out


def test_sample_app_logs_a_demo_person_in_over_tls(demo: Demo) -> None:
    uid, password = demo.account("civil servant")
    browser = requests.Session()
    browser.trust_env = False  # REQUESTS_CA_BUNDLE would override our own CA
    browser.verify = str(demo.home / "idp/tls/ca.pem")
    page = browser.get(demo.app_url + "/login", timeout=10)
    assert page.url.startswith(demo.issuer + "/login"), page.url
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    back = re.search(r'name="return" value="([^"]+)"', page.text)
    assert csrf and back, page.text
    done = browser.post(demo.issuer + "/login", data={
        "csrf": csrf.group(1), "return": html.unescape(back.group(1)),
        "uid": uid, "password": password}, timeout=10)
    assert done.url == demo.app_url + "/", done.text
    assert "欢迎" in done.text


def test_sample_app_runs_under_a_production_wsgi_server(demo: Demo) -> None:
    resp = requests.get(demo.app_url + "/", timeout=10)
    assert resp.headers.get("Server", "").startswith("gunicorn"), resp.headers


def _openssl_verify(demo: Demo, tmp: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    crl = tmp / "issuing.crl"
    der = requests.get(demo.pki_url + "/crl/issuing.crl", timeout=10).content
    crl.write_bytes(b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(der)
                    + b"-----END X509 CRL-----\n")
    root = demo.home / "pki" / "root.pem"
    chain = demo.home / "pki" / "chain.pem"
    return subprocess.run(["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain),
                           "-crl_check", "-CRLfile", str(crl), str(cert)],
                          capture_output=True, text=True, timeout=30)


def test_leaving_revokes_certificates_through_the_lifecycle(demo: Demo, tmp_path: Path) -> None:
    text = (demo.home / "demo-accounts.txt").read_text(encoding="utf-8")
    uid = re.findall(r"^civil servant: (\S+) /", text, re.M)[-1]
    cert = tmp_path / "user.pem"
    passfile = tmp_path / "pass"
    passfile.write_text("p12-passphrase\n", encoding="utf-8")
    demo.cli("cert", "issue", "--uid", uid, "--profile", "user-auth", "--pkcs12",
             str(tmp_path / "user.p12"), "--passphrase-file", str(passfile), "--out", str(cert))
    before = _openssl_verify(demo, tmp_path, cert)
    assert before.returncode == 0 and ": OK" in before.stdout, before.stdout + before.stderr
    demo.cli("directory", "leave", uid)
    listed = demo.cli("--json", "cert", "list", "--uid", uid).stdout
    assert '"revoked"' in listed, listed
    after = _openssl_verify(demo, tmp_path, cert)
    assert after.returncode != 0 and "certificate revoked" in after.stdout + after.stderr
    report = demo.cli("--json", "audit", "verify")
    assert '"ok": true' in report.stdout
