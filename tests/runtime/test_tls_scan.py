"""The IdP's HTTPS front, as ``govtrust serve`` starts it (gunicorn with the
options of :func:`idp.runtime.serve.tls_arguments`), scanned by testssl.sh on a
loopback port: TLS 1.2 and 1.3 only, no cipher suite outside Mozilla's
"intermediate" profile, HSTS, no TLS compression, no insecure or
client-initiated renegotiation. The scan and its checks are shared with nginx's
front (``tests.fixtures.testssl``, tests/e2e/test_nginx_tls_scan.py)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from idp.runtime.serve import tls_arguments
from tests.fixtures import testssl
from tests.fixtures.idp import FakeDirectory, make_services
from tests.fixtures.postgres import free_port

pytestmark = testssl.needs_testssl


@pytest.fixture(scope="module")
def https_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("tls")
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    home = tmp / "home"
    services = make_services(home, issuer, FakeDirectory())
    services.ca.initialize(actor="test")
    cert, key, chain = services.tls_server_files()
    env = {**os.environ, "GOVTRUST_HOME": str(home), "GOVTRUST_IDP_ISSUER": issuer,
           "GOVTRUST_DIRECTORY_MANAGED": "false",
           "GOVTRUST_DIRECTORY_URIS": "ldap://127.0.0.1:9"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "idp.runtime.wsgi:idp_app()",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread",
         "--threads", "4", *tls_arguments(cert, key, chain)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    context = ssl.create_default_context(cafile=str(chain))
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock, \
                    context.wrap_socket(sock, server_hostname="127.0.0.1"):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "") from None
            time.sleep(0.2)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        services.close()


@pytest.fixture(scope="module")
def scan(https_front: str, tmp_path_factory: pytest.TempPathFactory) -> testssl.Scan:
    return testssl.run(https_front, tmp_path_factory.mktemp("testssl"), testssl.BASE_CHECKS)


def test_only_tls12_and_tls13_are_offered(scan: testssl.Scan) -> None:
    testssl.check_only_tls12_and_tls13(scan)


def test_every_cipher_suite_is_in_the_intermediate_profile(scan: testssl.Scan) -> None:
    testssl.check_intermediate_ciphers(scan)


def test_hsts_is_sent(scan: testssl.Scan) -> None:
    testssl.check_hsts(scan)


def test_no_tls_compression(scan: testssl.Scan) -> None:
    testssl.check_no_compression(scan)


def test_no_insecure_renegotiation(scan: testssl.Scan) -> None:
    testssl.check_no_insecure_renegotiation(scan)
