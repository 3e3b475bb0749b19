"""The responder core without HTTP: several CertIDs, SHA-256 CertIDs, critical extensions."""

from __future__ import annotations

from asn1crypto import ocsp as a_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from directory.model import Person
from tests.fixtures.pki import CAEnv, make_csr


def _cid(cert: x509.Certificate, issuer: x509.Certificate,
         algorithm: hashes.HashAlgorithm) -> a_ocsp.CertId:
    der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build() \
        .public_bytes(serialization.Encoding.DER)
    return a_ocsp.OCSPRequest.load(der)["tbs_request"]["request_list"][0]["req_cert"]


def test_two_certificates_in_one_request(env: CAEnv, person: Person) -> None:
    issuer = env.ca.issuing_certificate
    a = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    b = env.ca.issue_from_csr(person, "user-sign", make_csr()[0])
    env.ca.revoke(b.record.serial, "superseded", refresh=False)
    req = a_ocsp.OCSPRequest({"tbs_request": {"request_list": [
        {"req_cert": _cid(a.certificate, issuer, hashes.SHA256())},
        {"req_cert": _cid(b.certificate, issuer, hashes.SHA1())},
    ]}}).dump()
    resp = a_ocsp.OCSPResponse.load(env.ca.responder.respond(req))
    assert resp["response_status"].native == "successful"
    singles = resp.basic_ocsp_response["tbs_response_data"]["responses"]
    statuses = [s["cert_status"].name for s in singles]
    assert statuses == ["good", "revoked"]
    assert singles[1]["cert_status"].chosen["revocation_reason"].native == "superseded"


def test_unknown_critical_request_extension_is_malformed(env: CAEnv, person: Person) -> None:
    a = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    req = a_ocsp.OCSPRequest({"tbs_request": {
        "request_list": [{"req_cert": _cid(a.certificate, env.ca.issuing_certificate,
                                           hashes.SHA1())}],
        "request_extensions": [{"extn_id": "1.3.6.1.4.1.99999.7", "critical": True,
                                "extn_value": b"\x05\x00"}],
    }}).dump()
    resp = ocsp.load_der_ocsp_response(env.ca.responder.respond(req))
    assert resp.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_empty_and_truncated_requests_are_malformed(env: CAEnv, person: Person) -> None:
    a = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
    good = ocsp.OCSPRequestBuilder().add_certificate(
        a.certificate, env.ca.issuing_certificate, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    for body in (b"", good[:-3], good + b"\x00"):
        resp = ocsp.load_der_ocsp_response(env.ca.responder.respond(body))
        assert resp.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
