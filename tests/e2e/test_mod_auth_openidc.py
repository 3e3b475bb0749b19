"""Acceptance: Apache httpd with mod_auth_openidc (a real, independent relying party)
logs a person from the real slapd in through the IdP and passes the ``department``
claim to the page it protects (a server-side include echoing OIDC_CLAIM_department)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from idp.oidc.clients import build_client
from idp.runtime.app import create_app
from tests.e2e.test_sample_app import PASSWORD, add_demo_person, submit_login_form
from tests.fixtures.idp import make_services
from tests.fixtures.postgres import free_port
from tests.fixtures.servers import serving

pytestmark = pytest.mark.slapd

APACHE = Path("/usr/sbin/apache2")
MODULES = Path("/usr/lib/apache2/modules")

CONF = """\
ServerRoot {root}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {root}/httpd.pid
ErrorLog {root}/error.log
LogLevel warn auth_openidc:info
User www-data
Group www-data
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authn_core_module {mods}/mod_authn_core.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule authz_user_module {mods}/mod_authz_user.so
LoadModule include_module {mods}/mod_include.so
LoadModule headers_module {mods}/mod_headers.so
LoadModule auth_openidc_module {mods}/mod_auth_openidc.so
DocumentRoot {root}/htdocs

OIDCProviderMetadataURL {issuer}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCRedirectURI http://127.0.0.1:{port}/protected/redirect_uri
OIDCCryptoPassphrase {passphrase}
OIDCScope "openid email profile department groups"
OIDCPKCEMethod S256
OIDCPassClaimsAs environment

<Directory {root}/htdocs>
    Options +Includes
    Require all granted
</Directory>
<Location /protected>
    AuthType openid-connect
    Require valid-user
    SetOutputFilter INCLUDES
    Header always set X-Department "%{{OIDC_CLAIM_department}}e"
</Location>
"""

PAGE = """<!doctype html><html lang="zh-CN"><meta charset="utf-8"><body>
<p id="name"><!--#echo encoding="none" var="OIDC_CLAIM_name" --></p>
<p id="department"><!--#echo encoding="none" var="OIDC_CLAIM_department" --></p>
</body></html>
"""


@pytest.fixture
def apache_root() -> Iterator[Path]:
    if not APACHE.exists() or not (MODULES / "mod_auth_openidc.so").exists():
        pytest.fail("apache2 and libapache2-mod-auth-openidc are not installed: run scripts/setup")
    root = Path(tempfile.mkdtemp(prefix="govtrust-apache-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def start_apache(root: Path, port: int, **values: str) -> subprocess.Popen[bytes]:
    (root / "htdocs" / "protected").mkdir(parents=True)
    for d in (root / "htdocs", root / "htdocs" / "protected"):
        os.chmod(d, 0o755)
    page = root / "htdocs" / "protected" / "index.shtml"
    page.write_text(PAGE, encoding="utf-8")
    os.chmod(page, 0o644)
    conf = root / "httpd.conf"
    conf.write_text(CONF.format(root=root, port=port, mods=MODULES, **values), encoding="utf-8")
    proc = subprocess.Popen([str(APACHE), "-f", str(conf), "-DFOREGROUND"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "apache exited")
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("apache did not start: " + (root / "error.log").read_text())


def test_mod_auth_openidc_logs_in_and_receives_department(
        directory_service: Any, tmp_path: Path, apache_root: Path) -> None:
    add_demo_person(directory_service)
    idp_port, port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    services = make_services(tmp_path / "home", issuer, directory_service.gateway)
    client, secret = services.provider.clients.add(build_client(
        name="Apache 部门门户", redirect_uris=[f"http://127.0.0.1:{port}/protected/redirect_uri"],
        level=2, first_party=True))
    assert secret
    with serving(create_app(services), idp_port):
        proc = start_apache(apache_root, port, issuer=issuer, client_id=client.client_id,
                            client_secret=secret, passphrase=secrets.token_urlsafe(24))
        try:
            browser = requests.Session()
            page = browser.get(f"http://127.0.0.1:{port}/protected/index.shtml", timeout=15)
            assert page.url.startswith(issuer + "/login"), page.text
            done = submit_login_form(browser, page, "lina", PASSWORD)
            assert done.status_code == 200, (done.status_code, done.text,
                                             (apache_root / "error.log").read_text())
            done.encoding = "utf-8"
            assert '<p id="department">市财政局/预算处</p>' in done.text, done.text
            assert '<p id="name">李娜</p>' in done.text
            assert done.headers["X-Department"].encode("latin-1").decode() == "市财政局/预算处"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    services.close()
