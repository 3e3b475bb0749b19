"""``govtrust node`` refuses what a node cannot serve on, and ``govtrust deploy
nginx`` refuses what nginx cannot use: each a clear error, nothing started.
The database checks run against a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from idp.runtime.cli import cli
from idp.runtime.config import write_config
from idp.runtime.nginx import (
    NginxConfigError,
    NginxSettings,
    Upstream,
    ocsp_post_js,
    render,
    stapling_responder,
)
from idp.runtime.node import NodeRefused, check_database, safe_url
from tests.fixtures.postgres import PostgresCluster, free_port

GOVTRUST = str(Path(sys.executable).with_name("govtrust"))


def _home(tmp_path: Path, database_url: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    write_config(home, {"database": {"url": database_url}})
    return home


def test_node_refuses_sqlite_with_a_clear_error(tmp_path: Path) -> None:
    home = _home(tmp_path, f"sqlite:///{tmp_path / 'govtrust.db'}")
    done = subprocess.run([GOVTRUST, "--home", str(home), "node", "--listen",
                           f"127.0.0.1:{free_port()}"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "node refused to start" in done.stderr and "PostgreSQL" in done.stderr
    assert "SQLite" in done.stderr


def test_node_refuses_an_unreachable_database_without_showing_its_password(
        tmp_path: Path) -> None:
    url = f"postgresql+psycopg://govtrust:s3cret-pw@127.0.0.1:{free_port()}/govtrust"
    home = _home(tmp_path, url)
    done = subprocess.run([GOVTRUST, "--home", str(home), "node"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "cannot reach the database" in done.stderr
    assert "s3cret-pw" not in done.stderr and "***" in done.stderr


def test_node_refuses_a_read_only_database(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with pytest.raises(NodeRefused, match="read-only"):
        check_database(url)


def test_node_accepts_a_writable_postgresql(postgres: PostgresCluster) -> None:
    check_database(postgres.create_database())  # no exception


def test_node_refuses_a_url_that_is_not_a_database_url() -> None:
    with pytest.raises(NodeRefused, match="not a database URL"):
        check_database("not a url")


def test_safe_url_masks_the_password() -> None:
    assert "pw" not in safe_url("postgresql+psycopg://u:pw@h/db")


# -- govtrust deploy nginx ---------------------------------------------------------------

def test_deploy_nginx_refuses_a_node_without_a_port(tmp_path: Path) -> None:
    home = _home(tmp_path, f"sqlite:///{tmp_path / 'db'}")
    result = CliRunner().invoke(cli, ["--home", str(home), "deploy", "nginx", "--node",
                                      "127.0.0.1"])
    assert result.exit_code != 0 and "expected HOST:PORT" in result.output


def test_deploy_nginx_refuses_when_nginx_is_not_a_trusted_proxy(tmp_path: Path) -> None:
    home = _home(tmp_path, f"sqlite:///{tmp_path / 'db'}")
    result = CliRunner().invoke(cli, ["--home", str(home), "deploy", "nginx", "--node",
                                      "127.0.0.1:8001"])
    assert result.exit_code != 0 and "trusted_proxies" in result.output


def test_deploy_nginx_needs_the_proxy_address_for_a_remote_node(tmp_path: Path) -> None:
    home = _home(tmp_path, f"sqlite:///{tmp_path / 'db'}")
    result = CliRunner().invoke(cli, ["--home", str(home), "deploy", "nginx", "--node",
                                      "10.0.0.5:8000"])
    assert result.exit_code != 0 and "--proxy-address" in result.output


def _settings(tmp_path: Path, **changes: object) -> NginxSettings:
    values: dict[str, object] = dict(
        nodes=(Upstream.parse("127.0.0.1:8001"), Upstream.parse("[::1]:8002")),
        idp_listen="127.0.0.1:8443", pki_listen="127.0.0.1:8080", server_name="sso.gov.cn",
        certificate=tmp_path / "server.pem", certificate_key=tmp_path / "server.key",
        public_root=tmp_path / "public", trusted_certificate=tmp_path / "server.pem",
        full=False)
    values.update(changes)
    return NginxSettings(**values)  # type: ignore[arg-type]


def test_nginx_config_has_the_security_settings(tmp_path: Path) -> None:
    text = render(_settings(tmp_path))
    for line in ("ssl_verify_client optional_no_ca;", "ssl_protocols TLSv1.2 TLSv1.3;",
                 "proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;",
                 "server 127.0.0.1:8001 max_fails=2 fail_timeout=10s;",
                 "server [::1]:8002 max_fails=2", "Strict-Transport-Security",
                 "proxy_set_header X-Forwarded-Proto $scheme;"):
        assert line in text
    assert "non_idempotent" not in text  # a POST already sent is never replayed


def test_nginx_config_staples_ocsp_from_its_own_pki_server(tmp_path: Path) -> None:
    text = render(_settings(tmp_path))
    for line in ("ssl_stapling on;", "ssl_stapling_verify on;",
                 f'ssl_trusted_certificate "{tmp_path / "server.pem"}";',
                 "ssl_stapling_responder http://127.0.0.1:8080/ocsp;"):
        assert line in text
    assert "resolver" not in text  # an IP literal: nothing to resolve


@pytest.mark.parametrize(("listen", "url"), [
    ("0.0.0.0:80", "http://127.0.0.1:80/ocsp"), ("[::]:80", "http://[::1]:80/ocsp"),
    ("10.0.1.5:8080", "http://10.0.1.5:8080/ocsp"), ("[::1]:81", "http://[::1]:81/ocsp")])
def test_stapling_responder_is_the_pki_server_on_loopback_when_it_listens_on_all(
        listen: str, url: str) -> None:
    assert stapling_responder(listen) == url


def test_nginx_answers_ocsp_post_from_files_only_with_the_njs_script(tmp_path: Path) -> None:
    plain = render(_settings(tmp_path))
    assert "js_" not in plain and "try_files /nonexistent @node;" in plain
    script = tmp_path / "govtrust_ocsp.js"
    text = render(_settings(tmp_path, ocsp_post_js=script))
    assert f'js_import govtrust_ocsp from "{script}";' in text
    assert "js_content govtrust_ocsp.post;" in text
    js = ocsp_post_js(tmp_path / "public")
    # The folder is a JSON string literal; the body is only base64-encoded, never parsed.
    assert f'const FOLDER = "{tmp_path / "public" / "ocsp"}/";' in js
    assert "toString('base64')" in js and "internalRedirect('@node')" in js


def _full_conf(tmp_path: Path, njs: bool, **changes: object) -> Path:
    """A whole nginx.conf (for ``nginx -c``) with a real key pair in place."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    run = tmp_path / "run"
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run / sub).mkdir(exist_ok=True)
    conf = tmp_path / "nginx.conf"
    script = None
    if njs:
        script = tmp_path / "govtrust_ocsp.js"
        script.write_text(ocsp_post_js(tmp_path / "public"), encoding="utf-8")
    conf.write_text(render(_settings(tmp_path, full=True, run_dir=run, ocsp_post_js=script,
                                     user="root", **changes)), encoding="utf-8")
    return conf


@pytest.mark.parametrize("njs", [False, True], ids=["files-for-get", "files-for-post-too"])
def test_nginx_config_checks_with_nginx_t(tmp_path: Path, njs: bool) -> None:
    """The whole file passes ``nginx -t``."""
    conf = _full_conf(tmp_path, njs)
    done = subprocess.run(["nginx", "-t", "-e", str(tmp_path / "run" / "startup.log"),
                           "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_nginx_answers_a_get_path_ending_in_a_slash_from_its_file_with_no_node(
        tmp_path: Path) -> None:
    """About one serial in 190 has a GET path ending in "/", which names a folder:
    its file is ``_`` inside it (pki.public_files.FOLDER_FILE). Real nginx, every
    node down: the GET and the POST of that request are both answered from it."""
    import requests

    from pki.public_files import file_path, get_path
    from tests.fixtures.http import wait_for_http
    from tests.fixtures.servers import stop_process

    request = b"\x30\x04\xff\xff\xff\xff"  # base64 "MAT/////"
    assert get_path(request).endswith("/")
    answer = tmp_path / "public" / "ocsp" / file_path(request)
    answer.parent.mkdir(parents=True)
    answer.write_bytes(b"the pre-signed answer")
    pki = f"127.0.0.1:{free_port()}"
    dead = Upstream.parse(f"127.0.0.1:{free_port()}")  # no node listens there
    conf = _full_conf(tmp_path, True, nodes=(dead,), pki_listen=pki,
                      idp_listen=f"127.0.0.1:{free_port()}")
    nginx = subprocess.Popen(["nginx", "-e", str(tmp_path / "run" / "startup.log"), "-c",
                              str(conf), "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://{pki}/ca/none", False, deadline=30)
        got = requests.get(f"http://{pki}/ocsp/{get_path(request)}", timeout=10)
        assert (got.status_code, got.content) == (200, b"the pre-signed answer")
        assert got.headers["Content-Type"] == "application/ocsp-response"
        posted = requests.post(f"http://{pki}/ocsp", data=request, timeout=10,
                               headers={"Content-Type": "application/ocsp-request"})
        assert (posted.status_code, posted.content) == (200, b"the pre-signed answer")
        # A request with no file still goes to the (dead) node: nginx's 502.
        other = b"\x30\x04\xff\xff\xff\xfe"
        assert requests.get(f"http://{pki}/ocsp/{get_path(other)}", timeout=10) \
            .status_code == 502
    finally:
        stop_process(nginx)


@pytest.mark.parametrize("node", ["", "host", "host:", "host:0", "host:70000", "host:８０",
                                  "a;b:80"])
def test_upstream_refuses_a_bad_node(node: str) -> None:
    with pytest.raises(NginxConfigError):
        Upstream.parse(node)


def test_nginx_settings_refuse_no_nodes(tmp_path: Path) -> None:
    with pytest.raises(NginxConfigError, match="at least one node"):
        _settings(tmp_path, nodes=())


def test_nginx_settings_refuse_a_header_name_with_metacharacters(tmp_path: Path) -> None:
    with pytest.raises(NginxConfigError, match="header"):
        _settings(tmp_path, client_cert_header="X-Cert; evil")
