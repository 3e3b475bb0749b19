"""The IdP's HTTPS front, as ``govtrust serve`` starts it (gunicorn with the
options of :func:`idp.runtime.serve.tls_arguments`), scanned by testssl.sh on a
loopback port: TLS 1.2 and 1.3 only, no cipher suite outside Mozilla's
"intermediate" profile, HSTS, no TLS compression, no insecure or
client-initiated renegotiation."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from idp.runtime.serve import tls_arguments
from idp.runtime.tls import INTERMEDIATE_CIPHERS
from tests.fixtures.idp import FakeDirectory, make_services
from tests.fixtures.postgres import free_port

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
pytestmark = pytest.mark.skipif(TESTSSL is None and not os.environ.get("CI"),
                                reason="testssl.sh is not installed (scripts/setup installs it)")

# testssl.sh names suites the OpenSSL way for TLS 1.2 and the IANA way for 1.3.
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256"}


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
def scan(https_front: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    assert TESTSSL is not None
    out = tmp_path_factory.mktemp("testssl") / "scan.json"
    # Only the checks the acceptance names: protocols (-p), each cipher per protocol
    # (-E), headers for HSTS (-h), renegotiation (-R), CRIME/compression (-C).
    subprocess.run([TESTSSL, "--quiet", "--color", "0", "--warnings", "off",
                    "--sneaky", "--jsonfile", str(out), "-p", "-E", "-h", "-R", "-C",
                    https_front], check=False, timeout=240, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    findings = json.loads(out.read_text())
    return {f["id"]: f for f in findings}


def offered(scan: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {f["id"]: f["finding"] for f in scan.values()}


def test_only_tls12_and_tls13_are_offered(scan: dict[str, dict[str, Any]]) -> None:
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert scan[old]["finding"].startswith("not offered"), scan[old]
    assert scan["TLS1_2"]["finding"].startswith("offered"), scan["TLS1_2"]
    assert scan["TLS1_3"]["finding"].startswith("offered"), scan["TLS1_3"]


def test_every_cipher_suite_is_in_the_intermediate_profile(
        scan: dict[str, dict[str, Any]]) -> None:
    allowed = set(INTERMEDIATE_CIPHERS.split(":")) | TLS13_SUITES
    suites = [f["finding"] for key, f in scan.items() if key.startswith("cipher-tls1_")
              or key.startswith("cipher_x")]
    assert suites, sorted(scan)
    # e.g. "TLS 1.2   xc02b   ECDHE-ECDSA-AES128-GCM-SHA256   ECDH 253   AESGCM   128
    # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": the fourth word is OpenSSL's name.
    offered_names = {finding.split()[3] for finding in suites}
    assert offered_names <= allowed, sorted(offered_names - allowed)


def test_hsts_is_sent(scan: dict[str, dict[str, Any]]) -> None:
    assert scan["HSTS_time"]["severity"] == "OK", scan.get("HSTS_time")


def test_no_tls_compression(scan: dict[str, dict[str, Any]]) -> None:
    assert scan["CRIME_TLS"]["severity"] == "OK", scan["CRIME_TLS"]


def test_no_insecure_renegotiation(scan: dict[str, dict[str, Any]]) -> None:
    assert scan["secure_renego"]["severity"] == "OK", scan["secure_renego"]
    assert scan["secure_client_renego"]["severity"] in ("OK", "LOW"), \
        scan["secure_client_renego"]
