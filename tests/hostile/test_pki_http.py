"""Hostile input to the public PKI service over HTTP (pki/http.py on a real CA):
OCSP over POST and GET (RFC 6960 Appendix A), CA certificates and CRLs. Each case
gets a clean answer (an OCSP ``malformedRequest`` response, 404, 405, 413 or 414;
never a 5xx) and records nothing (certificates and audit records counted before
and after)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from flask.testing import FlaskClient

from directory.model import Person
from pki.http import create_app
from pki.ocsp import MAX_REQUEST_BYTES
from tests.fixtures.pki import CAEnv, make_csr


@pytest.fixture
def http(env: CAEnv) -> Iterator[FlaskClient]:
    app = create_app(env.ca)
    app.testing = True
    before = env.counts()
    yield app.test_client()
    assert env.counts() == before  # every case below: nothing recorded


def good_request(env: CAEnv, nonce: bytes | None = b"0123456789abcdef") -> bytes:
    issuer = env.ca.issuing_certificate
    builder = ocsp.OCSPRequestBuilder().add_certificate(issuer, env.ca.root_certificate,
                                                        hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def assert_malformed(resp: object) -> None:
    status = resp.status_code  # type: ignore[attr-defined]
    assert status < 500, status
    if status == 200:
        parsed = ocsp.load_der_ocsp_response(resp.data)  # type: ignore[attr-defined]
        assert parsed.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    else:
        assert 400 <= status < 500


def _with_nonce_of(size: int) -> bytes:
    # OCSPRequestBuilder refuses nothing; RFC 8954 §2.1 bounds are the responder's.
    return b"\x00" * size


HOSTILE_BODIES = {
    "empty": b"",
    "text": b"GET / HTTP/1.1\r\n\r\n",
    "one_byte": b"\x30",
    "length_overflow": b"\x30\x84\xff\xff\xff\xff",
    "indefinite_length": b"\x30\x80\x00\x00",
    "deep_nesting": b"\x30\x80" * 3000,
    "wrong_outer_tag": b"\x31\x03\x02\x01\x00",
    "certificate_instead": b"certificate",
    "nul_bytes": b"\x00" * 100,
    "json": b'{"serial": "1"}',
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_ocsp_post_body_is_malformed_request(http: FlaskClient, body: bytes) -> None:
    assert_malformed(http.post("/ocsp", data=body,
                               headers={"Content-Type": "application/ocsp-request"}))


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_ocsp_get_is_malformed_request(http: FlaskClient, body: bytes) -> None:
    encoded = quote(base64.b64encode(body).decode(), safe="")
    assert_malformed(http.get(f"/ocsp/{encoded}"))


HOSTILE_GET_PATHS = {
    "not_base64": "/ocsp/%%%%",
    "base64_with_spaces": "/ocsp/MA%20%20AA",
    "url_safe_alphabet": "/ocsp/MEMw-_-_",
    "nul": "/ocsp/%00",
    "non_ascii": "/ocsp/%E4%BE%8B%E5%AD%90",
    "dot_dot": "/ocsp/../../etc/passwd",
}


@pytest.mark.parametrize("path", HOSTILE_GET_PATHS.values(), ids=HOSTILE_GET_PATHS.keys())
def test_hostile_ocsp_get_path_is_refused_cleanly(http: FlaskClient, path: str) -> None:
    assert_malformed(http.get(path))


def test_oversized_ocsp_post_is_413(http: FlaskClient) -> None:
    resp = http.post("/ocsp", data=b"\x30" * (MAX_REQUEST_BYTES + 1))
    assert resp.status_code == 413


def test_oversized_ocsp_get_is_414(http: FlaskClient) -> None:
    resp = http.get("/ocsp/" + "A" * (MAX_REQUEST_BYTES * 2 + 4))
    assert resp.status_code in (413, 414)


@pytest.mark.parametrize("size", [0, 33, 128], ids=["empty", "thirty_three", "oversized"])
def test_ocsp_nonce_outside_one_to_32_octets_is_malformed(env: CAEnv, http: FlaskClient,
                                                          size: int) -> None:
    assert_malformed(http.post("/ocsp", data=good_request(env, _with_nonce_of(size))))


def test_ocsp_with_a_critical_unknown_extension_is_refused(env: CAEnv,
                                                           http: FlaskClient) -> None:
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00")
    issuer = env.ca.issuing_certificate
    body = ocsp.OCSPRequestBuilder().add_certificate(
        issuer, env.ca.root_certificate, hashes.SHA1()).add_extension(ext, True).build(
    ).public_bytes(serialization.Encoding.DER)
    assert_malformed(http.post("/ocsp", data=body))


def test_ocsp_for_an_unknown_serial_says_unknown_and_records_nothing(
        env: CAEnv, http: FlaskClient) -> None:
    issuer = env.ca.issuing_certificate
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        issuer_name_hash=b"\x00" * 20, issuer_key_hash=b"\x00" * 20, serial_number=12345,
        algorithm=hashes.SHA1())
    del issuer
    resp = http.post("/ocsp", data=builder.build().public_bytes(serialization.Encoding.DER))
    assert resp.status_code == 200
    parsed = ocsp.load_der_ocsp_response(resp.data)
    assert parsed.response_status in (ocsp.OCSPResponseStatus.SUCCESSFUL,
                                      ocsp.OCSPResponseStatus.UNAUTHORIZED)
    if parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL:
        assert parsed.certificate_status is not ocsp.OCSPCertStatus.GOOD


def test_the_good_request_still_works(env: CAEnv, person: Person) -> None:
    leaf = env.ca.issue_from_csr(person, "user-auth", make_csr()[0]).certificate
    app = create_app(env.ca)
    app.testing = True
    body = ocsp.OCSPRequestBuilder().add_certificate(
        leaf, env.ca.issuing_certificate, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    resp = app.test_client().post("/ocsp", data=body)
    parsed = ocsp.load_der_ocsp_response(resp.data)
    assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD


HOSTILE_PUBLIC_PATHS = {
    "unknown_ca": "/ca/evil.pem",
    "unknown_extension": "/ca/root.exe",
    "dot_dot_ca": "/ca/..%2F..%2Fkeys%2Froot.der",
    "keys_folder": "/ca/../keys/root.key",
    "unknown_crl": "/crl/evil.crl",
    "dot_dot_crl": "/crl/..%2Fgovtrust.db.crl",
    "crl_non_ascii": "/crl/例子.crl",
    "nul_ca": "/ca/root%00.pem",
    "sm2_when_off": "/ca/sm2-root.pem",
}


@pytest.mark.parametrize("path", HOSTILE_PUBLIC_PATHS.values(), ids=HOSTILE_PUBLIC_PATHS.keys())
def test_hostile_certificate_and_crl_paths_are_404(http: FlaskClient, path: str) -> None:
    resp = http.get(path)
    assert resp.status_code == 404, resp.status_code
    assert b"PRIVATE KEY" not in resp.data


WRONG_METHODS = {
    "put_ocsp": ("PUT", "/ocsp"),
    "delete_ocsp": ("DELETE", "/ocsp"),
    "post_crl": ("POST", "/crl/issuing.crl"),
    "post_ca": ("POST", "/ca/root.pem"),
    "patch_ocsp_get": ("PATCH", "/ocsp/MAA="),
}


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS.values(), ids=WRONG_METHODS.keys())
def test_wrong_method_is_405(http: FlaskClient, method: str, path: str) -> None:
    resp = http.open(path, method=method, data=b"\x30\x00")
    assert resp.status_code == 405, resp.status_code
