"""nginx as ``govtrust deploy nginx`` configures it, in front of a real node on
PostgreSQL, scanned by testssl.sh on loopback: TLS 1.2 and 1.3 only, no cipher
suite outside Mozilla's "intermediate" profile, HSTS, no TLS compression, no
insecure or client-initiated renegotiation, none of testssl's known
vulnerabilities; and nginx staples a good OCSP response for its certificate,
signed by our OCSP responder, which it fetched from its own PKI server.

The stapled response is read from the handshake itself (``openssl s_client
-status -msg`` over TLS 1.2 prints the CertificateStatus message's bytes) and
checked with pyca/cryptography, not with nginx's word for it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from idp.runtime.config import write_config
from idp.runtime.nginx import MOZILLA_INTERMEDIATE_CIPHERS
from pki import public_files
from tests.e2e.test_strong_login import GOVTRUST
from tests.fixtures import testssl
from tests.fixtures.http import wait_for_http
from tests.fixtures.idp import FakeDirectory, make_services
from tests.fixtures.postgres import PostgresCluster, free_port
from tests.fixtures.servers import stop_process

pytestmark = testssl.needs_testssl


@dataclass
class NginxFront:
    target: str  # HOST:PORT of nginx's TLS server
    home: Path
    run_dir: Path
    ocsp_signer: x509.Certificate  # our delegated OCSP responder's certificate
    issuing: x509.Certificate


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory,
          postgres: PostgresCluster) -> Iterator[NginxFront]:
    tmp = tmp_path_factory.mktemp("nginx-tls")
    home = tmp / "home"
    home.mkdir()
    pki_port, tls_port, node_port = (free_port() for _ in range(3))
    issuer = f"https://127.0.0.1:{tls_port}"
    database = postgres.create_database()
    # The directory is not needed for a TLS scan: the node points at a closed port.
    write_config(home, {
        "database": {"url": database},
        "directory": {"managed": False, "uris": ["ldap://127.0.0.1:9"]},
        "pki": {"listen": f"127.0.0.1:{pki_port}",
                "public_url": f"http://127.0.0.1:{pki_port}", "sm2": False},
        "idp": {"listen": f"127.0.0.1:{tls_port}", "issuer": issuer,
                "trusted_proxies": ["127.0.0.1"]}})
    services = make_services(home, issuer, FakeDirectory(), database)
    services.ca.initialize(actor="test")
    ocsp_signer = services.ca.ocsp_credentials()[0]
    issuing = services.ca.issuing_certificate
    services.close()
    env = dict(os.environ)
    node_listen = f"127.0.0.1:{node_port}"
    node = subprocess.Popen([GOVTRUST, "--home", str(home), "node", "--listen", node_listen,
                             "--workers", "1", "--threads", "4"], env=env,
                            stdout=(tmp / "node.log").open("wb"), stderr=subprocess.STDOUT)
    nginx: subprocess.Popen[bytes] | None = None
    try:
        conf, run_dir = tmp / "nginx.conf", tmp / "nginx"
        done = subprocess.run([GOVTRUST, "--home", str(home), "deploy", "nginx", "--out",
                               str(conf), "--node", node_listen, "--run-dir", str(run_dir),
                               "--user", "root"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        nginx = subprocess.Popen(["nginx", "-e", str(tmp / "nginx-startup.log"), "-c",
                                  str(conf), "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_http(f"http://{node_listen}/jwks", False, deadline=60)
        wait_for_http(issuer + "/.well-known/openid-configuration",
                      str(home / "idp" / "tls" / "ca.pem"), deadline=20)
        yield NginxFront(f"127.0.0.1:{tls_port}", home, run_dir, ocsp_signer, issuing)
    finally:
        if nginx is not None:
            stop_process(nginx, signal.SIGQUIT)
        stop_process(node)


# -- the stapled OCSP response ---------------------------------------------------------

_MESSAGE = re.compile(r"^<<< TLS 1\.2, Handshake \[length [0-9a-f]+\], (\w+)\n((?:    .*\n)+)",
                      re.MULTILINE)


def _handshake(front: NginxFront) -> dict[str, bytes]:
    """The handshake messages the server sent over TLS 1.2, by name, with their bytes
    (``openssl s_client -msg`` prints each as hex lines after its header line)."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", front.target, "-verify_ip", "127.0.0.1",
         "-tls1_2", "-status", "-msg", "-CAfile", str(front.home / "idp" / "tls" / "ca.pem"),
         "-verify_return_error"],
        input=b"", capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    return {name: bytes.fromhex("".join(body.split()))
            for name, body in _MESSAGE.findall(text)}


def _stapled(front: NginxFront) -> bytes | None:
    """The DER OCSP response of the CertificateStatus message (RFC 6066 §8: type 22,
    a 3-byte length, status_type 1 = ocsp, a 3-byte length, the response), or None."""
    message = _handshake(front).get("CertificateStatus")
    if message is None:
        return None
    assert message[0] == 22 and message[4] == 1, message[:8].hex()
    length = int.from_bytes(message[5:8], "big")
    return message[8:8 + length]


@pytest.fixture(scope="module")
def stapled(front: NginxFront) -> bytes:
    """A stapled response, once every nginx worker has one: each worker fetches its
    own on its first handshake and staples it from the next, so wait (a readiness
    poll, bounded) until a run of handshakes all carry one."""
    deadline = time.monotonic() + 30
    in_a_row, der = 0, None
    while in_a_row < 2 * (os.cpu_count() or 1) + 2:
        der = _stapled(front)
        in_a_row = in_a_row + 1 if der else 0
        if time.monotonic() > deadline:
            log = (front.run_dir / "error.log").read_text(errors="replace")
            raise AssertionError(f"nginx staples no OCSP response; its error log:\n{log}")
        if not der:
            time.sleep(0.2)
    assert der is not None
    return der


def test_nginx_staples_a_good_response_signed_by_our_responder(
        front: NginxFront, stapled: bytes) -> None:
    response = ocsp.load_der_ocsp_response(stapled)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    # For nginx's own certificate, as our issuing CA names it.
    server = x509.load_pem_x509_certificate(
        (front.home / "idp" / "tls" / "server.pem").read_bytes())
    assert response.serial_number == server.serial_number
    assert response.issuer_key_hash == _key_hash(front.issuing)
    now = datetime.now(UTC)
    assert response.next_update_utc is not None
    assert response.this_update_utc <= now < response.next_update_utc
    # Signed by our delegated OCSP responder (RFC 6960 §4.2.2.2): the certificate the
    # response names and carries is the one our CA made, certified by the issuing
    # CA for OCSP signing, and its key verifies the signature.
    signer = front.ocsp_signer
    assert response.responder_key_hash == _key_hash(signer) or \
        response.responder_name == signer.subject
    assert response.certificates in ([], [signer])
    signer.verify_directly_issued_by(front.issuing)
    usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.OCSP_SIGNING in usage
    key = signer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and response.signature_hash_algorithm
    key.verify(response.signature, response.tbs_response_bytes,
               ec.ECDSA(response.signature_hash_algorithm))


def test_nginx_fetched_the_presigned_response_from_its_own_pki_server(
        front: NginxFront, stapled: bytes) -> None:
    """nginx asked its plain-HTTP PKI server (ssl_stapling_responder), not the
    certificate's AIA URL through a resolver, with the RFC 5019 GET (SHA-1 CertID,
    no nonce) that pki.public_files names a pre-signed file by, and that file is
    there: the answer needs no node."""
    server = x509.load_pem_x509_certificate(
        (front.home / "idp" / "tls" / "server.pem").read_bytes())
    path = public_files.get_path(
        public_files.ocsp_request(front.issuing, server.serial_number, "sha1"))
    assert (front.home / "pki" / "public" / "ocsp" / path).is_file()
    log = (front.run_dir / "access.log").read_text(errors="replace")
    fetches = [unquote(line.split('"GET ', 1)[1].split(" ", 1)[0])
               for line in log.splitlines()
               if line.startswith("127.0.0.1 ") and '"GET /ocsp/' in line and '" 200 ' in line]
    assert "/ocsp/" + path in fetches, log[-2000:]


def _key_hash(cert: x509.Certificate) -> bytes:
    """RFC 6960 KeyHash: SHA-1 of the subjectPublicKey bits, which is RFC 5280's
    method (1) key identifier."""
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # type: ignore[arg-type]


# -- the scan ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scan(front: NginxFront, stapled: bytes,
         tmp_path_factory: pytest.TempPathFactory) -> testssl.Scan:
    # After `stapled`: every worker has its response, so testssl sees it too.
    found = testssl.run(front.target, tmp_path_factory.mktemp("testssl"), testssl.FULL_CHECKS)
    print("\n".join(testssl.summary(found)))  # the scan's lines, for `pytest -s`
    return found


def test_only_tls12_and_tls13_are_offered(scan: testssl.Scan) -> None:
    testssl.check_only_tls12_and_tls13(scan)


def test_every_cipher_suite_is_in_the_intermediate_profile(scan: testssl.Scan) -> None:
    testssl.check_intermediate_ciphers(scan)
    # and exactly what the configuration names, nothing nginx added
    assert testssl.offered_suites(scan) - testssl.TLS13_SUITES \
        <= set(MOZILLA_INTERMEDIATE_CIPHERS.split(":"))


def test_hsts_is_sent(scan: testssl.Scan) -> None:
    testssl.check_hsts(scan)


def test_no_tls_compression(scan: testssl.Scan) -> None:
    testssl.check_no_compression(scan)


def test_no_insecure_renegotiation(scan: testssl.Scan) -> None:
    testssl.check_no_insecure_renegotiation(scan)


def test_no_known_vulnerability(scan: testssl.Scan) -> None:
    testssl.check_no_vulnerability(scan)
