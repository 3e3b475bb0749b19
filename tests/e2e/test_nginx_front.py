"""Two stateless nodes on PostgreSQL behind a real nginx, configured by
``govtrust deploy nginx``: any node serves any request, certificate login works
with the certificate nginx forwards, and the PKI's public objects (CA
certificates, CRLs, pre-signed OCSP responses for GET, and for POST through
nginx's njs script) come from nginx's static
files even with every node down. Real PostgreSQL, slapd, nginx and curl.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from idp.runtime.config import Config
from idp.runtime.services import Services
from tests.e2e.test_strong_login import (
    GOVTRUST,
    App,
    Curl,
    Server,
    _code_in,
    curl_certificate_login,
)
from tests.e2e.test_workers import REDIRECT, login_code
from tests.fixtures.http import wait_for_http
from tests.fixtures.postgres import PostgresCluster, free_port
from tests.fixtures.servers import stop_process

pytestmark = pytest.mark.slapd


@dataclass
class Front:
    server: Server  # issuer = proxy = nginx's TLS server
    pki: str  # nginx's plain-HTTP PKI server
    nodes: dict[str, subprocess.Popen[bytes]]
    node_urls: dict[str, str]
    app: App


def _start_node(home: Path, env: dict[str, str], listen: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([GOVTRUST, "--home", str(home), "node", "--listen", listen,
                             "--workers", "1", "--threads", "4"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own group: killed whole below


def _kill_node(proc: subprocess.Popen[bytes], listen: str) -> None:
    """A node dies (machine lost): its supervisor by SIGKILL, and with it its gunicorn
    (which the supervisor starts in a session of its own, told to die with it);
    return once the node's port refuses connections."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    host, _, port = listen.rpartition("/")[2].rpartition(":")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError(f"node {listen} still answers after its supervisor was killed")


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster) -> Iterator[Front]:
    tmp = tmp_path_factory.mktemp("nginx-front")
    home = tmp / "home"
    ldap_port, pki_port, tls_port, node1, node2 = (free_port() for _ in range(5))
    issuer = f"https://127.0.0.1:{tls_port}"
    env = dict(os.environ,
               GOVTRUST_DATABASE_URL=postgres.create_database(),
               GOVTRUST_DIRECTORY_URIS=f"ldap://127.0.0.1:{ldap_port}",
               GOVTRUST_PKI_LISTEN=f"127.0.0.1:{pki_port}",
               GOVTRUST_PKI_PUBLIC_URL=f"http://127.0.0.1:{pki_port}",
               GOVTRUST_PKI_SM2="false",
               GOVTRUST_IDP_LISTEN=f"127.0.0.1:{tls_port}",
               GOVTRUST_IDP_ISSUER=issuer, GOVTRUST_IDP_TRUSTED_PROXIES="127.0.0.1",
               GOVTRUST_PKCS12_PASSPHRASE="test-pkcs12-passphrase")
    done = subprocess.run([GOVTRUST, "--home", str(home), "init", "--demo"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    # The directory: the home's slapd, run here as an external one the nodes reach by URI.
    services = Services(Config.load(home, environ=env))
    services.slapd.start()
    nodes: dict[str, subprocess.Popen[bytes]] = {}
    nginx: subprocess.Popen[bytes] | None = None
    try:
        urls = {"a": f"127.0.0.1:{node1}", "b": f"127.0.0.1:{node2}"}
        for name, listen in urls.items():
            nodes[name] = _start_node(home, env, listen, tmp / f"node-{name}.log")
        conf = tmp / "nginx.conf"
        done = subprocess.run([GOVTRUST, "--home", str(home), "deploy", "nginx", "--out",
                               str(conf), "--node", urls["a"], "--node", urls["b"],
                               "--run-dir", str(tmp / "nginx"), "--user", "root"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        nginx = subprocess.Popen(["nginx", "-e", str(tmp / "nginx-startup.log"), "-c", str(conf),
                                  "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        ca = home / "idp" / "tls" / "ca.pem"
        for listen in urls.values():
            wait_for_http(f"http://{listen}/jwks", False, deadline=60)
        wait_for_http(issuer + "/.well-known/openid-configuration", str(ca), deadline=20)
        server = Server(home, env, issuer, issuer, ca, tmp)
        data = server.cli("client", "add", "--name", "前端测试", "--redirect-uri", REDIRECT,
                          "--first-party", "--level", "1")
        app = App(data["client_id"], data["client_secret"], REDIRECT)
        yield Front(server, f"http://127.0.0.1:{pki_port}", nodes,
                    {k: f"http://{v}" for k, v in urls.items()}, app)
    finally:
        if nginx is not None:
            stop_process(nginx, signal.SIGQUIT)
        for proc in nodes.values():
            stop_process(proc)
        services.slapd.stop()
        services.close()


def _ocsp_get_path(front: Front, serial: str) -> str:
    issuing = x509.load_der_x509_certificate(
        requests.get(front.pki + "/ca/issuing.der", timeout=10).content)
    # What RFC 5019 clients send: one CertID, SHA-1, no nonce. Built by pyca's
    # builder, not ours, so the file naming is checked against another encoder.
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        *_issuer_hashes(issuing), int(serial, 16), hashes.SHA1())
    der = builder.build().public_bytes(serialization.Encoding.DER)
    return "/ocsp/" + base64.b64encode(der).decode()


def _issuer_hashes(issuing: x509.Certificate) -> tuple[bytes, bytes]:
    from asn1crypto import x509 as a_x509

    name = issuing.subject.public_bytes(serialization.Encoding.DER)
    spki = a_x509.Certificate.load(issuing.public_bytes(serialization.Encoding.DER))
    key_bits = bytes(spki.public_key["public_key"].contents[1:])
    digest = hashes.Hash(hashes.SHA1())
    digest.update(name)
    name_hash = digest.finalize()
    digest = hashes.Hash(hashes.SHA1())
    digest.update(key_bits)
    return name_hash, digest.finalize()


def _status(body: bytes) -> ocsp.OCSPCertStatus:
    resp = ocsp.load_der_ocsp_response(body)
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return resp.certificate_status


def test_login_through_nginx_then_tokens_from_each_node(
        front: Front, monkeypatch: pytest.MonkeyPatch) -> None:
    uid, password = front.server.account("civil servant", 0)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(front.server.ca))
    # The login's requests reach both nodes (round robin); the code is exchanged on
    # node a and the refresh token used on node b, straight, without nginx.
    code, verifier = login_code(front.server.issuer, front.app, uid, password)
    auth = (front.app.client_id, front.app.secret)
    first = requests.post(front.node_urls["a"] + "/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": verifier}, auth=auth, timeout=10)
    assert first.status_code == 200, first.text
    second = requests.post(front.node_urls["b"] + "/token", data={
        "grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        auth=auth, timeout=10)
    assert second.status_code == 200, second.text
    replay = requests.post(front.node_urls["a"] + "/token", data={
        "grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        auth=auth, timeout=10)
    assert replay.json()["error"] == "invalid_grant"  # node a sees what node b did


def test_certificate_login_through_nginx_with_the_forwarded_header(front: Front) -> None:
    server = front.server
    uid, _ = server.account("civil servant", 1)
    cert, key, _serial = server.issue(uid)
    status, loc, body = curl_certificate_login(server, Curl(server, cert, key, "cert"),
                                               front.app, server.issuer)
    assert status == 302 and loc and loc.startswith(REDIRECT), (status, loc, body[:300])
    token = requests.post(server.issuer + "/token", data={
        "grant_type": "authorization_code", "code": _code_in(loc), "redirect_uri": REDIRECT},
        auth=(front.app.client_id, front.app.secret), verify=str(server.ca), timeout=10)
    assert token.status_code == 200, token.text


def test_forged_certificate_header_through_nginx_is_replaced(front: Front) -> None:
    server = front.server
    uid, _ = server.account("civil servant", 2)
    cert, _key, _serial = server.issue(uid)
    forged = {"X-SSL-Client-Cert": requests.utils.quote(cert.read_text(), safe="")}
    status, loc, _body = curl_certificate_login(server, Curl(server, None, None, "forged"),
                                                front.app, server.issuer, headers=forged)
    assert not (status == 302 and loc and loc.startswith(REDIRECT)), (status, loc)


def test_ca_certificates_and_crls_are_static_with_cache_headers(front: Front) -> None:
    root = requests.get(front.pki + "/ca/root.der", timeout=10)
    assert root.status_code == 200
    assert root.headers["Content-Type"] == "application/pkix-cert"
    assert "max-age=86400" in root.headers["Cache-Control"]
    assert x509.load_der_x509_certificate(root.content).subject == \
        x509.load_der_x509_certificate(root.content).issuer  # self-signed root
    crl = requests.get(front.pki + "/crl/issuing.crl", timeout=10)
    assert crl.status_code == 200
    assert crl.headers["Content-Type"] == "application/pkix-crl"
    assert "max-age=300" in crl.headers["Cache-Control"]
    assert "Last-Modified" in crl.headers  # a file, not a node's answer
    x509.load_der_x509_crl(crl.content)


def test_ocsp_get_and_post_from_nginx_files_nonce_fails_over_then_files_survive_the_nodes(
        front: Front) -> None:
    server = front.server
    uid, _ = server.account("civil servant", 3)
    _cert, _key, good = server.issue(uid)
    _cert, _key, revoked = server.issue(uid)
    server.cli("cert", "revoke", revoked, "--reason", "keyCompromise")
    server.cli("deploy", "public")
    paths = {serial: _ocsp_get_path(front, serial) for serial in (good, revoked)}
    answer = requests.get(front.pki + paths[good], timeout=10)
    assert answer.status_code == 200 and "Last-Modified" in answer.headers  # the file
    assert answer.headers["Content-Type"] == "application/ocsp-response"
    assert "max-age=300" in answer.headers["Cache-Control"]
    assert _status(answer.content) is ocsp.OCSPCertStatus.GOOD
    assert _status(requests.get(front.pki + paths[revoked], timeout=10).content) \
        is ocsp.OCSPCertStatus.REVOKED

    # POST of the very request a file was written for: answered from that file by
    # nginx's njs script (the same bytes as the GET), the node never asked.
    request_der = base64.b64decode(paths[good].removeprefix("/ocsp/"))
    revoked_der = base64.b64decode(paths[revoked].removeprefix("/ocsp/"))
    headers = {"Content-Type": "application/ocsp-request"}
    posted = requests.post(front.pki + "/ocsp", data=request_der, headers=headers, timeout=10)
    assert posted.status_code == 200 and posted.content == answer.content
    assert posted.headers["Cache-Control"] == "no-cache"
    # Anything else goes to a node as it came: a nonce (signed fresh), junk.
    nonce = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        *_issuer_hashes(x509.load_der_x509_certificate(
            requests.get(front.pki + "/ca/issuing.der", timeout=10).content)),
        int(good, 16), hashes.SHA1()).add_extension(
            x509.OCSPNonce(b"n" * 16), critical=False).build().public_bytes(
                serialization.Encoding.DER)
    fresh = requests.post(front.pki + "/ocsp", data=nonce, headers=headers, timeout=10)
    assert _status(fresh.content) is ocsp.OCSPCertStatus.GOOD
    assert ocsp.load_der_ocsp_response(fresh.content).extensions.get_extension_for_class(
        x509.OCSPNonce).value.nonce == b"n" * 16
    junk = requests.post(front.pki + "/ocsp", data=b"\x30\x03junk", headers=headers,
                         timeout=10)
    assert ocsp.load_der_ocsp_response(junk.content).response_status \
        is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    _kill_node(front.nodes["a"], front.node_urls["a"])
    for _ in range(4):  # whichever node nginx tries first, b answers
        assert _status(requests.post(front.pki + "/ocsp", data=nonce, headers=headers,
                                     timeout=10).content) is ocsp.OCSPCertStatus.GOOD
    _kill_node(front.nodes["b"], front.node_urls["b"])
    assert _status(requests.get(front.pki + paths[good], timeout=10).content) \
        is ocsp.OCSPCertStatus.GOOD
    assert _status(requests.get(front.pki + paths[revoked], timeout=10).content) \
        is ocsp.OCSPCertStatus.REVOKED
    for der, status in ((request_der, ocsp.OCSPCertStatus.GOOD),
                        (revoked_der, ocsp.OCSPCertStatus.REVOKED)):
        assert _status(requests.post(front.pki + "/ocsp", data=der, headers=headers,
                                     timeout=10).content) is status
    assert requests.post(front.pki + "/ocsp", data=nonce, headers=headers,
                         timeout=10).status_code == 502
