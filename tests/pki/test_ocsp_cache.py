"""The OCSP responder's cache of pre-signed responses is bounded (RFC 5019 §2.2 reuse).

Anyone may POST a question about any serial number. Answers about serials this
CA never issued are signed fresh and never kept, and the answers it does keep
are a least-recently-used set of ``ocsp_cache_size`` entries.
"""

from __future__ import annotations

import gc
import secrets
import tracemalloc
from pathlib import Path

import pytest
from asn1crypto import ocsp as a_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from directory.model import Person
from pki.errors import BadSetting
from pki.http import create_app
from pki.model import CASettings
from pki.ocsp import OCSPResponder, StatusInfo
from tests.fixtures.pki import CAEnv, build_env, make_csr


def _request_for(issuer: x509.Certificate, serial: int) -> bytes:
    """A nonce-less one-certificate request, as browsers and RFC 5019 clients send."""
    name_hash = hashes.Hash(hashes.SHA1())
    name_hash.update(issuer.subject.public_bytes(serialization.Encoding.DER))
    key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    return (ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash.finalize(), key_hash, serial, hashes.SHA1())
            .build().public_bytes(serialization.Encoding.DER))


def _status(response: bytes) -> str:
    parsed = a_ocsp.OCSPResponse.load(response)
    assert parsed["response_status"].native == "successful"
    single = parsed.basic_ocsp_response["tbs_response_data"]["responses"][0]
    return str(single["cert_status"].name)


def _issue(env: CAEnv, person: Person, count: int) -> list[int]:
    return [int(env.ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial, 16)
            for _ in range(count)]


def _is_cached(env: CAEnv, serial: int) -> bool:
    # An ECDSA signature is randomised: the same bytes twice means the kept answer.
    request = _request_for(env.ca.issuing_certificate, serial)
    return env.ca.responder.respond(request) == env.ca.responder.respond(request)


def test_unknown_serials_are_answered_but_not_cached(env: CAEnv) -> None:
    responder = env.ca.responder
    issuer = env.ca.issuing_certificate
    for _ in range(300):
        response = responder.respond(_request_for(issuer, secrets.randbits(159)))
        assert _status(response) == "unknown"
    assert responder.cached_responses == 0


def test_unknown_serials_over_http_do_not_grow_the_process(env: CAEnv) -> None:
    client = create_app(env.ca).test_client()
    issuer = env.ca.issuing_certificate

    def post(count: int) -> None:
        for _ in range(count):
            reply = client.post("/ocsp", data=_request_for(issuer, secrets.randbits(159)),
                                content_type="application/ocsp-request")
            assert reply.status_code == 200 and _status(reply.data) == "unknown"

    post(200)  # warm up: imports, compiled SQL, the responder itself
    tracemalloc.start()
    try:
        gc.collect()  # the test client leaves reference cycles; count only what lives on
        before = tracemalloc.get_traced_memory()[0]
        post(2000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Kept answers cost ~1 KB each (2 MB here); what is left is allocator noise.
    assert grown < 256 * 1024, f"grew {grown} bytes over 2000 unknown serials"
    assert env.ca.responder.cached_responses == 0


def test_known_serials_get_the_kept_response(env: CAEnv, person: Person) -> None:
    [serial] = _issue(env, person, 1)
    assert _is_cached(env, serial)
    assert env.ca.responder.cached_responses == 1
    assert _status(env.ca.responder.respond(
        _request_for(env.ca.issuing_certificate, serial))) == "good"


def test_a_revocation_replaces_the_kept_response(env: CAEnv, person: Person) -> None:
    [serial] = _issue(env, person, 1)
    request = _request_for(env.ca.issuing_certificate, serial)
    assert _status(env.ca.responder.respond(request)) == "good"
    env.ca.revoke(format(serial, "x"), "keyCompromise", refresh=False)
    assert _status(env.ca.responder.respond(request)) == "revoked"
    assert env.ca.responder.cached_responses == 1


def test_the_cache_never_exceeds_its_bound(tmp_path: Path, person: Person) -> None:
    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'c.db'}",
                    settings=CASettings(ocsp_cache_size=3))
    try:
        serials = _issue(env, person, 6)
        for serial in serials:
            env.ca.responder.respond(_request_for(env.ca.issuing_certificate, serial))
            assert env.ca.responder.cached_responses <= 3
        assert env.ca.responder.cached_responses == 3
    finally:
        env.engine.dispose()


def test_the_least_recently_used_answer_goes_first(tmp_path: Path, person: Person) -> None:
    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'l.db'}",
                    settings=CASettings(ocsp_cache_size=2))
    try:
        a, b, c = _issue(env, person, 3)
        issuer = env.ca.issuing_certificate
        for serial in (a, b, a, c):  # a used after b: b is the one to go when c comes
            env.ca.responder.respond(_request_for(issuer, serial))
        assert env.ca.responder.cached_responses == 2
        assert _is_cached(env, a)
        assert _is_cached(env, c)
        # b was evicted: its next answer is signed fresh (and then kept, evicting a).
        request = _request_for(issuer, b)
        first = env.ca.responder.respond(request)
        assert _status(first) == "good"
        assert env.ca.responder.respond(request) == first
    finally:
        env.engine.dispose()


def test_a_zero_cache_size_keeps_nothing(tmp_path: Path, person: Person) -> None:
    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'z.db'}",
                    settings=CASettings(ocsp_cache_size=0))
    try:
        [serial] = _issue(env, person, 1)
        assert not _is_cached(env, serial)
        assert env.ca.responder.cached_responses == 0
    finally:
        env.engine.dispose()


def test_a_negative_cache_size_is_refused() -> None:
    with pytest.raises(BadSetting) as caught:
        CASettings.from_mapping({"ocsp_cache_size": -1}, realm="beijing.gov.cn")
    assert caught.value.key == "ocsp_cache_size"


def test_a_text_cache_size_is_refused() -> None:
    with pytest.raises(BadSetting) as caught:
        CASettings.from_mapping({"ocsp_cache_size": "many"}, realm="beijing.gov.cn")
    assert caught.value.key == "ocsp_cache_size"


def test_the_responder_refuses_a_negative_cache_size(env: CAEnv) -> None:
    def lookup(serial: int) -> StatusInfo | None:
        return None

    with pytest.raises(ValueError, match="cache_size"):
        OCSPResponder(env.ca.issuing_certificate, lookup, env.ca.ocsp_credentials,
                      cache_size=-1)
