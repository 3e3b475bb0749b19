"""Certificate signature login (``idp.login.signature``): a tongsuopy client with an SM2
key (and a pyca one with an ECDSA key) signs the challenge; our real CA (both
hierarchies, ``tests.fixtures.pki.build_env``) issued its certificate; nonces live
in the real database. One named test per refusal."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import csr as a_csr
from asn1crypto import keys as a_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tongsuopy.crypto import serialization as t_serialization

from directory.model import Person
from idp.login.certificate import CertificateValidator
from idp.login.refusals import CertificateRefused, Refusal
from idp.login.signature import (
    MAX_CHAIN_TEXT,
    NonceStore,
    SignatureRequest,
    challenge,
    parse_request,
)
from idp.login.stepup import StrongAuth
from idp.runtime.db import session_factory
from pki import sm2
from pki.model import CASettings
from tests.fixtures.pki import CAEnv, build_env, make_csr, make_person

ISSUER = "https://127.0.0.1:8443"


def sm2_csr(key: sm2.SM2PrivateKey) -> bytes:
    """A PKCS#10 request built with asn1crypto and signed by tongsuopy (SM3withSM2,
    default ID): what a USB key's enrolment software sends."""
    spki = key.public_key().public_bytes(t_serialization.Encoding.DER,
                                         t_serialization.PublicFormat.SubjectPublicKeyInfo)
    info = a_csr.CertificationRequestInfo({
        "version": "v1", "subject": a_csr.Name.build({"common_name": "ignored"}),
        "subject_pk_info": a_keys.PublicKeyInfo.load(spki), "attributes": []})
    return a_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": sm2.SM3_WITH_SM2_OID},
        "signature": sm2.sign(key, info.dump())}).dump()


def pem_of(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Client:
    """A USB key: its key, its certificate, and what it signs with."""

    key: sm2.SM2PrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return sm2.sign(self.key, data)

    def request(self, nonce: str, *, issuer: str = ISSUER, signed_nonce: str | None = None,
                extra: tuple[x509.Certificate, ...] = ()) -> SignatureRequest:
        sig = self.sign(challenge(issuer, signed_nonce or nonce))
        return parse_request(nonce, pem_of(self.cert, *extra), b64(sig))


class People:
    """The directory stand-in of a unit test of the core: one person by entryUUID."""

    def __init__(self, *people: Person) -> None:
        self._people = {p.entry_uuid: p for p in people}

    def find(self, attribute: str, value: str) -> Person | None:
        return self._people.get(value) if attribute == "entryUUID" else None


@dataclass
class Env:
    ca: CAEnv
    nonces: NonceStore
    strong: StrongAuth
    clock: list[float]

    def sm2_client(self, *, hardware: bool = False, uid: str = "zhangwei") -> Client:
        key = sm2.generate_private_key()
        cert = self.ca.ca.sm2.issue_from_csr(make_person(uid), "user-auth", sm2_csr(key),
                                             hardware_key=hardware, actor="test").certificate
        return Client(key, cert)

    def ecdsa_client(self) -> Client:
        csr, key = make_csr()
        cert = self.ca.ca.issue_from_csr(make_person(), "user-auth", csr,
                                         actor="test").certificate
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return Client(key, cert)

    def login(self, request: SignatureRequest, binding: str) -> tuple[Person, str, str]:
        person, v = self.strong.signature_login(request, binding, ISSUER)
        return person, v.amr, v.serial


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CAEnv]:
    folder = tmp_path_factory.mktemp("sigca")
    e = build_env(folder, f"sqlite:///{folder / 'govtrust.db'}", settings=CASettings(sm2=True))
    yield e
    e.engine.dispose()


@pytest.fixture
def env(ca: CAEnv) -> Env:
    clock = [datetime.now(UTC).timestamp()]
    nonces = NonceStore(session_factory(ca.engine), clock=lambda: clock[0])
    validator = CertificateValidator(ca.ca)
    strong = StrongAuth(totp=lambda: None,  # type: ignore[arg-type,return-value]
                        certificates=lambda: validator,
                        people=People(make_person(), make_person("lisi")),
                        realm="beijing.gov.cn", nonces=lambda: nonces)
    return Env(ca, nonces, strong, clock)


def refused(env: Env, request: SignatureRequest, binding: str) -> Refusal:
    with pytest.raises(CertificateRefused) as info:
        env.login(request, binding)
    return info.value.reason


# -- what works -------------------------------------------------------------------------------

def test_the_challenge_is_the_documented_string() -> None:
    assert challenge("https://idp.example", "abc") == b"govtrust-login:v1:https://idp.example:abc"


def test_sm2_signature_logs_in_with_swk(env: Env) -> None:
    client = env.sm2_client()
    issued = env.nonces.issue()
    person, amr, serial = env.login(client.request(issued.nonce), issued.binding)
    assert person.uid == "zhangwei" and amr == "swk"
    assert serial == format(client.cert.serial_number, "x")


def test_sm2_certificate_with_the_hardware_policy_gives_hwk(env: Env) -> None:
    client = env.sm2_client(hardware=True)
    issued = env.nonces.issue()
    assert env.login(client.request(issued.nonce), issued.binding)[1] == "hwk"


def test_sm2_chain_with_the_issuing_and_root_certificates_is_accepted(env: Env) -> None:
    client = env.sm2_client()
    sm2ca = env.ca.ca.sm2
    issued = env.nonces.issue()
    request = client.request(issued.nonce,
                             extra=(sm2ca.issuing_certificate, sm2ca.root_certificate))
    assert env.login(request, issued.binding)[0].uid == "zhangwei"


def test_base64_der_chain_is_accepted(env: Env) -> None:
    client = env.sm2_client()
    issued = env.nonces.issue()
    chain = ",".join(b64(c.public_bytes(serialization.Encoding.DER))
                     for c in (client.cert, env.ca.ca.sm2.issuing_certificate))
    request = parse_request(issued.nonce, chain,
                            b64(client.sign(challenge(ISSUER, issued.nonce))))
    assert env.login(request, issued.binding)[1] == "swk"


def test_ecdsa_signature_logs_in_the_same_way(env: Env) -> None:
    client = env.ecdsa_client()
    issued = env.nonces.issue()
    person, amr, _ = env.login(client.request(issued.nonce), issued.binding)
    assert person.uid == "zhangwei" and amr == "swk"


# -- the nonce ----------------------------------------------------------------------------------

def test_reused_nonce_is_refused(env: Env) -> None:
    client = env.sm2_client()
    issued = env.nonces.issue()
    env.login(client.request(issued.nonce), issued.binding)
    assert refused(env, client.request(issued.nonce), issued.binding) is Refusal.NONCE_USED


def test_unknown_nonce_is_refused(env: Env) -> None:
    client = env.sm2_client()
    nonce = "A" * 43  # well formed, never issued
    assert refused(env, client.request(nonce), "B" * 43) is Refusal.NONCE_UNKNOWN


def test_nonce_of_another_browser_is_refused(env: Env) -> None:
    client = env.sm2_client()
    issued = env.nonces.issue()
    other = env.nonces.issue()  # another browser's binding
    assert refused(env, client.request(issued.nonce), other.binding) is Refusal.NONCE_UNKNOWN


def test_expired_nonce_is_refused(env: Env) -> None:
    client = env.sm2_client()
    issued = env.nonces.issue()
    env.clock[0] += env.nonces.seconds + 1
    assert refused(env, client.request(issued.nonce), issued.binding) is Refusal.NONCE_EXPIRED


def test_a_failed_attempt_burns_the_nonce(env: Env) -> None:
    client = env.sm2_client()
    issued = env.nonces.issue()
    wrong = client.request(issued.nonce, signed_nonce="C" * 43)
    assert refused(env, wrong, issued.binding) is Refusal.BAD_SIGNATURE
    assert refused(env, client.request(issued.nonce), issued.binding) is Refusal.NONCE_USED


def test_nonce_is_single_use_across_workers(env: Env) -> None:
    """Two stores on the one database (two workers): of eight concurrent uses, one wins."""
    issued = env.nonces.issue()
    results: list[str] = []
    lock = threading.Lock()

    def use() -> None:
        store = NonceStore(session_factory(env.ca.engine))
        try:
            store.consume(issued.nonce, issued.binding)
            outcome = "ok"
        except CertificateRefused as e:
            outcome = e.reason.value
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["nonce_used"] * 7 + ["ok"]


# -- the signature ----------------------------------------------------------------------------

def test_signature_over_another_nonce_is_refused(env: Env) -> None:
    client = env.sm2_client()
    issued, other = env.nonces.issue(), env.nonces.issue()
    request = client.request(issued.nonce, signed_nonce=other.nonce)
    assert refused(env, request, issued.binding) is Refusal.BAD_SIGNATURE


def test_signature_for_another_site_is_refused(env: Env) -> None:
    client = env.sm2_client()
    issued = env.nonces.issue()
    request = client.request(issued.nonce, issuer="https://other.example")
    assert refused(env, request, issued.binding) is Refusal.BAD_SIGNATURE


def test_signature_by_another_key_is_refused(env: Env) -> None:
    client = env.sm2_client()
    thief = Client(sm2.generate_private_key(), client.cert)  # the certificate, not the key
    issued = env.nonces.issue()
    assert refused(env, thief.request(issued.nonce), issued.binding) is Refusal.BAD_SIGNATURE


def test_ecdsa_signature_with_sha384_is_refused(env: Env) -> None:
    client = env.ecdsa_client()
    issued = env.nonces.issue()
    assert isinstance(client.key, ec.EllipticCurvePrivateKey)
    sig = client.key.sign(challenge(ISSUER, issued.nonce), ec.ECDSA(hashes.SHA384()))
    request = parse_request(issued.nonce, pem_of(client.cert), b64(sig))
    assert refused(env, request, issued.binding) is Refusal.BAD_SIGNATURE


# -- the chain and the certificate ------------------------------------------------------------

def foreign_ecdsa_client() -> Client:
    """A certificate from a CA we do not know, otherwise fit for login."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Elsewhere CA")])
    cert = (x509.CertificateBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "张伟")])).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                     False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    return Client(key, cert)


def test_certificate_from_an_unknown_ca_is_refused(env: Env) -> None:
    issued = env.nonces.issue()
    request = foreign_ecdsa_client().request(issued.nonce)
    assert refused(env, request, issued.binding) is Refusal.UNKNOWN_CA


def test_sm2_certificate_from_another_govtrust_is_a_forged_chain(
        env: Env, tmp_path: Path) -> None:
    """Another installation's SM2 CA has our CA's name, not its key."""
    other = build_env(tmp_path, f"sqlite:///{tmp_path / 'other.db'}",
                      settings=CASettings(sm2=True))
    try:
        key = sm2.generate_private_key()
        cert = other.ca.sm2.issue_from_csr(make_person(), "user-auth", sm2_csr(key),
                                           actor="test").certificate
    finally:
        other.engine.dispose()
    issued = env.nonces.issue()
    request = Client(key, cert).request(issued.nonce)
    assert refused(env, request, issued.binding) is Refusal.FORGED_CHAIN


def test_revoked_sm2_certificate_is_refused(env: Env) -> None:
    client = env.sm2_client()
    env.ca.ca.revoke(format(client.cert.serial_number, "x"), "keyCompromise", actor="admin")
    issued = env.nonces.issue()
    assert refused(env, client.request(issued.nonce), issued.binding) is Refusal.REVOKED


def test_held_sm2_certificate_is_refused(env: Env) -> None:
    client = env.sm2_client()
    env.ca.ca.hold(format(client.cert.serial_number, "x"), actor="admin")
    issued = env.nonces.issue()
    assert refused(env, client.request(issued.nonce), issued.binding) is Refusal.ON_HOLD


def test_sm2_signing_certificate_without_client_auth_is_refused(env: Env) -> None:
    key = sm2.generate_private_key()
    cert = env.ca.ca.sm2.issue_from_csr(make_person(), "user-sign", sm2_csr(key),
                                        actor="test").certificate
    issued = env.nonces.issue()
    reason = refused(env, Client(key, cert).request(issued.nonce), issued.binding)
    assert reason in (Refusal.NO_CLIENT_AUTH, Refusal.NO_DIGITAL_SIGNATURE)


def test_expired_sm2_certificate_is_refused(env: Env) -> None:
    client = env.sm2_client()
    later = client.cert.not_valid_after_utc + timedelta(seconds=1)
    env.strong = StrongAuth(totp=lambda: None,  # type: ignore[arg-type,return-value]
                            certificates=lambda: CertificateValidator(env.ca.ca,
                                                                      clock=lambda: later),
                            people=People(make_person()), realm="beijing.gov.cn",
                            nonces=lambda: env.nonces)
    issued = env.nonces.issue()
    assert refused(env, client.request(issued.nonce), issued.binding) is Refusal.EXPIRED


# -- malformed and oversized input ------------------------------------------------------------

def parse_refusal(nonce: str, chain: str, signature: str) -> Refusal:
    with pytest.raises(CertificateRefused) as info:
        parse_request(nonce, chain, signature)
    return info.value.reason


NONCE = "N" * 43


def test_garbage_chain_is_malformed(env: Env) -> None:
    assert parse_refusal(NONCE, "not a certificate", "AAAA") is Refusal.MALFORMED


def test_pem_chain_with_text_between_blocks_is_malformed(env: Env) -> None:
    client = env.sm2_client()
    chain = pem_of(client.cert) + "hello\n" + pem_of(client.cert)
    assert parse_refusal(NONCE, chain, "AAAA") is Refusal.MALFORMED


def test_empty_chain_is_malformed() -> None:
    assert parse_refusal(NONCE, "", "AAAA") is Refusal.MALFORMED


def test_signature_that_is_not_base64_is_a_malformed_request(env: Env) -> None:
    client = env.sm2_client()
    assert parse_refusal(NONCE, pem_of(client.cert), "%%%") is Refusal.MALFORMED_REQUEST


def test_empty_signature_is_a_malformed_request(env: Env) -> None:
    client = env.sm2_client()
    assert parse_refusal(NONCE, pem_of(client.cert), "") is Refusal.MALFORMED_REQUEST


def test_malformed_nonce_is_refused(env: Env) -> None:
    client = env.sm2_client()
    assert parse_refusal("short'nonce", pem_of(client.cert), "AAAA") is Refusal.MALFORMED_REQUEST


def test_oversized_chain_is_refused() -> None:
    assert parse_refusal(NONCE, "A" * (MAX_CHAIN_TEXT + 1), "AAAA") is Refusal.TOO_LARGE


def test_oversized_signature_is_a_malformed_request() -> None:
    assert parse_refusal(NONCE, "AAAA", "A" * 1024) is Refusal.MALFORMED_REQUEST


def test_too_many_certificates_are_refused(env: Env) -> None:
    client = env.sm2_client()
    assert parse_refusal(NONCE, pem_of(*[client.cert] * 5), "AAAA") is Refusal.TOO_LARGE
