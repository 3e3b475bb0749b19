"""The OCSP fast path (pki.http.OCSPFastPath) and the answers kept by exact request
(pki.ocsp, checked against the status generation of pki.store).

The fast path answers POST /ocsp and GET /ocsp/<base64> before Flask: the same
bytes, status codes and headers as the Flask routes; a revocation made by another
process is seen by the very next request; hostile bodies get the clean answers
the Flask routes give and leave nothing kept. Real CA, real SQLite file.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import ocsp as a_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from werkzeug.test import Client

from directory.model import Person
from pki.http import OCSPFastPath, create_app
from pki.model import CASettings
from pki.ocsp import MAX_REQUEST_BYTES
from tests.fixtures.pki import CAEnv, build_env, make_csr

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"Content-Type": "application/ocsp-request"}


def _request(env: CAEnv, serial: int, nonce: bytes | None = None) -> bytes:
    issuer = env.ca.issuing_certificate
    name_hash = hashes.Hash(hashes.SHA1())
    name_hash.update(issuer.subject.public_bytes(serialization.Encoding.DER))
    key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash.finalize(), key_hash, serial, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _status(body: bytes) -> str:
    parsed = a_ocsp.OCSPResponse.load(body)
    assert parsed["response_status"].native == "successful"
    single = parsed.basic_ocsp_response["tbs_response_data"]["responses"][0]
    return str(single["cert_status"].name)


def _nonce(body: bytes) -> bytes | None:
    parsed = ocsp.load_der_ocsp_response(body)
    for ext in parsed.extensions:
        if isinstance(ext.value, x509.OCSPNonce):
            return ext.value.nonce
    return None


def _issue(env: CAEnv, person: Person) -> int:
    return int(env.ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial, 16)


class Clients:
    """The same app twice: through the fast path, and straight into Flask."""

    def __init__(self, env: CAEnv) -> None:
        app = create_app(env.ca)
        fast = app.wsgi_app
        assert isinstance(fast, OCSPFastPath)
        self.fast = Client(fast)
        flask = fast.inner
        self.flask = Client(flask)
        self.seen: list[str] = []

        def spy(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
            self.seen.append(str(environ.get("PATH_INFO")))
            return flask(environ, start)

        fast.inner = spy  # requests the fast path hands over to Flask are listed


@pytest.fixture
def clients(env: CAEnv) -> Clients:
    return Clients(env)


def _get_path(request: bytes) -> str:
    return "/ocsp/" + base64.b64encode(request).decode("ascii")


def test_post_and_get_give_the_flask_routes_bytes_and_headers(
        env: CAEnv, person: Person, clients: Clients) -> None:
    serial = _issue(env, person)
    request = _request(env, serial)
    flask = clients.flask.post("/ocsp", data=request, headers=HEADERS)
    for fast in (clients.fast.post("/ocsp", data=request, headers=HEADERS),
                 clients.fast.post("/ocsp/", data=request, headers=HEADERS),
                 clients.fast.get(_get_path(request)),
                 clients.flask.get(_get_path(request))):
        assert fast.status_code == flask.status_code == 200
        assert fast.data == flask.data  # the one pre-signed answer
        for header in ("Content-Type", "Cache-Control"):
            assert fast.headers[header] == flask.headers[header]
    assert _status(flask.data) == "good"
    assert clients.seen == []  # the fast path answered both forms itself
    assert env.ca.responder.cached_answers == 1


def test_a_nonce_is_echoed_and_signed_fresh_by_the_fast_path(
        env: CAEnv, person: Person, clients: Clients) -> None:
    serial = _issue(env, person)
    first = clients.fast.post("/ocsp", data=_request(env, serial, b"a" * 16), headers=HEADERS)
    second = clients.fast.post("/ocsp", data=_request(env, serial, b"b" * 16), headers=HEADERS)
    assert _nonce(first.data) == b"a" * 16 and _nonce(second.data) == b"b" * 16
    assert _status(first.data) == _status(second.data) == "good"
    # A request with a nonce is never kept by its bytes; its status is, by generation.
    assert env.ca.responder.cached_answers == 0
    assert env.ca.responder.cached_statuses == 1


def test_a_revocation_by_another_ca_instance_is_seen_by_the_next_request(
        env: CAEnv, person: Person, clients: Clients, tmp_path: Path) -> None:
    serial = _issue(env, person)
    plain, with_nonce = _request(env, serial), _request(env, serial, b"n" * 16)
    assert _status(clients.fast.post("/ocsp", data=plain, headers=HEADERS).data) == "good"
    assert _status(clients.fast.post("/ocsp", data=with_nonce, headers=HEADERS).data) == "good"
    # Another worker: its own CertificateAuthority, engine and connections.
    other = build_env(tmp_path, str(env.engine.url))
    try:
        other.ca.hold(format(serial, "x"), actor="test")
        assert _status(clients.fast.post("/ocsp", data=plain, headers=HEADERS).data) == "revoked"
        assert _status(clients.fast.get(_get_path(plain)).data) == "revoked"
        assert _status(clients.fast.post("/ocsp", data=with_nonce,
                                         headers=HEADERS).data) == "revoked"
        other.ca.release(format(serial, "x"), actor="test")
        assert _status(clients.fast.post("/ocsp", data=plain, headers=HEADERS).data) == "good"
    finally:
        other.engine.dispose()


def test_a_revocation_by_another_process_is_seen_by_the_next_request(
        env: CAEnv, person: Person, clients: Clients) -> None:
    serial = _issue(env, person)
    plain = _request(env, serial)
    assert _status(clients.fast.post("/ocsp", data=plain, headers=HEADERS).data) == "good"
    assert env.ca.responder.cached_answers == 1
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.fixtures.pki import build_env\n"
        "e = build_env(Path(sys.argv[1]), sys.argv[2])\n"
        "e.ca.revoke(sys.argv[3], 'keyCompromise', actor='test')\n")
    done = subprocess.run([sys.executable, "-c", script, str(env.folder), str(env.engine.url),
                           format(serial, "x")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    answer = clients.fast.post("/ocsp", data=plain, headers=HEADERS).data
    assert _status(answer) == "revoked"
    assert ocsp.load_der_ocsp_response(answer).revocation_reason \
        is x509.ReasonFlags.key_compromise


def test_the_status_generation_moves_with_status_changes_only(
        env: CAEnv, person: Person) -> None:
    store = env.ca.store
    start = store.status_generation()
    serial = format(_issue(env, person), "x")
    assert store.status_generation() == start  # issuance: nothing kept can be stale
    env.ca.hold(serial, actor="test")
    assert store.status_generation() == start + 1
    env.ca.release(serial, actor="test")
    env.ca.revoke(serial, "superseded", actor="test")
    assert store.status_generation() == start + 3
    with pytest.raises(Exception):  # noqa: B017 - AlreadyRevoked; which one is not the point
        env.ca.revoke(serial, "superseded", actor="test")
    assert store.status_generation() == start + 3  # a refused change moves nothing


def test_unknown_serials_are_not_kept_by_request(env: CAEnv, clients: Clients) -> None:
    for serial in range(1, 40):
        for nonce in (None, b"x" * 8):
            body = clients.fast.post("/ocsp", data=_request(env, serial, nonce),
                                     headers=HEADERS).data
            assert _status(body) == "unknown"
    responder = env.ca.responder
    assert (responder.cached_answers, responder.cached_statuses,
            responder.cached_responses) == (0, 0, 0)


def test_kept_answers_are_bounded(tmp_path: Path, person: Person) -> None:
    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'govtrust.db'}",
                    settings=CASettings(ocsp_cache_size=2))
    try:
        clients = Clients(env)
        for _ in range(5):
            serial = _issue(env, person)
            clients.fast.post("/ocsp", data=_request(env, serial), headers=HEADERS)
            clients.fast.post("/ocsp", data=_request(env, serial, b"z" * 8), headers=HEADERS)
        responder = env.ca.responder
        assert (responder.cached_answers, responder.cached_statuses,
                responder.cached_responses) == (2, 2, 2)
    finally:
        env.engine.dispose()


@pytest.mark.parametrize("body", [
    b"", b"\x30", b"\x30\x80" + b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", b"\xff" * 200,
    b"\x30\x82\xff\xff" + b"\x30" * 100,
], ids=["empty", "lone-tag", "indefinite", "http-text", "junk", "lying-length"])
def test_hostile_posts_get_malformed_request_and_nothing_is_kept(
        env: CAEnv, clients: Clients, body: bytes) -> None:
    fast = clients.fast.post("/ocsp", data=body, headers=HEADERS)
    flask = clients.flask.post("/ocsp", data=body, headers=HEADERS)
    assert fast.status_code == flask.status_code == 200
    assert fast.data == flask.data
    assert ocsp.load_der_ocsp_response(fast.data).response_status \
        is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert env.ca.responder.cached_answers == 0
    assert clients.seen == []


def test_an_oversized_post_is_refused_before_it_is_read(clients: Clients) -> None:
    big = b"\x30" * (MAX_REQUEST_BYTES + 1)
    fast = clients.fast.post("/ocsp", data=big, headers=HEADERS)
    flask = clients.flask.post("/ocsp", data=big, headers=HEADERS)
    assert fast.status_code == flask.status_code == 413
    assert fast.data == flask.data
    assert ocsp.load_der_ocsp_response(fast.data).response_status \
        is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_an_oversized_post_without_a_length_is_refused(env: CAEnv) -> None:
    fast = create_app(env.ca).wsgi_app
    started: list[str] = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/ocsp",
               "wsgi.input": __import__("io").BytesIO(b"\x30" * (4 * MAX_REQUEST_BYTES))}
    body = b"".join(fast(environ, lambda status, headers: started.append(status)))
    assert started == ["413 Request Entity Too Large"]
    assert ocsp.load_der_ocsp_response(body).response_status \
        is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("path", [
    "/ocsp/not*base64", "/ocsp/%ZZ", "/ocsp/AAAA", "/ocsp/" + "A" * 40,
    "/ocsp/MAo%3D",
], ids=["not-base64", "bad-escape", "zeros", "long-zeros", "escaped"])
def test_hostile_gets_match_the_flask_route(clients: Clients, path: str) -> None:
    fast, flask = clients.fast.get(path), clients.flask.get(path)
    assert fast.status_code == flask.status_code
    assert fast.data == flask.data
    assert clients.seen == []


def test_an_overlong_get_is_refused_with_414(clients: Clients) -> None:
    path = "/ocsp/" + "A" * (2 * MAX_REQUEST_BYTES + 4)
    fast, flask = clients.fast.get(path), clients.flask.get(path)
    assert fast.status_code == flask.status_code == 414
    assert fast.data == flask.data


@pytest.mark.parametrize("method,path", [
    ("GET", "/ca/root.der"), ("GET", "/ocsp/"), ("GET", "/ocsp"), ("PUT", "/ocsp"),
    ("DELETE", "/ocsp/AAAA"), ("POST", "/ocsp/AAAA"), ("GET", "/crl/issuing.crl"),
])
def test_everything_else_goes_to_flask(clients: Clients, method: str, path: str) -> None:
    fast = clients.fast.open(path, method=method)
    flask = clients.flask.open(path, method=method)
    assert fast.status_code == flask.status_code
    assert clients.seen == [path]
